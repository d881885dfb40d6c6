"""The baseline operator: adopt a database whose schema already exists.

It records the versioned files up to and including ``to_version`` as applied without running them
(``Migrator.baseline``; the rules, and why repeatable files are not recorded, are in
``migration/baseline.py``), so the next upgrade, by the provider or the ``jetbase`` CLI, applies
only the later files. Kept in its own module so the upgrade, rollback and status operators stay
as they are.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_jetbase.errors import ParameterError
from airflow_provider_jetbase.operators import _params
from airflow_provider_jetbase.operators._base import CancellableMigrationOperator
from airflow_provider_jetbase.operators.jetbase import DEFAULT_LOCK_TIMEOUT

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_jetbase.migration.results import BaselineResult


class JetbaseBaselineOperator(CancellableMigrationOperator):
    """Record the versioned files up to and including ``to_version`` as applied, WITHOUT running
    them, on a database that has no applied migrations (Flyway's and Atlas's "baseline").

    Under Jetbase's lock, it writes exactly the ``jetbase_migrations`` rows the upgrade (and the
    ``jetbase`` CLI) would have written for those files (same description, migration_type and
    checksum; ``order_executed`` from the table's identity, ``applied_at`` from the database clock,
    rising in version order), in one transaction.
    ``RA__``/``ROC__`` files are not recorded: the next upgrade runs them.
    It fails, writing nothing, when the database already has rows in ``jetbase_migrations`` (the
    message names the connection and what is applied) or when no versioned file has ``to_version``.

    :param to_version: the version the existing schema is at. Templated.
    :param jetbase_conn_id: Airflow connection of the database. Templated.
    :param migrations_dir: the migrations folder; relative paths are resolved against the DAG
        file's folder. Templated.
    :param dry_run: log the rows that would be written; write nothing, create no table, take no
        lock. Templated.
    :param lock_timeout: seconds to wait for another run's Jetbase lock. Templated.
    :param stale_lock_after: as for the upgrade: take over a lock whose holder is provably gone.
        Templated.
    :return: ``{"dry_run", "version_after", "versions_recorded", "recorded": [...],
        "not_recorded", "pending"}``.
    """

    template_fields: Sequence[str] = (
        "jetbase_conn_id",
        "migrations_dir",
        "to_version",
        "dry_run",
        "lock_timeout",
        "stale_lock_after",
    )
    ui_color = "#e8f4fd"
    _kill_message = "Task killed during the baseline of '{conn}': {done}"

    def __init__(
        self,
        *,
        to_version: str,
        jetbase_conn_id: str = "jetbase_default",
        migrations_dir: str | os.PathLike[str],
        dry_run: bool | str = False,
        lock_timeout: float | str = DEFAULT_LOCK_TIMEOUT,
        stale_lock_after: float | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.to_version = to_version
        self.jetbase_conn_id = jetbase_conn_id
        self.migrations_dir = os.fspath(migrations_dir)
        # Shadows BaseOperator.dry_run(), as in the upgrade operator: the parameter name matters more.
        self.dry_run = dry_run  # type: ignore[assignment,method-assign]
        self.lock_timeout = lock_timeout
        self.stale_lock_after = stale_lock_after

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_jetbase.hooks.jetbase import JetbaseHook
        from airflow_provider_jetbase.migration.errors import BaselineRefusedError

        to_version = _params.to_optional_str(self.to_version)
        if to_version is None:
            raise ParameterError(
                f"Parameter 'to_version' is required for a baseline (the version the existing schema is "
                f"at), got {self.to_version!r}"
            )
        dry_run = _params.to_bool("dry_run", self.dry_run)
        migrator = JetbaseHook(jetbase_conn_id=self.jetbase_conn_id).get_migrator(
            self._migrations_folder(context),
            lock_timeout=_params.to_seconds("lock_timeout", self.lock_timeout),
            stale_lock_after=_params.to_optional_seconds("stale_lock_after", self.stale_lock_after),
            lock_owner=_params.lock_owner(context),
            logger=self._engine_logger(),
        )
        try:
            result = self._run_migration(migrator, lambda: migrator.baseline(to_version, dry_run=dry_run))
        except BaselineRefusedError as exc:
            # The engine knows the database, not the Airflow connection: name it for the reader.
            raise BaselineRefusedError(
                f"Connection '{self.jetbase_conn_id}': {exc}", applied=exc.applied
            ) from None
        self._log_result(result)
        return {
            "dry_run": result.dry_run,
            "version_after": result.version_after,
            "versions_recorded": [row.version for row in result.recorded],
            "recorded": [row.to_dict() for row in result.recorded],
            "not_recorded": list(result.not_recorded),
            "pending": list(result.pending),
        }

    def _log_result(self, result: BaselineResult) -> None:
        from airflow_provider_jetbase.migration.baseline import rows_table

        prefix = "Dry run: would have recorded" if result.dry_run else "Recorded"
        self.log.info(
            "%s %d version(s) as applied on '%s' WITHOUT running them (baseline to version %s):\n%s\n"
            "order_executed comes from the table's identity and applied_at from the database clock, 1 ms "
            "apart in version order (the CLI finds its latest version by applied_at).",
            prefix,
            len(result.recorded),
            self.jetbase_conn_id,
            result.version_after,
            rows_table(result.recorded),
        )
        if result.not_recorded:
            self.log.info(
                "Not recorded (repeatable files; the next upgrade runs them): %s",
                ", ".join(result.not_recorded),
            )
        if result.pending:
            self.log.info("Pending (the next upgrade applies them): %s", ", ".join(result.pending))
