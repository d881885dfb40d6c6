"""Operators that run Jetbase migrations: upgrade, rollback and status.

They are thin: each builds a :class:`~airflow_provider_jetbase.migration.Migrator` through
:class:`~airflow_provider_jetbase.hooks.jetbase.JetbaseHook`, calls it, logs a table of what ran
(and, for a dry run, the SQL), and returns a small JSON-able dict to XCom.

Asset ("schema changed") events
-------------------------------
The upgrade operator declares the outlet ``AssetAlias(name="jetbase-schema-change:<conn_id>")`` and,
only when it applied at least one migration (not in a dry run), emits an event for the asset
``jetbase://<conn_id>`` (``jetbase_asset(conn_id)``) through that alias. A DAG that must run after
every schema change is scheduled with ``schedule=[jetbase_asset("my_conn")]``. A plain ``Asset``
outlet would not do: Airflow records an event for every declared asset when the task succeeds,
so an "up to date" run would trigger the consumers too. An alias records only the events the task
adds, and Airflow creates the asset the first time one is emitted. The event's ``extra`` holds
``versions`` (applied, in order) and ``version_before``/``version_after``. When the conn id is
templated, the asset URI uses the rendered id and the alias name the text written in the DAG.

Relative ``migrations_dir`` paths are resolved against the folder of the DAG file, never the
worker's current directory, so ``migrations_dir="migrations/warehouse"`` works wherever the DAG
folder is deployed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import Asset, AssetAlias

from airflow_provider_jetbase.errors import JetbaseProviderError, ParameterError, describe_error
from airflow_provider_jetbase.operators import _params
from airflow_provider_jetbase.operators._base import (
    CancellableMigrationOperator,
    JetbaseBaseOperator,
    TaskKilledError,
    dispose_engine_of,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context
    from airflow.providers.openlineage.extractors import OperatorLineage

    from airflow_provider_jetbase.migration import Migrator
    from airflow_provider_jetbase.migration.lineage import LineageRecord
    from airflow_provider_jetbase.migration.results import MigrationRun
    from airflow_provider_jetbase.migration.review import ReviewPlan, ReviewRequest

DEFAULT_LOCK_TIMEOUT = 300.0
ASSET_URI_SCHEME = "jetbase"
# Airflow's name for the pool of tasks that name none (airflow.models.pool.Pool.DEFAULT_POOL_NAME).
DEFAULT_POOL = "default_pool"
# What a failed upgrade leaves in XCom for a fleet summary (the task's return value is never pushed
# when it fails); its error text is capped so a long validation report stays a small XCom.
ERROR_XCOM_KEY = "jetbase_error"
ERROR_XCOM_MAX_CHARS = 4000


def jetbase_asset_uri(jetbase_conn_id: str) -> str:
    """``jetbase://<conn_id>``: the asset that stands for the schema of one connection's database."""
    return f"{ASSET_URI_SCHEME}://{jetbase_conn_id}"


def jetbase_asset(jetbase_conn_id: str) -> Asset:
    """The asset an upgrade emits when it applied migrations; use it in a consumer DAG's schedule."""
    return Asset(uri=jetbase_asset_uri(jetbase_conn_id))


def jetbase_asset_alias(jetbase_conn_id: str) -> AssetAlias:
    """The outlet alias of the upgrade operator (see the module docstring for why an alias)."""
    return AssetAlias(name=f"jetbase-schema-change:{jetbase_conn_id}")


def _error_text(exc: BaseException) -> str:
    # The provider's own messages hold no secret by contract; anything else (a driver's error
    # through SQLAlchemy) is cut to the driver's message, without the SQL and its parameters.
    if isinstance(exc, JetbaseProviderError):
        return f"{type(exc).__name__}: {exc}"
    return describe_error(exc)


def _elapsed_ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


