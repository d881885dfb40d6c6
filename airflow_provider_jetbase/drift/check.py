"""The drift check: migration drift (the engine's validate/status/lock_status) plus schema drift
(replay or snapshot), as one report. Read-only on the target database."""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_jetbase.drift.compare import compare_schemas
from airflow_provider_jetbase.drift.report import (
    ERROR,
    INFO,
    WARNING,
    DriftReport,
    Finding,
    resolve_fail_on,
)
from airflow_provider_jetbase.drift_defaults import DEFAULT_FAIL_ON
from airflow_provider_jetbase.errors import JetbaseProviderError
from airflow_provider_jetbase.migration.dialects import dialect_name
from airflow_provider_jetbase.migration.timestamps import parse_db_timestamp

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from airflow_provider_jetbase.drift.schema import SchemaModel

METHODS = ("auto", "replay", "snapshot", "none")
DEFAULT_STALE_LOCK_AFTER = 3600.0


class DriftCheckError(JetbaseProviderError, RuntimeError):
    """The check itself could not run (bad arguments, missing database file)."""


def _ensure_sqlite_file_exists(engine: Engine) -> None:
    # Connecting to a missing SQLite file would create it: a drift check must not.
    database = engine.url.database
    if (
        dialect_name(engine.dialect.name) == "sqlite"
        and database
        and database != ":memory:"
        and not database.startswith("file:")
        and not Path(database).exists()
    ):
        raise DriftCheckError(f"the SQLite database file {database} does not exist")


def _database_now(engine: Engine) -> dt.datetime | None:
    """The database's own clock, read with the very expression ``jetbase_lock.locked_at`` is written
    with (``Dialect.now_sql``), so the age of a lock never mixes two clocks or two time zones."""
    from airflow_provider_jetbase.migration.dialects import dialect_for

    try:
        query = f"SELECT {dialect_for(engine).now_sql}"  # noqa: S608 - the dialect's own constant
        with engine.connect() as conn:
            value = conn.exec_driver_sql(query).scalar()
            conn.rollback()
    except Exception:  # noqa: BLE001 - an unknown dialect or a failing read: the worker's clock
        return None
    return parse_db_timestamp(value)


def _lock_findings(engine: Engine, lock: Any, stale_lock_after: float) -> list[Finding]:
    if not getattr(lock, "supported", True):
        return []
    if not lock.is_locked:
        return []
    locked_at = parse_db_timestamp(lock.locked_at)
    owner = f" by process {lock.process_id}" if lock.process_id else ""
    if locked_at is None:
        return [
            Finding(
                "stale_lock", f"the Jetbase lock is held{owner} since an unknown time", object="jetbase_lock"
            )
        ]
    now = _database_now(engine)
    if now is None or (now.tzinfo is None) != (locked_at.tzinfo is None):
        now = dt.datetime.now(dt.timezone.utc)
        if locked_at.tzinfo is None:
            now = now.replace(tzinfo=None)
    age = (now - locked_at).total_seconds()
    detail = f"the Jetbase lock has been held{owner} since {locked_at.isoformat(sep=' ')} ({age:.0f} s)"
    if age > stale_lock_after:
        return [
            Finding(
                "stale_lock",
                f"{detail}, longer than {stale_lock_after:.0f} s: a crashed run may have left it "
                "(release it with the unlock command once no migration is running)",
                object="jetbase_lock",
                actual=age,
            )
        ]
    return [Finding("lock_held", f"{detail}: a migration may be running", object="jetbase_lock", actual=age)]


def migration_findings(engine: Engine, migrator: Any, status: Any, stale_lock_after: float) -> list[Finding]:
    findings: list[Finding] = []
    validation = migrator.validate()
    for vf in validation.findings:
        findings.append(
            Finding(
                vf.kind,
                vf.message,
                object=vf.filename or vf.version,
                version=vf.version,
                filename=vf.filename,
            )
        )
    out_of_order = {f.filename for f in findings if f.kind == "out_of_order"}
    for pending in status.pending:
        # Runs-always files are "pending" on every upgrade by design: not drift.
        if pending.migration_type == "RUNS_ALWAYS" or pending.filename in out_of_order:
            continue
        label = (
            f"version {pending.version}"
            if pending.version
            else pending.migration_type.lower().replace("_", "-")
        )
        findings.append(
            Finding(
                "pending_migration",
                f"{pending.filename} ({label}) is not applied yet",
                object=pending.filename,
                version=pending.version,
                filename=pending.filename,
            )
        )
    findings += _lock_findings(engine, migrator.lock_status(), stale_lock_after)
    return findings


