"""The project's example DAGs, deployed unchanged and run end to end on the real deployment.

Each example's connection id (``jetbase_demo``, ...) is an ``AIRFLOW_CONN_*`` of the components
pointing at a fresh database of its own (``EXAMPLE_CONNECTIONS``); the rollback example runs on
MariaDB, the others on PostgreSQL. Where an example says the migrations are "applied by someone
else", the real ``jetbase`` CLI applies them, as a deployment pipeline would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.deployment.deployment import EXAMPLE_CONNECTIONS, EXAMPLES_SOURCE, Deployment, Slot
from tests.jetbase_cli import JetbaseProject, applied_versions

pytestmark = pytest.mark.deployment

CONSUMER = "jbdeploy_after_schema_change"


def example_slot(deployment: Deployment, conn_id: str) -> Slot:
    return deployment.slots[EXAMPLE_CONNECTIONS[conn_id]]


def cli_project(tmp_path: Path, slot: Slot, folder: str) -> JetbaseProject:
    """A ``jetbase`` CLI project on the slot's database with the example's own migrations."""
    project = JetbaseProject(root=tmp_path / folder, url=slot.url)
    project.copy_migrations_from(EXAMPLES_SOURCE / "migrations" / folder)
    return project


def versions(slot: Slot) -> list[str]:
    engine = create_engine(slot.url)
    try:
        return applied_versions(engine)
    finally:
        engine.dispose()


def run_sql(slot: Slot, sql: str) -> list[Any]:
    engine = create_engine(slot.url)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(sql))
            return list(result.all()) if result.returns_rows else []
    finally:
        engine.dispose()


def finished(deployment: Deployment, dag_id: str, run_id: str, task_ids: tuple[str, ...]) -> dict[str, Any]:
    """Wait for the run; a run that did not succeed fails with the log of each task."""
    run = deployment.wait_run(dag_id, run_id)
    if run["state"] != "success":
        logs = "\n".join(f"--- {t}\n{deployment.task_log(dag_id, run_id, t, 1)}" for t in task_ids)
        raise AssertionError(f"{dag_id}/{run_id} ended {run['state']}:\n{logs}")
    return run


def asset_events_from(deployment: Deployment, dag_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = deployment.api("GET", f"/assets/events?source_dag_id={dag_id}")[
        "asset_events"
    ]
    return events


def consumer_runs(deployment: Deployment) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = deployment.api("GET", f"/dags/{CONSUMER}/dagRuns")["dag_runs"]
    return runs


def test_migrate_before_etl_example_loads_the_day_and_wakes_its_asset_consumer_only_on_a_change(
    deployment: Deployment,
) -> None:
    dag_id = "example_jetbase_migrate_before_etl"
    first = deployment.trigger(dag_id, {})
    finished(deployment, dag_id, first, ("migrate", "load_daily_sales"))
    assert deployment.xcom(dag_id, first, "migrate")["versions_applied"] == ["1", "2", "3"]
    loaded = deployment.xcom(dag_id, first, "load_daily_sales")
    assert (loaded["orders"], loaded["total_cents"]) == (3, 1250 + 4999 + 300), loaded

    # The scheduler, not the test, starts the consumer: once, for the one event the upgrade emitted.
    runs = deployment.wait_for(lambda: consumer_runs(deployment), 120, f"the scheduler to start {CONSUMER}")
    consumer_run = runs[0]["dag_run_id"]
    finished(deployment, CONSUMER, consumer_run, ("report_schema_change",))
    (event,) = deployment.xcom(CONSUMER, consumer_run, "report_schema_change")
    # Airflow normalises the stored URI (``jetbase://jetbase_demo/``); the consumer's schedule uses the
    # same normalisation, which is why it matched.
    assert event["uri"].rstrip("/") == "jetbase://jetbase_demo", event
    assert event["extra"]["versions"] == ["1", "2", "3"], event
    assert (event["extra"]["version_before"], event["extra"]["version_after"]) == (None, "3"), event

    # Up to date: the second run applies nothing, emits no event, so no consumer run can follow.
    second = deployment.trigger(dag_id, {})
    finished(deployment, dag_id, second, ("migrate", "load_daily_sales"))
    assert deployment.xcom(dag_id, second, "migrate")["versions_applied"] == []
    assert len(asset_events_from(deployment, dag_id)) == 1, asset_events_from(deployment, dag_id)
    assert [r["dag_run_id"] for r in consumer_runs(deployment)] == [consumer_run]


def test_rollback_example_on_mariadb_previews_then_rolls_back_by_count_and_to_version(
    deployment: Deployment, tmp_path: Path
) -> None:
    dag_id = "example_jetbase_rollback"
    slot = example_slot(deployment, "jetbase_rollback_demo")
    cli_project(tmp_path, slot, "rollback").upgrade().assert_ok()
    assert versions(slot) == ["1", "2", "3"]

    preview_only = deployment.trigger(dag_id, {"count": 1, "dry_run_only": True})
    finished(deployment, dag_id, preview_only, ("preview_rollback", "rollback"))
    assert versions(slot) == ["1", "2", "3"]
    assert "DROP TABLE stock" in deployment.task_log(dag_id, preview_only, "preview_rollback", 1)

    by_count = deployment.trigger(dag_id, {"count": 1})
    finished(deployment, dag_id, by_count, ("preview_rollback", "rollback"))
    assert deployment.xcom(dag_id, by_count, "rollback")["versions_rolled_back"] == ["3"]
    assert versions(slot) == ["1", "2"]

    to_version = deployment.trigger(dag_id, {"to_version": "1"})
    finished(deployment, dag_id, to_version, ("preview_rollback", "rollback"))
    assert deployment.xcom(dag_id, to_version, "rollback")["versions_rolled_back"] == ["2"]
    assert versions(slot) == ["1"]
    assert (
        run_sql(
            slot,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()"
            " AND table_name IN ('prices', 'stock')",
        )
        == []
    )


def test_wait_for_version_example_defers_until_the_cli_applies_version_two(
    deployment: Deployment, tmp_path: Path
) -> None:
    dag_id = "example_jetbase_wait_for_version"
    slot = example_slot(deployment, "jetbase_wait_demo")
    run_id = deployment.trigger(dag_id, {})
    deployment.wait_ti(dag_id, run_id, "wait_for_v2", ("deferred",), timeout=180)

    cli_project(tmp_path, slot, "wait_for_version").upgrade().assert_ok()
    finished(deployment, dag_id, run_id, ("wait_for_v2", "count_events"))
    assert deployment.xcom(dag_id, run_id, "count_events") == {"event_counts_rows": 0}


def test_drift_check_example_passes_on_a_clean_database_and_alerts_on_a_hand_made_change(
    deployment: Deployment, tmp_path: Path
) -> None:
    dag_id = "example_jetbase_drift_check"
    task = "check_drift"
    slot = example_slot(deployment, "jetbase_drift_demo")
    cli_project(tmp_path, slot, "drift_check").upgrade().assert_ok()

    clean = deployment.trigger(dag_id, {})
    finished(deployment, dag_id, clean, (task,))
    assert deployment.xcom(dag_id, clean, task, key="drift_report")["status"] == "ok"

    run_sql(slot, "ALTER TABLE accounts ADD COLUMN added_by_hand TEXT")
    drifted = deployment.trigger(dag_id, {})
    assert deployment.wait_run(dag_id, drifted)["state"] == "failed"
    report = deployment.xcom(dag_id, drifted, task, key="drift_report")
    assert report["status"] == "drift", report
    assert any("added_by_hand" in str(f) for f in report["findings"]), report
    log = deployment.task_log(dag_id, drifted, task, 1)
    assert "JETBASE DRIFT ALERT for jetbase_drift_demo" in log, log
