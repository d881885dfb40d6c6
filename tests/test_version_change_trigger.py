"""JetbaseVersionChangeTrigger against the real PostgreSQL and MariaDB: a baseline, then one event
per change with the versions, one query per poll, and polling that survives a failed read. The real
triggerer with an AssetWatcher is tests/deployment/test_version_watcher.py."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import URL

from tests.airflow_harness import conn_env_value
from tests.engine_watch import EngineWatch
from tests.operator_helpers import CONN_ID, write_migrations

EVENT_WAIT_S = 60.0  # a guard against a hang, not a speed assertion


@pytest.fixture
def target(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> URL:
    url: URL = request.getfixturevalue(request.param)
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", conn_env_value(url))
    return url


def _migrate(url: URL, folder: Path, **kwargs: Any) -> None:
    from airflow_provider_jetbase.migration import Migrator

    engine = create_engine(url)
    try:
        Migrator(engine, folder).upgrade(**kwargs)
    finally:
        engine.dispose()


def _rollback(url: URL, folder: Path) -> None:
    from airflow_provider_jetbase.migration import Migrator

    engine = create_engine(url)
    try:
        Migrator(engine, folder).rollback(count=1)
    finally:
        engine.dispose()


def test_serialize_round_trips_and_it_is_an_event_trigger() -> None:
    from airflow.triggers.base import BaseEventTrigger

    from airflow_provider_jetbase.triggers.jetbase import JetbaseVersionChangeTrigger

    trigger = JetbaseVersionChangeTrigger(jetbase_conn_id="warehouse", poke_interval=15)
    assert isinstance(trigger, BaseEventTrigger)
    classpath, kwargs = trigger.serialize()
    assert kwargs == {"jetbase_conn_id": "warehouse", "poke_interval": 15.0}
    module_name, _, class_name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module_name), class_name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)


async def _events(
    trigger: Any, between_polls: Callable[[int, Any], None], wanted: int
) -> tuple[list[Any], int]:
    """Run the trigger until it fired ``wanted`` events; ``between_polls(n, checker)`` runs after
    poll n (successful or not)."""
    import airflow_provider_jetbase.triggers.jetbase as module

    polls = 0
    real = module.VersionChecker.versions

    def counting(self: Any) -> Any:
        nonlocal polls
        try:
            return real(self)
        finally:
            polls += 1
            between_polls(polls, self)

    events: list[Any] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(module.VersionChecker, "versions", counting)
        stream: AsyncIterator[Any] = trigger.run()
        try:
            async with asyncio.timeout(EVENT_WAIT_S):
                async for event in stream:
                    events.append(event)
                    if len(events) == wanted:
                        break
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
    return events, polls


@pytest.mark.parametrize("target", ["postgres_url", "mysql_url"], indirect=True)
def test_one_event_per_change_with_the_versions_and_one_query_per_poll(target: URL, tmp_path: Path) -> None:
    from airflow_provider_jetbase.triggers.jetbase import JetbaseVersionChangeTrigger

    folder = write_migrations(tmp_path / "migrations")
    _migrate(target, folder, count=1)  # the baseline: version 1

    def change(poll: int, checker: Any) -> None:
        if poll == 2:
            _migrate(target, folder)  # another tool applies 2 and 3 between two polls
        elif poll == 4:
            _rollback(target, folder)  # and later rolls 3 back

    trigger = JetbaseVersionChangeTrigger(CONN_ID, poke_interval=0.01)
    events, polls = asyncio.run(_events(trigger, change, wanted=2))
    assert [e.payload for e in events] == [
        {
            "jetbase_conn_id": CONN_ID,
            "version_before": "1",
            "version_after": "3",
            "versions_added": ["2", "3"],
            "versions_removed": [],
        },
        {
            "jetbase_conn_id": CONN_ID,
            "version_before": "3",
            "version_after": "2",
            "versions_added": [],
            "versions_removed": ["3"],
        },
    ]
    assert polls == 5  # baseline, unchanged, +2 +3, unchanged, -3: no event without a change


@pytest.mark.parametrize("target", ["postgres_url"], indirect=True)
def test_a_poll_is_one_statement_on_postgresql(target: URL, tmp_path: Path) -> None:
    from airflow_provider_jetbase.hooks.version_check import VersionChecker

    _migrate(target, write_migrations(tmp_path / "migrations"))
    checker = VersionChecker(CONN_ID)
    try:
        assert checker.versions() == ["1", "2", "3"]  # the first builds the Engine (dialect start-up)
        with pytest.MonkeyPatch.context() as mp:
            watch = EngineWatch(mp)
            try:
                assert checker.versions() == ["1", "2", "3"]
            finally:
                watch.stop()
    finally:
        checker.close()
    assert len(watch.statements) == 1 and "jetbase_migrations" in watch.statements[0], watch.statements


@pytest.mark.parametrize("target", ["postgres_url"], indirect=True)
def test_a_missing_version_table_is_no_version_and_its_creation_is_a_change(
    target: URL, tmp_path: Path
) -> None:
    from airflow_provider_jetbase.triggers.jetbase import JetbaseVersionChangeTrigger

    folder = write_migrations(tmp_path / "migrations")

    def change(poll: int, checker: Any) -> None:
        if poll == 1:
            _migrate(target, folder, count=2)

    events, _ = asyncio.run(_events(JetbaseVersionChangeTrigger(CONN_ID, poke_interval=0.01), change, 1))
    assert events[0].payload["version_before"] is None
    assert events[0].payload["versions_added"] == ["1", "2"]


@pytest.mark.parametrize("target", ["postgres_url"], indirect=True)
def test_a_failed_poll_fires_nothing_and_polling_goes_on(
    target: URL, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_jetbase.triggers.jetbase import JetbaseVersionChangeTrigger

    folder = write_migrations(tmp_path / "migrations")
    _migrate(target, folder, count=1)
    good = conn_env_value(target)
    bad = conn_env_value(target.set(database="jbtest_no_such_database"))
    var = f"AIRFLOW_CONN_{CONN_ID.upper()}"

    def change(poll: int, checker: Any) -> None:
        # After the baseline the connection points at a database that does not exist (two failed
        # polls, a fresh Engine each time), then back; meanwhile version 2 lands.
        if poll == 1:
            monkeypatch.setenv(var, bad)
            checker.close()  # the next poll looks the connection up again
        elif poll == 3:
            _migrate(target, folder, count=1)
            monkeypatch.setenv(var, good)

    trigger = JetbaseVersionChangeTrigger(CONN_ID, poke_interval=0.01)
    warnings: list[str] = []
    monkeypatch.setattr(trigger.log, "warning", lambda msg, *args: warnings.append(msg % args))
    events, _ = asyncio.run(_events(trigger, change, 1))
    assert events[0].payload["version_before"] == "1" and events[0].payload["version_after"] == "2"
    assert len(warnings) == 1, warnings  # logged once per distinct error, not once per poll
    assert "jbtest_no_such_database" in warnings[0] and CONN_ID in warnings[0]
