"""Roll back on demand: a dry run shows the SQL first, then the rollback runs.

Trigger it with params, e.g. ``{"count": 1}`` or ``{"to_version": "1"}`` (everything after
version 1 is rolled back; 1 stays). With neither, one migration is rolled back, as
``jetbase rollback`` does. ``{"dry_run_only": true}`` stops after the preview.

Connection: ``jetbase_rollback_demo``, set up like ``jetbase_demo`` (see
``example_jetbase_migrate_before_etl``); on PostgreSQL give it a schema of its own with the
``postgres_schema`` extra, since Jetbase keeps one version table per schema and every example has its
own migrations folder. Migrations: ``migrations/rollback/`` next to this file; apply them first
(``JetbaseUpgradeOperator`` or ``jetbase upgrade``) or there is nothing to roll back.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param

from airflow_provider_jetbase.operators.jetbase import JetbaseRollbackOperator

CONN_ID = "jetbase_rollback_demo"
MIGRATIONS = "migrations/rollback"

with DAG(
    dag_id="example_jetbase_rollback",
    schedule=None,
    start_date=dt.datetime(2024, 1, 1),
    catchup=False,
    tags=["example", "jetbase"],
    doc_md=__doc__,
    params={
        "count": Param(None, type=["null", "integer"], minimum=1, description="migrations to roll back"),
        "to_version": Param(None, type=["null", "string"], description="roll back everything after this"),
        "dry_run_only": Param(False, type="boolean", description="only show the SQL"),
    },
) as dag:
    preview = JetbaseRollbackOperator(
        task_id="preview_rollback",
        jetbase_conn_id=CONN_ID,
        migrations_dir=MIGRATIONS,
        count="{{ params.count }}",
        to_version="{{ params.to_version }}",
        dry_run=True,
    )
    rollback = JetbaseRollbackOperator(
        task_id="rollback",
        jetbase_conn_id=CONN_ID,
        migrations_dir=MIGRATIONS,
        count="{{ params.count }}",
        to_version="{{ params.to_version }}",
        dry_run="{{ params.dry_run_only }}",
    )
    preview >> rollback


if __name__ == "__main__":
    dag.test()
