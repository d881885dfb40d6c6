"""Migrator: what the ``jetbase`` CLI 0.18.1 does, on an injected SQLAlchemy engine, as values.

Same tables, rows, checksums, version order and statement handling as the CLI (interop tests run the
real CLI against the same databases), but decided correctly where the CLI loses work:
- the plan is computed under the lock, from the rows read after acquiring it;
- pending = versioned files whose version has no row (not "files after the newest applied_at");
  latest applied = highest version in version order, never the newest ``applied_at``;
- rollback targets exactly the versions that have rows, newest first by version order;
- a pending file below the latest applied version is the out-of-order validation error; with file
  validation skipped it is applied in version order, with a warning (never silently skipped);
- SQLite runs each migration in a real transaction (pysqlite recipe), like PostgreSQL; the PRAGMAs
  SQLite ignores inside one (foreign_keys, journal_mode) run before BEGIN or after COMMIT when they
  open or close the section, are refused anywhere else, and the connection's foreign_keys setting
  is restored after every file;
- a dry run creates, locks and writes nothing, even on a brand-new database;
- ``count`` must be a positive integer (the CLI reads 0 as "all" on upgrade, "one" on rollback);
- the lock is waited for (``lock_timeout``) instead of failing at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import TextClause, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from airflow_provider_jetbase.migration.baseline import (
    RESTAMP_STMT,
    BaselinePlan,
    applied_at_stamps,
    baseline_target,
    needs_ordered_stamps,
    plan_baseline,
)
from airflow_provider_jetbase.migration.cancel import Canceller
from airflow_provider_jetbase.migration.clickhouse_errors import wrap_clickhouse_driver_errors
from airflow_provider_jetbase.migration.dialects import Dialect, dialect_for
from airflow_provider_jetbase.migration.errors import (
    InvalidArgumentError,
    JetbaseError,
    LintFailedError,
    MigrationCancelledError,
    MigrationExecutionError,
    PlanMismatchError,
)
from airflow_provider_jetbase.migration.files import (
    VERSIONED,
    MigrationFile,
    MigrationSet,
    Section,
    discover,
    transaction_control,
)
from airflow_provider_jetbase.migration.heartbeat import DEFAULT_HEARTBEAT_INTERVAL, min_stale_lock_after
from airflow_provider_jetbase.migration.lint import blocking, findings_table, lint_plan
from airflow_provider_jetbase.migration.lock import MigrationLock, ensure_lock_tables, force_unlock, read_lock
from airflow_provider_jetbase.migration.planner import (
    PlannedFile,
    RollbackPlan,
    UpgradeOptions,
    UpgradePlan,
    find_problems,
    pending,
    plan_rollback,
    plan_upgrade,
    rollback_options,
    upgrade_options,
)
from airflow_provider_jetbase.migration.progress import Progress
from airflow_provider_jetbase.migration.results import (
    AppliedMigration,
    BaselineResult,
    BaselineRow,
    LockInfo,
    MigrationRun,
    RollbackResult,
    StatusReport,
    UpgradeResult,
    ValidationReport,
)
from airflow_provider_jetbase.migration.review import (
    ReviewPlan,
    ReviewRequest,
    build_review,
    database_identity,
    explain_mismatch,
)
from airflow_provider_jetbase.migration.sqlite_pragmas import (
    PragmaSplit,
    check_placement,
    ignored_pragma,
    split_section,
)
from airflow_provider_jetbase.migration.sqlite_tx import make_sqlite_ddl_transactional
from airflow_provider_jetbase.migration.state import check_tables, fetch_applied, fetch_current_version
from airflow_provider_jetbase.migration.versions import latest_version

LOGGER_NAME = "airflow_provider_jetbase.migration"

_COMMIT_OUTCOME = {
    ("upgrade", "committed"): "The COMMIT's outcome was unknown (the connection failed during it); "
    "jetbase_migrations, re-read on a fresh connection, shows {file} IS applied: the migration was "
    "committed.",
    ("upgrade", "not committed"): "The COMMIT's outcome was unknown (the connection failed during it); "
    "jetbase_migrations, re-read on a fresh connection, has no row for {file}: it was not recorded "
    "and its transaction was rolled back.",
    ("rollback", "committed"): "The COMMIT's outcome was unknown (the connection failed during it); "
    "jetbase_migrations, re-read on a fresh connection, no longer has {file}'s row: the rollback was "
    "committed.",
    ("rollback", "not committed"): "The COMMIT's outcome was unknown (the connection failed during "
    "it); jetbase_migrations, re-read on a fresh connection, still has {file}'s row: the rollback "
    "was not committed.",
    ("upgrade", "unknown"): "The COMMIT's outcome is UNKNOWN (the connection failed during it, and "
    "jetbase_migrations could not be re-read): check whether {file} is applied before retrying.",
    ("rollback", "unknown"): "The COMMIT's outcome is UNKNOWN (the connection failed during it, and "
    "jetbase_migrations could not be re-read): check whether {file} is still applied before retrying.",
}
_PARTIAL_DEFAULT = (
    "{dialect} commits DDL implicitly, so the database may hold part of {file}: check it and repair "
    "by hand before retrying."
)


def _transaction_control_run(section: Section, ran: int) -> list[tuple[int, str]]:
    """(line, keyword) of the transaction-control statements among the first ``ran`` statements."""
    found = []
    for statement, line in zip(section.statements[:ran], section.start_lines[:ran], strict=True):
        keyword = transaction_control(statement)
        if keyword is not None:
            found.append((line, keyword))
    return found


def _self_committed_note(f: MigrationFile, found: list[tuple[int, str]]) -> str:
    where = ", ".join(f"'{keyword}' at line {line}" for line, keyword in found)
    return (
        f"{f.relpath} ran its own transaction control ({where}), which ended the transaction the engine "
        f"runs each file in: what ran before it was committed and was NOT rolled back (on SQLite, the "
        f"statements after it ran outside any transaction too). The database may hold part of "
        f"{f.relpath} without its version row: check it and repair by hand before retrying."
    )


def _statement(stmt: TextClause, params: dict[str, Any]) -> Callable[[Connection], bool]:
    """A file's version-row change; False: the lock's ownership is still to be proved."""

    def run(conn: Connection) -> bool:
        conn.execute(stmt, params)
        return False

    return run


def _record_owned(
    lock: MigrationLock, stmt: TextClause, params: dict[str, Any], relpath: str, done: list[MigrationRun]
) -> Callable[[Connection], bool]:
    """The version-row INSERT together with the lock's ownership proof, in one statement where the
    dialect has one (True: proved); else the INSERT alone (False: check_owned follows)."""

    def run(conn: Connection) -> bool:
        if lock.record_owned(conn, params, relpath, done):
            return True
        conn.execute(stmt, params)
        return False

    return run


_NO_PARAMETERS = {"no_parameters": True}


def _execute_statement(conn: Connection, statement: str) -> None:
    """One migration statement, as Jetbase sends it: through ``text()``. Without ':' and '%',
    ``text()`` compiles to the statement itself (no bind parameter, no escape, no doubled percent),
    so it goes to the driver as is, sparing a compile and a cache-key build per statement; events
    (listeners, the canceller) see it the same way."""
    if ":" in statement or "%" in statement:
        conn.execute(text(statement))
    else:
        conn.exec_driver_sql(statement, execution_options=_NO_PARAMETERS)


class _Cancelled(JetbaseError):
    """Raised inside a file's transaction when a cancel was requested; becomes MigrationCancelledError."""


