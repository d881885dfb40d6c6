"""The reviewed-release example end to end on the real deployment: the approval is answered through
Airflow's REST API, as a reviewer does from the UI's "Required actions" page.

Every test starts from an empty database (the slot's public schema is dropped and re-created).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.deployment.deployment import Deployment, Slot, _q
from tests.deployment.test_example_dags import cli_project, example_slot, run_sql, versions

pytestmark = pytest.mark.deployment

DAG_ID = "example_jetbase_reviewed_release"
TASKS = ("plan", "approve", "apply", "rollback_target", "rollback", "outcome")
PLANNED = ["1", "2", "3"]
# A task waiting for its answer: awaiting_input from Airflow 3.3, deferred before.
PARKED = ("awaiting_input", "deferred")


def empty_slot(deployment: Deployment) -> Slot:
    """The example's database, emptied (its public schema dropped and re-created)."""
    slot = example_slot(deployment, "jetbase_reviewed_demo")
    run_sql(slot, "DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    return slot


@pytest.fixture
def slot(deployment: Deployment) -> Slot:
    return empty_slot(deployment)


def tables(slot: Slot) -> list[str]:
    rows = run_sql(
        slot,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        " AND table_name IN ('customers', 'orders') ORDER BY table_name",
    )
    return [r[0] for r in rows]


def pending_approval(deployment: Deployment, run_id: str) -> dict[str, Any]:
    """Wait for the run's approval request, as the reviewer's inbox lists it (not yet answered)."""

    def probe() -> dict[str, Any] | None:
        path = f"/dags/{DAG_ID}/dagRuns/{_q(run_id)}/hitlDetails?response_received=false"
        found = deployment.api("GET", path)
        details: list[dict[str, Any]] = found["hitl_details"]
        # The request is written just before the task parks: answer once it waits, as the UI lists it.
        return next((d for d in details if d["task_instance"]["state"] in PARKED), None)

    detail: dict[str, Any] = deployment.wait_for(probe, 180, f"the approval request of {run_id}")
    return detail


def answer(deployment: Deployment, run_id: str, option: str) -> dict[str, Any]:
    response: dict[str, Any] = deployment.api(
        "PATCH",
        f"/dags/{DAG_ID}/dagRuns/{_q(run_id)}/taskInstances/approve/-1/hitlDetails",
        {"chosen_options": [option], "params_input": {}},
    )
    return response


def states(deployment: Deployment, run_id: str) -> dict[str, str | None]:
    return {t: deployment.task_instance(DAG_ID, run_id, t)["state"] for t in TASKS}


def review(deployment: Deployment, run_id: str) -> dict[str, Any]:
    """What the reviewer sees: the plan's Markdown (with the lint findings), assigned, with a timeout."""
    detail = pending_approval(deployment, run_id)
    plan = deployment.xcom(DAG_ID, run_id, "plan")
    assert detail["options"] == ["Approve", "Reject"], detail
    assert detail["defaults"] == ["Reject"], detail
    assert [u["id"] for u in detail["assigned_users"]] == ["release-manager"], detail
    assert detail["body"] == plan["plan_markdown"], detail
    for step in plan["plan"]["steps"]:
        assert step["filename"] in detail["body"]
    assert "update-without-where" in detail["body"]  # the accepted lint finding is shown
    assert "UPDATE customers SET tier = 'standard'" in detail["body"]
    return plan


def test_approve_applies_exactly_the_plan(deployment: Deployment, slot: Slot) -> None:
    run_id = deployment.trigger(DAG_ID, {})
    plan = review(deployment, run_id)
    assert plan["plan"]["version_before"] is None
    assert [s["version"] for s in plan["plan"]["steps"]] == PLANNED
    assert versions(slot) == []  # the plan ran nothing

    response = answer(deployment, run_id, "Approve")
    assert response["chosen_options"] == ["Approve"], response
    run = deployment.wait_run(DAG_ID, run_id)
    assert run["state"] == "success", states(deployment, run_id)
    assert states(deployment, run_id) == {
        "plan": "success",
        "approve": "success",
        "apply": "success",
        "rollback_target": "skipped",
        "rollback": "skipped",
        "outcome": "success",
    }
    applied = deployment.xcom(DAG_ID, run_id, "apply")
    assert applied["plan_hash"] == plan["plan_hash"]
    assert applied["versions_applied"] == PLANNED
    assert [a["checksum"] for a in applied["applied"]] == [s["checksum"] for s in plan["plan"]["steps"]]
    assert versions(slot) == PLANNED
    assert tables(slot) == ["customers", "orders"]
    assert deployment.xcom(DAG_ID, run_id, "outcome") == {"applied": True}


def test_a_file_changed_after_the_review_fails_the_apply_before_any_statement(
    deployment: Deployment, slot: Slot
) -> None:
    # The deployed copy the workers read; the DAG file itself is untouched, so a re-parse changes nothing.
    folder = deployment.home / "dags" / "examples" / "migrations" / "reviewed_release"
    changed = folder / "V2__create_orders.sql"
    original = changed.read_text()
    run_id = deployment.trigger(DAG_ID, {})
    review(deployment, run_id)
    try:
        changed.write_text(original.replace("total_cents INTEGER NOT NULL", "total_cents BIGINT NOT NULL"))
        answer(deployment, run_id, "Approve")
        run = deployment.wait_run(DAG_ID, run_id)
    finally:
        changed.write_text(original)
    got = states(deployment, run_id)
    assert run["state"] == "failed", got
    assert (got["apply"], got["rollback_target"], got["rollback"], got["outcome"]) == (
        "failed",
        "skipped",
        "skipped",
        "failed",
    ), got
    log = deployment.task_log(DAG_ID, run_id, "apply", 1)
    assert "PlanMismatchError" in log and "nothing was run" in log, log
    assert "V2__create_orders.sql" in log, log
    assert deployment.xcom(DAG_ID, run_id, "apply", key="jetbase_error")["versions_applied"] == []
    assert versions(slot) == []
    assert tables(slot) == []


def test_an_apply_that_fails_half_way_is_rolled_back_to_the_version_of_the_plan(
    deployment: Deployment, slot: Slot, tmp_path: Path
) -> None:
    cli_project(tmp_path, slot, "reviewed_release").upgrade(to_version="1").assert_ok()
    # A hand-made column the plan cannot see: V2 commits, then V3's ADD COLUMN fails.
    run_sql(slot, "ALTER TABLE customers ADD COLUMN tier VARCHAR(20)")
    run_id = deployment.trigger(DAG_ID, {})
    plan = review(deployment, run_id)
    assert plan["plan"]["version_before"] == "1"
    assert [s["version"] for s in plan["plan"]["steps"]] == ["2", "3"]
    answer(deployment, run_id, "Approve")
    run = deployment.wait_run(DAG_ID, run_id)
    got = states(deployment, run_id)
    assert run["state"] == "failed", got
    assert (got["apply"], got["rollback_target"], got["rollback"], got["outcome"]) == (
        "failed",
        "success",
        "success",
        "failed",
    ), got
    assert deployment.xcom(DAG_ID, run_id, "apply", key="jetbase_error")["versions_applied"] == ["2"]
    assert deployment.xcom(DAG_ID, run_id, "rollback")["versions_rolled_back"] == ["2"]
    assert versions(slot) == ["1"]
    assert tables(slot) == ["customers"]