class _ReplayImpossible(JetbaseProviderError):
    """Replay was asked for (or chosen by "auto") and could not run; carries the finding kind."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def _schema_by_replay(
    engine: Engine,
    migrations_dir: Path,
    status: Any,
    reference_engine: Engine | None,
    scratch_connect_args: Mapping[str, Any] | None,
    live: SchemaModel,
    notes: list[str],
    logger: logging.Logger,
) -> tuple[list[Finding], str]:
    from airflow_provider_jetbase.drift.replay import (
        ReplayError,
        ReplayRefusedError,
        ReplayUnavailableError,
        build_expected_schema,
        plan_replay,
    )

    plan = plan_replay(status.applied, migrations_dir, logger)
    notes.extend(plan.notes)
    try:
        expected, detail = build_expected_schema(
            engine, plan, reference=reference_engine, connect_args=scratch_connect_args, logger=logger
        )
    except ReplayRefusedError as exc:
        raise _ReplayImpossible("replay_refused", str(exc)) from exc
    except ReplayUnavailableError as exc:
        raise _ReplayImpossible("replay_unavailable", str(exc)) from exc
    except ReplayError as exc:
        return [
            Finding("replay_failed", str(exc), object=exc.filename, filename=exc.filename)
        ], "replay failed"
    return compare_schemas(expected, live), f"{len(plan.steps)} file(s) replayed into a {detail}"


def _schema_by_snapshot(
    engine: Engine, current_version: str | None, live: SchemaModel
) -> tuple[list[Finding], str]:
    from airflow_provider_jetbase.drift.snapshot import SNAPSHOT_TABLE, load_latest_snapshot

    stored = load_latest_snapshot(engine)
    if stored is None:
        return [
            Finding(
                "snapshot_missing",
                f"no schema snapshot in {SNAPSHOT_TABLE}: the schema was not compared (the upgrade "
                "operator stores one after each successful upgrade)",
                object=SNAPSHOT_TABLE,
            )
        ], "no snapshot stored"
    findings: list[Finding] = []
    if stored.jetbase_version != current_version:
        findings.append(
            Finding(
                "snapshot_outdated",
                f"the snapshot was taken at version {stored.jetbase_version or '(none)'}, the database is at "
                f"{current_version or '(none)'} (upgraded without the operator?): schema findings may "
                "be migrations applied since",
                object=SNAPSHOT_TABLE,
                expected=stored.jetbase_version,
                actual=current_version,
            )
        )
    findings += compare_schemas(stored.model, live)
    return (
        findings,
        f"stored snapshot of {stored.captured_at} at version {stored.jetbase_version or '(none)'}",
    )


def _after_impossible_replay(
    engine: Engine,
    current_version: str | None,
    live: SchemaModel,
    impossible: _ReplayImpossible,
    requested: str,
    logger: logging.Logger,
) -> tuple[list[Finding], str, str | None]:
    """Replay could not run. With ``method="auto"`` and a stored snapshot, compare with the snapshot
    and say why; otherwise the schema check did not run: the report's error says so."""
    from airflow_provider_jetbase.drift.snapshot import load_latest_snapshot

    if requested == "auto" and load_latest_snapshot(engine) is not None:
        logger.warning(
            "Jetbase drift check: %s; comparing with the stored schema snapshot instead", impossible
        )
        findings, detail = _schema_by_snapshot(engine, current_version, live)
        finding = Finding(
            impossible.kind,
            f"{impossible.reason}. The schema was compared with the stored snapshot instead",
            object="replay",
        )
        return [finding, *findings], f"{detail}; replay not possible ({impossible.kind})", None
    fallback = (
        "; no schema snapshot is stored to compare with instead"
        if requested == "auto"
        else "; method='replay' was asked for, so no snapshot was used instead"
    )
    logger.error("Jetbase drift check: the schema check could not run: %s%s", impossible, fallback)
    return [], "not run", f"{impossible.reason}{fallback}"


def _choose_method(method: str, dialect: str) -> str:
    from airflow_provider_jetbase.drift.replay import REPLAYABLE_DIALECTS

    if method not in METHODS:
        raise DriftCheckError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    if method == "auto":
        return "replay" if dialect in REPLAYABLE_DIALECTS else "snapshot"
    if method == "replay" and dialect not in REPLAYABLE_DIALECTS:
        raise DriftCheckError(
            f"method='replay' is not available on {dialect} (supported: {', '.join(REPLAYABLE_DIALECTS)}); "
            "use 'snapshot'"
        )
    return method


