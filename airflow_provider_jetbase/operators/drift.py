"""JetbaseDriftCheckOperator: a thin Airflow wrapper over ``drift.run_drift_check``.

The hook, SQLAlchemy and the drift engine are imported inside ``execute`` so that parsing a DAG
that uses this operator stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowFailException, AirflowSkipException

from airflow_provider_jetbase.drift_defaults import DEFAULT_FAIL_ON
from airflow_provider_jetbase.operators import _params
from airflow_provider_jetbase.operators._base import JetbaseBaseOperator, dispose_engine_of

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


XCOM_KEY = "drift_report"


class JetbaseDriftCheckOperator(JetbaseBaseOperator):
    """Check a database against its Jetbase migrations, without changing it.

    Reports migration drift (changed checksums, missing or out-of-order files, pending migrations,
    a lock held too long) and schema drift (tables, columns, keys, indexes, constraints and views
    that differ from what the applied migrations produce, found by replaying them into a scratch
    database, or by comparing with the snapshot stored after the last upgrade where replay is not
    possible). Logs the report as a table, pushes it to XCom under ``drift_report`` and returns it.

    :param jetbase_conn_id: the connection of the database checked.
    :param migrations_dir: the migrations folder; a relative path is resolved against the DAG
        file's folder.
    :param reference_conn_id: optional connection to a server of the same kind where the scratch
        database may be created (PostgreSQL, MySQL); default: the target's server.
    :param fail_on: finding kinds that fail the task (``"schema"``: every schema finding,
        ``"migration"``: every migration finding, ``"all"``, or kinds such as
        ``"checksum_mismatch"``, ``"stale_lock"``); other findings are warnings.
    :param pending_is_drift: fail on pending migrations instead of reporting them as information.
    :param stale_lock_after: seconds after which a held Jetbase lock is reported as ``stale_lock``.
    :param method: ``"auto"``, ``"replay"``, ``"snapshot"`` or ``"none"`` (no schema comparison).
    :param soft_fail: on drift, mark the task skipped instead of failed. A check that could not run
        (report status ``"error"``: for example no right to create the scratch database) always fails
        the task, with a message starting ``Jetbase drift check COULD NOT RUN``.
    """

    template_fields: Sequence[str] = (
        "jetbase_conn_id",
        "migrations_dir",
        "reference_conn_id",
        "fail_on",
        "pending_is_drift",
        "stale_lock_after",
        "method",
    )
    ui_color = "#f4d9c6"

    def __init__(
        self,
        *,
        jetbase_conn_id: str = "jetbase_default",
        migrations_dir: str | os.PathLike[str],
        reference_conn_id: str | None = None,
        fail_on: Sequence[str] | str = DEFAULT_FAIL_ON,
        pending_is_drift: bool | str = False,
        stale_lock_after: float | str = 3600,
        method: str = "auto",
        soft_fail: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.jetbase_conn_id = jetbase_conn_id
        self.migrations_dir = os.fspath(migrations_dir)
        self.reference_conn_id = reference_conn_id
        self.fail_on = fail_on
        self.pending_is_drift = pending_is_drift
        self.stale_lock_after = stale_lock_after
        self.method = method
        self.soft_fail = soft_fail

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_jetbase.drift import run_drift_check
        from airflow_provider_jetbase.hooks.jetbase import JetbaseHook

        folder = self._migrations_folder(context)
        reference_conn_id = _params.to_optional_str(self.reference_conn_id)
        hook = JetbaseHook(jetbase_conn_id=self.jetbase_conn_id)
        scratch_hook = JetbaseHook(jetbase_conn_id=reference_conn_id) if reference_conn_id else hook
        engine = hook.get_sqlalchemy_engine()
        reference = scratch_hook.get_sqlalchemy_engine() if reference_conn_id else None
        try:
            report = run_drift_check(
                engine,
                folder,
                reference_engine=reference,
                scratch_connect_args=scratch_hook.get_engine_spec().connect_args,
                pending_is_drift=_params.to_bool("pending_is_drift", self.pending_is_drift),
                stale_lock_after=float(self.stale_lock_after),
                fail_on=_as_kinds(self.fail_on),
                method=str(self.method),
                logger=self._engine_logger(),
            )
        finally:
            dispose_engine_of(engine)
            if reference is not None:
                dispose_engine_of(reference)

        self.log.info("\n%s", report.to_text())
        result = report.to_dict()
        ti = context.get("ti")
        if ti is not None:
            # Pushed before failing, so an on_failure_callback can read the report.
            ti.xcom_push(key=XCOM_KEY, value=result)
        if report.status == "error":
            # Not drift and not "no findings": the schema was never compared. soft_fail does not
            # turn this into a skip, because a skipped nightly check would hide that nothing is checked.
            raise AirflowFailException(
                f"Jetbase drift check COULD NOT RUN on connection {self.jetbase_conn_id!r}: {report.error}"
            )
        if report.failed:
            kinds = sorted({f.kind for f in report.errors})
            message = (
                f"drift found ({len(report.errors)} failing finding(s): {', '.join(kinds)}). "
                f"{report.summary()}"
            )
            if self.soft_fail:
                raise AirflowSkipException(message)
            raise AirflowFailException(message)
        return result


def _as_kinds(value: Sequence[str] | str) -> tuple[str, ...]:
    # A templated fail_on may render to "schema, stale_lock".
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return tuple(value)
