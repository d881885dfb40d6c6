"""Kill and timeout of a migration whose statement runs for minutes, on the real deployment.

The long migration (``dags/migrations/long_*/V2__long.sql``) sleeps only when its connection says so
(``jbtest.sleep`` through libpq ``options``, ``@jbtest_sleep`` through MySQL's ``init_command``):
the file, so its checksum, is the same for the killed run and for the rerun, only the connection
differs. A kill is what a user does: set the running task instance to failed through the API; its
supervisor on the Celery worker notices at its next heartbeat and SIGTERMs the task.
"""

from __future__ import annotations

import pytest

from tests.deployment.deployment import LONG_SLEEP_S, Deployment, Slot
from tests.deployment.long_migration import running_sleeps, target_state

pytestmark = pytest.mark.deployment

DAG = "jbdeploy_upgrade"
TASK = "migrate"
SLEEP_SEEN_TIMEOUT_S = 180.0
GONE_TIMEOUT_S = 60.0


def wait_sleeping(deployment: Deployment, slot: Slot, dag_id: str, run_id: str) -> None:
    def sleeping() -> bool:
        ti = deployment.task_instance(dag_id, run_id, TASK)
        assert ti["state"] not in ("success", "failed", "up_for_retry"), ti
        return running_sleeps(slot) > 0

    deployment.wait_for(sleeping, SLEEP_SEEN_TIMEOUT_S, f"the long migration to sleep on {slot.name}")


def assert_stopped_cleanly(deployment: Deployment, slot: Slot) -> None:
    """The sleeping statement is gone from the server, the lock free, nothing of V2 committed."""
    deployment.wait_for(lambda: running_sleeps(slot) == 0, GONE_TIMEOUT_S, "the sleeping backend to go")
    # The lock row is released by the task as it stops: bounded wait, as the task may still be
    # rolling back when the API already shows it failed.
    state = deployment.wait_for(
        lambda: s if not (s := target_state(slot))["locked"] else None, GONE_TIMEOUT_S, "the lock to be free"
    )
    assert state["versions"] == ["1"] and not state["v2_written"], state


@pytest.mark.parametrize("slot_name", ["kill_psycopg2", "kill_psycopg", "kill_mysql"])
def test_failing_a_running_task_through_the_api_cancels_the_statement_and_the_cleared_task_applies_it(
    deployment: Deployment, slot_name: str
) -> None:
    slot = deployment.slots[slot_name]
    variable = f"jbd_conn_{slot.name}"
    deployment.set_variable(variable, slot.sleep_conn_id)
    run_id = deployment.trigger(DAG, {"conn_var": variable, "migrations": slot.long_migrations})
    wait_sleeping(deployment, slot, DAG, run_id)

    deployment.api("PATCH", f"/dags/{DAG}/dagRuns/{run_id}/taskInstances/{TASK}", {"new_state": "failed"})
    assert_stopped_cleanly(deployment, slot)
    log = deployment.task_log(DAG, run_id, TASK, 1)
    assert "Cancelling the migration" in log, log

    # The rerun: same files, the connection that does not sleep, through a cleared task.
    deployment.set_variable(variable, slot.conn_id)
    deployment.api(
        "POST",
        f"/dags/{DAG}/clearTaskInstances",
        {"dry_run": False, "dag_run_id": run_id, "task_ids": [TASK], "only_failed": True},
    )
    ti = deployment.wait_ti(DAG, run_id, TASK, ("success", "failed"))
    assert (ti["state"], ti["try_number"]) == ("success", 2), deployment.task_log(DAG, run_id, TASK, 2)
    assert deployment.xcom(DAG, run_id, TASK)["versions_applied"] == ["2"]
    state = target_state(slot)
    assert state["versions"] == ["1", "2"] and not state["locked"], state


@pytest.mark.parametrize("slot_name", ["timeout_psycopg2", "timeout_psycopg", "timeout_mysql"])
def test_execution_timeout_cancels_the_long_statement_and_frees_the_lock(
    deployment: Deployment, slot_name: str
) -> None:
    slot = deployment.slots[slot_name]
    dag_id = "jbdeploy_timeout"
    run_id = deployment.trigger(dag_id, {"conn_id": slot.sleep_conn_id, "migrations": slot.long_migrations})
    wait_sleeping(deployment, slot, dag_id, run_id)
    ti = deployment.wait_ti(dag_id, run_id, TASK, ("failed", "up_for_retry"))
    # execution_timeout is 10 s; the statement would sleep LONG_SLEEP_S.
    assert ti["duration"] < LONG_SLEEP_S / 4, ti
    assert_stopped_cleanly(deployment, slot)
    log = deployment.task_log(dag_id, run_id, TASK, 1)
    assert "AirflowTaskTimeout" in log, log
    assert "the migration stopped" in log and "cancelled" in log, log
