"""The lock row seeded by the jetbase CLI while an engine run seeds it too.

Jetbase seeds ``jetbase_lock`` with ``INSERT ... WHERE NOT EXISTS``. On PostgreSQL the NOT EXISTS reads
a snapshot that cannot see a row another session inserted and has not committed yet, so the second
insert waits on the primary key and fails once the first commits. The CLI takes no session lock, so
nothing else orders the two; the engine must read that failure as "the row is there" and go on.
Here the CLI's uncommitted seed is held open by the test, so the race happens every time.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from airflow_provider_jetbase.migration import Migrator
from airflow_provider_jetbase.migration.dialects import dialect_for
from airflow_provider_jetbase.migration.lock import ensure_lock_tables
from tests.jetbase_cli import UpgradeThread, write_migration

GUARD_SECONDS = 120.0  # hang guards, not speed assertions


def test_engine_seeding_the_lock_row_while_another_session_seeds_it_still_migrates(
    postgres_url: URL, tmp_path: Path
) -> None:
    folder = tmp_path / "migrations"
    write_migration(folder, "V1__first.sql", "CREATE TABLE first_t (id INT);")
    engine = create_engine(postgres_url)
    dialect = dialect_for(engine)
    try:
        with engine.connect() as conn:
            ensure_lock_tables(conn, dialect)
        cli_like = engine.connect()
        cli_like.begin()
        cli_like.execute(dialect.queries.initialize_lock_record_stmt())  # not committed yet
        run = UpgradeThread(
            Migrator(engine, folder, lock_timeout=30, logger=logging.getLogger("test.seed_race")),
            name="jbtest-seed-race",
        )
        try:
            run.start()
            deadline = time.monotonic() + GUARD_SECONDS
            with engine.connect() as watch:
                while True:
                    waiting = watch.execute(
                        text(
                            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                            "AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO jetbase_lock%'"
                        )
                    ).scalar_one()
                    watch.rollback()
                    if waiting:
                        break
                    assert run.is_alive(), f"the run ended before its seed waited: {run.error!r}"
                    assert time.monotonic() < deadline, "the run's seed never waited on the other one"
                    time.sleep(0.05)
            cli_like.commit()
        finally:
            cli_like.close()
        run.join(GUARD_SECONDS)
        assert not run.is_alive(), "the run did not finish"
        assert run.error is None, repr(run.error)
        assert run.result is not None and [r.version for r in run.result.applied] == ["1"]
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, is_locked FROM jetbase_lock")).all()
        assert [(r.id, bool(r.is_locked)) for r in rows] == [(1, False)]
    finally:
        engine.dispose()
