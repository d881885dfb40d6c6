"""Stored schema fingerprints, for databases where the migrations cannot be replayed
(Snowflake, Databricks, ClickHouse: no scratch database to be had cheaply).

After each successful upgrade the upgrade operator calls :func:`store_snapshot`, which reflects
the schema and appends a row to ``jetbase_schema_snapshot``, a table of ours next to Jetbase's:

=================  =====================================================================
column             content
=================  =====================================================================
captured_at        UTC time of the snapshot, ISO 8601 text (sorts chronologically)
jetbase_version    latest applied versioned migration when it was taken (NULL: none)
fingerprint        SHA-256 of the canonical JSON model
model              the JSON model (:class:`~airflow_provider_jetbase.drift.schema.SchemaModel`)
=================  =====================================================================

The newest :data:`KEEP_SNAPSHOTS` rows are kept. The drift check only reads the newest one. The
table name starts with ``jetbase_`` so that the schema comparison ignores it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from airflow_provider_jetbase.drift.schema import SchemaModel, SchemaModelError, snapshot_schema
from airflow_provider_jetbase.migration.dialects import SnapshotStorage, dialect_name, known_dialect

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

SNAPSHOT_TABLE = "jetbase_schema_snapshot"
KEEP_SNAPSHOTS = 10

@dataclass(frozen=True)
class StoredSnapshot:
    captured_at: str
    jetbase_version: str | None
    fingerprint: str
    model: SchemaModel


def _storage(dialect: str) -> SnapshotStorage:
    facts = known_dialect(dialect)
    return facts.snapshot if facts else SnapshotStorage()


def create_table_sql(dialect: str) -> str:
    storage = _storage(dialect)
    captured, version, fingerprint, model = storage.types
    not_null = storage.not_null
    return (
        f"CREATE TABLE IF NOT EXISTS {SNAPSHOT_TABLE} (captured_at {captured}{not_null}, "
        f"jetbase_version {version}, fingerprint {fingerprint}{not_null}, model {model}{not_null})"
        f"{storage.table_options}"
    )


def _has_table(conn: Connection) -> bool:
    from sqlalchemy import inspect

    return bool(inspect(conn).has_table(SNAPSHOT_TABLE))


def store_snapshot(engine: Engine, *, version: str | None = None) -> StoredSnapshot:
    """Reflect the schema of ``engine`` and store it as the reference for later drift checks.

    ``version`` is the latest applied versioned migration (read from ``jetbase_migrations`` when
    not given). Call it after a successful upgrade, with the engine the upgrade used.
    """
    from sqlalchemy import text

    if version is None:
        from airflow_provider_jetbase.migration.state import fetch_current_version

        with engine.connect() as conn:
            version = fetch_current_version(conn)
            conn.rollback()
    model = snapshot_schema(engine)
    captured_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")
    stored = StoredSnapshot(captured_at, version, model.fingerprint(), model)
    dialect = dialect_name(engine.dialect.name)
    with engine.begin() as conn:
        conn.exec_driver_sql(create_table_sql(dialect))
        conn.execute(
            text(
                f"INSERT INTO {SNAPSHOT_TABLE} (captured_at, jetbase_version, fingerprint, model) "  # noqa: S608 - SNAPSHOT_TABLE is a constant
                "VALUES (:captured_at, :version, :fingerprint, :model)"
            ),
            {
                "captured_at": captured_at,
                "version": version,
                "fingerprint": stored.fingerprint,
                "model": model.to_json(),
            },
        )
        oldest_kept = conn.execute(
            text(
                f"SELECT captured_at FROM {SNAPSHOT_TABLE} ORDER BY captured_at DESC "  # noqa: S608 - constants only
                f"LIMIT 1 OFFSET {KEEP_SNAPSHOTS - 1}"
            )
        ).scalar()
        if oldest_kept is not None:
            prune = _storage(dialect).delete_from.format(table=SNAPSHOT_TABLE)
            conn.execute(text(prune + " WHERE captured_at < :oldest"), {"oldest": oldest_kept})
    return stored


def load_latest_snapshot(bind: Engine | Connection) -> StoredSnapshot | None:
    """The newest stored snapshot, or None when there is none (read-only)."""
    from sqlalchemy import text
    from sqlalchemy.engine import Engine

    if isinstance(bind, Engine):
        with bind.connect() as conn:
            try:
                return load_latest_snapshot(conn)
            finally:
                conn.rollback()
    if not _has_table(bind):
        return None
    row = bind.execute(
        text(
            f"SELECT captured_at, jetbase_version, fingerprint, model FROM {SNAPSHOT_TABLE} "  # noqa: S608 - SNAPSHOT_TABLE is a constant
            "ORDER BY captured_at DESC LIMIT 1"
        )
    ).first()
    if row is None:
        return None
    try:
        model = SchemaModel.from_json(row[3])
    except (ValueError, KeyError) as exc:
        raise SchemaModelError(
            f"{SNAPSHOT_TABLE}: the snapshot taken at {row[0]} cannot be read: {exc}"
        ) from exc
    return StoredSnapshot(str(row[0]), row[1], str(row[2]), model)
