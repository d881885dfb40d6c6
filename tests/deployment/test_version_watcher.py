"""Schema changes made outside Airflow: JetbaseVersionChangeTrigger, an AssetWatcher in the real
triggerer, sees each ``jetbase upgrade`` run by the CLI, and the DAG scheduled on the watched asset
runs once per change, with the versions in the event."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.deployment.dags.jbdeploy_fleet_dags import WATCH_POKE_S, WATCHED_CONN
from tests.deployment.deployment import DAGS_SOURCE, Deployment
from tests.jetbase_cli import JetbaseProject

pytestmark = pytest.mark.deployment

CONSUMER = "jbdeploy_watch_consumer"
TASK = "record_triggering_events"
# After a consumer run, this many more polls without a second run: "once", not "at least once".
QUIET_POLLS = 5


def _runs(deployment: Deployment) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = deployment.api("GET", f"/dags/{CONSUMER}/dagRuns?limit=100")["dag_runs"]
    return sorted(runs, key=lambda r: r["run_after"])


def _triggerer_log(deployment: Deployment) -> str:
    return deployment.components["triggerer"].log_path.read_text(errors="replace")


def _one_run_after(deployment: Deployment, before: int) -> dict[str, Any]:
    """Wait for the consumer's next run to succeed, then check that no other run follows it."""
    runs = deployment.wait_for(
        lambda: len(runs := _runs(deployment)) > before and runs[-1]["state"] == "success" and runs,
        120,
        f"a run of {CONSUMER} after the CLI's upgrade",
    )
    time.sleep(QUIET_POLLS * WATCH_POKE_S)
    assert len(_runs(deployment)) == before + 1, _runs(deployment)
    run = runs[-1]
    assert run["run_type"] == "asset_triggered", run
    seen: list[dict[str, Any]] = deployment.xcom(CONSUMER, run["dag_run_id"], TASK)
    return {"run": run, "events": seen}


def test_the_watcher_sees_each_cli_upgrade_and_its_consumer_runs_once(
    deployment: Deployment, tmp_path: Path
) -> None:
    slot = deployment.slots["watch"]
    assert slot.conn_id == WATCHED_CONN
    deployment.wait_for(
        lambda: f"Watching '{WATCHED_CONN}' for version changes" in _triggerer_log(deployment),
        180,
        "the version-change trigger to start watching in the triggerer",
    )
    assert _runs(deployment) == []  # watching an empty database changes nothing
    project = JetbaseProject(tmp_path / "cli", slot.url)
    project.copy_migrations_from(DAGS_SOURCE / "migrations" / "watch")

    project.upgrade(count=1).assert_ok()
    first = _one_run_after(deployment, 0)
    assert [e["uri"] for e in first["events"]] == [f"jetbase://{WATCHED_CONN}/"], first
    extra = first["events"][0]["extra"]
    assert extra["from_trigger"] is True, extra
    assert extra["payload"] == {
        "jetbase_conn_id": WATCHED_CONN,
        "version_before": None,
        "version_after": "1",
        "versions_added": ["1"],
        "versions_removed": [],
    }, extra

    project.upgrade().assert_ok()
    second = _one_run_after(deployment, 1)
    assert second["events"][0]["extra"]["payload"] == {
        "jetbase_conn_id": WATCHED_CONN,
        "version_before": "1",
        "version_after": "2",
        "versions_added": ["2"],
        "versions_removed": [],
    }, second
