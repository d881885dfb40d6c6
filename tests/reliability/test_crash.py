"""Killed migrations on the real PostgreSQL server: SIGKILL mid-migration, then a rerun; SIGTERM.

The long migration sleeps ``current_setting('jbtest.sleep')`` seconds: the killed process sets it to
30 through libpq ``options``; the rerun does not set it, so ``pg_sleep(NULL)`` returns at once. The
file, and so its checksum, is the same in both runs. The killed process also sets
``client_connection_check_interval`` so the server notices the dead client during ``pg_sleep``
(PostgreSQL 14+) instead of finishing the 30 s first; without it the half-done transaction would
still be rolled back, only later.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import URL, Engine

from airflow_provider_jetbase.migration import Migrator
from airflow_provider_jetbase.migration.dialects import dialect_for
from airflow_provider_jetbase.migration.errors import LockTimeoutError
from airflow_provider_jetbase.migration.lock import MigrationLock, parse_process_id
from tests.jetbase_cli import write_migration
from tests.reliability.workers import RESULT

pytestmark = pytest.mark.postgres

REPO_ROOT = Path(__file__).resolve().parents[2]
GUARD_SECONDS = 120.0  # hang guards, not speed assertions
SLEEP_MARKER = "jbtest_long_migration"


def write_folder(folder: Path) -> None:
    write_migration(
        folder, "V1__first.sql", "CREATE TABLE first_t (id INT);\n-- rollback\nDROP TABLE first_t;"
    )
    write_migration(
        folder,
        "V2__long.sql",
        f"""
        CREATE TABLE half_done (id INT);
        INSERT INTO half_done VALUES (1);
        SELECT pg_sleep(current_setting('jbtest.sleep', true)::float), '{SLEEP_MARKER}';
        -- rollback
        DROP TABLE half_done;
        """,
    )
    write_migration(
        folder, "V3__after.sql", "CREATE TABLE after_t (id INT);\n-- rollback\nDROP TABLE after_t;"
    )


def start_worker(url: URL, folder: Path, *extra: str, sleep: float = 30) -> subprocess.Popen[str]:
    options = f"-c jbtest.sleep={sleep} -c client_connection_check_interval=200"
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.reliability.workers",
            "upgrade",
            url.render_as_string(hide_password=False),
            str(folder),
            "--pg-options",
            options,
            *extra,
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_sleep(engine: Engine, database: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + GUARD_SECONDS
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"worker exited early: {proc.communicate()}"
        with engine.connect() as conn:
            found = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = :d AND pid <> pg_backend_pid() "
                    "AND query LIKE :q AND state = 'active'"
                ),
                {"d": database, "q": f"%{SLEEP_MARKER}%"},
            ).scalar_one()
        if found:
            return
        time.sleep(0.1)
    pytest.fail("the long migration never started")


def wait_backend_gone(engine: Engine, database: str) -> None:
    deadline = time.monotonic() + GUARD_SECONDS
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            left = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = :d AND pid <> pg_backend_pid() "
                    "AND query LIKE :q"
                ),
                {"d": database, "q": f"%{SLEEP_MARKER}%"},
            ).scalar_one()
        if not left:
            return
        time.sleep(0.1)
    pytest.fail("the killed client's backend is still running")


def state(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        versions = sorted(r[0] for r in conn.execute(text("SELECT version FROM jetbase_migrations")))
        lock = conn.execute(text("SELECT is_locked, process_id FROM jetbase_lock WHERE id = 1")).one()
    return {
        "versions": versions,
        "tables": sorted(inspect(engine).get_table_names()),
        "locked": bool(lock[0]),
        "process_id": lock[1],
    }


def kill_mid_migration(postgres_url: URL, folder: Path, engine: Engine) -> int:
    proc = start_worker(postgres_url, folder)
    wait_for_sleep(engine, str(postgres_url.database), proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=GUARD_SECONDS)
    assert proc.returncode == -signal.SIGKILL
    wait_backend_gone(engine, str(postgres_url.database))
    return proc.pid


def test_sigkill_mid_migration_leaves_no_trace_and_the_rerun_takes_over_the_dead_lock(
    postgres_url: URL, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "migrations"
    write_folder(folder)
    engine = create_engine(postgres_url)
    try:
        pid = kill_mid_migration(postgres_url, folder, engine)
        after_kill = state(engine)
        # V1 committed before the kill; nothing of V2 (table, row, version row) survived.
        assert after_kill["versions"] == ["1"]
        assert "half_done" not in after_kill["tables"] and "after_t" not in after_kill["tables"]
        assert after_kill["locked"], "the killed process's lock row should still be held"
        origin = parse_process_id(after_kill["process_id"])
        assert origin is not None and origin[1] == pid, after_kill

        # Default policy (stale_lock_after=None): never taken over; the error names the dead holder.
        with pytest.raises(LockTimeoutError) as info:
            Migrator(engine, folder, lock_timeout=0.5, lock_poll_interval=0.1).upgrade()
        assert f"pid {pid}" in str(info.value) and "unlock" in str(info.value)
        assert state(engine) == after_kill

        # Opt-in policy: the holder's pid is dead on this host -> taken over (age rule not reached).
        with caplog.at_level(logging.WARNING):
            result = Migrator(
                engine, folder, lock_timeout=10, lock_poll_interval=0.1, stale_lock_after=3600
            ).upgrade()
        assert [r.version for r in result.applied] == ["2", "3"]
        takeover = [r for r in caplog.records if "STALE JETBASE LOCK" in r.getMessage()]
        assert takeover and takeover[0].levelno == logging.WARNING
        # PostgreSQL proves it by the advisory lock the dead holder's session held, not by guessing.
        assert f"pid {pid}" in takeover[0].getMessage() and "session is gone" in takeover[0].getMessage()
        final = state(engine)
        assert final["versions"] == ["1", "2", "3"] and not final["locked"]
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM half_done")).scalar_one() == 1
    finally:
        engine.dispose()


def test_old_lock_without_a_recorded_holder_is_taken_over_by_age(
    postgres_url: URL, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A lock left by the jetbase CLI (uuid4: holder unknown) two hours ago; stale_lock_after=60."""
    folder = tmp_path / "migrations"
    write_migration(folder, "V1__first.sql", "CREATE TABLE first_t (id INT);")
    engine = create_engine(postgres_url)
    try:
        Migrator(engine, folder).upgrade()
        with engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE jetbase_lock SET is_locked = TRUE, "
                    "locked_at = CURRENT_TIMESTAMP - INTERVAL '2 hours', "
                    "process_id = '2f1b8c4e-7d1a-4c55-9a51-0c3f7e0b9d11' WHERE id = 1"
                )
            )
        write_migration(folder, "V2__second.sql", "CREATE TABLE second_t (id INT);")
        with pytest.raises(LockTimeoutError):
            Migrator(
                engine, folder, lock_timeout=0.3, lock_poll_interval=0.1, stale_lock_after=3 * 3600
            ).upgrade()
        with caplog.at_level(logging.WARNING):
            result = Migrator(
                engine, folder, lock_timeout=5, lock_poll_interval=0.1, stale_lock_after=60
            ).upgrade()
        assert [r.version for r in result.applied] == ["2"]
        message = next(r.getMessage() for r in caplog.records if "STALE JETBASE LOCK" in r.getMessage())
        assert "stale_lock_after=60" in message and "2f1b8c4e-7d1a-4c55-9a51-0c3f7e0b9d11" in message
        assert not state(engine)["locked"]
    finally:
        engine.dispose()


