"""Lock rows written by hand or by another tool: a held row whose ``process_id`` is NULL or empty
names no holder, so only the age rule of the stale-lock policy can free it, on every database."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Engine

from airflow_provider_jetbase.migration import Migrator
from airflow_provider_jetbase.migration.dialects import dialect_for
from airflow_provider_jetbase.migration.errors import LockTimeoutError
from tests.jetbase_cli import LOCK_FREE, lock_row, write_migration

# The database clock two hours ago, in the form each database's own acquire writes.
TWO_HOURS_AGO = {
    "postgresql": "LOCALTIMESTAMP - INTERVAL '2 hours'",
    "mysql": "CURRENT_TIMESTAMP(6) - INTERVAL 2 HOUR",
    "sqlite": "STRFTIME('%Y-%m-%d %H:%M:%f', 'NOW', '-2 hours')",
}


def _hold_by_hand(engine: Engine, process_id: str | None, *, old: bool) -> None:
    dialect = dialect_for(engine)
    locked_at = TWO_HOURS_AGO[dialect.name] if old else dialect.now_sql
    with engine.begin() as conn:
        conn.execute(
            text(
                f"UPDATE jetbase_lock SET is_locked = TRUE, locked_at = {locked_at}, "
                "process_id = :p WHERE id = 1"
            ),
            {"p": process_id},
        )


def _prepared(url: URL, folder: Path) -> Engine:
    write_migration(folder, "V1__first.sql", "CREATE TABLE first_t (id INT);")
    engine = create_engine(url)
    Migrator(engine, folder).upgrade()
    write_migration(folder, "V2__second.sql", "CREATE TABLE second_t (id INT);")
    return engine


@pytest.mark.parametrize("process_id", [None, ""], ids=["null", "empty"])
def test_old_lock_with_null_or_empty_process_id_is_taken_over_by_age(
    db_url: URL, tmp_path: Path, process_id: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "migrations"
    engine = _prepared(db_url, folder)
    try:
        _hold_by_hand(engine, process_id, old=True)
        # Without the policy the row is never presumed abandoned.
        with pytest.raises(LockTimeoutError):
            Migrator(engine, folder, lock_timeout=0.3, lock_poll_interval=0.1).upgrade()
        with caplog.at_level(logging.WARNING):
            result = Migrator(
                engine, folder, lock_timeout=10, lock_poll_interval=0.1, stale_lock_after=60
            ).upgrade()
        assert [r.version for r in result.applied] == ["2"]
        warning = next(r.getMessage() for r in caplog.records if "STALE JETBASE LOCK" in r.getMessage())
        shown = "NULL" if process_id is None else "''"
        assert f"process_id {shown}" in warning, warning
        assert "stale_lock_after=60" in warning and "holder not recorded" in warning, warning
        assert lock_row(engine) == LOCK_FREE
    finally:
        engine.dispose()


@pytest.mark.parametrize("process_id", [None, ""], ids=["null", "empty"])
def test_recent_lock_with_null_or_empty_process_id_is_not_taken_over(
    db_url: URL, tmp_path: Path, process_id: str | None
) -> None:
    folder = tmp_path / "migrations"
    engine = _prepared(db_url, folder)
    try:
        _hold_by_hand(engine, process_id, old=False)
        with pytest.raises(LockTimeoutError) as caught:
            Migrator(
                engine, folder, lock_timeout=0.5, lock_poll_interval=0.1, stale_lock_after=3600
            ).upgrade()
        message = str(caught.value)
        shown = "NULL" if process_id is None else "''"
        assert f"held by process_id {shown}; holder not recorded" in message, message
        assert "jetbase unlock" in message, message
        assert caught.value.holder is not None and caught.value.holder.process_id == process_id
        assert lock_row(engine) == (True, True, process_id)
        with engine.connect() as conn:
            versions = conn.execute(text("SELECT version FROM jetbase_migrations")).scalars().all()
        assert versions == ["1"]
    finally:
        engine.dispose()
