"""The snapshot method: a fingerprint stored after an upgrade, compared by later checks.

Real SQLite for the mechanics (method="snapshot" forced); Snowflake through ``fakesnow`` (a
DuckDB-backed emulator of the Snowflake connector: the cloud service is mocked, the SQL runs),
where ``method="auto"`` must choose the snapshot because replay is impossible there.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.engine import URL

from airflow_provider_jetbase.drift import (
    SNAPSHOT_TABLE,
    SchemaModel,
    load_latest_snapshot,
    run_drift_check,
    snapshot_schema,
    store_snapshot,
)
from airflow_provider_jetbase.drift.snapshot import KEEP_SNAPSHOTS
from airflow_provider_jetbase.migration import Migrator
from tests.conftest import require_module
from tests.drift_helpers import disposing, dump_database, make_engine, run_sql, write_migrations


def _migrate_and_store(url: URL, migrations: Path) -> None:
    with disposing(make_engine(url)) as engine:
        Migrator(engine, migrations).upgrade()
        stored = store_snapshot(engine)
    assert stored.jetbase_version == "3"


def test_snapshot_round_trip_and_fingerprint(db_url: URL, tmp_path: Path) -> None:
    with disposing(make_engine(db_url)) as engine:
        migrations = write_migrations(tmp_path / "m", engine.dialect.name)
    _migrate_and_store(db_url, migrations)
    with disposing(make_engine(db_url)) as engine:
        stored = load_latest_snapshot(engine)
        live = snapshot_schema(engine)
    assert stored is not None
    assert stored.model == live and stored.fingerprint == live.fingerprint()
    assert SchemaModel.from_json(live.to_json()) == live
    assert SNAPSHOT_TABLE not in live.tables  # our own table is ignored like Jetbase's


def test_snapshot_finds_out_of_band_change(sqlite_url: URL, tmp_path: Path) -> None:
    migrations = write_migrations(tmp_path / "m", "sqlite")
    _migrate_and_store(sqlite_url, migrations)
    with disposing(make_engine(sqlite_url)) as engine:
        clean = run_drift_check(engine, migrations, method="snapshot")
        run_sql(engine, "ALTER TABLE users ADD COLUMN nickname VARCHAR(50); DROP INDEX ix_orders_amount")
        before = dump_database(engine)
        report = run_drift_check(engine, migrations, method="snapshot")
        assert dump_database(engine) == before
    assert clean.findings == () and not clean.failed, clean.to_text()
    assert report.method == "snapshot" and "stored snapshot" in report.method_detail
    assert sorted((f.kind, f.object) for f in report.findings) == [
        ("column_added", "users.nickname"),
        ("index_dropped", "orders.ix_orders_amount"),
    ]


def test_missing_and_outdated_snapshot(sqlite_url: URL, tmp_path: Path) -> None:
    migrations = write_migrations(tmp_path / "m", "sqlite")
    with disposing(make_engine(sqlite_url)) as engine:
        Migrator(engine, migrations).upgrade(to_version="2")
        missing = run_drift_check(engine, migrations, method="snapshot")
        store_snapshot(engine)
        Migrator(engine, migrations).upgrade()  # upgraded without storing a new snapshot
        outdated = run_drift_check(engine, migrations, method="snapshot")
    assert [(f.kind, f.severity) for f in missing.findings if f.kind != "pending_migration"] == [
        ("snapshot_missing", "warning")
    ]
    kinds = sorted(f.kind for f in outdated.findings)
    assert kinds == ["snapshot_outdated", "table_added", "table_added"]  # events, notes came with V3
    assert "version 2" in next(f.message for f in outdated.findings if f.kind == "snapshot_outdated")


def test_snapshot_history_is_bounded(sqlite_url: URL, tmp_path: Path) -> None:
    migrations = write_migrations(tmp_path / "m", "sqlite")
    with disposing(make_engine(sqlite_url)) as engine:
        Migrator(engine, migrations).upgrade()
        for _ in range(KEEP_SNAPSHOTS + 3):
            store_snapshot(engine)
        with engine.connect() as conn:
            count = conn.exec_driver_sql(f"SELECT COUNT(*) FROM {SNAPSHOT_TABLE}").scalar()
    assert count == KEEP_SNAPSHOTS


def test_snowflake_uses_snapshot(tmp_path: Path) -> None:
    fakesnow = require_module("fakesnow")
    from sqlalchemy import create_engine

    migrations = tmp_path / "m"
    migrations.mkdir()
    (migrations / "V1__users.sql").write_text(
        "CREATE TABLE users (id INT PRIMARY KEY, email VARCHAR(255) NOT NULL, name VARCHAR(100));\n"
    )
    with fakesnow.patch(create_database_on_connect=True, create_schema_on_connect=True):
        engine = create_engine("snowflake://user:pw@account/db1/sch1")
        with disposing(engine):
            Migrator(engine, migrations).upgrade()
            store_snapshot(engine)
            assert inspect(engine).has_table(SNAPSHOT_TABLE)
            clean = run_drift_check(engine, migrations)
            run_sql(engine, "ALTER TABLE users ADD COLUMN nick VARCHAR(10)")
            drift = run_drift_check(engine, migrations)
    assert clean.method == "snapshot" and not clean.failed, clean.to_text()
    assert [(f.kind, f.object) for f in drift.findings] == [("column_added", "users.nick")]
    assert drift.failed