def test_live_holder_is_never_taken_over(postgres_url: URL, tmp_path: Path) -> None:
    """A live engine holder (its session lock held) stays held, even with the policy on and its
    locked_at set back two hours by hand: the waiter cannot obtain the session lock, so it never
    presumes the holder dead."""
    folder = tmp_path / "migrations"
    write_migration(folder, "V1__first.sql", "CREATE TABLE first_t (id INT);")
    engine = create_engine(postgres_url)
    try:
        Migrator(engine, folder).upgrade()
        with engine.connect() as conn:
            holder = MigrationLock(
                conn,
                engine,
                dialect_for(engine),
                timeout=5,
                poll_interval=0.1,
                owner="live",
                stale_after=None,
                logger=logging.getLogger("test.live_holder"),
            )
            holder.acquire()
            try:
                with engine.begin() as other:
                    other.execute(
                        text(
                            "UPDATE jetbase_lock SET locked_at = locked_at - INTERVAL '2 hours' WHERE id = 1"
                        )
                    )
                with pytest.raises(LockTimeoutError):
                    Migrator(
                        engine, folder, lock_timeout=0.5, lock_poll_interval=0.1, stale_lock_after=3600
                    ).upgrade()
                assert state(engine)["process_id"] == holder.process_id
            finally:
                holder.release()
        assert not state(engine)["locked"]
    finally:
        engine.dispose()


