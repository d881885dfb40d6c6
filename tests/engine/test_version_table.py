"""The version table: the current version is the highest applied version, never the newest
``applied_at`` (time zones of the sessions that wrote the rows do not matter); reading a missing
table keeps the transaction usable; the tables live in the schema the connection's ``search_path``
names; a same-named table of another tool is refused from every entry point, untouched."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import URL, Engine

from airflow_provider_jetbase.migration import (
    IncompatibleTableError,
    Migrator,
    fetch_current_version,
)
from tests.engine.helpers import table_file, tables
from tests.jetbase_cli import (
    PROVIDER_TABLES,
    JetbaseProject,
    applied_versions,
    table_exists,
    write_migration,
)
from tests.reliability.snapshots import assert_unchanged, snapshot


def test_postgres_time_zone_skew_does_not_fool_the_engine(
    postgres_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    project = JetbaseProject(tmp_path / "utc", postgres_url)
    for version, table in (("1", "t1"), ("2", "t2"), ("3", "t3"), ("4", "t4")):
        table_file(project.migrations_dir, version, table)
    project.upgrade(count=2).assert_ok()

    # V3 is applied by the CLI from a session in Los Angeles: its applied_at (a TIMESTAMP without
    # time zone filled by CURRENT_TIMESTAMP) is then hours *older* than V2's.
    la_url = postgres_url.update_query_dict({"options": "-c timezone=America/Los_Angeles"})
    la_project = JetbaseProject(tmp_path / "la", la_url)
    la_project.copy_migrations_from(project.migrations_dir)
    la_project.upgrade(count=1).assert_ok()
    engine = make_engine(postgres_url)
    with engine.connect() as conn:
        stamps: dict[str, Any] = {
            row[0]: row[1] for row in conn.execute(text("SELECT version, applied_at FROM jetbase_migrations"))
        }
    assert stamps["3"] < stamps["2"], f"precondition: V3 must look older than V2: {stamps}"

    # Documentation: the CLI now believes 2 is current and re-runs V3, which fails.
    assert "Latest migration version: 2" in project.current().messages
    project.upgrade().assert_failed_with("already exists")
    assert applied_versions(engine) == ["1", "2", "3"]

    migrator = Migrator(engine, project.migrations_dir)
    assert migrator.current() == "3"
    assert [p.version for p in migrator.status().pending] == ["4"]
    result = migrator.upgrade()
    assert [r.filename for r in result.applied] == ["V4__create_t4.sql"]
    assert sorted(applied_versions(engine)) == ["1", "2", "3", "4"]
    assert migrator.current() == "4"

    rolled = migrator.rollback()
    assert [r.filename for r in rolled.rolled_back] == ["V4__create_t4.sql"]
    assert migrator.current() == "3"
    rolled = migrator.rollback()
    assert [r.filename for r in rolled.rolled_back] == ["V3__create_t3.sql"]
    assert applied_versions(engine) == ["1", "2"]
    assert table_exists(engine, "t2") and not table_exists(engine, "t3")


def test_version_order_not_applied_at_across_time_zones(
    postgres_url: URL, folder: Path, make_engine: Callable[..., Engine]
) -> None:
    tokyo = make_engine(postgres_url, connect_args={"options": "-c timezone=Asia/Tokyo"})
    los_angeles = make_engine(postgres_url, connect_args={"options": "-c timezone=America/Los_Angeles"})
    table_file(folder, "1", "z1")
    table_file(folder, "2", "z2")
    Migrator(tokyo, folder).upgrade()
    table_file(folder, "3", "z3")
    Migrator(los_angeles, folder).upgrade()
    with tokyo.connect() as conn:
        by_applied_at = conn.execute(
            text("SELECT version FROM jetbase_migrations ORDER BY applied_at DESC LIMIT 1")
        ).scalar_one()
    assert by_applied_at == "2"  # what the CLI would take as "latest"
    migrator = Migrator(tokyo, folder)
    assert migrator.current() == "3" and migrator.status().current == "3"
    table_file(folder, "4", "z4")
    assert [r.version for r in migrator.upgrade().applied] == ["4"]  # V3 is not re-run
    assert [r.version for r in migrator.rollback(count=2).rolled_back] == ["4", "3"]
    assert applied_versions(tokyo) == ["1", "2"] and "z2" in tables(tokyo) and "z3" not in tables(tokyo)


def test_fetch_current_version_on_a_missing_table_keeps_the_transaction_usable(
    postgres_url: URL, make_engine: Callable[..., Engine]
) -> None:
    engine = make_engine(postgres_url)
    with engine.connect() as conn:
        assert fetch_current_version(conn) is None
        assert not conn.in_transaction()
        with conn.begin():
            conn.execute(text("CREATE TABLE keep (id INTEGER)"))
            assert fetch_current_version(conn) is None
            conn.execute(text("INSERT INTO keep VALUES (1)"))  # not "current transaction is aborted"
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM keep")).scalar_one() == 1


def tables_of(inspector: Any, schema: str) -> set[str]:
    return {t for t in inspector.get_table_names(schema=schema) if t not in PROVIDER_TABLES}


@pytest.mark.parametrize("driver_fixture", ["postgres_url", "postgres_psycopg3_url"])
def test_postgres_schema_via_search_path_option(
    driver_fixture: str, request: pytest.FixtureRequest, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    url: URL = request.getfixturevalue(driver_fixture)
    admin = make_engine(url)
    with admin.begin() as conn:
        conn.execute(text('CREATE SCHEMA "myschema"'))
    project = JetbaseProject(tmp_path / "cli", url.update_query_dict({"options": "-csearch_path=myschema"}))
    table_file(project.migrations_dir, "1", "t1")
    table_file(project.migrations_dir, "2", "t2")

    engine = make_engine(url, connect_args={"options": "-csearch_path=myschema"})
    migrator = Migrator(engine, project.migrations_dir)
    assert [r.filename for r in migrator.upgrade(count=1).applied] == ["V1__create_t1.sql"]
    inspector = inspect(admin)
    assert tables_of(inspector, "myschema") == {"jetbase_migrations", "jetbase_lock", "t1"}
    assert inspector.get_table_names(schema="public") == []

    # The CLI, reaching the same schema through the URL option, continues from our rows.
    assert "Latest migration version: 1" in project.current().messages
    project.upgrade().assert_ok()
    assert migrator.current() == "2"
    assert [r.filename for r in migrator.rollback().rolled_back] == ["V2__create_t2.sql"]
    assert tables_of(inspect(admin), "myschema") == {
        "jetbase_migrations",
        "jetbase_lock",
        "t1",
    }

    if url.get_driver_name() == "psycopg2":
        # The CLI's own postgres_schema setting (SET search_path per transaction) sees our rows too.
        own = JetbaseProject(tmp_path / "cli_schema", url, postgres_schema="myschema")
        own.copy_migrations_from(project.migrations_dir)
        assert "Latest migration version: 1" in own.current().assert_ok().messages
    if url.get_driver_name() == "psycopg":
        # Documentation: the CLI's own postgres_schema setting breaks on psycopg 3.
        broken = JetbaseProject(tmp_path / "cli_schema", url, postgres_schema="myschema")
        broken.copy_migrations_from(project.migrations_dir)
        broken.current().assert_failed_with("syntax error")


@pytest.mark.parametrize(
    ("table", "ddl"),
    [
        ("jetbase_migrations", "CREATE TABLE jetbase_migrations (id INTEGER PRIMARY KEY, name VARCHAR(20))"),
        ("jetbase_lock", "CREATE TABLE jetbase_lock (id INTEGER PRIMARY KEY, holder VARCHAR(20))"),
    ],
)
def test_same_named_table_of_another_tool_is_refused_untouched(
    table: str, ddl: str, db_url: URL, folder: Path, make_engine: Callable[..., Engine]
) -> None:
    from airflow_provider_jetbase.migration import IncompatibleTableError

    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text(ddl))
    table_file(folder, "1", "o1")
    with pytest.raises(IncompatibleTableError, match=f"A table named {table} exists but does not have"):
        Migrator(engine, folder).upgrade()
    assert tables(engine) == {table}
    if table == "jetbase_migrations":
        with pytest.raises(IncompatibleTableError, match=table):
            Migrator(engine, folder).upgrade(dry_run=True)


_FOREIGN_TABLES = {
    "jetbase_migrations": "CREATE TABLE jetbase_migrations (id INT PRIMARY KEY, name VARCHAR(20))",
    "jetbase_lock": "CREATE TABLE jetbase_lock (id INT PRIMARY KEY, owner VARCHAR(20))",
}


# A real server each (PostgreSQL, MariaDB, ClickHouse), reached by getfixturevalue.
@pytest.mark.postgres
@pytest.mark.parametrize(
    ("kind", "table", "ddl"),
    [
        (kind, table, ddl)
        for kind in ("postgres", "mysql", "clickhouse")
        for table, ddl in _FOREIGN_TABLES.items()
        # Jetbase neither reads nor writes a jetbase_lock on ClickHouse (no lock there): not a case.
        if not (kind == "clickhouse" and table == "jetbase_lock")
    ],
)
def test_table_of_another_tool_with_the_same_name(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str, table: str, ddl: str
) -> None:
    url: URL = request.getfixturevalue(f"{kind}_url")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(ddl))
            conn.execute(text(f"INSERT INTO {table} VALUES (1, 'theirs')"))
        folder = tmp_path / "migrations"
        write_migration(folder, "V1__first.sql", "CREATE TABLE first_t (id INT);")
        before = snapshot(engine)
        migrator = Migrator(engine, folder, lock_timeout=2, lock_poll_interval=0.2)
        # Every entry point that reads the table (the sensor uses current(), the drift check
        # validate(), the status operator status()), not only upgrade.
        if table == "jetbase_migrations":
            names = ["upgrade", "rollback", "status", "history", "validate", "current"]
        else:
            names = ["upgrade", "rollback", "lock_status", "unlock"]
        for name in names:
            with pytest.raises(IncompatibleTableError) as info:
                getattr(migrator, name)()
            assert table in str(info.value) and "Jetbase's columns" in str(info.value), (
                name,
                str(info.value),
            )
        assert_unchanged(engine, before, f"upgrade over a foreign {table}")
    finally:
        engine.dispose()
