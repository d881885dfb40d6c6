"""JetbaseVersionSensor on real databases: poke, reschedule, timeouts/soft_fail and deferral."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine

from tests.airflow_harness import conn_env_value
from tests.engine_watch import EngineWatch
from tests.operator_helpers import (
    CONN_ID,
    UseConn,
    make_dag,
    render_and_execute,
    task_context,
    write_migrations,
)


@pytest.fixture
def use_conn(monkeypatch: pytest.MonkeyPatch) -> UseConn:
    def _use(url: URL | str) -> None:
        value = url if isinstance(url, str) else conn_env_value(url)
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", value)

    return _use


def _migrate(tmp_path: Path, files: dict[str, str] | None = None, **kwargs: Any) -> None:
    from airflow_provider_jetbase.operators.jetbase import JetbaseUpgradeOperator

    folder = (
        write_migrations(tmp_path / "migrations", files)
        if files
        else write_migrations(tmp_path / "migrations")
    )
    with make_dag("t_prepare", fileloc=tmp_path / "dag.py"):
        op = JetbaseUpgradeOperator(
            task_id="prep", jetbase_conn_id=CONN_ID, migrations_dir=str(folder), **kwargs
        )
    render_and_execute(op)


def _sensor(**kwargs: Any) -> Any:
    from airflow_provider_jetbase.sensors.jetbase import JetbaseVersionSensor

    kwargs.setdefault("deferrable", False)
    with make_dag("t_sensor"):
        return JetbaseVersionSensor(task_id="wait", jetbase_conn_id=CONN_ID, **kwargs)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_poke_false_without_table_then_false_below_then_true_at_or_past(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, use_conn: UseConn
) -> None:
    url: URL = request.getfixturevalue(f"{kind}_url")
    use_conn(url)
    sensor = _sensor(target_version="2")
    context = task_context(sensor)
    assert not sensor.poke(context)  # no jetbase_migrations table yet
    _migrate(tmp_path, count=1)
    assert not sensor.poke(context)
    _migrate(tmp_path, count=1)
    done = sensor.poke(context)
    assert done and done.xcom_value == {"current_version": "2", "target_version": "2"}
    _migrate(tmp_path)
    assert sensor.poke(context)  # 3 is past 2


def test_version_order_is_jetbases_not_text(sqlite_url: URL, tmp_path: Path, use_conn: UseConn) -> None:
    use_conn(sqlite_url)
    files = {f"V1_{n}__step_{n}.sql": f"CREATE TABLE t_{n} (id INTEGER);\n" for n in (2, 9, 10)}
    _migrate(tmp_path, files)  # latest applied: 1.10 (text order would say 1.9)
    assert _sensor(target_version="1.10").poke({})
    assert _sensor(target_version="1_9").poke({})
    assert not _sensor(target_version="1.11").poke({})
    assert not _sensor(target_version="2").poke({})


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_one_query_per_poke(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, use_conn: UseConn
) -> None:
    use_conn(request.getfixturevalue(f"{kind}_url"))
    _migrate(tmp_path)
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        assert _sensor(target_version="3").poke({})
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    assert len(statements) == 1 and "jetbase_migrations" in statements[0]


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mysql"])
def test_poke_mode_reuses_one_engine_per_task_instance_and_disposes_it(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, use_conn: UseConn
) -> None:
    use_conn(request.getfixturevalue(f"{kind}_url"))
    _migrate(tmp_path, count=1)
    sensor = _sensor(target_version="2", mode="poke", poke_interval=0, timeout=3600)
    context = task_context(sensor)
    with pytest.MonkeyPatch.context() as mp:
        watch = EngineWatch(mp)
        try:
            # What BaseSensorOperator.execute does between pokes, then the version lands.
            assert not any(sensor.poke(context) for _ in range(3))
            assert len(watch.statements) == 3  # one query per poke
            _migrate(tmp_path)
            setup = watch.first_connects  # the upgrade's own Engine
            statements = len(watch.statements)
            assert sensor.execute(context) == {"current_version": "3", "target_version": "2"}
        finally:
            watch.stop()
    assert setup == 2  # the sensor's Engine started up once for its three pokes (+1 for _migrate)
    assert watch.first_connects == setup  # ...and execute's poke reused it
    assert len(watch.statements) == statements + 1
    assert sensor._checker is None  # execute ended: the Engine was disposed


def test_invalid_target_version_is_a_clear_error(sqlite_url: URL, use_conn: UseConn) -> None:
    from airflow_provider_jetbase.migration.errors import InvalidArgumentError

    use_conn(sqlite_url)
    with pytest.raises(InvalidArgumentError, match="'latest'"):
        _sensor(target_version="latest").poke({})


class _FakeTI:
    """Reschedule mode asks the task instance when the first reschedule happened."""

    def get_first_reschedule_date(self, context: Any) -> None:
        return None


def test_reschedule_mode_reschedules_until_reached(
    sqlite_url: URL, tmp_path: Path, use_conn: UseConn
) -> None:
    try:
        from airflow.sdk.exceptions import AirflowRescheduleException
    except ImportError:  # Airflow 3.1 keeps it in airflow.exceptions
        from airflow.exceptions import AirflowRescheduleException

    use_conn(sqlite_url)
    sensor = _sensor(target_version="{{ params.target }}", mode="reschedule", poke_interval=30, timeout=3600)
    context = task_context(sensor, params={"target": "2"})
    context["ti"] = _FakeTI()
    sensor.render_template_fields(context)
    assert sensor.target_version == "2"
    with pytest.raises(AirflowRescheduleException):
        sensor.execute(context)
    _migrate(tmp_path)
    assert sensor.execute(context) == {"current_version": "3", "target_version": "2"}


@pytest.mark.parametrize("soft_fail", [False, True])
def test_timeout_fails_or_skips_with_soft_fail(soft_fail: bool, sqlite_url: URL, use_conn: UseConn) -> None:
    from airflow.providers.common.compat.sdk import AirflowSensorTimeout, AirflowSkipException

    use_conn(sqlite_url)
    sensor = _sensor(target_version="1", timeout=0, poke_interval=0, soft_fail=soft_fail)
    with pytest.raises(AirflowSkipException if soft_fail else AirflowSensorTimeout):
        sensor.execute(task_context(sensor))


def test_deferrable_execute_defers_with_the_trigger(
    sqlite_url: URL, tmp_path: Path, use_conn: UseConn
) -> None:
    from airflow.providers.common.compat.sdk import TaskDeferred

    from airflow_provider_jetbase.triggers.jetbase import JetbaseVersionTrigger

    use_conn(sqlite_url)
    sensor = _sensor(target_version="2", deferrable=True, poke_interval=7, timeout=120)
    with pytest.raises(TaskDeferred) as info:
        sensor.execute(task_context(sensor))
    deferred = info.value
    assert isinstance(deferred.trigger, JetbaseVersionTrigger)
    assert deferred.trigger.serialize()[1] == {
        "jetbase_conn_id": CONN_ID,
        "target_version": "2",
        "poke_interval": 7.0,
    }
    assert deferred.method_name == "execute_complete"
    assert deferred.timeout is not None and deferred.timeout.total_seconds() == 120

    _migrate(tmp_path)  # already reached: no trip through the triggerer
    assert sensor.execute(task_context(sensor)) == {"current_version": "3", "target_version": "2"}


def test_execute_complete_success_error_and_soft_fail() -> None:
    from airflow.providers.common.compat.sdk import AirflowException, AirflowSkipException

    sensor = _sensor(target_version="2", deferrable=True)
    ok = sensor.execute_complete({}, {"status": "success", "current_version": "4", "target_version": "2"})
    assert ok == {"current_version": "4", "target_version": "2"}
    error = {"status": "error", "message": "Checking the Jetbase version of 'jb_test' failed: boom"}
    with pytest.raises(AirflowException, match="boom"):
        sensor.resume_execution("execute_complete", {"event": error}, {})
    soft = _sensor(target_version="2", deferrable=True, soft_fail=True)
    with pytest.raises(AirflowSkipException):
        soft.resume_execution("execute_complete", {"event": error}, {})


def test_deferrable_default_comes_from_airflow_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_jetbase.sensors.jetbase import JetbaseVersionSensor

    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")
    assert JetbaseVersionSensor(task_id="a", target_version="1").deferrable is True
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "False")
    assert JetbaseVersionSensor(task_id="b", target_version="1").deferrable is False
    assert JetbaseVersionSensor(task_id="c", target_version="1", deferrable=True).deferrable is True
