"""Migrator: what the ``jetbase`` CLI 0.18.1 does, on an injected SQLAlchemy engine, as values.

Same tables, rows, checksums, version order and statement handling as the CLI (interop tests run the
real CLI against the same databases), but decided correctly where the CLI loses work:
- the plan is computed under the lock, from the rows read after acquiring it;
- pending = versioned files whose version has no row (not "files after the newest applied_at");
  latest applied = highest version in version order, never the newest ``applied_at``;
- rollback targets exactly the versions that have rows, newest first by version order;
- a pending file below the latest applied version is the out-of-order validation error; with file
  validation skipped it is applied in version order, with a warning (never silently skipped);
- SQLite runs each migration in a real transaction (pysqlite recipe), like PostgreSQL;
- a dry run creates, locks and writes nothing, even on a brand-new database;
- ``count`` must be a positive integer (the CLI reads 0 as "all" on upgrade, "one" on rollback);
- the lock is waited for (``lock_timeout``) instead of failing at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import TextClause, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from airflow_provider_jetbase.migration.dialects import Dialect, dialect_for
from airflow_provider_jetbase.migration.errors import (
    InvalidArgumentError,
    MigrationExecutionError,
    MigrationFileError,
    ParsingHazardError,
    ValidationFailedError,
    VersionNotFoundError,
)
from airflow_provider_jetbase.migration.files import (
    RUNS_ALWAYS,
    RUNS_ON_CHANGE,
    VERSIONED,
    MigrationFile,
    MigrationSet,
    Section,
    discover,
)
from airflow_provider_jetbase.migration.lock import MigrationLock, ensure_lock_tables, force_unlock, read_lock
from airflow_provider_jetbase.migration.logs import forward_jetbase_logs
from airflow_provider_jetbase.migration.results import (
    AppliedMigration,
    LockInfo,
    MigrationRun,
    PendingMigration,
    RollbackResult,
    StatusReport,
    UpgradeResult,
    ValidationFinding,
    ValidationReport,
)
from airflow_provider_jetbase.migration.sqlite_tx import make_sqlite_ddl_transactional
from airflow_provider_jetbase.migration.state import (
    check_tables,
    fetch_applied,
    fetch_current_version,
    latest_version,
    normalise_version,
    version_key,
)

LOGGER_NAME = "airflow_provider_jetbase.migration"

_PARTIAL_NOTE = {
    "mysql": "MySQL/MariaDB commits DDL implicitly, so the database may hold part of {file} "
    "(statements before the failed one, and DDL is never rolled back): check it and repair by hand "
    "before retrying.",
}
_PARTIAL_DEFAULT = (
    "{dialect} commits DDL implicitly, so the database may hold part of {file}: check it and repair "
    "by hand before retrying."
)


@dataclass
class _UpgradePlan:
    version_before: str | None
    versioned: list[MigrationFile]
    runs_always: list[tuple[MigrationFile, bool]]  # (file, its row exists)
    runs_on_change: list[tuple[MigrationFile, bool]]
    warnings: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.versioned or self.runs_always or self.runs_on_change)

    def version_after(self) -> str | None:
        return latest_version([self.version_before, *(m.version for m in self.versioned)])


def _check_count(count: Any) -> int | None:
    if count is None:
        return None
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise InvalidArgumentError(f"'count' must be a positive integer, got {count!r}")
    return count


def _check_exclusive(count: Any, to_version: Any, command: str) -> None:
    if count is not None and to_version is not None:
        raise InvalidArgumentError(
            f"Cannot specify both 'count' ({count!r}) and 'to_version' ({to_version!r}) for {command}: "
            "choose one, or neither"
        )


def _statement(stmt: TextClause, params: dict[str, Any]) -> Callable[[Connection], None]:
    def run(conn: Connection) -> None:
        conn.execute(stmt, params)

    return run


def _db_message(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).strip()


class Migrator:
    """Upgrade, roll back and inspect a database from a Jetbase migrations folder."""

    def __init__(
        self,
        engine: Engine,
        migrations_dir: str | os.PathLike[str],
        *,
        lock_timeout: float = 300.0,
        lock_poll_interval: float = 1.0,
        strict: bool = False,
        lock_owner: str | None = None,
        logger: logging.Logger | None = None,
        stale_lock_after: float | None = None,
    ) -> None:
        if lock_timeout < 0:
            raise InvalidArgumentError(f"'lock_timeout' must be >= 0 seconds, got {lock_timeout!r}")
        if lock_poll_interval <= 0:
            raise InvalidArgumentError(
                f"'lock_poll_interval' must be > 0 seconds, got {lock_poll_interval!r}"
            )
        if stale_lock_after is not None and stale_lock_after < 0:
            raise InvalidArgumentError(f"'stale_lock_after' must be >= 0 seconds, got {stale_lock_after!r}")
        self.engine = engine
        self.migrations_dir = Path(os.fspath(migrations_dir))
        self.lock_timeout = float(lock_timeout)
        self.lock_poll_interval = float(lock_poll_interval)
        self.strict = strict
        self.lock_owner = lock_owner
        self.stale_lock_after = stale_lock_after
        self.logger = logger if logger is not None else logging.getLogger(LOGGER_NAME)
        self.dialect: Dialect = dialect_for(engine)
        make_sqlite_ddl_transactional(engine)

    # ------------------------------------------------------------------ plumbing
    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        with forward_jetbase_logs(self.logger), self.engine.connect() as conn:
            yield conn

    def _files(self) -> MigrationSet:
        return discover(self.migrations_dir, self.logger)

    def _lock(self, conn: Connection) -> MigrationLock:
        return MigrationLock(
            conn,
            self.engine,
            self.dialect,
            timeout=self.lock_timeout,
            poll_interval=self.lock_poll_interval,
            owner=self.lock_owner,
            stale_after=self.stale_lock_after,
            logger=self.logger,
        )

    def _ensure_tables(self, conn: Connection) -> None:
        # Two runs starting together on a fresh PostgreSQL database can both try CREATE TABLE IF NOT
        # EXISTS and one fails on the catalog's unique index: a retry then finds the table.
        check_tables(
            conn,
            ["jetbase_migrations", "jetbase_lock"] if self.dialect.supports_lock else ["jetbase_migrations"],
        )
        attempts = 4
        for attempt in range(attempts):
            try:
                with conn.begin():
                    conn.execute(self.dialect.queries.create_migrations_table_stmt())
                ensure_lock_tables(conn, self.dialect)
                return
            except DBAPIError:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))

    def _read_applied(self, conn: Connection) -> list[AppliedMigration]:
        return fetch_applied(conn) or []

    # ------------------------------------------------------------------ validation
    def _findings(
        self, files: MigrationSet, applied: list[AppliedMigration], latest: str | None
    ) -> list[ValidationFinding]:
        findings: list[ValidationFinding] = []
        rows = {r.version: r for r in applied if r.migration_type == VERSIONED and r.version}
        by_version = files.by_version()
        if latest is not None:
            latest_key = version_key(latest)
            for f in files.versioned:
                assert f.version is not None
                if f.version not in rows and version_key(f.version) < latest_key:
                    findings.append(
                        ValidationFinding(
                            "out_of_order",
                            f"{f.relpath} has version {f.version}, lower than the latest applied version "
                            f"{latest}, and has not been applied: rename it to a version above {latest}",
                            f.version,
                            f.filename,
                        )
                    )
        for version, row in rows.items():
            if version not in by_version:
                findings.append(
                    ValidationFinding(
                        "missing_file",
                        f"Version {version} ({row.filename}) has been applied but its file is missing from "
                        f"the migrations folder {self.migrations_dir}",
                        version,
                        row.filename,
                    )
                )
        repeatable = files.repeatable_filenames()
        for row in applied:
            if row.migration_type in (RUNS_ALWAYS, RUNS_ON_CHANGE) and row.filename not in repeatable:
                findings.append(
                    ValidationFinding(
                        "missing_repeatable_file",
                        f"Repeatable migration {row.filename} ({row.migration_type}) has been applied but "
                        f"its file is missing from the migrations folder {self.migrations_dir}",
                        None,
                        row.filename,
                    )
                )
        for version, row in rows.items():
            changed = by_version.get(version)
            if changed is not None and row.checksum != changed.checksum:
                findings.append(
                    ValidationFinding(
                        "checksum_mismatch",
                        f"{changed.relpath} (version {version}) has changed since it was applied: its "
                        f"checksum is {changed.checksum[:12]}... but jetbase_migrations has "
                        f"{str(row.checksum)[:12]}... "
                        "Restore the file, or record the change with `jetbase fix-checksums`",
                        version,
                        changed.filename,
                    )
                )
        return findings

    # ------------------------------------------------------------------ upgrade
    def _plan_upgrade(
        self,
        files: MigrationSet,
        applied: list[AppliedMigration],
        count: int | None,
        target: str | None,
        skip_validation: bool,
        skip_checksum_validation: bool,
        skip_file_validation: bool,
    ) -> _UpgradePlan:
        applied_versions = {r.version for r in applied if r.migration_type == VERSIONED and r.version}
        latest = latest_version(applied_versions)
        findings = self._findings(files, applied, latest) if latest is not None else []
        if not skip_validation:
            blocking = [
                f
                for f in findings
                if (f.kind == "checksum_mismatch" and not skip_checksum_validation)
                or (f.kind != "checksum_mismatch" and not skip_file_validation)
            ]
            if blocking:
                raise ValidationFailedError(
                    "Validation failed, nothing was run:\n"
                    + "\n".join(f"  - {f.message}" for f in blocking)
                    + "\n(skip_checksum_validation, skip_file_validation or skip_validation bypass these "
                    "checks)",
                    report=ValidationReport(tuple(findings)),
                )
        warnings: list[str] = []
        pending = [f for f in files.versioned if f.version not in applied_versions]
        by_version = files.by_version()
        if target is not None:
            found = by_version.get(target)
            if found is None:
                raise VersionNotFoundError(
                    f"to_version {target} has no migration file in {self.migrations_dir}"
                )
            if target in applied_versions:
                self.logger.info("Version %s is already applied: no versioned migration to run.", target)
                pending = []
            else:
                pending = [f for f in pending if f.sort_key <= found.sort_key]
        elif count is not None:
            pending = pending[:count]
        if latest is not None:
            latest_key = version_key(latest)
            for f in pending:
                assert f.version is not None
                if version_key(f.version) < latest_key:
                    warnings.append(
                        f"{f.relpath}: version {f.version} is below the latest applied version {latest}; "
                        "applying it out of order because file validation is skipped"
                    )
        ra_rows = {r.filename for r in applied if r.migration_type == RUNS_ALWAYS}
        roc_rows = {r.filename: r.checksum for r in applied if r.migration_type == RUNS_ON_CHANGE}
        runs_always = [(f, f.filename in ra_rows) for f in files.runs_always]
        runs_on_change = [
            (f, f.filename in roc_rows)
            for f in files.runs_on_change
            if roc_rows.get(f.filename) != f.checksum
        ]
        plan = _UpgradePlan(latest, pending, runs_always, runs_on_change, warnings)
        hazards = [
            h
            for f in (*pending, *(m for m, _ in runs_always), *(m for m, _ in runs_on_change))
            for h in f.upgrade_warnings()
        ]
        self._check_hazards(hazards, "upgrade")
        plan.warnings.extend(hazards)
        return plan

    def _check_hazards(self, hazards: list[str], command: str) -> None:
        if hazards and self.strict:
            raise ParsingHazardError(
                f"strict mode: {len(hazards)} parsing hazard(s) found, nothing was run ({command}):\n"
                + "\n".join(f"  - {h}" for h in hazards),
                hazards=tuple(hazards),
            )
        for h in hazards:
            self.logger.warning("%s", h)

    def upgrade(
        self,
        count: int | None = None,
        to_version: str | None = None,
        dry_run: bool = False,
        skip_validation: bool = False,
        skip_checksum_validation: bool = False,
        skip_file_validation: bool = False,
    ) -> UpgradeResult:
        _check_exclusive(count, to_version, "upgrade")
        count = _check_count(count)
        target = normalise_version(to_version) if to_version is not None else None
        files = self._files()
        args = (count, target, skip_validation, skip_checksum_validation, skip_file_validation)
        with self._connect() as conn:
            if dry_run:
                plan = self._plan_upgrade(files, self._read_applied(conn), *args)
                return self._dry_upgrade(plan)
            self._ensure_tables(conn)
            with self._lock(conn):
                plan = self._plan_upgrade(files, self._read_applied(conn), *args)
                return self._run_upgrade(conn, plan)

    def _dry_upgrade(self, plan: _UpgradePlan) -> UpgradeResult:
        files = [*plan.versioned, *(m for m, _ in plan.runs_always), *(m for m, _ in plan.runs_on_change)]
        runs = tuple(
            MigrationRun(f.filename, f.version, f.migration_type, f.upgrade.statements, f.checksum, 0.0)
            for f in files
        )
        if not runs:
            self.logger.info("Dry run: migrations are up to date (version %s).", plan.version_before)
        for run in runs:
            self.logger.info(
                "Dry run: would apply %s (%d statement%s):\n%s",
                run.filename,
                len(run.statements),
                "" if len(run.statements) == 1 else "s",
                "\n".join(f"  {s};" for s in run.statements),
            )
        return UpgradeResult(runs, True, plan.version_before, plan.version_after(), tuple(plan.warnings))

    def _run_upgrade(self, conn: Connection, plan: _UpgradePlan) -> UpgradeResult:
        if plan.empty:
            self.logger.info("Migrations are up to date (version %s).", plan.version_before)
            return UpgradeResult((), False, plan.version_before, plan.version_before, tuple(plan.warnings))
        queries = self.dialect.queries
        done: list[MigrationRun] = []
        self.logger.info("Starting migrations (current version %s)...", plan.version_before)

        for f in plan.versioned:
            finish = _statement(queries.insert_version_stmt(), self._row_params(f))
            done.append(self._run_file(conn, f, f.upgrade, finish, done))
        for f, exists in [*plan.runs_always, *plan.runs_on_change]:
            if exists:
                upd = {"checksum": f.checksum, "filename": f.filename, "migration_type": f.migration_type}
                finish = _statement(queries.update_repeatable_migration_stmt(), upd)
            else:
                finish = _statement(queries.insert_version_stmt(), self._row_params(f))
            done.append(self._run_file(conn, f, f.upgrade, finish, done))
        after = plan.version_after()
        self.logger.info(
            "Migrations completed: %d file%s applied, version %s -> %s.",
            len(done),
            "" if len(done) == 1 else "s",
            plan.version_before,
            after,
        )
        return UpgradeResult(tuple(done), False, plan.version_before, after, tuple(plan.warnings))

    @staticmethod
    def _row_params(f: MigrationFile) -> dict[str, Any]:
        return {
            "version": f.version,
            "description": f.description,
            "filename": f.filename,
            "migration_type": f.migration_type,
            "checksum": f.checksum,
        }

    def _run_file(
        self,
        conn: Connection,
        f: MigrationFile,
        section: Section,
        finish: Callable[[Connection], None],
        done: list[MigrationRun],
        direction: str = "upgrade",
    ) -> MigrationRun:
        """The file's statements and its version-row change, in one transaction."""
        total = len(section.statements)
        verb = "Applying" if direction == "upgrade" else "Rolling back"
        self.logger.info("%s %s (%d statement%s)...", verb, f.relpath, total, "" if total == 1 else "s")
        start = time.perf_counter()
        number: int | None = None
        transaction = conn.begin()
        try:
            for number, statement in enumerate(section.statements, 1):  # noqa: B007 - read on failure
                conn.execute(text(statement))
            number = None
            finish(conn)
        except BaseException as exc:
            self._rollback_after_failure(conn, transaction, f)
            if isinstance(exc, SQLAlchemyError):
                raise self._execution_error(f, section, number, exc, done, direction) from exc
            raise  # KeyboardInterrupt, SystemExit, a task runner's kill exception: surface as is
        try:
            transaction.commit()
        except SQLAlchemyError as exc:
            self._rollback_after_failure(conn, transaction, f)
            raise self._execution_error(f, section, None, exc, done, direction) from exc
        duration_ms = (time.perf_counter() - start) * 1000.0
        done_verb = "Applied" if direction == "upgrade" else "Rolled back"
        self.logger.info("%s %s in %.1f ms.", done_verb, f.relpath, duration_ms)
        return MigrationRun(
            f.filename, f.version, f.migration_type, section.statements, f.checksum, duration_ms
        )

    def _rollback_after_failure(self, conn: Connection, transaction: Any, f: MigrationFile) -> None:
        """Roll the file's transaction back; if the connection cannot (a signal interrupted the driver
        mid-command: "another command is already in progress"), discard it, which makes the server
        abort the transaction, rather than let that secondary error hide the original one."""
        try:
            if transaction.is_active:
                transaction.rollback()
        except Exception as exc:  # noqa: BLE001 - the original exception is what the caller must see
            self.logger.warning(
                "Could not roll back %s cleanly (%s); discarding the connection.", f.relpath, exc
            )
            with contextlib.suppress(Exception):
                conn.invalidate()

    def _execution_error(
        self,
        f: MigrationFile,
        section: Section,
        number: int | None,
        exc: SQLAlchemyError,
        done: list[MigrationRun],
        direction: str,
    ) -> MigrationExecutionError:
        db_message = _db_message(exc)
        total = len(section.statements)
        if number is not None:
            where = f"statement {number} of {total} (line {section.start_lines[number - 1]})"
        else:
            where = "recording the version row in jetbase_migrations"
        message = f"{direction.capitalize()} of {f.relpath} failed at {where}: {db_message}"
        partial = not self.dialect.transactional_ddl
        if partial:
            template = _PARTIAL_NOTE.get(self.dialect.name, _PARTIAL_DEFAULT)
            message += "\n" + template.format(file=f.relpath, dialect=self.dialect.name)
        else:
            message += f"\nThe transaction was rolled back: nothing of {f.relpath} was applied."
        if done:
            message += f"\n{len(done)} earlier file(s) of this run stay committed: " + ", ".join(
                r.filename for r in done
            )
        self.logger.error("%s", message)
        return MigrationExecutionError(
            message,
            filename=f.filename,
            statement_number=number,
            db_message=db_message,
            applied=tuple(done),
            partial=partial,
        )

    # ------------------------------------------------------------------ rollback
    def rollback(
        self, count: int | None = None, to_version: str | None = None, dry_run: bool = False
    ) -> RollbackResult:
        _check_exclusive(count, to_version, "rollback")
        count = _check_count(count)
        target = normalise_version(to_version) if to_version is not None else None
        if count is None and target is None:
            count = 1
        files = self._files()
        with self._connect() as conn:
            if dry_run:
                return self._rollback(conn, files, count, target, dry_run=True)
            self._ensure_tables(conn)
            with self._lock(conn):
                return self._rollback(conn, files, count, target, dry_run=False)

    def _rollback(
        self, conn: Connection, files: MigrationSet, count: int | None, target: str | None, *, dry_run: bool
    ) -> RollbackResult:
        applied = self._read_applied(conn)
        versions = [r.version for r in applied if r.migration_type == VERSIONED and r.version]
        newest_first = sorted(set(versions), key=lambda v: (version_key(v), v), reverse=True)
        before = newest_first[0] if newest_first else None
        if target is not None:
            if target not in versions:
                known = (
                    "has a file but has not been applied"
                    if target in files.by_version()
                    else ("has no row in jetbase_migrations and no file")
                )
                raise VersionNotFoundError(f"Cannot roll back to version {target}: it {known}")
            tkey = (version_key(target), target)
            targets = [v for v in newest_first if (version_key(v), v) > tkey]
        else:
            assert count is not None
            targets = newest_first[:count]
        if not targets:
            self.logger.info("Nothing to roll back (version %s).", before)
            return RollbackResult((), dry_run, before, before, ())
        by_version = files.by_version()
        plan: list[MigrationFile] = []
        for v in targets:
            f = by_version.get(v)
            if f is None:
                row = next(r for r in applied if r.version == v and r.migration_type == VERSIONED)
                raise MigrationFileError(
                    f"Cannot roll back version {v}: its file ({row.filename}) is missing from "
                    f"{self.migrations_dir}. Nothing was rolled back.",
                    filename=row.filename,
                )
            if not f.has_rollback_marker:
                raise MigrationFileError(
                    f"Cannot roll back version {v}: {f.relpath} has no '-- rollback' section. "
                    "Nothing was rolled back.",
                    filename=f.filename,
                )
            plan.append(f)
        hazards = [h for f in plan for h in f.rollback_warnings()]
        self._check_hazards(hazards, "rollback")
        target_set = set(targets)
        remaining = [v for v in newest_first if v not in target_set]
        after = remaining[0] if remaining else None
        if dry_run:
            runs = tuple(
                MigrationRun(f.filename, f.version, f.migration_type, f.rollback.statements, f.checksum, 0.0)
                for f in plan
            )
            for run in runs:
                self.logger.info(
                    "Dry run: would roll back %s (%d statement%s):\n%s",
                    run.filename,
                    len(run.statements),
                    "" if len(run.statements) == 1 else "s",
                    "\n".join(f"  {s};" for s in run.statements),
                )
            return RollbackResult(runs, True, before, after, tuple(hazards))
        queries = self.dialect.queries
        done: list[MigrationRun] = []
        self.logger.info("Starting rollback of %d version(s) from %s...", len(plan), before)
        for f in plan:
            done.append(
                self._run_file(
                    conn,
                    f,
                    f.rollback,
                    _statement(queries.delete_version_stmt(), {"version": f.version}),
                    done,
                    direction="rollback",
                )
            )
        self.logger.info("Rollback completed: version %s -> %s.", before, after)
        return RollbackResult(tuple(done), False, before, after, tuple(hazards))

    # ------------------------------------------------------------------ inspection
    def history(self) -> list[AppliedMigration]:
        with self._connect() as conn:
            return self._read_applied(conn)

    def current(self) -> str | None:
        with self._connect() as conn:
            return fetch_current_version(conn)

    def status(self) -> StatusReport:
        files = self._files()
        with self._connect() as conn:
            applied = self._read_applied(conn)
        versions = {r.version for r in applied if r.migration_type == VERSIONED and r.version}
        roc_rows = {r.filename: r.checksum for r in applied if r.migration_type == RUNS_ON_CHANGE}
        pending = [
            PendingMigration(f.version, f.filename, VERSIONED)
            for f in files.versioned
            if f.version not in versions
        ]
        pending += [PendingMigration(None, f.filename, RUNS_ALWAYS) for f in files.runs_always]
        pending += [
            PendingMigration(None, f.filename, RUNS_ON_CHANGE)
            for f in files.runs_on_change
            if roc_rows.get(f.filename) != f.checksum
        ]
        return StatusReport(tuple(applied), tuple(pending), latest_version(versions))

    def validate(self) -> ValidationReport:
        files = self._files()
        with self._connect() as conn:
            applied = self._read_applied(conn)
        latest = latest_version(r.version for r in applied if r.migration_type == VERSIONED)
        return ValidationReport(tuple(self._findings(files, applied, latest)))

    def lock_status(self) -> LockInfo:
        with self._connect() as conn:
            info, _ = read_lock(conn, self.dialect)
            return info

    def unlock(self) -> None:
        with self._connect() as conn:
            info, holder = read_lock(conn, self.dialect)
            if not self.dialect.supports_lock:
                self.logger.warning("Nothing to unlock: Jetbase has no lock on %s.", self.dialect.name)
                return
            force_unlock(conn, self.dialect)
        if holder is not None:
            self.logger.warning(
                "Released the Jetbase migration lock by force (it was held by %s).", holder.describe()
            )
        else:
            self.logger.info("The Jetbase migration lock was not held.")
