"""Snowflake through fakesnow (a local DuckDB-backed emulator of the Snowflake connector: no cloud
account is used) and ClickHouse's no-lock path (no ClickHouse server on this machine)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Engine

from airflow_provider_jetbase.migration import LockTimeoutError, Migrator
from airflow_provider_jetbase.migration.dialects import _DIALECTS
from airflow_provider_jetbase.migration.lock import MigrationLock
from tests.conftest import require_module


@pytest.fixture
def snowflake_engine() -> Iterator[Engine]:
    fakesnow = require_module("fakesnow")
    with fakesnow.patch():
        engine = create_engine("snowflake://user:pw@account/jbdb/jbschema")
        with engine.begin() as conn:
            conn.execute(text("CREATE DATABASE IF NOT EXISTS jbdb"))
            conn.execute(text("CREATE SCHEMA IF NOT EXISTS jbdb.jbschema"))
        yield engine
        engine.dispose()


def _files(folder: Path) -> None:
    (folder / "V1__a.sql").write_text("CREATE TABLE a (id INT);\n-- rollback\nDROP TABLE a;\n")
    (folder / "V1_1__b.sql").write_text("CREATE TABLE b (id INT);\n-- rollback\nDROP TABLE b;\n")
    (folder / "RA__seed.sql").write_text("INSERT INTO a VALUES (1);\n")


def test_snowflake_upgrade_rollback_and_dry_run(snowflake_engine: Engine, tmp_path: Path) -> None:
    _files(tmp_path)
    migrator = Migrator(snowflake_engine, tmp_path)
    preview = migrator.upgrade(dry_run=True)
    assert [r.filename for r in preview.applied] == ["V1__a.sql", "V1_1__b.sql", "RA__seed.sql"]
    assert not {"jetbase_migrations", "jetbase_lock"} & {
        t.lower() for t in inspect(snowflake_engine).get_table_names()
    }
    assert migrator.current() is None and migrator.history() == []

    assert migrator.upgrade().version_after == "1.1"
    assert [(h.version, h.filename, h.migration_type) for h in migrator.history()] == [
        ("1", "V1__a.sql", "VERSIONED"),
        ("1.1", "V1_1__b.sql", "VERSIONED"),
        (None, "RA__seed.sql", "RUNS_ALWAYS"),
    ]
    assert [r.filename for r in migrator.upgrade().applied] == ["RA__seed.sql"]
    assert migrator.validate().ok
    assert [r.version for r in migrator.rollback().rolled_back] == ["1.1"] and migrator.current() == "1"
    assert not migrator.lock_status().is_locked


def test_snowflake_lock_wait_times_out_and_unlock(snowflake_engine: Engine, tmp_path: Path) -> None:
    _files(tmp_path)
    migrator = Migrator(snowflake_engine, tmp_path, lock_timeout=0.2, lock_poll_interval=0.05)
    migrator.upgrade()
    with snowflake_engine.begin() as conn:
        conn.execute(text("UPDATE jetbase_lock SET is_locked = TRUE, process_id = 'cli-holder' WHERE id = 1"))
    with pytest.raises(LockTimeoutError, match="cli-holder"):
        migrator.upgrade()
    migrator.unlock()
    assert not migrator.lock_status().is_locked


def test_clickhouse_takes_no_lock_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    conn: Any = None  # never touched: there is no lock to take on ClickHouse
    logger = logging.getLogger("test.clickhouse")
    lock = MigrationLock(
        conn,
        conn,
        _DIALECTS["clickhouse"],
        timeout=1,
        poll_interval=1,
        owner=None,
        stale_after=None,
        logger=logger,
    )
    with caplog.at_level(logging.WARNING, logger="test.clickhouse"), lock:
        pass
    assert any("No migration lock on clickhouse" in r.getMessage() for r in caplog.records)
    assert not lock.held
