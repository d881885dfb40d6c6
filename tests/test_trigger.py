"""JetbaseVersionTrigger: serialization, run() against the real PostgreSQL, error events."""

from __future__ import annotations

import asyncio
import importlib
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import URL

from tests.airflow_harness import conn_env_value
from tests.engine_watch import EngineWatch
from tests.operator_helpers import CONN_ID, UseConn, make_dag, render_and_execute, write_migrations


@pytest.fixture
def use_conn(monkeypatch: pytest.MonkeyPatch) -> UseConn:
    def _use(value: str) -> None:
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", value)

    return _use


def _upgrade(tmp_path: Path, count: int | None = None) -> None:
    from airflow_provider_jetbase.operators.jetbase import JetbaseUpgradeOperator

    folder = write_migrations(tmp_path / "migrations")
    with make_dag("t_prepare", fileloc=tmp_path / "dag.py"):
        op = JetbaseUpgradeOperator(
            task_id="prep", jetbase_conn_id=CONN_ID, migrations_dir=str(folder), count=count
        )
    render_and_execute(op)


def test_serialize_round_trips_with_primitives_only() -> None:
    from airflow_provider_jetbase.triggers.jetbase import JetbaseVersionTrigger

    trigger = JetbaseVersionTrigger(jetbase_conn_id="warehouse", target_version="1_2", poke_interval=15)
    classpath, kwargs = trigger.serialize()
    assert all(isinstance(v, (str, int, float, bool)) for v in kwargs.values())
    module_name, _, class_name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module_name), class_name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert kwargs == {"jetbase_conn_id": "warehouse", "target_version": "1_2", "poke_interval": 15.0}


async def _first_event(trigger: Any) -> Any:
    async for event in trigger.run():
        return event
    raise AssertionError("run() ended without an event")


def test_run_yields_success_when_the_version_lands(
    postgres_url: URL, tmp_path: Path, use_conn: UseConn
) -> None:
    import airflow_provider_jetbase.triggers.jetbase as module

    use_conn(conn_env_value(postgres_url))
    _upgrade(tmp_path, count=1)
    checks: list[tuple[int, bool, str | None]] = []
    real_check = module.VersionChecker.check

    def recording_check(self: Any) -> tuple[bool, str | None]:
        reached, current = real_check(self)
        checks.append((threading.get_ident(), reached, current))
        if not reached and len(checks) == 1:
            _upgrade(tmp_path)  # the version lands between two checks
        return reached, current

    async def scenario() -> tuple[Any, int]:
        event = await _first_event(module.JetbaseVersionTrigger(CONN_ID, "2", poke_interval=0.01))
        return event, threading.get_ident()

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(module.VersionChecker, "check", recording_check)
        event, loop_thread = asyncio.run(scenario())
    assert event.payload == {"status": "success", "current_version": "3", "target_version": "2"}
    assert [(reached, current) for _, reached, current in checks] == [(False, "1"), (True, "3")]
    assert all(thread != loop_thread for thread, _, _ in checks)  # DB I/O never on the event loop


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mysql"])
def test_run_reuses_one_engine_for_every_check_and_disposes_it_when_cancelled(
    kind: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    use_conn: UseConn,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from airflow_provider_jetbase.triggers.jetbase import JetbaseVersionTrigger

    use_conn(conn_env_value(request.getfixturevalue(f"{kind}_url")))
    _upgrade(tmp_path, count=1)
    capsys.readouterr()

    async def scenario(watch: EngineWatch) -> None:
        task = asyncio.ensure_future(_first_event(JetbaseVersionTrigger(CONN_ID, "9", poke_interval=0.01)))
        while len(watch.statements) < 5:  # five checks, never reaching version 9
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with pytest.MonkeyPatch.context() as mp:
        watch = EngineWatch(mp)
        try:
            asyncio.run(scenario(watch))
        finally:
            watch.stop()
    checks = len(watch.statements)
    assert checks >= 5 and all("jetbase_migrations" in s for s in watch.statements)  # one query per check
    assert watch.first_connects == 1  # one Engine, one dialect start-up, for every check of the run
    assert watch.connects >= checks  # NullPool: a connection per check, no session held in between
    assert len(watch.disposed) == 1  # disposed by the cancelled run's `finally`
    out = capsys.readouterr()
    waiting = [line for line in (out.out + out.err).splitlines() if "waiting for 9" in line]
    assert len(waiting) == 1, waiting  # logged when the version seen changes, not on every check


def test_run_yields_error_event_for_unreachable_database(use_conn: UseConn) -> None:
    from airflow_provider_jetbase.triggers.jetbase import JetbaseVersionTrigger

    # Port 1 on localhost: connection refused at once; the password must not leak into the event.
    use_conn("postgresql://someone:s3cr3t-pw@127.0.0.1:1/nowhere")
    event = asyncio.run(_first_event(JetbaseVersionTrigger(CONN_ID, "2", poke_interval=0.01)))
    assert event.payload["status"] == "error"
    assert f"'{CONN_ID}'" in event.payload["message"]
    assert "OperationalError" in event.payload["message"]
    assert "s3cr3t-pw" not in event.payload["message"]


def test_run_yields_error_event_for_unknown_connection() -> None:
    from airflow_provider_jetbase.triggers.jetbase import JetbaseVersionTrigger

    event = asyncio.run(_first_event(JetbaseVersionTrigger("jb_no_such_connection", "2", poke_interval=0.01)))
    assert event.payload["status"] == "error"
    assert "jb_no_such_connection" in event.payload["message"]
