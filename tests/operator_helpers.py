"""Helpers shared by the operator, sensor and trigger tests: migration folders, task contexts and
reads of the real target database."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import URL

CONN_ID = "jb_test"
UseConn = Callable[..., None]  # the tests' fixture that points CONN_ID at a database

# Three small versioned migrations that work on SQLite, PostgreSQL and MariaDB.
THREE_MIGRATIONS = {
    f"V{n}__create_{t}.sql": (
        f"CREATE TABLE table_{t} (id INTEGER PRIMARY KEY);\n\n-- rollback\nDROP TABLE table_{t};\n"
    )
    for n, t in ((1, "a"), (2, "b"), (3, "c"))
}


def write_migrations(folder: Path, files: dict[str, str] = THREE_MIGRATIONS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in files.items():
        (folder / name).write_text(body)
    return folder


def applied_versions(url: URL) -> list[str]:
    """VERSIONED rows of jetbase_migrations in execution order ([] when the table is missing)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("jetbase_migrations"):
                return []
            rows = conn.execute(
                text(
                    "SELECT version FROM jetbase_migrations WHERE migration_type = 'VERSIONED' "
                    "ORDER BY order_executed"
                )
            )
            return [row[0] for row in rows]
    finally:
        engine.dispose()


def table_names(url: URL) -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {name.lower() for name in inspect(conn).get_table_names()}
    finally:
        engine.dispose()


def make_dag(dag_id: str, fileloc: Path | None = None, params: dict[str, Any] | None = None) -> Any:
    from airflow.sdk import DAG

    dag = DAG(dag_id, schedule=None, start_date=dt.datetime(2024, 1, 1), params=params or {})
    if fileloc is not None:
        dag.fileloc = str(fileloc)
    return dag


def task_context(task: Any, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """What execute() reads from Airflow's context, with a real outlet-events accessor."""
    from airflow.sdk.execution_time.context import OutletEventAccessors

    return {
        "dag": task.dag,
        "task": task,
        "run_id": "manual__test",
        "params": params or {},
        "outlet_events": OutletEventAccessors(),
    }


def render_and_execute(task: Any, params: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
    context = task_context(task, params)
    task.render_template_fields(context)
    return task.execute(context), context


def alias_events(context: dict[str, Any]) -> list[Any]:
    """The asset events the task added to its outlet aliases (what Airflow records on success)."""
    events = []
    for accessor in context["outlet_events"]._dict.values():
        events.extend(accessor.asset_alias_events)
    return events
