"""JetbaseVersionSensor: waits until a database's schema reaches a given migration version."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowException,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_jetbase.hooks.version_check import VersionChecker


def _default_deferrable() -> bool:
    return bool(conf.getboolean("operators", "default_deferrable", fallback=False))


def _poke_return_value(is_done: bool, xcom_value: Any) -> Any:
    return PokeReturnValue(is_done=is_done, xcom_value=xcom_value)


class JetbaseVersionSensor(BaseSensorOperator):
    """Done when the latest applied *versioned* migration is at or past ``target_version`` in
    Jetbase's version order (``1.9 < 1.10 < 2``; ``1_2`` and ``1.2`` are the same). A database
    without Jetbase's version table is "not yet". Each poke is one query. In ``poke`` mode one
    Engine (``NullPool``: no session held between pokes) serves every poke of the task instance and
    is disposed when ``execute`` ends, so SQLAlchemy's connection start-up runs once, not per poke.

    :param jetbase_conn_id: the Airflow connection of the database. Templated.
    :param target_version: the version to wait for. Templated.
    :param deferrable: wait in the triggerer (:class:`JetbaseVersionTrigger`) instead of a worker
        slot; defaults to ``[operators] default_deferrable``. ``mode``, ``poke_interval``,
        ``timeout`` and ``soft_fail`` work as for any sensor (a deferred wait uses ``timeout`` as
        the deferral timeout).
    :return: ``{"current_version", "target_version"}`` when done.
    """

    template_fields: Sequence[str] = ("jetbase_conn_id", "target_version")
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        jetbase_conn_id: str = "jetbase_default",
        target_version: str,
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.jetbase_conn_id = jetbase_conn_id
        self.target_version = target_version
        self.deferrable = _default_deferrable() if deferrable is None else deferrable
        self._checker: VersionChecker | None = None

    def poke(self, context: Context) -> Any:
        checker = self._checker
        wanted = (self.jetbase_conn_id, str(self.target_version))
        if checker is None or (checker.jetbase_conn_id, checker.target_version) != wanted:
            from airflow_provider_jetbase.hooks.version_check import VersionChecker

            self._close_checker()  # re-rendered fields: never check with stale ones
            checker = self._checker = VersionChecker(*wanted)
        reached, current = checker.check()
        self.log.info(
            "'%s' is at version %s; target %s %s",
            self.jetbase_conn_id,
            current,
            self.target_version,
            "reached" if reached else "not reached yet",
        )
        return _poke_return_value(reached, self._xcom(current))

    def execute(self, context: Context) -> Any:
        try:
            return self._execute(context)
        finally:
            self._close_checker()

    def _close_checker(self) -> None:
        checker, self._checker = self._checker, None
        if checker is not None:
            checker.close()

    def _execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        # One check first: a version that is already live needs no trip through the triggerer.
        done = self.poke(context)
        if done:
            return done.xcom_value
        from airflow_provider_jetbase.triggers.jetbase import JetbaseVersionTrigger

        self.defer(
            trigger=JetbaseVersionTrigger(
                jetbase_conn_id=self.jetbase_conn_id,
                target_version=str(self.target_version),
                poke_interval=float(self.poke_interval),
            ),
            method_name="execute_complete",
            timeout=dt.timedelta(seconds=float(self.timeout)),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        if not event or event.get("status") != "success":
            message = (event or {}).get("message") or f"Trigger returned no usable event: {event!r}"
            # AirflowException so that soft_fail/never_fail apply (BaseSensorOperator.resume_execution).
            raise AirflowException(message)
        self.log.info(
            "'%s' reached version %s (target %s)",
            self.jetbase_conn_id,
            event.get("current_version"),
            self.target_version,
        )
        return self._xcom(event.get("current_version"))

    def _xcom(self, current: str | None) -> dict[str, Any]:
        return {"current_version": current, "target_version": str(self.target_version)}
