"""The fleet DAGs of the deployment tier (test_fleet.py, test_version_watcher.py).

- ``jbdeploy_fleet``: lists the connections ``jbd_fleet_NN`` of the worker's environment, upgrades
  each in its own mapped task (two at a time), and reduces the mapped XComs into one summary;
  ``jbdeploy_fleet_serial`` is the same, one database at a time.
- ``jbdeploy_fleet_on_changed`` / ``jbdeploy_fleet_on_current``: scheduled on the schema asset of
  one database the fleet run changes, and of one that is already up to date.
- ``jbdeploy_watch_consumer``: scheduled on an asset whose watcher is the version-change trigger,
  so it runs when anything (here the jetbase CLI) changes the versions of ``jbd_watch``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import DAG, Asset, AssetWatcher, task

from airflow_provider_jetbase.operators.fleet import JetbaseFleetSummaryOperator
from airflow_provider_jetbase.operators.jetbase import (
    JetbaseUpgradeOperator,
    jetbase_asset,
    jetbase_asset_uri,
)
from airflow_provider_jetbase.triggers.jetbase import JetbaseVersionChangeTrigger

FLEET_PATTERN = "jbd_fleet_[0-9][0-9]"
CHANGED_CONN = "jbd_fleet_01"
CURRENT_CONN = "jbd_fleet_00"
WATCHED_CONN = "jbd_watch"
WATCH_POKE_S = 1.0


def _dag(dag_id: str, schedule: Any, **kwargs: Any) -> DAG:
    return DAG(
        dag_id=dag_id,
        schedule=schedule,
        start_date=dt.datetime(2024, 1, 1),
        catchup=False,
        tags=["jetbase-deployment-test"],
        **kwargs,
    )


@task
def list_targets() -> list[str]:
    from airflow_provider_jetbase.fleet import matching_connection_ids

    return matching_connection_ids(FLEET_PATTERN)


@task
def record_triggering_events(**context: Any) -> list[dict[str, Any]]:
    """What started this run: each triggering asset event's URI and extra (an event emitted through
    an alias is listed under the alias too: only the assets' entries are kept)."""
    events = context["triggering_asset_events"]
    return [
        {"uri": asset.uri, "extra": dict(event.extra or {})}
        for asset, asset_events in events.items()
        if hasattr(asset, "uri")
        for event in asset_events
    ]


# The same fleet two databases at a time (two workers), and one at a time (the bound, not the
# number of workers, decides).
for dag_id, at_once in (("jbdeploy_fleet", 2), ("jbdeploy_fleet_serial", 1)):
    with _dag(dag_id, None, default_args={"retries": 0}):
        targets = list_targets()
        migrate = JetbaseUpgradeOperator.partial(
            task_id="migrate", migrations_dir="migrations/fleet", max_active_tis_per_dagrun=at_once
        ).expand(jetbase_conn_id=targets)
        summary = JetbaseFleetSummaryOperator(
            task_id="summary", upgrade_task_id="migrate", jetbase_conn_ids=targets
        )
        migrate >> summary


CONSUMERS = {"jbdeploy_fleet_on_changed": CHANGED_CONN, "jbdeploy_fleet_on_current": CURRENT_CONN}
for dag_id, conn_id in CONSUMERS.items():
    with _dag(dag_id, [jetbase_asset(conn_id)]):
        record_triggering_events()


watched = Asset(
    uri=jetbase_asset_uri(WATCHED_CONN),
    watchers=[
        AssetWatcher(
            name="jbd_watch_versions",
            trigger=JetbaseVersionChangeTrigger(jetbase_conn_id=WATCHED_CONN, poke_interval=WATCH_POKE_S),
        )
    ],
)
with _dag("jbdeploy_watch_consumer", [watched]):
    record_triggering_events()
