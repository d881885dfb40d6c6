"""Wait until a schema version is live, then use it.

``wait_for_v2`` is a deferrable ``JetbaseVersionSensor``: while it waits it holds no worker slot;
the triggerer checks the version table every ``poke_interval`` seconds (one query each) and the
task resumes when the latest applied migration is version 2 or later. The migrations
(``migrations/wait_for_version/`` next to this file) are applied by someone else: a deployment
pipeline, ``jetbase upgrade``, or another DAG's ``JetbaseUpgradeOperator``. (A sensor waiting for
an upgrade task of its own DAG would be pointless, and under ``dag.test()``, which runs triggers
inline, it would wait forever.)

Connection: ``jetbase_wait_demo``, set up like ``jetbase_demo`` (see
``example_jetbase_migrate_before_etl``); on PostgreSQL give it a schema of its own with the
``postgres_schema`` extra, since Jetbase keeps one version table per schema and every example has its
own migrations folder.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_jetbase.sensors.jetbase import JetbaseVersionSensor

CONN_ID = "jetbase_wait_demo"
# Not applied by this DAG: the folder whose versions the sensor waits for.
MIGRATIONS = "migrations/wait_for_version"

with DAG(
    dag_id="example_jetbase_wait_for_version",
    schedule=None,
    start_date=dt.datetime(2024, 1, 1),
    catchup=False,
    tags=["example", "jetbase"],
    doc_md=__doc__,
) as dag:
    wait_for_v2 = JetbaseVersionSensor(
        task_id="wait_for_v2",
        jetbase_conn_id=CONN_ID,
        target_version="2",
        deferrable=True,
        poke_interval=2,
        timeout=600,  # then the task fails (or is skipped with soft_fail=True)
    )

    @task
    def count_events() -> dict[str, Any]:
        """Needs the event_counts table of version 2."""
        from sqlalchemy import text

        from airflow_provider_jetbase.hooks.jetbase import JetbaseHook

        engine = JetbaseHook(jetbase_conn_id=CONN_ID).get_sqlalchemy_engine()
        try:
            with engine.connect() as conn:
                rows = conn.execute(text("SELECT COUNT(*) FROM event_counts")).scalar_one()
        finally:
            engine.dispose()
        return {"event_counts_rows": int(rows)}

    wait_for_v2 >> count_events()


if __name__ == "__main__":
    dag.test()