def _result(proc: subprocess.Popen[str]) -> tuple[dict[str, Any], str]:
    stdout, stderr = proc.communicate(timeout=GUARD_SECONDS)
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT)]
    assert lines, f"no result line\n{stdout}\n{stderr}"
    return json.loads(lines[-1][len(RESULT) :]), stderr


@pytest.mark.parametrize("driver", ["psycopg2", "psycopg"])
def test_sigterm_mid_migration_releases_the_lock(driver: str, tmp_path: Path) -> None:
    """SIGTERM turned into an exception in the main thread (what Airflow's task runner does before
    calling on_kill): the open migration is rolled back and the lock released. A blocking driver only
    runs the Python handler when the statement returns, so the sleep here is short (3 s)."""
    from tests import dbs
    from tests.conftest import _require_server

    _require_server("postgres")
    with dbs.fresh_database("postgres", driver=driver) as url:
        folder = tmp_path / "migrations"
        write_folder(folder)
        engine = create_engine(url)
        try:
            proc = start_worker(url, folder, "--sigterm-raises", sleep=3)
            wait_for_sleep(engine, str(url.database), proc)
            sent = time.monotonic()
            os.kill(proc.pid, signal.SIGTERM)
            outcome, stderr = _result(proc)
            print(f"\n{driver}: SIGTERM -> exit after {time.monotonic() - sent:.2f} s")
            wait_backend_gone(engine, str(url.database))
            final = state(engine)
            assert not final["locked"], f"lock left held after SIGTERM: {final}\n{stderr}"
            assert final["versions"] == ["1"] and "half_done" not in final["tables"], final
            assert "Released the Jetbase migration lock" in stderr
            # The kill must surface as the kill, not as a database error of the migration.
            assert outcome["error"] == "TerminatedError", (outcome, stderr)
        finally:
            engine.dispose()


@pytest.mark.mysql
def test_sigkill_on_mariadb_keeps_committed_ddl_and_the_rerun_says_so(
    mysql_url: URL, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """MariaDB commits DDL implicitly: a migration killed after its CREATE TABLE leaves that table
    (but no version row). The server keeps the orphaned session until wait_timeout; the test ends it
    with KILL, as an operator would. The rerun takes the dead holder's lock over, then stops at the
    half-done file with an error that names it and says the database may hold part of it."""
    folder = tmp_path / "migrations"
    write_migration(folder, "V1__first.sql", "CREATE TABLE first_t (id INT);")
    write_migration(
        folder,
        "V2__long.sql",
        f"CREATE TABLE half_done (id INT);\nSELECT SLEEP(COALESCE(@jbtest_sleep, 0)), '{SLEEP_MARKER}';\n",
    )
    engine = create_engine(mysql_url)
    database = str(mysql_url.database)

    def sessions() -> list[int]:
        with engine.connect() as conn:
            return [
                int(r[0])
                for r in conn.execute(
                    text(
                        "SELECT id FROM information_schema.processlist "
                        "WHERE db = :d AND id <> CONNECTION_ID() AND info LIKE :q"
                    ),
                    {"d": database, "q": f"%{SLEEP_MARKER}%"},
                )
            ]

    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.reliability.workers",
                "upgrade",
                mysql_url.render_as_string(hide_password=False),
                str(folder),
                "--mysql-init",
                "SET @jbtest_sleep=30",
            ],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + GUARD_SECONDS
        while not sessions():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=GUARD_SECONDS)
        with engine.connect() as conn:
            for session in sessions():
                conn.execute(text(f"KILL {session}"))
        after_kill = state(engine)
        assert after_kill["versions"] == ["1"] and "half_done" in after_kill["tables"], after_kill
        assert after_kill["locked"] and parse_process_id(after_kill["process_id"]) is not None

        from airflow_provider_jetbase.migration.errors import MigrationExecutionError

        with caplog.at_level(logging.WARNING), pytest.raises(MigrationExecutionError) as info:
            Migrator(engine, folder, lock_timeout=10, lock_poll_interval=0.1, stale_lock_after=3600).upgrade()
        assert any("STALE JETBASE LOCK" in r.getMessage() for r in caplog.records)
        message = str(info.value)
        assert "V2__long.sql" in message and "may hold part of" in message and "half_done" in message, message
        final = state(engine)
        assert final["versions"] == ["1"] and not final["locked"], final
    finally:
        engine.dispose()
