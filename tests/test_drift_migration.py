"""Migration drift: each problem the version table and the folder can show is its own finding."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from airflow_provider_jetbase.drift import DriftCheckError, resolve_fail_on, run_drift_check
from airflow_provider_jetbase.drift.report import SCHEMA_KINDS
from airflow_provider_jetbase.migration import Migrator
from tests.drift_helpers import disposing, make_engine, run_sql, write_migrations


def _setup(url: URL, tmp_path: Path) -> Path:
    with disposing(make_engine(url)) as engine:
        migrations = write_migrations(tmp_path / "migrations", engine.dialect.name)
        Migrator(engine, migrations).upgrade()
    return migrations


def _kinds(report):  # type: ignore[no-untyped-def]
    return sorted((f.kind, f.severity, f.object) for f in report.findings)


def test_changed_checksum(sqlite_url: URL, tmp_path: Path) -> None:
    migrations = _setup(sqlite_url, tmp_path)
    v1 = migrations / "V1__users.sql"
    v1.write_text(v1.read_text().replace("payload VARCHAR(20)", "payload VARCHAR(25)"))
    with disposing(make_engine(sqlite_url)) as engine:
        report = run_drift_check(engine, migrations, method="none")
    assert _kinds(report) == [("checksum_mismatch", "error", "V1__users.sql")]
    assert report.failed and report.method == "none"


def test_missing_file(sqlite_url: URL, tmp_path: Path) -> None:
    migrations = _setup(sqlite_url, tmp_path)
    (migrations / "V2__orders.sql").unlink()
    with disposing(make_engine(sqlite_url)) as engine:
        report = run_drift_check(engine, migrations)
    migration = [k for k in _kinds(report) if k[0] not in SCHEMA_KINDS]
    assert migration == [("missing_file", "error", "V2__orders.sql")]
    # Not replayed, so what it created is reported as added, and the report says why.
    assert ("table_added", "error", "orders") in _kinds(report)
    assert any("2" in note and "has no file" in note for note in report.notes)


def test_out_of_order_file(sqlite_url: URL, tmp_path: Path) -> None:
    migrations = _setup(sqlite_url, tmp_path)
    (migrations / "V2_5__late.sql").write_text("CREATE TABLE late (id INT);\n")
    with disposing(make_engine(sqlite_url)) as engine:
        report = run_drift_check(engine, migrations)
    # Reported once, as out of order, not a second time as pending.
    assert _kinds(report) == [("out_of_order", "warning", "V2_5__late.sql")]
    assert not report.failed
    with disposing(make_engine(sqlite_url)) as engine:
        strict = run_drift_check(engine, migrations, fail_on=("schema", "out_of_order"))
    assert strict.failed


def test_pending_is_information_or_drift(sqlite_url: URL, tmp_path: Path) -> None:
    migrations = _setup(sqlite_url, tmp_path)
    (migrations / "V4__more.sql").write_text("CREATE TABLE more_things (id INT);\n")
    with disposing(make_engine(sqlite_url)) as engine:
        info = run_drift_check(engine, migrations)
        drift = run_drift_check(engine, migrations, pending_is_drift=True)
    assert _kinds(info) == [("pending_migration", "info", "V4__more.sql")]
    assert not info.failed and info.pending_count == 1
    assert _kinds(drift) == [("pending_migration", "error", "V4__more.sql")]
    assert drift.failed


def test_fresh_and_stale_lock(db_url: URL, tmp_path: Path) -> None:
    """The lock's age is read in the database's own clock and time zone, on all three databases."""
    migrations = _setup(db_url, tmp_path)
    take = (
        "UPDATE jetbase_lock SET is_locked = TRUE, locked_at = CURRENT_TIMESTAMP, process_id = 'p-1' "
        "WHERE id = 1"
    )
    with disposing(make_engine(db_url)) as engine:
        run_sql(engine, take)
        fresh = run_drift_check(engine, migrations, method="none", stale_lock_after=3600)
        run_sql(engine, "UPDATE jetbase_lock SET locked_at = '2020-01-01 00:00:00' WHERE id = 1")
        stale = run_drift_check(engine, migrations, method="none", stale_lock_after=3600)
        failing = run_drift_check(engine, migrations, method="none", fail_on=("stale_lock",))
    assert _kinds(fresh) == [("lock_held", "info", "jetbase_lock")]
    age = fresh.findings[0].actual
    assert 0 <= age < 600, f"lock age {age} s: the clocks or time zones do not line up"
    assert not fresh.failed
    assert _kinds(stale) == [("stale_lock", "warning", "jetbase_lock")]
    assert "p-1" in stale.findings[0].message and "3600 s" in stale.findings[0].message
    assert not stale.failed
    assert failing.failed and failing.findings[0].severity == "error"


def test_fail_on_aliases_and_unknown_kind() -> None:
    assert "column_added" in resolve_fail_on("schema")
    assert "stale_lock" in resolve_fail_on(["migration"]) and "lock_held" not in resolve_fail_on("all")
    with pytest.raises(ValueError, match="unknown finding kind 'colum_added'"):
        resolve_fail_on(("colum_added",))


def test_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    target = tmp_path / "absent.db"
    migrations = write_migrations(tmp_path / "migrations", "sqlite")
    with (
        disposing(make_engine(URL.create("sqlite", database=str(target)))) as engine,
        pytest.raises(DriftCheckError, match="absent.db does not exist"),
    ):
        run_drift_check(engine, migrations)
    assert not target.exists()


def test_never_migrated_database(sqlite_url: URL, tmp_path: Path) -> None:
    """Nothing applied, nothing live: all pending, no schema drift, and no Jetbase table created."""
    migrations = write_migrations(tmp_path / "migrations", "sqlite")
    with disposing(make_engine(sqlite_url)) as engine:
        run_sql(engine, "CREATE TABLE IF NOT EXISTS jetbase_probe (id INT); DROP TABLE jetbase_probe")
        report = run_drift_check(engine, migrations)
        from sqlalchemy import inspect

        tables = inspect(engine).get_table_names()
    assert not report.failed, report.to_text()
    assert [k[0] for k in _kinds(report)] == ["pending_migration"] * 4
    assert tables == []


def test_mariadb_dialect_name_is_replayed_like_mysql(mysql_url: URL, tmp_path: Path) -> None:
    """SQLAlchemy names the dialect "mariadb" for mariadb+pymysql:// URLs: the drift check must still
    replay there (and the schema read the MySQL way), not fall back to a snapshot nobody stored."""
    mariadb_url = mysql_url.set(drivername="mariadb+pymysql")
    with disposing(make_engine(mariadb_url)) as engine:
        assert engine.dialect.name == "mariadb"
        migrations = write_migrations(tmp_path / "migrations", "mysql")
        Migrator(engine, migrations).upgrade()
        clean = run_drift_check(engine, migrations)
        run_sql(engine, "ALTER TABLE users ADD COLUMN nickname VARCHAR(50)")
        drifted = run_drift_check(engine, migrations)
    assert clean.method == "replay" and not clean.failed, _kinds(clean)
    assert drifted.method == "replay" and ("column_added", "error", "users.nickname") in _kinds(drifted)
