"""A reviewed release: plan, a person approves, apply exactly what was approved.

1. ``plan``: a dry run; its XCom holds the plan (files, exact statements, lint findings), its
   Markdown and its ``plan_hash``.
2. ``approve``: an ``ApprovalOperator`` (Airflow's human-in-the-loop) whose body is that Markdown,
   assigned to the release manager, answered from the UI's "Required actions" page or through the
   REST API. Without an answer within a day it rejects. Rejecting skips the apply.
3. ``apply``: the upgrade with the approved plan as ``plan_hash``: under the lock it recomputes the
   plan and, if anything changed since the review (a file added, changed or removed, the database
   moved), fails before running any statement and says what changed.
4. ``rollback_target`` / ``rollback``: when the apply failed after committing some files, roll back
   to the version recorded in the plan (``version_before``). It is skipped when nothing was
   committed (e.g. the plan changed), when the plan started from an empty database (nothing to go
   back *to*: the files that committed are in the apply's ``jetbase_error`` XCom, roll them back by
   hand after a look), or with ``{"rollback_on_failure": false}``.
5. ``outcome``: fails the run when the apply failed, so a rolled-back release is not green.

Connection: ``jetbase_reviewed_demo``, set up like ``jetbase_demo`` (see
``example_jetbase_migrate_before_etl``; on PostgreSQL a schema of its own with the
``postgres_schema`` extra). Migrations: ``migrations/reviewed_release/`` next to this file.
``ASSIGNED_USERS`` holds the reviewer's user id in your auth manager (with the simple auth manager's
``simple_auth_manager_all_admins``, everyone may answer).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.providers.common.compat.sdk import AirflowSkipException
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import DAG, Param, task

from airflow_provider_jetbase.operators.jetbase import JetbaseRollbackOperator, JetbaseUpgradeOperator

CONN_ID = "jetbase_reviewed_demo"
MIGRATIONS = "migrations/reviewed_release"
ASSIGNED_USERS = [{"id": "release-manager", "name": "Release manager"}]
PLAN = "ti.xcom_pull(task_ids='plan')"

with DAG(
    dag_id="example_jetbase_reviewed_release",
    schedule=None,
    start_date=dt.datetime(2024, 1, 1),
    catchup=False,
    tags=["example", "jetbase"],
    doc_md=__doc__,
    params={
        "rollback_on_failure": Param(True, type="boolean", description="roll back a failed apply"),
    },
) as dag:
    plan = JetbaseUpgradeOperator(
        task_id="plan", jetbase_conn_id=CONN_ID, migrations_dir=MIGRATIONS, dry_run=True
    )
    approve = ApprovalOperator(
        task_id="approve",
        subject="Apply the Jetbase plan to " + CONN_ID + "?",
        body="{{ " + PLAN + "['plan_markdown'] }}",
        assigned_users=ASSIGNED_USERS,
        response_timeout=dt.timedelta(days=1),
        # No answer in time is a "no": an unreviewed plan never runs.
        defaults=[ApprovalOperator.REJECT],
    )
    apply = JetbaseUpgradeOperator(
        task_id="apply",
        jetbase_conn_id=CONN_ID,
        migrations_dir=MIGRATIONS,
        # The whole plan rather than only its hash: a mismatch then names what changed.
        plan_hash="{{ " + PLAN + "['plan'] }}",
    )

    @task(trigger_rule="one_failed")
    def rollback_target(**context: Any) -> str:
        """The version to roll back to, or a skip (with the reason in the log)."""
        ti = context["ti"]
        if not context["params"]["rollback_on_failure"]:
            raise AirflowSkipException("rollback_on_failure is off")
        error = ti.xcom_pull(task_ids="apply", key="jetbase_error") or {}
        if not error.get("versions_applied"):
            raise AirflowSkipException("the apply committed nothing: nothing to roll back")
        before = ti.xcom_pull(task_ids="plan")["plan"]["version_before"]
        if before is None:
            raise AirflowSkipException(
                f"the plan started from an empty database; committed: {error['versions_applied']}"
            )
        return str(before)

    target = rollback_target()
    rollback = JetbaseRollbackOperator(
        task_id="rollback",
        jetbase_conn_id=CONN_ID,
        migrations_dir=MIGRATIONS,
        to_version="{{ ti.xcom_pull(task_ids='rollback_target') }}",
    )

    @task(trigger_rule="all_done")
    def outcome(**context: Any) -> dict[str, bool]:
        """The run's verdict: a leaf, so a failed plan or apply fails the run even after a rollback."""
        ti = context["ti"]
        if ti.xcom_pull(task_ids="plan") is None:
            raise RuntimeError("the plan failed: see its log")
        if ti.xcom_pull(task_ids="apply", key="jetbase_error") is not None:
            raise RuntimeError("the apply failed: see its log (and the rollback's, if it ran)")
        return {"applied": ti.xcom_pull(task_ids="apply") is not None}

    plan >> approve >> apply >> target >> rollback >> outcome()


if __name__ == "__main__":
    dag.test()