def _assign_severity(
    findings: Iterable[Finding], fail_set: frozenset[str], pending_is_drift: bool
) -> tuple[Finding, ...]:
    result = []
    for finding in findings:
        if finding.kind == "lock_held":
            severity = INFO
        elif finding.kind in fail_set:
            severity = ERROR
        elif finding.kind == "pending_migration":
            severity = ERROR if pending_is_drift else INFO
        else:
            severity = WARNING
        result.append(finding.with_severity(severity))
    return tuple(result)


def run_drift_check(
    engine: Engine,
    migrations_dir: str | os.PathLike[str],
    *,
    reference_engine: Engine | None = None,
    scratch_connect_args: Mapping[str, Any] | None = None,
    pending_is_drift: bool = False,
    stale_lock_after: float = DEFAULT_STALE_LOCK_AFTER,
    fail_on: Iterable[str] | str = DEFAULT_FAIL_ON,
    method: str = "auto",
    logger: logging.Logger | None = None,
) -> DriftReport:
    """Check ``engine``'s database against ``migrations_dir``; never writes to it.

    :param reference_engine: where the scratch database for replay is created (PostgreSQL and
        MySQL; default: the target's server). Its dialect must match the target's.
    :param scratch_connect_args: DBAPI ``connect_args`` for the scratch database's engine (those
        of the reference connection when given, else the target's: TLS options and the like).
    :param pending_is_drift: pending migrations fail the check instead of being information.
    :param stale_lock_after: seconds after which a held Jetbase lock is reported as stale.
    :param fail_on: finding kinds that fail the check; ``"schema"`` stands for every schema
        finding, ``"migration"`` for every migration finding, ``"all"`` for everything.
    :param method: ``"auto"`` (replay where possible, else snapshot), ``"replay"``,
        ``"snapshot"`` or ``"none"`` (migration drift only).
    """
    from airflow_provider_jetbase.drift.schema import snapshot_schema
    from airflow_provider_jetbase.migration import Migrator

    log = logger or logging.getLogger(__name__)
    started = time.perf_counter()
    checked_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    fail_on_items = (fail_on,) if isinstance(fail_on, str) else tuple(fail_on)
    fail_set = resolve_fail_on(fail_on_items)
    if stale_lock_after < 0:
        raise DriftCheckError(f"stale_lock_after must be >= 0 seconds, not {stale_lock_after}")
    directory = Path(migrations_dir)
    if not directory.is_dir():
        raise DriftCheckError(f"the migrations folder {directory} does not exist")
    dialect = dialect_name(engine.dialect.name)
    chosen = _choose_method(method, dialect)
    _ensure_sqlite_file_exists(engine)

    migrator = Migrator(engine, directory, logger=log)
    status = migrator.status()
    findings = migration_findings(engine, migrator, status, stale_lock_after)
    notes: list[str] = []

    tables_checked = 0
    error: str | None = None
    if chosen == "none":
        detail = "schema not compared"
    else:
        live = snapshot_schema(engine)
        tables_checked = len(live.tables)
        if live.unsupported:
            notes.append(f"{dialect} cannot reflect: {', '.join(live.unsupported)} (not compared)")
        if chosen == "replay":
            try:
                schema_findings, detail = _schema_by_replay(
                    engine, directory, status, reference_engine, scratch_connect_args, live, notes, log
                )
            except _ReplayImpossible as impossible:
                schema_findings, detail, error = _after_impossible_replay(
                    engine, status.current, live, impossible, method, log
                )
                chosen = "snapshot" if error is None else "replay"
        else:
            schema_findings, detail = _schema_by_snapshot(engine, status.current, live)
        findings += schema_findings
        edited = sorted({f.filename or "?" for f in findings if f.kind == "checksum_mismatch"})
        if edited and chosen == "replay" and error is None:
            notes.append(
                f"{', '.join(edited)} changed since applied and {'was' if len(edited) == 1 else 'were'} "
                "replayed as it is now: schema findings on what it creates may come from the edit"
            )

    return DriftReport(
        dialect=dialect,
        method=chosen,
        method_detail=detail,
        findings=_assign_severity(findings, fail_set, pending_is_drift),
        current_version=status.current,
        applied_count=len(status.applied),
        pending_count=sum(1 for p in status.pending if p.migration_type != "RUNS_ALWAYS"),
        fail_on=fail_on_items + (("pending_migration",) if pending_is_drift else ()),
        checked_at=checked_at,
        duration_ms=(time.perf_counter() - started) * 1000,
        tables_checked=tables_checked,
        notes=tuple(notes),
        error=error,
    )
