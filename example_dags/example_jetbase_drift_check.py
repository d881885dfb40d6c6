"""Nightly drift check: does the database still match its migrations?

``check_drift`` never changes the database. It reports applied files that were edited or deleted,
files that arrived out of order, pending migrations, a lock left behind, and any schema change made
by hand (a column added in a console, an index dropped, a table created outside the migrations).
On PostgreSQL, MySQL/MariaDB and SQLite the expected schema is built by replaying the applied
migrations into a scratch database that is dropped afterwards; elsewhere the check compares with
the snapshot the upgrade operator stored after the last upgrade. The report is logged as a table
and returned to XCom (also under the key ``drift_report``).

By default, schema drift, an edited applied file (``checksum_mismatch``) and a deleted applied
file (``missing_file``) fail the task; everything else is a warning or information. The failure
runs ``alert_on_drift`` (``on_failure_callback``): replace its body with your Slack, e-mail or
PagerDuty call. A check that could not run (for example a user without the right to create the
scratch database) fails the task too, with its own alert text: it is not drift, and never reads as
"0 failing findings". ``retries=0``: a retry would find the same drift.

Unpausing the DAG starts the most recent 03:00 run at once (``catchup=False`` skips only the older
ones): make sure the connection and its privileges are ready first.

Connection: ``jetbase_drift_demo``. For the embedded demo it is a SQLite file, e.g.
``AIRFLOW_CONN_JETBASE_DRIFT_DEMO='{"conn_type": "sqlite", "host": "/abs/path/drift_demo.db"}'``;
any supported database works the same. Migrations: ``migrations/drift_check/`` next to this file.

Run it without a scheduler: ``python example_jetbase_drift_check.py`` (``dag.test()``).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from airflow.sdk import DAG

from airflow_provider_jetbase.operators.drift import JetbaseDriftCheckOperator

CONN_ID = "jetbase_drift_demo"
log = logging.getLogger("airflow.task")


def alert_on_drift(context: dict[str, Any]) -> None:
    """Called when ``check_drift`` fails: send the summary wherever your team looks.

    Two different alerts: drift (the database no longer matches its migrations), and a check that
    could not run at all (no right to create the scratch database, server unreachable, ...), which
    says nothing about drift and must never read as "0 failing findings"."""
    ti = context["ti"]
    report = ti.xcom_pull(task_ids=ti.task_id, key="drift_report") or {}
    where = f"{CONN_ID} ({ti.dag_id}, run {ti.run_id})"
    if report.get("status") != "drift":
        cause = report.get("error") or context.get("exception") or "unknown cause"
        message = f"JETBASE DRIFT CHECK COULD NOT RUN for {where}: {cause}"
    else:
        failing = [f for f in report.get("findings", []) if f.get("severity") == "error"]
        lines = [f"- {f['kind']}: {f.get('object') or '-'}: {f['message']}" for f in failing]
        message = f"JETBASE DRIFT ALERT for {where}: {len(failing)} failing finding(s)\n" + "\n".join(lines)
    # e.g. SlackWebhookHook(slack_webhook_conn_id="slack_alerts").send(text=message)
    log.error(message)


with DAG(
    dag_id="example_jetbase_drift_check",
    schedule="0 3 * * *",  # nightly, 03:00
    start_date=dt.datetime(2024, 1, 1),
    catchup=False,
    tags=["example", "jetbase", "drift"],
    doc_md=__doc__,
    params={"pending_is_drift": False},
) as dag:
    JetbaseDriftCheckOperator(
        task_id="check_drift",
        jetbase_conn_id=CONN_ID,
        migrations_dir="migrations/drift_check",
        fail_on=("schema", "checksum_mismatch", "missing_file"),
        pending_is_drift="{{ params.pending_is_drift }}",
        stale_lock_after=3600,
        retries=0,
        on_failure_callback=alert_on_drift,
    )


if __name__ == "__main__":
    dag.test()
