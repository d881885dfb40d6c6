"""Fleets without a scheduler: the target list, the reduction of mapped XComs into one table, the
``jetbase_error`` record a failed upgrade leaves (real databases), and the summary operator.
The real deployment (mapped tasks on two workers, asset events) is tests/deployment/test_fleet.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from airflow_provider_jetbase import fleet
from tests.airflow_harness import conn_env_value
from tests.operator_helpers import CONN_ID, make_dag, render_and_execute, write_migrations


class RecordingTI:
    """The two TaskInstance methods the fleet code calls, over an in-memory XCom table keyed
    (task_id, key, map_index): what Airflow's XCom backend stores, without a scheduler."""

    def __init__(self, xcoms: dict[tuple[str, str, int], Any] | None = None) -> None:
        self.xcoms = dict(xcoms or {})
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value

    def xcom_pull(self, task_ids: str, key: str, map_indexes: list[int]) -> list[Any]:
        return [self.xcoms.get((task_ids, key, i)) for i in map_indexes]


def test_matching_connection_ids_reads_conn_variables_case_insensitively() -> None:
    environ = {
        "AIRFLOW_CONN_WAREHOUSE_EU": "{}",
        "AIRFLOW_CONN_WAREHOUSE_US": "{}",
        "airflow_conn_warehouse_ap": "{}",
        "AIRFLOW_CONN_WAREHOUSE_EU_SLEEP": "{}",
        "AIRFLOW_CONN_": "{}",
        "AIRFLOW_VAR_WAREHOUSE_XX": "{}",
        "WAREHOUSE_ZZ": "{}",
    }
    assert fleet.matching_connection_ids("warehouse_??", environ) == [
        "warehouse_ap",
        "warehouse_eu",
        "warehouse_us",
    ]
    assert fleet.matching_connection_ids("WAREHOUSE_*", environ)[-1] == "warehouse_us"
    assert fleet.matching_connection_ids("nothing_*", environ) == []


def test_summarize_gives_one_row_per_target_in_order() -> None:
    results = [
        {"versions_applied": ["2", "3"], "version_before": "1", "version_after": "3", "duration_ms": 12.5},
        {"versions_applied": [], "version_before": "3", "version_after": "3", "duration_ms": 3},
        None,
        None,
        {"versions_applied": ["1"], "dry_run": True, "version_before": None, "version_after": "1"},
    ]
    errors = [
        None,
        None,
        {"error": "MigrationExecutionError: V2 failed", "versions_applied": ["1"], "version_after": "1"},
        None,
        None,
    ]
    rows = fleet.summarize(["a", "b", "c", "d", "e"], results, errors)
    assert [(r.database, r.status) for r in rows] == [
        ("a", "migrated"),
        ("b", "up to date"),
        ("c", "failed"),
        ("d", "no result"),
        ("e", "up to date"),  # a dry run changed nothing
    ]
    assert rows[0].to_dict() == {
        "database": "a",
        "status": "migrated",
        "version_before": "1",
        "version_after": "3",
        "applied": ["2", "3"],
        "duration_ms": 12.5,
        "error": None,
    }
    assert (rows[2].applied, rows[2].version_after, rows[2].error) == (
        ("1",),
        "1",
        "MigrationExecutionError: V2 failed",
    )
    assert fleet.counts(rows) == {"migrated": 1, "up to date": 2, "failed": 1, "no result": 1}
    table = fleet.render_table(rows).splitlines()
    assert table[0].split() == ["database", "status", "before", "after", "applied", "duration", "error"]
    assert len(table) == 2 + 5 and "MigrationExecutionError: V2 failed" in table[4]
    with pytest.raises(ValueError, match="one result and one error slot per target"):
        fleet.summarize(["a"], [], [])


@pytest.fixture
def use_conn(monkeypatch: pytest.MonkeyPatch) -> Any:
    def _use(url: URL) -> None:
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", conn_env_value(url))

    return _use


def _upgrade_task(tmp_path: Path, files: dict[str, str] | None = None) -> Any:
    from airflow_provider_jetbase.operators.jetbase import JetbaseUpgradeOperator

    folder = (
        write_migrations(tmp_path / "migrations")
        if files is None
        else write_migrations(tmp_path / "migrations", files)
    )
    with make_dag("t_fleet", fileloc=tmp_path / "dag.py"):
        return JetbaseUpgradeOperator(task_id="migrate", jetbase_conn_id=CONN_ID, migrations_dir=str(folder))


