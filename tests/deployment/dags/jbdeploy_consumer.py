"""A consumer DAG scheduled on the schema asset of the migrate-before-ETL example's connection.

The scheduler runs it once for each asset event the example's ``migrate`` task emits, that is once
for each run that applied something; its task returns what the triggering events carried.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_jetbase.operators.jetbase import jetbase_asset

SCHEMA = jetbase_asset("jetbase_demo")

with DAG(
    dag_id="jbdeploy_after_schema_change",
    schedule=[SCHEMA],
    start_date=dt.datetime(2024, 1, 1),
    catchup=False,
    tags=["jetbase-deployment-test"],
):

    @task
    def report_schema_change(triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        # Indexed by the asset: the same events are also listed under the operator's alias.
        events = triggering_asset_events[SCHEMA] if triggering_asset_events else []
        return [{"uri": event.asset.uri, "extra": dict(event.extra or {})} for event in events]

    report_schema_change()
