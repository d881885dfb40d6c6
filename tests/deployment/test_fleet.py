"""A fleet run on the real deployment: one mapped JetbaseUpgradeOperator over twelve databases
(PostgreSQL and MariaDB) run by two Celery workers, two mapped tasks at a time, then the summary;
consumers scheduled on one database's schema asset run only when that database changed."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from airflow_provider_jetbase.migration import Migrator
from tests.deployment.dags.jbdeploy_fleet_dags import CHANGED_CONN, CURRENT_CONN
from tests.deployment.deployment import DAGS_SOURCE, FLEET_MYSQL, FLEET_SIZE, Deployment, Slot

pytestmark = pytest.mark.deployment

DAG = "jbdeploy_fleet"
SERIAL = "jbdeploy_fleet_serial"
FLEET_DAGS = (DAG, SERIAL, "jbdeploy_fleet_on_changed", "jbdeploy_fleet_on_current")
MIGRATIONS = DAGS_SOURCE / "migrations" / "fleet"
ALL = ["1", "2", "3"]
UP_TO_DATE = {"fleet_00", "fleet_05", "fleet_09"}  # PostgreSQL, MariaDB, PostgreSQL
AT_VERSION = {"fleet_02": 1, "fleet_04": 2}  # partly migrated (PostgreSQL, MariaDB)
BROKEN = "fleet_07"  # PostgreSQL: a table in the way makes V2 fail there, and only there


def _engine_run(url: URL, sql: str | None = None, count: int | None = None) -> None:
    engine = create_engine(url)
    try:
        if sql is not None:
            with engine.begin() as conn:
                conn.execute(text(sql))
        else:
            Migrator(engine, MIGRATIONS).upgrade(count=count)
    finally:
        engine.dispose()


def _version_rows(url: URL) -> tuple[list[tuple[str, int]], bool]:
    """(version, number of rows) per applied version, and whether the lock row is held."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT version, COUNT(*) FROM jetbase_migrations "
                    "WHERE migration_type = 'VERSIONED' GROUP BY version ORDER BY version"
                )
            ).all()
            locked = conn.execute(text("SELECT is_locked FROM jetbase_lock WHERE id = 1")).scalar_one()
    finally:
        engine.dispose()
    return [(str(r[0]), int(r[1])) for r in rows], bool(locked)


def _fleet(deployment: Deployment) -> dict[str, Slot]:
    return {name: slot for name, slot in deployment.slots.items() if name.startswith("fleet_")}


def _runs(deployment: Deployment, dag_id: str) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = deployment.api("GET", f"/dags/{dag_id}/dagRuns?limit=100")["dag_runs"]
    return runs