def test_a_failed_upgrade_records_its_error_and_versions_for_the_summary(
    db_url: URL, tmp_path: Path, use_conn: Any
) -> None:
    from airflow_provider_jetbase.migration.errors import MigrationExecutionError
    from airflow_provider_jetbase.operators.jetbase import ERROR_XCOM_KEY

    use_conn(db_url)
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE table_b (id INTEGER PRIMARY KEY)"))  # V2 will fail
    finally:
        engine.dispose()
    task = _upgrade_task(tmp_path)
    ti = RecordingTI()
    with pytest.raises(MigrationExecutionError):
        task.render_template_fields({"ti": ti})
        task.execute({"ti": ti, "dag": task.dag, "task": task, "run_id": "manual__t", "params": {}})
    record = ti.pushed[ERROR_XCOM_KEY]
    assert record["jetbase_conn_id"] == CONN_ID
    assert (record["versions_applied"], record["version_before"], record["version_after"]) == (
        ["1"],
        None,
        "1",
    )
    assert record["error"].startswith("MigrationExecutionError: ") and "V2__create_b.sql" in record["error"]
    assert record["duration_ms"] >= 0
    row = fleet.summarize([CONN_ID], [None], [record])[0]
    assert (row.status, row.applied, row.version_after) == ("failed", ("1",), "1")


def test_a_successful_upgrade_returns_its_connection_and_duration(
    sqlite_url: URL, tmp_path: Path, use_conn: Any
) -> None:
    use_conn(sqlite_url)
    result, _ = render_and_execute(_upgrade_task(tmp_path))
    assert result["jetbase_conn_id"] == CONN_ID
    assert result["versions_applied"] == ["1", "2", "3"]
    assert isinstance(result["duration_ms"], float) and result["duration_ms"] >= 0
    row = fleet.summarize([CONN_ID], [result], [None])[0]
    assert (row.status, row.version_before, row.version_after) == ("migrated", None, "3")


def _summary(**kwargs: Any) -> Any:
    from airflow_provider_jetbase.operators.fleet import JetbaseFleetSummaryOperator

    with make_dag("t_fleet_summary"):
        return JetbaseFleetSummaryOperator(task_id="summary", upgrade_task_id="migrate", **kwargs)


def test_the_summary_operator_pushes_the_table_then_fails_when_a_database_failed() -> None:
    from airflow_provider_jetbase.operators.fleet import FleetFailedError

    ok = {"versions_applied": ["1"], "version_before": None, "version_after": "1", "duration_ms": 1.0}
    bad: dict[str, Any] = {"error": "LockTimeoutError: held", "versions_applied": [], "version_after": None}
    ti = RecordingTI(
        {
            ("migrate", "return_value", 0): ok,
            ("migrate", "jetbase_error", 1): bad,
        }
    )
    summary = _summary(jetbase_conn_ids=["eu", "us", "ap"])
    assert summary.trigger_rule == "all_done"  # runs after failed mapped tasks too
    with pytest.raises(FleetFailedError, match="2 of 3 database"):
        summary.execute({"ti": ti})
    pushed = ti.pushed["return_value"]
    assert [(r["database"], r["status"]) for r in pushed["databases"]] == [
        ("eu", "migrated"),
        ("us", "failed"),
        ("ap", "no result"),
    ]
    assert pushed["failed"] == ["us", "ap"]

    report_only = _summary(jetbase_conn_ids='["eu", "us"]', fail_on_error="false")
    report_only.render_template_fields({"ti": ti})
    result = report_only.execute({"ti": ti})
    assert result["counts"] == {"migrated": 1, "up to date": 0, "failed": 1, "no result": 0}


def test_the_summary_operator_refuses_a_target_list_that_is_not_a_list() -> None:
    from airflow_provider_jetbase.errors import ParameterError

    with pytest.raises(ParameterError, match="jetbase_conn_ids"):
        _summary(jetbase_conn_ids="eu,us").execute({"ti": RecordingTI()})
