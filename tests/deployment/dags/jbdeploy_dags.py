"""The DAGs of the deployment tier (tests/deployment/): copied into the deployment's dags folder.

The connection and the migrations folder come from the run's conf (``params``), so one DAG serves
every target database. ``conn_var`` names an Airflow Variable holding the connection id instead:
a test switches it through the API before clearing a task, and the rerun uses the new connection.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param

from airflow_provider_jetbase.operators.jetbase import JetbaseUpgradeOperator
from airflow_provider_jetbase.sensors.jetbase import JetbaseVersionSensor

CONN_ID = "{{ var.value.get(params.conn_var) if params.conn_var else params.conn_id }}"
PARAMS = {
    "conn_id": Param("jbd_upgrade", type="string"),
    "conn_var": Param("", type="string"),
    "migrations": Param("basic", type="string"),
}

for dag_id, timeout in (("jbdeploy_upgrade", None), ("jbdeploy_timeout", dt.timedelta(seconds=10))):
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=dt.datetime(2024, 1, 1),
        catchup=False,
        params=PARAMS,
        max_active_runs=4,
        default_args={"retries": 0},
        tags=["jetbase-deployment-test"],
    ):
        JetbaseUpgradeOperator(
            task_id="migrate",
            jetbase_conn_id=CONN_ID,
            migrations_dir="migrations/{{ params.migrations }}",
            execution_timeout=timeout,
        )


# The version sensor deferred to the real triggerer; the short one times out there.
for dag_id, wait_s in (("jbdeploy_wait", 300.0), ("jbdeploy_wait_short", 10.0)):
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=dt.datetime(2024, 1, 1),
        catchup=False,
        params={"conn_id": Param("jbd_sensor", type="string"), "target": Param("2", type="string")},
        default_args={"retries": 0},
        tags=["jetbase-deployment-test"],
    ):
        JetbaseVersionSensor(
            task_id="wait",
            jetbase_conn_id="{{ params.conn_id }}",
            target_version="{{ params.target }}",
            deferrable=True,
            poke_interval=2,
            timeout=wait_s,
        )