def _parse(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _max_overlap(intervals: list[tuple[dt.datetime, dt.datetime]]) -> int:
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, step in edges:  # an end sorts before a start at the same instant (-1 < 1)
        running += step
        peak = max(peak, running)
    return peak


@pytest.fixture(scope="module")
def fleet_run(deployment: Deployment) -> dict[str, Any]:
    """The databases prepared (some up to date, some part-way, one broken), one fleet run, done."""
    fleet = _fleet(deployment)
    assert len(fleet) == FLEET_SIZE >= 12
    assert {n for n, s in fleet.items() if s.kind == "mysql"} == {f"fleet_{n:02d}" for n in FLEET_MYSQL}
    for name in UP_TO_DATE:
        _engine_run(fleet[name].url)
    for name, count in AT_VERSION.items():
        _engine_run(fleet[name].url, count=count)
    _engine_run(fleet[BROKEN].url, sql="CREATE TABLE fleet_orders (id INT PRIMARY KEY)")

    deployment.wait_for(
        lambda: all(deployment.server.api("GET", f"/api/v2/dags/{d}")[0] == 200 for d in FLEET_DAGS),
        180,
        f"the DAGs {FLEET_DAGS} to be parsed",
        every=1.0,
    )
    run_id = deployment.trigger(DAG, {})
    run = deployment.wait_run(DAG, run_id, timeout=400)
    mapped = deployment.api("GET", f"/dags/{DAG}/dagRuns/{run_id}/taskInstances/migrate/listMapped?limit=100")
    took = (_parse(run["end_date"]) - _parse(run["start_date"])).total_seconds()
    print(f"\nfleet run: {FLEET_SIZE} databases in {took:.1f} s")  # shown with -s
    print(deployment.task_log(DAG, run_id, "summary", 1)[-3000:])
    return {"run_id": run_id, "run": run, "mapped": mapped["task_instances"], "fleet": fleet}


def test_each_database_is_migrated_exactly_once_and_the_broken_one_fails_alone(
    deployment: Deployment, fleet_run: dict[str, Any]
) -> None:
    fleet: dict[str, Slot] = fleet_run["fleet"]
    targets = deployment.xcom(DAG, fleet_run["run_id"], "list_targets")
    assert targets == sorted(slot.conn_id for slot in fleet.values())  # the pattern's match, sorted
    states = {ti["map_index"]: ti["state"] for ti in fleet_run["mapped"]}
    assert len(states) == FLEET_SIZE
    by_conn = {targets[i]: state for i, state in states.items()}
    broken = fleet[BROKEN].conn_id
    assert by_conn[broken] == "failed", by_conn
    others = {c: s for c, s in by_conn.items() if c != broken}
    assert others == dict.fromkeys(set(targets) - {broken}, "success")
    for name, slot in fleet.items():
        rows, locked = _version_rows(slot.url)
        expected = ["1"] if name == BROKEN else ALL
        assert rows == [(v, 1) for v in expected], (name, rows)  # each version applied exactly once
        assert not locked, name  # every mapped task released its own database's lock
    # Two workers, max_active_tis_per_dagrun=2: never more than two databases at once.
    intervals = [(_parse(ti["start_date"]), _parse(ti["end_date"])) for ti in fleet_run["mapped"]]
    assert _max_overlap(intervals) <= 2


def test_the_summary_has_one_row_per_database_and_fails_the_run_for_the_broken_one(
    deployment: Deployment, fleet_run: dict[str, Any]
) -> None:
    run_id = fleet_run["run_id"]
    fleet: dict[str, Slot] = fleet_run["fleet"]
    assert fleet_run["run"]["state"] == "failed"
    assert deployment.task_instance(DAG, run_id, "summary")["state"] == "failed"
    summary = deployment.xcom(DAG, run_id, "summary")
    rows = {row["database"]: row for row in summary["databases"]}
    assert [row["database"] for row in summary["databases"]] == sorted(rows)
    assert len(rows) == FLEET_SIZE
    for name, slot in fleet.items():
        row = rows[slot.conn_id]
        expected: tuple[str, str | None, str, list[str], str | None]
        assert row["duration_ms"] is not None and row["duration_ms"] >= 0, row
        if name in UP_TO_DATE:
            expected = ("up to date", "3", "3", [], None)
        elif name in AT_VERSION:
            at = AT_VERSION[name]
            expected = ("migrated", str(at), "3", ALL[at:], None)
        elif name == BROKEN:
            expected = ("failed", None, "1", ["1"], row["error"])
        else:
            expected = ("migrated", None, "3", ALL, None)
        got = (row["status"], row["version_before"], row["version_after"], row["applied"], row["error"])
        assert got == expected, (name, row)
    error = rows[fleet[BROKEN].conn_id]["error"]
    assert "MigrationExecutionError" in error and "V2__orders.sql" in error, error
    assert summary["failed"] == [fleet[BROKEN].conn_id]
    assert summary["counts"] == {"migrated": 8, "up to date": 3, "failed": 1, "no result": 0}
    log = deployment.task_log(DAG, run_id, "summary", 1)
    assert "Fleet of 12 database(s)" in log and fleet[BROKEN].conn_id in log, log


def test_each_changed_database_emits_its_own_asset_event_and_only_its_consumer_runs(
    deployment: Deployment, fleet_run: dict[str, Any]
) -> None:
    run_id = fleet_run["run_id"]
    fleet: dict[str, Slot] = fleet_run["fleet"]
    events = deployment.api("GET", f"/assets/events?source_dag_id={DAG}&limit=100")["asset_events"]
    mine = [e for e in events if e["source_run_id"] == run_id]
    changed = sorted(
        slot.conn_id for name, slot in fleet.items() if name not in UP_TO_DATE and name != BROKEN
    )
    assert sorted(e["uri"] for e in mine) == [f"jetbase://{c}/" for c in changed], mine
    for event in mine:
        assert event["source_task_id"] == "migrate" and event["source_map_index"] >= 0, event
        assert event["extra"]["version_after"] == "3", event

    consumer = deployment.wait_for(
        lambda: [r for r in _runs(deployment, "jbdeploy_fleet_on_changed") if r["state"] == "success"],
        180,
        f"the consumer of {CHANGED_CONN} to run",
    )
    assert len(_runs(deployment, "jbdeploy_fleet_on_changed")) == 1, consumer
    seen = deployment.xcom("jbdeploy_fleet_on_changed", consumer[0]["dag_run_id"], "record_triggering_events")
    assert [e["uri"] for e in seen] == [f"jetbase://{CHANGED_CONN}/"], seen
    assert seen[0]["extra"]["versions"] == ALL, seen
    # The up-to-date database emitted nothing: its consumer never ran (the scheduler had the time
    # it took to create and finish the other consumer's run).
    assert _runs(deployment, "jbdeploy_fleet_on_current") == [], CURRENT_CONN


def test_a_second_fleet_run_one_at_a_time_changes_nothing_and_emits_nothing(
    deployment: Deployment, fleet_run: dict[str, Any]
) -> None:
    fleet: dict[str, Slot] = fleet_run["fleet"]
    run_id = deployment.trigger(SERIAL, {})
    deployment.wait_run(SERIAL, run_id, timeout=400)
    mapped = deployment.api(
        "GET", f"/dags/{SERIAL}/dagRuns/{run_id}/taskInstances/migrate/listMapped?limit=100"
    )["task_instances"]
    # max_active_tis_per_dagrun=1 with two idle workers: the bound, not the workers, decides.
    assert _max_overlap([(_parse(ti["start_date"]), _parse(ti["end_date"])) for ti in mapped]) == 1
    rows = {row["database"]: row for row in deployment.xcom(SERIAL, run_id, "summary")["databases"]}
    broken = fleet[BROKEN].conn_id
    assert rows[broken]["status"] == "failed"
    assert {c: (r["status"], r["applied"]) for c, r in rows.items() if c != broken} == {
        slot.conn_id: ("up to date", []) for name, slot in fleet.items() if name != BROKEN
    }
    events = deployment.api("GET", f"/assets/events?source_dag_id={SERIAL}&limit=100")["asset_events"]
    assert events == []
    for name, slot in fleet.items():
        rows_, _ = _version_rows(slot.url)
        assert rows_ == [(v, 1) for v in (["1"] if name == BROKEN else ALL)], (name, rows_)
