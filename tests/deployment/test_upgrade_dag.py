"""An upgrade DAG end to end on the real deployment: triggered through the REST API, run by a Celery
worker, its XCom read back through the API, the rows checked in the target database."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from tests.deployment.deployment import Deployment

pytestmark = pytest.mark.deployment


def test_upgrade_dag_applies_every_migration_and_returns_the_versions(deployment: Deployment) -> None:
    slot = deployment.slots["upgrade"]
    run_id = deployment.trigger("jbdeploy_upgrade", {"conn_id": slot.conn_id, "migrations": "basic"})
    run = deployment.wait_run("jbdeploy_upgrade", run_id)
    assert run["state"] == "success", deployment.task_log("jbdeploy_upgrade", run_id, "migrate", 1)
    result = deployment.xcom("jbdeploy_upgrade", run_id, "migrate")
    assert result["versions_applied"] == ["1", "2", "3"]
    assert (result["version_before"], result["version_after"]) == (None, "3")
    engine = create_engine(slot.url)
    try:
        with engine.connect() as conn:
            versions = [r[0] for r in conn.execute(text("SELECT version FROM jetbase_migrations ORDER BY 1"))]
            seeded = conn.execute(text("SELECT name FROM customers WHERE id = 1")).scalar_one()
            locked = conn.execute(text("SELECT is_locked FROM jetbase_lock WHERE id = 1")).scalar_one()
    finally:
        engine.dispose()
    assert versions == ["1", "2", "3"]
    assert seeded == "Ada"
    assert not locked
