"""JetbaseVersionTrigger: waits in the triggerer until a database reaches a migration version.

The check (:func:`check_version`) is blocking SQLAlchemy I/O, so :meth:`JetbaseVersionTrigger.run`
runs it in a worker thread with ``asyncio.to_thread`` and never on the triggerer's event loop. The
connection is fetched inside that thread by :class:`JetbaseHook`: on Airflow 3 the task SDK's
``Connection.get`` called from a thread other than the event loop's is forwarded to the triggerer
supervisor on the loop (the same path as ``sync_to_async(BaseHook.get_connection)``); on
Airflow 2 it reads the metadata database directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow_provider_jetbase.compat import BaseTrigger, TriggerEvent


def check_version(jetbase_conn_id: str, target_version: str) -> tuple[bool, str | None]:
    """(reached, current): ONE query for the latest applied versioned version; a missing version
    table means "not yet". ``target_version`` accepts ``1.2`` and ``1_2``."""
    from sqlalchemy.pool import NullPool

    from airflow_provider_jetbase.hooks.jetbase import JetbaseHook
    from airflow_provider_jetbase.migration.state import fetch_current_version, version_key

    target = version_key(str(target_version))
    # NullPool: a poke opens one connection and closes it; nothing is kept between pokes.
    engine = JetbaseHook(jetbase_conn_id=jetbase_conn_id).get_sqlalchemy_engine({"poolclass": NullPool})
    try:
        with engine.connect() as connection:
            current = fetch_current_version(connection)
    finally:
        engine.dispose()
    return (current is not None and version_key(current) >= target), current


def describe_error(exc: BaseException) -> str:
    """The driver's own message (not SQLAlchemy's, which appends SQL and a link), on one line."""
    orig = getattr(exc, "orig", None)
    inner = orig if isinstance(orig, BaseException) else exc
    message = " ".join(str(inner).split())
    return f"{type(inner).__name__}: {message}" if message else type(inner).__name__


class JetbaseVersionTrigger(BaseTrigger):
    """Fires ``{"status": "success", "current_version", "target_version"}`` once the latest applied
    versioned migration is at or past ``target_version``, or ``{"status": "error", "message"}``
    when the check fails (bad connection, invalid version...)."""

    def __init__(self, jetbase_conn_id: str, target_version: str, poke_interval: float = 60.0) -> None:
        super().__init__()
        self.jetbase_conn_id = jetbase_conn_id
        self.target_version = str(target_version)
        self.poke_interval = float(poke_interval)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "jetbase_conn_id": self.jetbase_conn_id,
                "target_version": self.target_version,
                "poke_interval": self.poke_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            try:
                reached, current = await asyncio.to_thread(
                    check_version, self.jetbase_conn_id, self.target_version
                )
            except Exception as exc:  # the task decides what a failure means; the triggerer must not crash
                yield TriggerEvent(
                    {
                        "status": "error",
                        "target_version": self.target_version,
                        "message": f"Checking the Jetbase version of '{self.jetbase_conn_id}' failed: "
                        f"{describe_error(exc)}",
                    }
                )
                return
            if reached:
                yield TriggerEvent(
                    {"status": "success", "current_version": current, "target_version": self.target_version}
                )
                return
            self.log.info(
                "'%s' is at version %s, waiting for %s", self.jetbase_conn_id, current, self.target_version
            )
            await asyncio.sleep(self.poke_interval)
