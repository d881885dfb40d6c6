"""The ``jetbase_lock`` row deleted, or its table dropped, while a run holds it.

The holder must notice before it commits its next migration and fail with ``LockLostError`` (never
report success), a waiter must not re-create the row under the live holder, and a release that
matches nothing must raise.

The holder's second migration waits on a gate the test holds (an advisory lock on PostgreSQL, a
named lock on MariaDB), so the row is removed while that migration is provably running and no
sleep length decides the outcome.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Connection, Engine

from airflow_provider_jetbase.migration import Migrator
from airflow_provider_jetbase.migration.dialects import dialect_for
from airflow_provider_jetbase.migration.errors import LockLostError, LockTimeoutError
from airflow_provider_jetbase.migration.lock import MigrationLock
from tests.jetbase_cli import UpgradeThread, write_migration

GUARD_SECONDS = 120.0  # hang guards, not speed assertions
PG_GATE_KEY = 7_310_042


def _write_folder(folder: Path, kind: str, gate: str) -> None:
    write_migration(folder, "V1__first.sql", "CREATE TABLE first_t (id INT);")
    if kind == "postgres":
        # Transaction-scoped: the gate is let go with the migration's transaction.
        # Bounded, so a regression (a waiter that runs V2 too) fails instead of hanging the test.
        wait = f"SET LOCAL lock_timeout = '60s';\nSELECT pg_advisory_xact_lock({PG_GATE_KEY});"
    else:
        wait = f"SELECT GET_LOCK('{gate}', 60);\nSELECT RELEASE_LOCK('{gate}');"
    # No DDL in V2: MariaDB would commit it implicitly; its INSERT is rolled back on every database.
    write_migration(folder, "V2__gated.sql", f"INSERT INTO first_t VALUES (2);\n{wait}")
    write_migration(folder, "V3__after.sql", "CREATE TABLE after_t (id INT);")


def _hold_gate(conn: Connection, kind: str, gate: str) -> Callable[[], None]:
    if kind == "postgres":
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": PG_GATE_KEY})
        conn.commit()
        return lambda: (conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PG_GATE_KEY}), None)[1]
    assert conn.execute(text("SELECT GET_LOCK(:g, 10)"), {"g": gate}).scalar_one() == 1
    conn.commit()
    return lambda: (conn.execute(text("SELECT RELEASE_LOCK(:g)"), {"g": gate}), None)[1]


def _waiting_on_gate(conn: Connection, kind: str) -> int:
    if kind == "postgres":
        query = (
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND wait_event = 'advisory' "
            "AND query LIKE '%pg_advisory_xact_lock%'"
        )
    else:
        query = (
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() "
            "AND INFO LIKE 'SELECT GET_LOCK(%'"
        )
    count = int(conn.execute(text(query)).scalar_one())
    conn.rollback()  # a fresh snapshot on the next poll
    return count


def _versions(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(conn.execute(text("SELECT version FROM jetbase_migrations")).scalars().all())


def _first_rows(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT id FROM first_t")).scalars().all())


def _lock_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT COUNT(*) FROM jetbase_lock")).scalar_one())


@pytest.mark.parametrize("removal", ["delete_row", "drop_table"])
@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_lock_removed_mid_migration_fails_the_holder_and_no_waiter_recreates_it(
    kind: str, removal: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url: URL = request.getfixturevalue(f"{kind}_url")
    gate = f"jbtest_gate_{url.database}"
    folder = tmp_path / "migrations"
    _write_folder(folder, kind, gate)
    engine = create_engine(url)
    gate_conn = engine.connect()
    release_gate = _hold_gate(gate_conn, kind, gate)
    holder = UpgradeThread(
        Migrator(engine, folder, lock_timeout=30, logger=logging.getLogger("test.lock_lost")),
        name="jbtest-lock-holder",
    )
    try:
        holder.start()
        deadline = time.monotonic() + GUARD_SECONDS
        with engine.connect() as watch:
            while not _waiting_on_gate(watch, kind):
                assert holder.is_alive(), f"the holder ended before reaching the gate: {holder.error!r}"
                assert time.monotonic() < deadline, "the holder never reached V2's gate"
                time.sleep(0.05)
        assert _versions(engine) == ["1"]
        with engine.begin() as conn:
            removing = "DELETE FROM jetbase_lock" if removal == "delete_row" else "DROP TABLE jetbase_lock"
            conn.execute(text(removing))

        # The live holder keeps its session lock: a waiter neither takes over nor seeds a new row.
        with pytest.raises(LockTimeoutError) as waited:
            Migrator(engine, folder, lock_timeout=0.5, lock_poll_interval=0.1, stale_lock_after=60).upgrade()
        assert "another engine run" in str(waited.value), waited.value
        assert _lock_rows(engine) == 0

        release_gate()
        holder.join(GUARD_SECONDS)
        assert not holder.is_alive(), "the holder did not finish"
    finally:
        release_gate()
        gate_conn.close()
    try:
        assert holder.result is None, f"the holder reported success: {holder.result}"
        error = holder.error
        assert isinstance(error, LockLostError), repr(error)
        message = str(error)
        assert "jetbase_lock" in message and "before committing V2__gated.sql" in message, message
        assert "committed 1 file(s), which stay applied: V1__first.sql" in message, message
        assert error.filename == "V2__gated.sql"
        assert [r.version for r in error.applied] == ["1"]
        assert _versions(engine) == ["1"]
        assert _first_rows(engine) == []  # V2's INSERT was rolled back

        # Nothing is left half-done for the next run.
        result = Migrator(engine, folder, lock_timeout=10).upgrade()
        assert [r.version for r in result.applied] == ["2", "3"]
        assert _versions(engine) == ["1", "2", "3"]
        assert _first_rows(engine) == [2]
        assert _lock_rows(engine) == 1
    finally:
        engine.dispose()


def test_release_of_a_deleted_lock_row_raises(db_url: URL, tmp_path: Path) -> None:
    engine = create_engine(db_url)
    try:
        write_migration(tmp_path / "migrations", "V1__first.sql", "CREATE TABLE first_t (id INT);")
        Migrator(engine, tmp_path / "migrations").upgrade()
        with engine.connect() as conn:
            lock = MigrationLock(
                conn,
                engine,
                dialect_for(engine),
                timeout=5,
                poll_interval=0.1,
                owner="release-test",
                stale_after=None,
                logger=logging.getLogger("test.lock_lost"),
            )
            lock.acquire()
            with engine.begin() as other:
                other.execute(text("DELETE FROM jetbase_lock"))
            with pytest.raises(LockLostError) as caught:
                lock.release()
        message = str(caught.value)
        assert "jetbase_lock" in message and "no longer this run's at release" in message, message
        assert "This run had committed no file" in message, message
        assert not lock.held
    finally:
        engine.dispose()