class _JetbaseMigratorOperator(CancellableMigrationOperator):
    """Shared set-up: parameters rendered from templates, the Migrator, and clean kills."""

    ui_color = "#e8f4fd"
    # What this task ran, for OpenLineage's listener (set by execute(), on success or failure).
    _lineage_record: LineageRecord | None = None

    template_fields: Sequence[str] = (
        "jetbase_conn_id",
        "migrations_dir",
        "count",
        "to_version",
        "dry_run",
        "strict",
        "lock_timeout",
        "stale_lock_after",
        "plan_hash",
        "lint",
    )

    def __init__(
        self,
        *,
        jetbase_conn_id: str = "jetbase_default",
        migrations_dir: str | os.PathLike[str],
        count: int | str | None = None,
        to_version: str | None = None,
        dry_run: bool | str = False,
        strict: bool | str = False,
        lock_timeout: float | str = DEFAULT_LOCK_TIMEOUT,
        stale_lock_after: float | str | None = None,
        skip_pool_check: bool = False,
        plan_hash: str | dict[str, Any] | None = None,
        lint: str = "warn",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.skip_pool_check = skip_pool_check
        self.plan_hash = plan_hash
        self.lint = lint
        self.jetbase_conn_id = jetbase_conn_id
        self.migrations_dir = os.fspath(migrations_dir)
        self.count = count
        self.to_version = to_version
        # Shadows BaseOperator.dry_run(), which Airflow 3 never calls (2.x only for
        # `airflow tasks test --dry-run`): the public parameter name matters more.
        self.dry_run = dry_run  # type: ignore[assignment,method-assign]
        self.strict = strict
        self.lock_timeout = lock_timeout
        self.stale_lock_after = stale_lock_after

    def _migrator(self, context: Context) -> Migrator:
        from airflow_provider_jetbase.hooks.jetbase import JetbaseHook

        return JetbaseHook(jetbase_conn_id=self.jetbase_conn_id).get_migrator(
            self._migrations_folder(context),
            lock_timeout=_params.to_seconds("lock_timeout", self.lock_timeout),
            stale_lock_after=_params.to_optional_seconds("stale_lock_after", self.stale_lock_after),
            strict=_params.to_bool("strict", self.strict),
            lock_owner=_params.lock_owner(context),
            logger=self._engine_logger(),
        )

    def _require_mutual_exclusion(self, migrator: Migrator, dry_run: bool) -> None:
        """Jetbase has no lock on some databases (ClickHouse): two runs at once both apply the same
        files (tests/test_clickhouse.py). There the task must be in an Airflow pool, which the docs
        say must have one slot and hold every task that migrates that database, unless the user
        took the risk with ``skip_pool_check``. A dry run changes nothing and needs no exclusion."""
        if migrator.dialect.supports_lock or dry_run:
            return
        if self.skip_pool_check:
            self.log.warning(
                "Jetbase takes no lock on %s and skip_pool_check=True: nothing stops another run from "
                "migrating '%s' at the same time",
                migrator.dialect.name,
                self.jetbase_conn_id,
            )
            return
        if self.pool and self.pool != DEFAULT_POOL:
            self.log.info(
                "Jetbase takes no lock on %s: pool '%s' must have one slot and hold every task that "
                "migrates '%s'",
                migrator.dialect.name,
                self.pool,
                self.jetbase_conn_id,
            )
            return
        dispose_engine_of(migrator)
        raise ParameterError(
            f"Refusing to migrate '{self.jetbase_conn_id}': Jetbase takes no lock on "
            f"{migrator.dialect.name}, so two runs at once would both apply the same migrations. Put "
            "this task in an Airflow pool with one slot that holds every task migrating this database "
            "(pool='...'), or pass skip_pool_check=True if something else keeps runs apart."
        )

    def _keep_lineage(
        self,
        command: str,
        migrator: Migrator,
        runs: Sequence[MigrationRun],
        before: str | None,
        after: str | None,
        dry_run: bool,
        failed: bool = False,
    ) -> None:
        """Remember what ran for get_openlineage_facets_on_complete/_on_failure (pure data: the
        URL's host, port and database only; nothing of OpenLineage is imported here)."""
        from airflow_provider_jetbase.migration.lineage import LineageRecord, lineage_target

        try:
            target = lineage_target(migrator.engine.url, migrator.dialect.name)
        except Exception as exc:  # noqa: BLE001 - lineage never fails a task, nor hides its error
            self.log.warning("No lineage for '%s': %s", self.jetbase_conn_id, type(exc).__name__)
            return
        if target is None:
            return
        self._lineage_record = LineageRecord(
            command, target, tuple(runs), before, after, dry_run=dry_run, failed=failed
        )

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage | None:
        """Called by the OpenLineage provider's listener when the task succeeded: the tables the run
        created, altered or dropped (lifecycleStateChange), the statements (sql job facet) and the
        Jetbase versions (the ``jetbase`` run facet). None without OpenLineage or a run."""
        record = self._lineage_record
        if record is None:
            return None
        try:
            # The provider first, as Airflow's SQL operators check it: without it, the compat facet
            # names are placeholders and _lineage.py must not be imported.
            import airflow.providers.openlineage.extractors  # noqa: F401

            from airflow_provider_jetbase.operators._lineage import operator_lineage
        except ImportError:
            self.log.debug("OpenLineage is not installed: no lineage for '%s'", self.jetbase_conn_id)
            return None
        return operator_lineage(record)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> OperatorLineage | None:
        """As on complete, for what committed before the failure (the files that completed)."""
        return self.get_openlineage_facets_on_complete(task_instance)

    def _review_request(self) -> ReviewRequest:
        from airflow_provider_jetbase.migration.review import ReviewRequest

        expected, approved = _params.to_plan_expectation(self.plan_hash)
        return ReviewRequest(
            connection_id=self.jetbase_conn_id,
            lint=_params.to_lint_mode(self.lint),
            plan_hash=expected,
            approved_plan=approved,
        )

    def _review_xcom(self, plan: ReviewPlan | None, dry_run: bool) -> dict[str, Any]:
        """Logs the lint table; the XCom keys of the review: the plan itself (and its Markdown) in
        a dry run, its hash and lint findings always."""
        if plan is None:
            return {}
        from airflow_provider_jetbase.migration.lint import blocking, findings_table, summary

        if plan.lint:
            header, rows = findings_table(plan.lint)
            # A WARNING only for what lint="fail" would refuse; accepted and unparsed ones are notes.
            log = self.log.warning if blocking(plan.lint) else self.log.info
            log(
                "Lint of the statements %s on '%s': %s:\n%s",
                "that would run" if dry_run else "about to run",
                self.jetbase_conn_id,
                summary(plan.lint),
                _params.text_table(header, rows),
            )
        review: dict[str, Any] = {
            "plan_hash": plan.plan_hash,
            "lint": [finding.to_dict() for finding in plan.lint],
        }
        if dry_run:
            from airflow_provider_jetbase.migration.plan_markdown import render

            review["plan"] = plan.to_dict()
            review["plan_markdown"] = render(plan)
        return review

    def _log_runs(
        self, verb: str, runs: Sequence[MigrationRun], dry_run: bool, before: Any, after: Any
    ) -> None:
        if not runs:
            return
        prefix = "Dry run: would have " if dry_run else ""
        self.log.info(
            "%s%s %d migration(s) on '%s' (version %s -> %s):\n%s",
            prefix,
            verb,
            len(runs),
            self.jetbase_conn_id,
            before,
            after,
            _params.runs_table(runs),
        )
        from airflow_provider_jetbase.migration.progress import SHORT_RUN_FILES

        if len(runs) > SHORT_RUN_FILES and not dry_run:
            # A long run logged progress, not a line per file: say where the time went.
            self.log.info("Summary: %s", _params.runs_totals(runs))
        if dry_run:
            self.log.info("Dry run: SQL that would be executed:\n%s", _params.runs_sql(runs))


class JetbaseUpgradeOperator(_JetbaseMigratorOperator):
    """Apply pending Jetbase migrations from ``migrations_dir`` to the connection's database.

    :param jetbase_conn_id: Airflow connection (jetbase, postgres, mysql, sqlite, snowflake,
        databricks or clickhouse type). Templated.
    :param migrations_dir: folder of ``V<version>__<desc>.sql`` / ``RA__`` / ``ROC__`` files;
        relative paths are resolved against the DAG file's folder. Templated.
    :param count: apply at most this many versioned migrations (a positive integer). Templated.
    :param to_version: apply up to and including this version. Templated.
    :param dry_run: plan only: log the SQL, change nothing (accepts "true"/"false"). Templated.
    :param skip_validation: skip Jetbase's checksum and file validations.
    :param skip_checksum_validation: skip only the checksum validation.
    :param skip_file_validation: skip only the missing-file validation.
    :param strict: refuse files with constructs Jetbase's parser mishandles. Templated.
    :param lock_timeout: seconds to wait for another migration run's lock before failing. Templated.
    :param stale_lock_after: take over a held lock instead of waiting for it when its holder is
        provably gone (PostgreSQL, MySQL/MariaDB: its session lock is free; elsewhere: its pid is gone
        in this PID namespace), or when nothing proves it alive (a CLI lock, an empty process_id, or a
        database without session locks) and its ``locked_at`` heartbeat is older than this many
        seconds by the database's clock. Must be > 0 and at least 30 s (three heartbeats). ``None``
        (default) never takes a lock over, as the ``jetbase`` CLI. Templated.
    :param skip_pool_check: on a database where Jetbase takes no lock (ClickHouse), the task is
        refused unless it runs in an Airflow ``pool`` (not ``default_pool``) that has one slot and
        holds every task migrating that database; ``True`` runs it anyway (a dry run always runs).
    :param emit_asset_event: declare the schema-change outlet (see the module docstring).
    :param store_schema_snapshot: after an upgrade that applied something (not a dry run), reflect
        the schema and store it in ``jetbase_schema_snapshot`` (a table of ours next to Jetbase's),
        the reference of :class:`~airflow_provider_jetbase.operators.drift.JetbaseDriftCheckOperator`
        with ``method="snapshot"``. ``None`` (default, "auto"): only where the drift check cannot
        replay the migrations and so reads the snapshot in its ``"auto"`` mode (Snowflake,
        Databricks, ClickHouse: every dialect but SQLite, PostgreSQL and MySQL/MariaDB), so those
        three keep exactly the tables the ``jetbase`` CLI leaves. ``True``: always (e.g. to run
        the drift check with ``method="snapshot"`` on PostgreSQL); ``False``: never. A snapshot
        that fails is logged as a WARNING and never fails the task: the migration has succeeded.
    :param plan_hash: the approved plan's hash (``"{{ ti.xcom_pull('plan')['plan_hash'] }}"``) or
        the approved plan itself (``"{{ ti.xcom_pull('plan')['plan'] }}"``, which makes a mismatch
        list exactly what changed): under the lock, the plan is recomputed and, if its hash differs,
        the task fails before any statement runs. ``None`` (default): no check. Templated.
    :param lint: ``"warn"`` (default): log the lint findings of the statements about to run;
        ``"fail"``: fail before anything runs on a destructive or risky finding that no
        ``-- jetbase-lint: allow <rule>`` comment accepts; ``"off"``. Templated.
    :return: ``{"jetbase_conn_id", "applied": [...], "versions_applied": [...], "version_before",
        "version_after", "dry_run", "warnings", "duration_ms", "plan_hash", "lint": [...]}``; a dry
        run adds ``"plan"`` (the plan as a value: database, version before, files with their
        statements) and ``"plan_markdown"``. When the upgrade fails, the task pushes the XCom
        ``jetbase_error`` (``ERROR_XCOM_KEY``) instead, for a fleet summary
        (:class:`~airflow_provider_jetbase.operators.fleet.JetbaseFleetSummaryOperator`).

    Mapped over many databases: ``JetbaseUpgradeOperator.partial(task_id=..., migrations_dir=...)
    .expand(jetbase_conn_id=[...])``; each mapped task takes its own database's lock and emits its
    own ``jetbase://<conn_id>`` event (docs/fleets.md).
    """

    def __init__(
        self,
        *,
        jetbase_conn_id: str = "jetbase_default",
        migrations_dir: str | os.PathLike[str],
        count: int | str | None = None,
        to_version: str | None = None,
        dry_run: bool | str = False,
        skip_validation: bool = False,
        skip_checksum_validation: bool = False,
        skip_file_validation: bool = False,
        strict: bool | str = False,
        lock_timeout: float | str = DEFAULT_LOCK_TIMEOUT,
        stale_lock_after: float | str | None = None,
        skip_pool_check: bool = False,
        emit_asset_event: bool = True,
        store_schema_snapshot: bool | None = None,
        **kwargs: Any,
    ) -> None:
        self._asset_alias: AssetAlias | None = None
        if emit_asset_event:
            self._asset_alias = jetbase_asset_alias(jetbase_conn_id)
            outlets = kwargs.pop("outlets", None)
            if outlets is None:
                outlets = []
            elif not isinstance(outlets, (list, tuple)):
                outlets = [outlets]
            kwargs["outlets"] = [*outlets, self._asset_alias]
        super().__init__(
            jetbase_conn_id=jetbase_conn_id,
            migrations_dir=migrations_dir,
            count=count,
            to_version=to_version,
            dry_run=dry_run,
            strict=strict,
            lock_timeout=lock_timeout,
            stale_lock_after=stale_lock_after,
            skip_pool_check=skip_pool_check,
            **kwargs,
        )
        self.skip_validation = skip_validation
        self.skip_checksum_validation = skip_checksum_validation
        self.skip_file_validation = skip_file_validation
        self.store_schema_snapshot = store_schema_snapshot

    def execute(self, context: Context) -> dict[str, Any]:
        count = _params.to_optional_positive_int("count", self.count)
        to_version = _params.to_optional_str(self.to_version)
        dry_run = _params.to_bool("dry_run", self.dry_run)
        review = self._review_request()
        migrator = self._migrator(context)
        self._require_mutual_exclusion(migrator, dry_run)
        started = time.monotonic()
        try:
            result = self._run_migration(
                migrator,
                lambda: migrator.upgrade(
                    count=count,
                    to_version=to_version,
                    dry_run=dry_run,
                    skip_validation=self.skip_validation,
                    skip_checksum_validation=self.skip_checksum_validation,
                    skip_file_validation=self.skip_file_validation,
                    review=review,
                ),
            )
        # Not a kill (the supervisor SIGKILLs seconds later) and not a timeout (a BaseException,
        # with the migration still to be cancelled by on_kill): nothing to report then.
        except Exception as exc:
            if not isinstance(exc, TaskKilledError):
                record = self._record_error(context, migrator, exc, _elapsed_ms(started))
                self._keep_lineage(
                    "upgrade",
                    migrator,
                    getattr(exc, "applied", ()),
                    record["version_before"],
                    record["version_after"],
                    dry_run,
                    failed=True,
                )
            raise
        duration_ms = _elapsed_ms(started)
        self._keep_lineage(
            "upgrade", migrator, result.applied, result.version_before, result.version_after, dry_run
        )
        for warning in result.warnings:
            self.log.warning("%s", warning)
        if result.applied:
            self._log_runs("applied", result.applied, dry_run, result.version_before, result.version_after)
        else:
            self.log.info(
                "Database of '%s' is up to date at version %s: nothing to apply",
                self.jetbase_conn_id,
                result.version_before,
            )
        versions = [run.version for run in result.applied]
        if result.applied and not dry_run:
            self._store_schema_snapshot(migrator, result.version_after)
            self._emit_schema_change(context, versions, result.version_before, result.version_after)
        return {
            "jetbase_conn_id": self.jetbase_conn_id,
            "dry_run": dry_run,
            "version_before": result.version_before,
            "version_after": result.version_after,
            "versions_applied": versions,
            "applied": [_params.run_summary(run) for run in result.applied],
            "warnings": list(result.warnings),
            **self._review_xcom(result.plan, dry_run),
            "duration_ms": duration_ms,
        }

    def _record_error(
        self, context: Context, migrator: Migrator, exc: Exception, duration_ms: float
    ) -> dict[str, Any]:
        """Push the ``jetbase_error`` XCom (what a fleet summary shows for this database): the error,
        the versions this run committed before it, and the versions before and after as read again on
        a fresh connection (best effort: the task fails with ``exc`` whatever happens here)."""
        from airflow_provider_jetbase.migration.versions import latest_version

        applied = [run.version for run in getattr(exc, "applied", ()) if run.version]
        before: str | None = None
        after: str | None = None
        try:
            from airflow_provider_jetbase.migration.state import fetch_versioned_versions

            with migrator.engine.connect() as connection:
                present = fetch_versioned_versions(connection) or []
            after = latest_version(present)
            before = latest_version(v for v in present if v not in applied)
        except Exception as read_error:  # noqa: BLE001 - the report must not hide the real error
            self.log.warning(
                "Could not read the versions of '%s' after the failure: %s",
                self.jetbase_conn_id,
                type(read_error).__name__,
            )
        finally:
            dispose_engine_of(migrator)
        record = {
            "jetbase_conn_id": self.jetbase_conn_id,
            "error": _error_text(exc)[:ERROR_XCOM_MAX_CHARS],
            "versions_applied": applied,
            "version_before": before,
            "version_after": after,
            "duration_ms": duration_ms,
        }
        try:
            context["ti"].xcom_push(key=ERROR_XCOM_KEY, value=record)
        except Exception as push_error:  # noqa: BLE001
            self.log.warning("Could not push the %s XCom: %s", ERROR_XCOM_KEY, type(push_error).__name__)
        return record

    def _store_schema_snapshot(self, migrator: Migrator, version: str | None) -> None:
        from airflow_provider_jetbase.drift.replay import REPLAYABLE_DIALECTS
        from airflow_provider_jetbase.migration.dialects import dialect_name

        engine = migrator.engine
        wanted = self.store_schema_snapshot
        if wanted is None:
            # The same rule as the drift check's method="auto": a snapshot only where it is read.
            wanted = dialect_name(engine.dialect.name) not in REPLAYABLE_DIALECTS
        if not wanted:
            return
        from airflow_provider_jetbase.drift import store_snapshot

        try:
            stored = store_snapshot(engine, version=version)
        except Exception as exc:  # noqa: BLE001 - the migration is committed: a missing reference must not undo it
            self.log.warning(
                "Migrations applied, but storing the schema snapshot for drift checks on '%s' failed "
                "(the drift check's snapshot method will compare against an older snapshot or none): %s",
                self.jetbase_conn_id,
                describe_error(exc),
            )
        else:
            self.log.info(
                "Stored the schema snapshot of '%s' at version %s (fingerprint %s) for drift checks",
                self.jetbase_conn_id,
                stored.jetbase_version,
                stored.fingerprint[:12],
            )
        finally:
            # _run_migration disposed the pool already; the snapshot opened a new one.
            dispose_engine_of(migrator)

    def _emit_schema_change(
        self, context: Context, versions: list[str | None], before: str | None, after: str | None
    ) -> None:
        if self._asset_alias is None:
            return
        outlet_events = context.get("outlet_events")
        if outlet_events is None:
            self.log.warning("No outlet_events in the task context: no asset event emitted")
            return
        asset = jetbase_asset(self.jetbase_conn_id)
        outlet_events[self._asset_alias].add(
            asset, extra={"versions": list(versions), "version_before": before, "version_after": after}
        )
        self.log.info("Emitting asset event for %s", asset.uri)


class JetbaseRollbackOperator(_JetbaseMigratorOperator):
    """Roll back applied Jetbase migrations, newest first.

    :param count: roll back this many versioned migrations (a positive integer). Templated.
    :param to_version: roll back every migration after this version (it stays applied). Templated.
        With neither, the engine rolls back one migration, as the ``jetbase`` CLI does.
    :param dry_run: log the rollback SQL, change nothing. Templated.

    Other parameters (``plan_hash`` and ``lint`` too) are those of :class:`JetbaseUpgradeOperator`.

    :return: ``{"rolled_back": [...], "versions_rolled_back": [...], "version_before",
        "version_after", "dry_run", "warnings", "plan_hash", "lint": [...]}``, plus ``"plan"`` and
        ``"plan_markdown"`` in a dry run.
    """

    def execute(self, context: Context) -> dict[str, Any]:
        count = _params.to_optional_positive_int("count", self.count)
        to_version = _params.to_optional_str(self.to_version)
        dry_run = _params.to_bool("dry_run", self.dry_run)
        review = self._review_request()
        migrator = self._migrator(context)
        self._require_mutual_exclusion(migrator, dry_run)
        try:
            result = self._run_migration(
                migrator,
                lambda: migrator.rollback(count=count, to_version=to_version, dry_run=dry_run, review=review),
            )
        except Exception as exc:
            if not isinstance(exc, TaskKilledError):
                # The files rolled back before the failure stay rolled back.
                self._keep_lineage(
                    "rollback", migrator, getattr(exc, "applied", ()), None, None, dry_run, failed=True
                )
            raise
        self._keep_lineage(
            "rollback", migrator, result.rolled_back, result.version_before, result.version_after, dry_run
        )
        for warning in result.warnings:
            self.log.warning("%s", warning)
        if result.rolled_back:
            self._log_runs(
                "rolled back", result.rolled_back, dry_run, result.version_before, result.version_after
            )
        else:
            self.log.info(
                "Nothing to roll back on '%s' (version %s)", self.jetbase_conn_id, result.version_before
            )
        return {
            "dry_run": dry_run,
            "version_before": result.version_before,
            "version_after": result.version_after,
            "versions_rolled_back": [run.version for run in result.rolled_back],
            "rolled_back": [_params.run_summary(run) for run in result.rolled_back],
            "warnings": list(result.warnings),
            **self._review_xcom(result.plan, dry_run),
        }


class JetbaseStatusOperator(JetbaseBaseOperator):
    """Report applied and pending migrations (and, optionally, Jetbase's validation findings).

    Never changes the database and never fails on drift: it is meant for reports. Use
    ``include_validation=True`` to add the checksum/missing-file/order findings.

    :return: ``{"current", "applied": [...], "pending": [...], "lock": {...}, "validation"?}``
    """

    template_fields: Sequence[str] = ("jetbase_conn_id", "migrations_dir")
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        jetbase_conn_id: str = "jetbase_default",
        migrations_dir: str | os.PathLike[str],
        include_validation: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.jetbase_conn_id = jetbase_conn_id
        self.migrations_dir = os.fspath(migrations_dir)
        self.include_validation = include_validation

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_jetbase.hooks.jetbase import JetbaseHook

        migrator = JetbaseHook(jetbase_conn_id=self.jetbase_conn_id).get_migrator(
            self._migrations_folder(context), logger=self._engine_logger()
        )
        try:
            status = migrator.status()
            lock = migrator.lock_status()
            validation = migrator.validate() if self.include_validation else None
        finally:
            dispose_engine_of(migrator)
        self.log.info(
            "'%s' is at version %s: %d applied, %d pending%s",
            self.jetbase_conn_id,
            status.current,
            len(status.applied),
            len(status.pending),
            ", LOCKED" if lock.is_locked else "",
        )
        for pending in status.pending:
            self.log.info("pending: %s", pending.filename)
        report: dict[str, Any] = status.to_dict()
        report["lock"] = lock.to_dict()
        if validation is not None:
            report["validation"] = validation.to_dict()
            for finding in validation.findings:
                self.log.warning("%s: %s", finding.kind, finding.message)
        return report
