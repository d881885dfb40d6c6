"""Watching the long migration of tests/deployment/dags/migrations/long_* on its target database."""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, inspect, text

from tests.deployment.deployment import Slot

MARKER = "jbdeploy_long_migration"


def running_sleeps(slot: Slot) -> int:
    """How many sessions run the long migration's sleep statement on the slot's database now."""
    if slot.kind == "postgres":
        sql = (
            "SELECT count(*) FROM pg_stat_activity WHERE datname = :d AND pid <> pg_backend_pid() "
            "AND state = 'active' AND query LIKE :q"
        )
    else:
        sql = (
            "SELECT count(*) FROM information_schema.PROCESSLIST WHERE DB = :d AND ID <> CONNECTION_ID() "
            "AND INFO LIKE :q"
        )
    engine = create_engine(slot.url)
    try:
        with engine.connect() as conn:
            count: int = conn.execute(text(sql), {"d": slot.url.database, "q": f"%{MARKER}%"}).scalar_one()
    finally:
        engine.dispose()
    return count


def target_state(slot: Slot) -> dict[str, Any]:
    """The versions applied, the lock row and whether anything V2 writes is there."""
    engine = create_engine(slot.url)
    try:
        with engine.connect() as conn:
            versions = sorted(r[0] for r in conn.execute(text("SELECT version FROM jetbase_migrations")))
            locked, process_id = conn.execute(
                text("SELECT is_locked, process_id FROM jetbase_lock WHERE id = 1")
            ).one()
            # What V2 writes before it sleeps: a table on PostgreSQL (DDL is transactional there), a
            # row on MySQL/MariaDB (whose DDL would commit at once).
            v2_row = conn.execute(text("SELECT count(*) FROM first_t WHERE id = 2")).scalar_one()
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    return {
        "versions": versions,
        "locked": bool(locked),
        "process_id": process_id,
        "v2_written": "half_done" in tables or v2_row > 0,
    }
