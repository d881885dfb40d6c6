"""The deferrable version sensor in the real triggerer (dag.test() runs triggers inline and ignores
their timeouts): it waits there until an upgrade reaches the version, and fails at its timeout."""

from __future__ import annotations

import pytest

from tests.deployment.deployment import Deployment

pytestmark = pytest.mark.deployment

TASK = "wait"


def test_deferred_sensor_waits_in_the_triggerer_until_an_upgrade_reaches_the_version(
    deployment: Deployment,
) -> None:
    slot = deployment.slots["sensor"]
    wait_run = deployment.trigger("jbdeploy_wait", {"conn_id": slot.conn_id, "target": "2"})
    deployment.wait_ti("jbdeploy_wait", wait_run, TASK, ("deferred",), timeout=180)
    upgrade = deployment.trigger("jbdeploy_upgrade", {"conn_id": slot.conn_id, "migrations": "basic"})
    assert deployment.wait_run("jbdeploy_upgrade", upgrade)["state"] == "success"
    run = deployment.wait_run("jbdeploy_wait", wait_run)
    assert run["state"] == "success", deployment.task_log("jbdeploy_wait", wait_run, TASK, 1)
    result = deployment.xcom("jbdeploy_wait", wait_run, TASK)
    # The trigger may see V2 committed before V3 is.
    assert result["target_version"] == "2" and result["current_version"] in ("2", "3"), result


def test_deferred_sensor_fails_at_its_timeout_in_the_real_triggerer(deployment: Deployment) -> None:
    slot = deployment.slots["sensor_timeout"]
    run_id = deployment.trigger("jbdeploy_wait_short", {"conn_id": slot.conn_id, "target": "99"})
    deployment.wait_ti("jbdeploy_wait_short", run_id, TASK, ("deferred",), timeout=180)
    ti = deployment.wait_ti("jbdeploy_wait_short", run_id, TASK, ("success", "failed"), timeout=180)
    log = deployment.task_log("jbdeploy_wait_short", run_id, TASK, 1)
    assert ti["state"] == "failed", log
    assert "Timeout" in log, log