def _db_message(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).strip()


def _execute_outside_transaction(conn: Connection, statement: str) -> None:
    # On the DBAPI connection itself: Connection.execute would autobegin, and sqlite_tx's begin
    # listener would send BEGIN first.
    dbapi_connection = conn.connection.dbapi_connection
    assert dbapi_connection is not None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(statement)
        cursor.fetchall()
    finally:
        cursor.close()


def _foreign_keys(conn: Connection) -> int:
    dbapi_connection = conn.connection.dbapi_connection
    assert dbapi_connection is not None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys")
        row = cursor.fetchone()
    finally:
        cursor.close()
    return int(row[0]) if row else 0


def _journal_mode_note(section: Section, ran: int) -> str | None:
    """What the failed file left behind: the journal mode set by its first ``ran`` statements."""
    lines = [
        str(section.start_lines[i])
        for i in range(ran)
        if ignored_pragma(section.statements[i]) == "journal_mode"
    ]
    if not lines:
        return None
    return (
        f"The PRAGMA journal_mode at line {', '.join(lines)} ran before the transaction and stays in "
        f"effect (SQLite cannot change the journal mode inside one)."
    )


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
        lock_heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
    ) -> None:
        if lock_timeout < 0:
            raise InvalidArgumentError(f"'lock_timeout' must be >= 0 seconds, got {lock_timeout!r}")
        if lock_poll_interval <= 0:
            raise InvalidArgumentError(
                f"'lock_poll_interval' must be > 0 seconds, got {lock_poll_interval!r}"
            )
        if not lock_heartbeat_interval > 0:
            raise InvalidArgumentError(
                f"'lock_heartbeat_interval' must be > 0 seconds, got {lock_heartbeat_interval!r}"
            )
        if stale_lock_after is not None:
            minimum = min_stale_lock_after(lock_heartbeat_interval)
            if not stale_lock_after > 0:
                raise InvalidArgumentError(
                    f"'stale_lock_after' must be > 0 seconds (or None: never take a lock over), got "
                    f"{stale_lock_after!r}"
                )
            if stale_lock_after < minimum:
                raise InvalidArgumentError(
                    f"'stale_lock_after' must be at least {minimum:g} seconds "
                    f"({minimum / lock_heartbeat_interval:g} missed lock heartbeats of "
                    f"{lock_heartbeat_interval:g} s), got {stale_lock_after!r}: a "
                    "shorter value could take over the lock of a run that is still alive"
                )
        self.engine = engine
        self.migrations_dir = Path(os.fspath(migrations_dir))
        self.lock_timeout = float(lock_timeout)
        self.lock_poll_interval = float(lock_poll_interval)
        self.strict = strict
        self.lock_owner = lock_owner
        self.stale_lock_after = stale_lock_after
        self.lock_heartbeat_interval = float(lock_heartbeat_interval)
        self.logger = logger if logger is not None else logging.getLogger(LOGGER_NAME)
        self.dialect: Dialect = dialect_for(engine)
        self.canceller = Canceller(engine, self.logger)
        make_sqlite_ddl_transactional(engine)
        wrap_clickhouse_driver_errors(engine)

    def cancel(self, reason: str) -> str:
        """Stop the running upgrade or rollback from another thread (a kill or timeout handler): the
        running statement is cancelled on the server, the file rolled back, the lock released."""
        return self.canceller.cancel(reason)

    # ------------------------------------------------------------------ plumbing
    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
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
            heartbeat_interval=self.lock_heartbeat_interval,
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

    # ------------------------------------------------------------------ upgrade
    def _log_plan(self, notes: tuple[str, ...], hazards: tuple[str, ...]) -> None:
        for note in notes:
            self.logger.info("%s", note)
        for h in hazards:
            self.logger.warning("%s", h)

    def _plan_upgrade(
        self, files: MigrationSet, applied: list[AppliedMigration], options: UpgradeOptions
    ) -> UpgradePlan:
        plan = plan_upgrade(files, applied, options)
        self._check_pragmas(plan.steps, "upgrade")
        self._log_plan(plan.notes, plan.hazards)
        return plan

    def _review(
        self,
        command: str,
        plan: UpgradePlan | RollbackPlan,
        files: MigrationSet,
        applied: list[AppliedMigration],
        options: Any,
        review: ReviewRequest,
    ) -> ReviewPlan:
        """The plan as a value, checked before anything runs: against the approved ``plan_hash``
        (PlanMismatchError), then by the lint (LintFailedError with ``lint="fail"``)."""
        findings = () if review.lint == "off" else lint_plan(plan.steps, self.dialect.name, command)
        reviewed = build_review(
            command,
            database_identity(self.engine.url, self.dialect.name, review.connection_id),
            plan.version_before,
            plan.version_after,
            plan.steps,
            files,
            applied,
            options,
            findings,
            plan.warnings,
        )
        if review.plan_hash is not None and review.plan_hash != reviewed.plan_hash:
            message = explain_mismatch(review.plan_hash, review.approved_plan, reviewed)
            self.logger.error("%s", message)
            raise PlanMismatchError(message, expected=review.plan_hash, actual=reviewed.plan_hash)
        refused = blocking(findings) if review.lint == "fail" else ()
        if refused:
            header, rows = findings_table(refused)
            table = "\n".join("  " + " | ".join(row) for row in [header, *rows])
            message = (
                f"lint=\"fail\": {len(refused)} finding(s) in the statements about to run, nothing was "
                f"run ({command}). Accept one on purpose with a '-- jetbase-lint: allow <rule>' comment "
                f"above its statement:\n{table}"
            )
            self.logger.error("%s", message)
            raise LintFailedError(message, findings=refused)
        return reviewed

    def _check_pragmas(self, steps: tuple[PlannedFile, ...], command: str) -> None:
        if self.dialect.pragmas_outside_transaction:
            check_placement(((s.file, s.section) for s in steps), command)

    def upgrade(
        self,
        count: int | None = None,
        to_version: str | None = None,
        dry_run: bool = False,
        skip_validation: bool = False,
        skip_checksum_validation: bool = False,
        skip_file_validation: bool = False,
        review: ReviewRequest | None = None,
    ) -> UpgradeResult:
        """``review``: check the plan against an approved ``plan_hash`` and lint it before anything
        runs (see migration/review.py); the result's ``plan`` is the reviewed plan either way."""
        review = review if review is not None else ReviewRequest()
        options = upgrade_options(
            count,
            to_version,
            skip_validation=skip_validation,
            skip_checksum_validation=skip_checksum_validation,
            skip_file_validation=skip_file_validation,
            strict=self.strict,
        )
        files = self._files()
        with self._connect() as conn:
            if dry_run:
                applied = self._read_applied(conn)
                plan = self._plan_upgrade(files, applied, options)
                reviewed = self._review("upgrade", plan, files, applied, options, review)
                return dataclasses.replace(self._dry_upgrade(plan), plan=reviewed)
            self._ensure_tables(conn)
            with self._lock(conn) as lock:
                applied = self._read_applied(conn)
                plan = self._plan_upgrade(files, applied, options)
                reviewed = self._review("upgrade", plan, files, applied, options, review)
                return dataclasses.replace(self._run_upgrade(conn, plan, lock), plan=reviewed)

    @staticmethod
    def _dry_runs(steps: tuple[PlannedFile, ...]) -> tuple[MigrationRun, ...]:
        return tuple(
            MigrationRun(
                s.file.filename, s.file.version, s.file.migration_type, s.statements, s.file.checksum, 0.0
            )
            for s in steps
        )

    def _dry_upgrade(self, plan: UpgradePlan) -> UpgradeResult:
        runs = self._dry_runs(plan.steps)
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
        return UpgradeResult(runs, True, plan.version_before, plan.version_after, plan.warnings)

    def _run_upgrade(self, conn: Connection, plan: UpgradePlan, lock: MigrationLock) -> UpgradeResult:
        if plan.empty:
            self.logger.info("Migrations are up to date (version %s).", plan.version_before)
            return UpgradeResult((), False, plan.version_before, plan.version_before, plan.warnings)
        queries = self.dialect.queries
        done: list[MigrationRun] = []
        self.logger.info("Starting migrations (current version %s)...", plan.version_before)
        progress = Progress(self.logger, len(plan.steps), "upgrade")
        insert = queries.insert_version_stmt()
        for step in plan.steps:
            f = step.file
            if step.row_exists:
                upd = {"checksum": f.checksum, "filename": f.filename, "migration_type": f.migration_type}
                finish = _statement(queries.update_repeatable_migration_stmt(), upd)
            else:
                finish = _record_owned(lock, insert, self._row_params(f), f.relpath, done)
            done.append(self._run_file(conn, f, step.section, finish, done, lock, progress))
        after = plan.version_after
        self.logger.info(
            "Migrations completed: %d file%s applied, version %s -> %s.",
            len(done),
            "" if len(done) == 1 else "s",
            plan.version_before,
            after,
        )
        return UpgradeResult(tuple(done), False, plan.version_before, after, plan.warnings)

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
        finish: Callable[[Connection], bool],
        done: list[MigrationRun],
        lock: MigrationLock,
        progress: Progress,
        direction: str = "upgrade",
    ) -> MigrationRun:
        """The file's statements and its version-row change, in one transaction, committed only after
        the lock row is proved still ours in that same transaction. On SQLite, the PRAGMAs it ignores
        in a transaction that open (close) the section run before BEGIN (after COMMIT)."""

        total = len(section.statements)
        progress.before(f.relpath, total)
        if self.dialect.pragmas_outside_transaction:
            split = split_section(section)
        else:
            split = PragmaSplit(0, total, total)
        if not split.outside:
            return self._run_statements(conn, f, section, split, finish, done, lock, progress, direction)
        saved = _foreign_keys(conn)
        try:
            return self._run_statements(conn, f, section, split, finish, done, lock, progress, direction)
        finally:
            # The connection goes back to the pool: a file's PRAGMA foreign_keys must not outlive it.
            self._restore_foreign_keys(conn, saved, f)

    def _run_statements(
        self,
        conn: Connection,
        f: MigrationFile,
        section: Section,
        split: PragmaSplit,
        finish: Callable[[Connection], bool],
        done: list[MigrationRun],
        lock: MigrationLock,
        progress: Progress,
        direction: str,
    ) -> MigrationRun:
        statements = section.statements
        start = time.perf_counter()
        number: int | None = None
        if self.canceller.requested.is_set():
            raise self._cancelled_before(f, done, direction)
        dbapi_error = conn.dialect.loaded_dbapi.Error if split.outside else ()
        try:
            for number in range(1, split.leading + 1):
                _execute_outside_transaction(conn, statements[number - 1])
        except dbapi_error as exc:
            assert number is not None
            note = _journal_mode_note(section, number - 1)
            raise self._execution_error(f, section, number, exc, done, direction, note=note) from exc
        transaction = conn.begin()
        try:
            if self.dialect.single_writer:
                # Takes SQLite's write lock for the whole file, so no waiter can write (take over)
                # between this refresh of locked_at and the one before the commit.
                lock.check_owned(conn, f.relpath, done)
            elif lock.heartbeat.lost is not None:
                lock.check_owned(conn, f.relpath, done)
            with self.canceller.running(conn):
                for number in range(split.leading + 1, split.trailing + 1):
                    # A cancelled statement may "succeed" (MariaDB's SLEEP returns 1 when killed).
                    if self.canceller.requested.is_set():
                        raise _Cancelled
                    _execute_statement(conn, statements[number - 1])
            number = None
            if self.canceller.requested.is_set():
                raise _Cancelled
            if not finish(conn):
                lock.check_owned(conn, f.relpath, done)
        except BaseException as exc:
            self._rollback_after_failure(conn, transaction, f)
            cancelled = self.canceller.requested.is_set()
            if isinstance(exc, _Cancelled):
                raise self._execution_error(
                    f, section, number, None, done, direction, cancelled=True
                ) from None
            if isinstance(exc, SQLAlchemyError):
                raise self._execution_error(
                    f,
                    section,
                    number,
                    exc,
                    done,
                    direction,
                    note=_journal_mode_note(section, split.leading),
                    cancelled=cancelled,
                ) from exc
            raise  # KeyboardInterrupt, SystemExit, a task runner's kill exception: surface as is
        try:
            transaction.commit()
        except SQLAlchemyError as exc:
            self._rollback_after_failure(conn, transaction, f)
            outcome = self._commit_outcome(f, direction)
            raise self._execution_error(f, section, None, exc, done, direction, outcome) from exc
        run = MigrationRun(f.filename, f.version, f.migration_type, statements, f.checksum, 0.0)
        lock.committed.append(run)
        number = None
        try:
            for number in range(split.trailing + 1, split.total + 1):
                _execute_outside_transaction(conn, statements[number - 1])
        except dbapi_error as exc:
            raise self._after_commit_error(f, section, number, exc, [*done, run], direction) from exc
        duration_ms = (time.perf_counter() - start) * 1000.0
        progress.after(f.relpath, duration_ms)
        run = MigrationRun(f.filename, f.version, f.migration_type, statements, f.checksum, duration_ms)
        lock.committed[-1] = run
        return run

    def _restore_foreign_keys(self, conn: Connection, saved: int, f: MigrationFile) -> None:
        """Put the connection's foreign_keys back as it was before ``f``; a connection that cannot be
        put back is discarded, so the pool never hands it out with the file's setting."""
        if conn.invalidated or conn.closed:
            return
        try:
            if _foreign_keys(conn) == saved:
                return
            _execute_outside_transaction(conn, f"PRAGMA foreign_keys = {'ON' if saved else 'OFF'}")
            now = _foreign_keys(conn)
            if now != saved:
                raise RuntimeError(f"it is still {now} (the connection is inside a transaction)")
            self.logger.debug("Restored PRAGMA foreign_keys = %d after %s.", saved, f.relpath)
        except Exception as exc:  # noqa: BLE001 - the file's own outcome is what the caller must see
            self.logger.warning(
                "Could not restore PRAGMA foreign_keys = %d after %s (%s); discarding the connection.",
                saved,
                f.relpath,
                exc,
            )
            with contextlib.suppress(Exception):
                conn.invalidate()

    def _after_commit_error(
        self,
        f: MigrationFile,
        section: Section,
        number: int | None,
        exc: Exception,
        applied: list[MigrationRun],
        direction: str,
    ) -> MigrationExecutionError:
        assert number is not None
        db_message = _db_message(exc)
        total = len(section.statements)
        line = section.start_lines[number - 1]
        state = "IS applied" if direction == "upgrade" else "IS rolled back"
        message = (
            f"{direction.capitalize()} of {f.relpath} failed at statement {number} of {total} (line "
            f"{line}), after its transaction was committed: {db_message}\n{f.relpath} {state} "
            f"(jetbase_migrations records it); only its closing PRAGMA statements from line {line} on "
            "did not run."
        )
        self.logger.error("%s", message)
        return MigrationExecutionError(
            message,
            filename=f.filename,
            statement_number=number,
            db_message=db_message,
            applied=tuple(applied),
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

    def _cancelled_before(
        self, f: MigrationFile, done: list[MigrationRun], direction: str
    ) -> MigrationCancelledError:
        message = (
            f"{direction.capitalize()} of {f.relpath} was cancelled ({self.canceller.reason}) before it "
            f"started: nothing of {f.relpath} ran."
        )
        if done:
            message += f"\n{len(done)} earlier file(s) of this run stay committed: " + ", ".join(
                r.filename for r in done
            )
        self.logger.error("%s", message)
        return MigrationCancelledError(
            message, filename=f.filename, statement_number=None, db_message="", applied=tuple(done)
        )

    def _partial_note(self, f: MigrationFile) -> str:
        # "Rolled back" covers only what the database could roll back: say what may remain.
        template = self.dialect.partial_failure_note or _PARTIAL_DEFAULT
        return template.format(file=f.relpath, dialect=self.dialect.name)

    def _execution_error(
        self,
        f: MigrationFile,
        section: Section,
        number: int | None,
        exc: Exception | None,
        done: list[MigrationRun],
        direction: str,
        commit_outcome: str | None = None,
        note: str | None = None,
        cancelled: bool = False,
    ) -> MigrationExecutionError:
        db_message = _db_message(exc) if exc is not None else ""
        total = len(section.statements)
        if commit_outcome is not None:
            where = "COMMIT"
        elif number is not None and total:
            where = f"statement {number} of {total} (line {section.start_lines[number - 1]})"
        else:
            where = "recording the version row in jetbase_migrations"
        if cancelled:
            why = self.canceller.reason or "cancel requested"
            message = f"{direction.capitalize()} of {f.relpath} was cancelled ({why}) at {where}"
            message += f": {db_message}" if db_message else "."
        else:
            message = f"{direction.capitalize()} of {f.relpath} failed at {where}: {db_message}"
        partial = not self.dialect.transactional_ddl
        self_committed = _transaction_control_run(section, total if number is None else number - 1)
        if commit_outcome is not None:
            message += "\n" + _COMMIT_OUTCOME[(direction, commit_outcome)].format(file=f.relpath)
            partial = (partial or bool(self_committed)) and commit_outcome != "committed"
            if self_committed and commit_outcome != "committed":
                message += "\n" + _self_committed_note(f, self_committed)
            elif partial:
                message += "\n" + self._partial_note(f)
        elif self_committed:
            # The file's own COMMIT/BEGIN/ROLLBACK ended the engine's transaction: rolling back
            # after the failure undid only what ran after it (on SQLite, not even that).
            partial = True
            message += "\n" + _self_committed_note(f, self_committed)
        elif partial:
            message += "\n" + self._partial_note(f)
        else:
            message += f"\nThe transaction was rolled back: nothing of {f.relpath} was applied."
        if note is not None:
            message += "\n" + note
        if done:
            message += f"\n{len(done)} earlier file(s) of this run stay committed: " + ", ".join(
                r.filename for r in done
            )
        self.logger.error("%s", message)
        error_class = MigrationCancelledError if cancelled else MigrationExecutionError
        return error_class(
            message,
            filename=f.filename,
            statement_number=number,
            db_message=db_message,
            applied=tuple(done),
            partial=partial,
            commit_outcome=commit_outcome,
        )

    def _commit_outcome(self, f: MigrationFile, direction: str) -> str:
        """After a failed COMMIT (its reply lost: it may have gone through), what a fresh connection
        finds in jetbase_migrations: "committed", "not committed" or "unknown"."""
        try:
            with self.engine.connect() as fresh:
                applied = fetch_applied(fresh) or []
        except Exception as exc:  # noqa: BLE001 - the outcome stays unknown, and the error says so
            self.logger.error("Could not re-read jetbase_migrations after the failed COMMIT: %s", exc)
            return "unknown"
        if f.migration_type == VERSIONED:
            present = any(r.migration_type == VERSIONED and r.version == f.version for r in applied)
        else:
            present = any(r.filename == f.filename and r.checksum == f.checksum for r in applied)
        recorded = present if direction == "upgrade" else not present
        return "committed" if recorded else "not committed"

    # ------------------------------------------------------------------ rollback
    def rollback(
        self,
        count: int | None = None,
        to_version: str | None = None,
        dry_run: bool = False,
        review: ReviewRequest | None = None,
    ) -> RollbackResult:
        """``review``: as for :meth:`upgrade`."""
        review = review if review is not None else ReviewRequest()
        options = rollback_options(count, to_version, strict=self.strict)
        files = self._files()
        with self._connect() as conn:
            if dry_run:
                applied = self._read_applied(conn)
                plan = plan_rollback(files, applied, options)
                reviewed = self._review("rollback", plan, files, applied, options, review)
                return dataclasses.replace(self._rollback(conn, plan, dry_run=True), plan=reviewed)
            self._ensure_tables(conn)
            with self._lock(conn) as lock:
                applied = self._read_applied(conn)
                plan = plan_rollback(files, applied, options)
                reviewed = self._review("rollback", plan, files, applied, options, review)
                return dataclasses.replace(
                    self._rollback(conn, plan, dry_run=False, lock=lock), plan=reviewed
                )

    def _rollback(
        self, conn: Connection, plan: RollbackPlan, *, dry_run: bool, lock: MigrationLock | None = None
    ) -> RollbackResult:
        before, after = plan.version_before, plan.version_after
        if plan.empty:
            self.logger.info("Nothing to roll back (version %s).", before)
            return RollbackResult((), dry_run, before, before, ())
        self._check_pragmas(plan.steps, "rollback")
        self._log_plan((), plan.warnings)
        if dry_run:
            runs = self._dry_runs(plan.steps)
            for run in runs:
                self.logger.info(
                    "Dry run: would roll back %s (%d statement%s):\n%s",
                    run.filename,
                    len(run.statements),
                    "" if len(run.statements) == 1 else "s",
                    "\n".join(f"  {s};" for s in run.statements),
                )
            return RollbackResult(runs, True, before, after, plan.warnings)
        assert lock is not None
        queries = self.dialect.queries
        done: list[MigrationRun] = []
        self.logger.info("Starting rollback of %d version(s) from %s...", len(plan.steps), before)
        progress = Progress(self.logger, len(plan.steps), "rollback")
        for step in plan.steps:
            done.append(
                self._run_file(
                    conn,
                    step.file,
                    step.section,
                    _statement(queries.delete_version_stmt(), {"version": step.file.version}),
                    done,
                    lock,
                    progress,
                    direction="rollback",
                )
            )
        self.logger.info("Rollback completed: version %s -> %s.", before, after)
        return RollbackResult(tuple(done), False, before, after, plan.warnings)

    # ------------------------------------------------------------------ baseline
    def baseline(self, to_version: str, dry_run: bool = False) -> BaselineResult:
        """Adopt a database whose schema exists already: record the versioned files up to and
        including ``to_version`` as applied, without running them, on a database with no applied
        migrations (see ``baseline.py`` for the rules, and why repeatable files are not recorded)."""
        files = self._files()
        target = baseline_target(files, to_version)
        with self._connect() as conn:
            # Refused here before any table or lock is created, then decided again under the lock.
            plan = plan_baseline(files, self._read_applied(conn), target)
            if dry_run:
                return self._baseline(conn, plan, None)
            self._ensure_tables(conn)
            with self._lock(conn) as lock:
                return self._baseline(conn, plan_baseline(files, self._read_applied(conn), target), lock)

    def _baseline(self, conn: Connection, plan: BaselinePlan, lock: MigrationLock | None) -> BaselineResult:
        result = BaselineResult(
            recorded=tuple(BaselineRow(**self._row_params(f)) for f in plan.files),
            dry_run=lock is None,
            version_after=plan.to_version,
            not_recorded=tuple(f.filename for f in plan.not_recorded),
            pending=tuple(f.filename for f in plan.pending),
        )
        verb = "Dry run: a baseline would record" if lock is None else "Recording"
        self.logger.info(
            "%s %d versioned file(s) up to %s as applied, without running them.",
            verb,
            len(plan.files),
            plan.to_version,
        )
        if lock is None:
            return result
        queries = self.dialect.queries
        committing = False
        try:
            with conn.begin():
                # Takes SQLite's write lock first; the last check proves the lock ours up to the commit.
                lock.check_owned(conn)
                for f in plan.files:
                    conn.execute(queries.insert_version_stmt(), self._row_params(f))
                if needs_ordered_stamps(self.dialect) and plan.files:
                    db_now = conn.execute(text(f"SELECT {self.dialect.now_sql}")).scalar_one()  # noqa: S608 - now_sql is the dialect's own constant
                    stamps = applied_at_stamps(self.dialect, db_now, len(plan.files))
                    for f, stamp in zip(plan.files, stamps, strict=True):
                        conn.execute(RESTAMP_STMT, {"applied_at": stamp, "version": f.version})
                if self.canceller.requested.is_set():
                    raise MigrationCancelledError(
                        f"The baseline was cancelled ({self.canceller.reason}) before it committed: "
                        "nothing was recorded.",
                        filename="",
                        statement_number=None,
                        db_message="",
                    )
                lock.check_owned(conn)
                committing = True
        except SQLAlchemyError as exc:
            if not committing or not plan.files:
                raise
            raise self._baseline_commit_error(plan, exc) from exc
        self.logger.info("Baseline recorded: the database is at version %s.", plan.to_version)
        return result

    def _baseline_commit_error(self, plan: BaselinePlan, exc: SQLAlchemyError) -> MigrationExecutionError:
        """The COMMIT of the baseline's rows failed, its reply maybe lost: what a fresh connection
        finds decides what the error says."""
        wanted = {f.version for f in plan.files}
        try:
            with self.engine.connect() as fresh:
                found = {r.version for r in fetch_applied(fresh) or [] if r.migration_type == VERSIONED}
        except Exception as reread:  # noqa: BLE001 - the outcome stays unknown, and the error says so
            self.logger.error("Could not re-read jetbase_migrations after the failed COMMIT: %s", reread)
            found = None
        if found is not None and wanted <= found:
            outcome, what = "committed", "HAS the baseline's rows: the baseline was committed."
        elif found is not None and not wanted & found:
            outcome, what = "not committed", "has none of the baseline's rows: nothing was recorded."
        else:
            outcome = "unknown"
            what = "could not be read back: check it before running the baseline again."
        message = (
            f"The COMMIT of the baseline to version {plan.to_version} failed (the connection failed "
            f"during it: {_db_message(exc)}); jetbase_migrations, re-read on a fresh connection, {what}"
        )
        self.logger.error("%s", message)
        return MigrationExecutionError(
            message,
            filename=plan.files[-1].filename,
            statement_number=None,
            db_message=_db_message(exc),
            commit_outcome=outcome,
        )

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
        versions = (r.version for r in applied if r.migration_type == VERSIONED)
        return StatusReport(tuple(applied), pending(files, applied), latest_version(versions))

    def validate(self) -> ValidationReport:
        files = self._files()
        with self._connect() as conn:
            applied = self._read_applied(conn)
        return ValidationReport(find_problems(files, applied))

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
