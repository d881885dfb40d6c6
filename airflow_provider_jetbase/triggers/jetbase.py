"""JetbaseVersionTrigger: waits in the triggerer until a database reaches a migration version.

The check is blocking SQLAlchemy I/O, so :meth:`JetbaseVersionTrigger.run` runs it in a worker
thread with ``asyncio.to_thread`` and never on the triggerer's event loop. The connection is
fetched inside that thread by :class:`JetbaseHook`: the task SDK's ``Connection.get`` called from
a thread other than the event loop's is forwarded to the triggerer supervisor on the loop (the same
path as ``sync_to_async(BaseHook.get_connection)``).

One :class:`VersionChecker` (one Engine) serves every check of a trigger run, or of a sensor's
task instance: the connection is looked up and SQLAlchemy's dialect start-up queries (server
version, session settings) run once per run instead of once per check, which leaves one statement
per check on PostgreSQL and SQLite (down from 6 and 2). The Engine uses ``NullPool``, so between
checks no database session is held (500 waiting triggers must not hold 500 idle sessions); the
price is a new connection per check, whose set-up PyMySQL still sends on MariaDB/MySQL (``SET
NAMES``, ``SET AUTOCOMMIT``, ``ROLLBACK``: 6 statements per check, down from 12).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

# Triggers run in the triggerer (server side): their base classes are not part of the Task SDK.
from airflow.triggers.base import BaseEventTrigger, BaseTrigger, TriggerEvent

from airflow_provider_jetbase.errors import describe_error
from airflow_provider_jetbase.hooks.version_check import VersionChecker

__all__ = ["JetbaseVersionChangeTrigger", "JetbaseVersionTrigger", "VersionChecker"]

_NOTHING_LOGGED = object()


class JetbaseVersionTrigger(BaseTrigger):
    """Fires ``{"status": "success", "current_version", "target_version"}`` once the latest applied
    versioned migration is at or past ``target_version``, or ``{"status": "error", "message"}``
    when the check fails (bad connection, invalid version...).

    One Engine per run, reused by every check and disposed when the run ends (also when the
    triggerer cancels it); the task log gets one line when the version seen changes, not one per
    check."""

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
        checker = VersionChecker(self.jetbase_conn_id, self.target_version)
        last_logged: object = _NOTHING_LOGGED
        try:
            while True:
                try:
                    reached, current = await asyncio.to_thread(checker.check)
                # The task decides what a failure means; the triggerer must not crash.
                except Exception as exc:  # noqa: BLE001
                    checker.close()
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
                    checker.close()
                    yield TriggerEvent(
                        {
                            "status": "success",
                            "current_version": current,
                            "target_version": self.target_version,
                        }
                    )
                    return
                if current != last_logged:
                    last_logged = current
                    self.log.info(
                        "'%s' is at version %s, waiting for %s (checking every %g s)",
                        self.jetbase_conn_id,
                        current,
                        self.target_version,
                        self.poke_interval,
                    )
                await asyncio.sleep(self.poke_interval)
        finally:
            checker.close()


class JetbaseVersionChangeTrigger(BaseEventTrigger):
    """Watches a connection's version table for changes made anywhere (the ``jetbase`` CLI, CI, this
    provider): for event-driven scheduling, in an ``AssetWatcher`` of an asset that DAGs are
    scheduled on.

    Each poll is ONE query (:meth:`VersionChecker.versions`: every applied versioned version). The
    first successful poll is the baseline; every later poll that finds a different set of versions
    fires ``{"jetbase_conn_id", "version_before", "version_after", "versions_added",
    "versions_removed"}`` (versions in Jetbase's order; the asset event's extra holds it under
    ``payload``) and becomes the new baseline, and the trigger goes on watching. A missing version
    table counts as "no version". A failed poll (database down, bad connection) fires nothing: it
    is logged once per distinct error and polling goes on.

    The baseline lives in the triggerer's memory: a change made while no triggerer runs this
    trigger (a restart, a moved trigger) is not reported as a change.
    """

    def __init__(self, jetbase_conn_id: str, poke_interval: float = 60.0) -> None:
        super().__init__()
        self.jetbase_conn_id = jetbase_conn_id
        self.poke_interval = float(poke_interval)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"jetbase_conn_id": self.jetbase_conn_id, "poke_interval": self.poke_interval},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_provider_jetbase.migration.versions import latest_version

        checker = VersionChecker(self.jetbase_conn_id)
        baseline: list[str] | None = None
        last_error: str | None = None
        try:
            while True:
                try:
                    versions = await asyncio.to_thread(checker.versions) or []
                # A watcher outlives outages: report, then keep polling (a fresh Engine next time).
                except Exception as exc:  # noqa: BLE001
                    checker.close()
                    message = describe_error(exc)
                    if message != last_error:
                        last_error = message
                        self.log.warning(
                            "Reading the Jetbase versions of '%s' failed (retrying every %g s): %s",
                            self.jetbase_conn_id,
                            self.poke_interval,
                            message,
                        )
                    await asyncio.sleep(self.poke_interval)
                    continue
                last_error = None
                if baseline is None:
                    self.log.info(
                        "Watching '%s' for version changes from version %s (checking every %g s)",
                        self.jetbase_conn_id,
                        latest_version(versions),
                        self.poke_interval,
                    )
                elif versions != baseline:
                    event = {
                        "jetbase_conn_id": self.jetbase_conn_id,
                        "version_before": latest_version(baseline),
                        "version_after": latest_version(versions),
                        "versions_added": [v for v in versions if v not in baseline],
                        "versions_removed": [v for v in baseline if v not in versions],
                    }
                    self.log.info(
                        "'%s' changed from version %s to %s",
                        self.jetbase_conn_id,
                        event["version_before"],
                        event["version_after"],
                    )
                    yield TriggerEvent(event)
                baseline = versions
                await asyncio.sleep(self.poke_interval)
        finally:
            checker.close()
