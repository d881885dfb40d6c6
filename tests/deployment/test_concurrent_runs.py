"""Two DAG runs upgrading one database at once, on the two Celery workers (each runs one task at a
time, so two task instances running together are on two workers): each migration runs once."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.deployment.deployment import Deployment
from tests.deployment.long_migration import target_state

pytestmark = pytest.mark.deployment

DAG = "jbdeploy_upgrade"


def test_two_runs_on_two_workers_upgrading_one_database_apply_each_migration_once(
    deployment: Deployment,
) -> None:
    slot = deployment.slots["concurrent"]
    # V2 sleeps a few seconds, so the second task starts while the first holds the lock.
    conf = {"conn_id": slot.short_sleep_conn_id, "migrations": slot.long_migrations}
    runs = [deployment.trigger(DAG, conf) for _ in range(2)]
    for run_id in runs:
        assert deployment.wait_run(DAG, run_id)["state"] == "success", deployment.task_log(
            DAG, run_id, "migrate", 1
        )
    tis = [deployment.task_instance(DAG, run_id, "migrate") for run_id in runs]
    start = [dt.datetime.fromisoformat(ti["start_date"]) for ti in tis]
    end = [dt.datetime.fromisoformat(ti["end_date"]) for ti in tis]
    assert start[0] < end[1] and start[1] < end[0], f"the two tasks did not run at once: {tis}"
    applied = [deployment.xcom(DAG, run_id, "migrate")["versions_applied"] for run_id in runs]
    assert sorted(applied) == [[], ["1", "2"]], applied
    state = target_state(slot)
    assert state["versions"] == ["1", "2"] and not state["locked"], state
