"""A fleet: the same migrations on many databases (one per tenant, region or environment) in one DAG.

``list_targets`` returns the connection ids to migrate: the JSON list in the Variable
``jetbase_fleet`` if there is one, else every ``AIRFLOW_CONN_*`` connection of the worker whose id
matches ``jetbase_fleet_*`` (``matching_connection_ids``). ``migrate`` is one
``JetbaseUpgradeOperator`` mapped over them (dynamic task mapping): each mapped task migrates one
database under that database's own Jetbase lock, at most ``max_active_tis_per_dagrun`` at a time,
and a database that fails fails only its own mapped task. ``summary`` runs after all of them and
reduces their XComs into one table (database, version before and after, applied, duration,
error); it fails the run, after pushing the table, when a database failed.

Every mapped task that applied something emits its own ``jetbase://<conn_id>`` asset event, so
``example_jetbase_fleet_eu_changed``, scheduled on ``jetbase_asset(CONN_ID)``, runs when that one
database changed and not when another did.

``example_jetbase_fleet_eu_watch`` is scheduled on an asset whose ``AssetWatcher`` runs
``JetbaseVersionChangeTrigger`` in the triggerer: it runs on any change of the database's versions,
also one made outside Airflow (``jetbase upgrade`` by hand or in CI).

Connections: ``jetbase_fleet_eu`` and ``jetbase_fleet_us`` (docker-compose.airflow.yml), each a
database or PostgreSQL schema of its own (Jetbase keeps one version table per schema).
Migrations: ``migrations/fleet/`` next to this file.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import DAG, Asset, AssetWatcher, Variable, task

from airflow_provider_jetbase.operators.fleet import JetbaseFleetSummaryOperator
from airflow_provider_jetbase.operators.jetbase import (
    JetbaseUpgradeOperator,
    jetbase_asset,
    jetbase_asset_uri,
)
from airflow_provider_jetbase.triggers.jetbase import JetbaseVersionChangeTrigger

CONN_ID = "jetbase_fleet_eu"  # one database of the fleet: the consumers below follow it
FLEET_PATTERN = "jetbase_fleet_*"
FLEET_VARIABLE = "jetbase_fleet"
MIGRATIONS = "migrations/fleet"
START = dt.datetime(2024, 1, 1)


@task
def list_targets() -> list[str]:
    """The Variable's list if set (connections in the metadata database or a secrets backend, which
    a task cannot list), else the worker's ``AIRFLOW_CONN_*`` connections matching the pattern."""
    from airflow_provider_jetbase.fleet import matching_connection_ids

    listed = Variable.get(FLEET_VARIABLE, default=None, deserialize_json=True)
    return [str(conn_id) for conn_id in listed] if listed else matching_connection_ids(FLEET_PATTERN)


with DAG(
    dag_id="example_jetbase_fleet",
    schedule=None,
    start_date=START,
    catchup=False,
    tags=["example", "jetbase"],
    doc_md=__doc__,
) as dag:
    # --8<-- [start:fleet]
    targets = list_targets()
    migrate = JetbaseUpgradeOperator.partial(
        task_id="migrate",
        migrations_dir=MIGRATIONS,
        max_active_tis_per_dagrun=4,  # or pool="jetbase_fleet" to bound it across DAGs
    ).expand(jetbase_conn_id=targets)
    summary = JetbaseFleetSummaryOperator(
        task_id="summary",
        upgrade_task_id="migrate",
        jetbase_conn_ids=targets,  # the same list: map index i migrated targets[i]
    )
    migrate >> summary
    # --8<-- [end:fleet]


@task
def report_change(**context: Any) -> list[dict[str, Any]]:
    """The schema changes that started this run (an alias's entry repeats its asset's: skipped)."""
    return [
        {"uri": asset.uri, "extra": dict(event.extra or {})}
        for asset, events in context["triggering_asset_events"].items()
        if hasattr(asset, "uri")
        for event in events
    ]


# --8<-- [start:consumer]
with DAG(
    dag_id="example_jetbase_fleet_eu_changed",
    schedule=[jetbase_asset(CONN_ID)],  # only the fleet's changes of this one database
    start_date=START,
    catchup=False,
    tags=["example", "jetbase"],
):
    report_change()
# --8<-- [end:consumer]

# --8<-- [start:watcher]
watched = Asset(
    name=f"jetbase-watch:{CONN_ID}",
    uri=jetbase_asset_uri(CONN_ID) + "/watched",
    watchers=[
        AssetWatcher(
            name=f"jetbase-versions-{CONN_ID}",
            trigger=JetbaseVersionChangeTrigger(jetbase_conn_id=CONN_ID, poke_interval=60),
        )
    ],
)
with DAG(
    dag_id="example_jetbase_fleet_eu_watch",
    schedule=[watched],  # any change of the versions, by Airflow, the CLI or CI
    start_date=START,
    catchup=False,
    tags=["example", "jetbase"],
):
    report_change()
# --8<-- [end:watcher]


if __name__ == "__main__":
    dag.test()
