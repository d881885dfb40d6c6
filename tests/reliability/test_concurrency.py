"""Runs at once on one database. Two engines: the one that waited for the lock decides what to do
under it, so it finds nothing left to apply or roll back (SQLite, PostgreSQL, MariaDB), and two
Migrators started together apply each migration once. Then many processes, on the real PostgreSQL
and MariaDB servers:

8 real processes (multiprocessing, spawn) start ``Migrator.upgrade()`` together (a barrier) on a
fresh database from the same folder of 30 migrations, 5 rounds per database. Each migration creates
its own table AND inserts its number into ``applied_log`` (created by V1), so a migration that ran
twice shows up even where DDL is not transactional. Then the jetbase CLI and the engine race.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import URL, Engine

from airflow_provider_jetbase.migration import (
    Migrator,
)
from tests import dbs
from tests.engine.helpers import table_file
from tests.jetbase_cli import (
    LOCK_FREE,
    LOCK_HELD_MESSAGE,
    JetbaseProject,
    StatementGate,
    applied_versions,
    count_lock_looks,
    finish,
    lock_row,
    table_exists,
    write_migration,
)
from tests.reliability.workers import pool_worker

WORKERS = 8
MIGRATIONS = 30
# A lock whose claim is check-then-set (read "free", then an unconditional UPDATE, no advisory lock)
# made 19 of 20 rounds fail on PostgreSQL and 20 of 20 on MariaDB (measured on this machine): 5 rounds
# miss such a race with a chance of about 0.05**5. Planning before the lock fails every round.
ROUNDS = 5
SHORT_TIMEOUT_ROUNDS = 3
RESULT_GUARD_SECONDS = 300.0  # a hang guard, not a speed assertion


def write_folder(folder: Path, kind: str, sleep_in: int | None = None) -> None:
    """30 migrations; ``sleep_in`` adds a 1.5 s sleep to that migration (longer than a short lock_timeout)."""
    sleep = "SELECT pg_sleep(1.5);" if kind == "postgres" else "SELECT SLEEP(1.5);"
    for n in range(1, MIGRATIONS + 1):
        body = ""
        if n == 1:
            body += "CREATE TABLE applied_log (n INT NOT NULL);\n"
        body += f"CREATE TABLE t_{n:02d} (id INT PRIMARY KEY, note VARCHAR(10));\n"
        body += f"INSERT INTO applied_log (n) VALUES ({n});\n"
        if n == sleep_in:
            body += sleep + "\n"
        body += f"-- rollback\nDROP TABLE t_{n:02d};\n"
        write_migration(folder, f"V{n}__table_{n:02d}.sql", body)


@dataclass
class Pool:
    tasks: Any
    results: Any

    def round(self, url: URL, folder: Path, lock_timeout: float, poll: float = 0.05) -> list[dict[str, Any]]:
        task = (url.render_as_string(hide_password=False), str(folder), lock_timeout, poll)
        for _ in range(WORKERS):
            self.tasks.put(task)
        outcomes = []
        for _ in range(WORKERS):
            try:
                outcomes.append(self.results.get(timeout=RESULT_GUARD_SECONDS))
            except queue.Empty:
                pytest.fail(f"a worker did not report within {RESULT_GUARD_SECONDS} s (hung or dead)")
        return outcomes


@pytest.fixture(scope="module")
def pool() -> Iterator[Pool]:
    ctx = multiprocessing.get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    barrier = ctx.Barrier(WORKERS, timeout=RESULT_GUARD_SECONDS)
    procs = [
        ctx.Process(target=pool_worker, args=(tasks, results, barrier, i), daemon=True)
        for i in range(WORKERS)
    ]
    for p in procs:
        p.start()
    try:
        yield Pool(tasks, results)
    finally:
        for _ in procs:
            tasks.put(None)
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()


def check_database(url: URL) -> None:
    """Every migration exactly once: 30 version rows, 30 tables, 30 distinct applied_log rows; lock free."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            versions = [r[0] for r in conn.execute(text("SELECT version FROM jetbase_migrations"))]
            log = [r[0] for r in conn.execute(text("SELECT n FROM applied_log"))]
            lock = conn.execute(text("SELECT is_locked, process_id FROM jetbase_lock WHERE id = 1")).one()
            lock_rows = conn.execute(text("SELECT COUNT(*) FROM jetbase_lock")).scalar_one()
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    expected = [str(n) for n in range(1, MIGRATIONS + 1)]
    assert sorted(versions, key=int) == expected, f"version rows: {sorted(versions, key=int)}"
    assert sorted(log) == list(range(1, MIGRATIONS + 1)), (
        f"applied_log (a migration ran twice?): {sorted(log)}"
    )
    assert {f"t_{n:02d}" for n in range(1, MIGRATIONS + 1)} <= tables
    assert len(tables) == MIGRATIONS + 3, sorted(tables)  # + applied_log, jetbase_migrations, jetbase_lock
    assert not lock[0], f"lock still held by {lock[1]}"
    assert lock_rows == 1


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_eight_processes_at_once_apply_each_migration_once(
    kind: str, pool: Pool, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    request.getfixturevalue(f"{kind}_url")  # skip/fail when the server is missing, as every test does
    folder = tmp_path / "migrations"
    write_folder(folder, kind)
    started = time.monotonic()
    for round_no in range(ROUNDS):
        with dbs.fresh_database(kind) as url:
            outcomes = pool.round(url, folder, lock_timeout=120)
            failed = [o for o in outcomes if not o["ok"]]
            assert not failed, f"round {round_no}: {failed}"
            applied = sorted(v for o in outcomes for v in o["applied"])
            assert applied == sorted(str(n) for n in range(1, MIGRATIONS + 1)), (
                f"round {round_no}: {outcomes}"
            )
            check_database(url)
    print(f"\n{kind}: {ROUNDS} rounds x {WORKERS} processes in {time.monotonic() - started:.1f} s")


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_short_lock_timeout_fails_only_with_lock_timeout_error(
    kind: str, pool: Pool, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The work (a 1.5 s sleep in V15) outlasts lock_timeout=0.4 s: waiters fail with LockTimeoutError,
    whose message names the holder and how to unlock; nothing else fails, nothing runs twice."""
    request.getfixturevalue(f"{kind}_url")
    folder = tmp_path / "migrations"
    write_folder(folder, kind, sleep_in=15)
    for round_no in range(SHORT_TIMEOUT_ROUNDS):
        with dbs.fresh_database(kind) as url:
            outcomes = pool.round(url, folder, lock_timeout=0.4)
            errors = {o["error"] for o in outcomes if not o["ok"]}
            assert errors == {"LockTimeoutError"}, f"round {round_no}: {outcomes}"
            for o in outcomes:
                if not o["ok"]:
                    # The holder's process_id once its row is written; before that (a waiter that
                    # started and gave up within the winner's first moments, on a loaded machine),
                    # the run that holds the session lock, which has no process_id yet to name.
                    named = "process_id" in o["message"] or "another engine run (it holds" in o["message"]
                    assert named and "unlock" in o["message"], o["message"]
            winners = [o for o in outcomes if o["applied"]]
            assert len(winners) == 1 and len(winners[0]["applied"]) == MIGRATIONS, outcomes
            check_database(url)


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_cli_and_engine_at_once(
    kind: str, pool: Pool, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Two jetbase CLI processes race the 8 engine workers; V15 sleeps 1.5 s so runs overlap, and the
    engine starts 0-1.2 s after the CLIs so each side wins some rounds. The CLI fails at once when the
    lock is held (its documented behaviour). It also computes its pending set BEFORE taking the lock
    (a Jetbase bug, jetbase-facts.md), so if it gets the lock after someone else applied files it
    re-runs them and fails on "already exists": that failure is accepted, a second application is not."""
    request.getfixturevalue(f"{kind}_url")
    delays = [0.0, 0.3, 0.6, 0.9, 1.2]
    seen: dict[str, int] = {}
    for round_no, delay in enumerate(delays):
        with dbs.fresh_database(kind) as url:
            project = JetbaseProject(tmp_path / f"project_{round_no}", url)
            write_folder(project.migrations_dir, kind, sleep_in=15)
            clis = [project.start("upgrade") for _ in range(2)]
            time.sleep(delay)
            outcomes = pool.round(url, project.migrations_dir, lock_timeout=120)
            cli_results = [finish(p, "upgrade") for p in clis]
            assert all(o["ok"] for o in outcomes), outcomes
            engine_applied = sum(len(o["applied"]) for o in outcomes)
            seen[f"engine applied {engine_applied}/30"] = (
                seen.get(f"engine applied {engine_applied}/30", 0) + 1
            )
            for result in cli_results:
                if LOCK_HELD_MESSAGE in result.output:
                    key = "cli: lock held"
                elif result.returncode == 0:
                    key = "cli: ok"
                elif "duplicate key value violates unique constraint" in result.output:
                    # The CLI's own CREATE TABLE IF NOT EXISTS racing another creator on PostgreSQL
                    # (the engine retries that; the CLI does not): it fails before touching anything.
                    key = "cli: table-creation race"
                else:
                    assert "already exists" in result.output.lower(), result.describe()
                    key = "cli: stale plan (already exists)"
                seen[key] = seen.get(key, 0) + 1
            check_database(url)
    print(f"\n{kind}: outcomes over {len(delays)} rounds: {seen}")


# ------------------------------------------------------------------ two engines: decide under the lock

# On SQLite the first engine's open migration transaction holds the database file, so each write of the
# waiter's lock poll (the seed INSERT, the claiming UPDATE) blocks in pysqlite's busy handler until its
# timeout (5 s by default) and comes back "database is locked", which the lock treats as "held, keep
# waiting". The waiter gets a short busy timeout: the same path, polled without waiting out 5 s twice a
# poll (a 20 s test before). Only the waiter's timeout changes; the migrating engine keeps the default.
SQLITE_WAITER_BUSY_TIMEOUT = 0.2


def waiter_engine(make_engine: Callable[..., Engine], url: URL) -> Engine:
    if url.get_backend_name() == "sqlite":
        return make_engine(url, connect_args={"timeout": SQLITE_WAITER_BUSY_TIMEOUT})
    return make_engine(url)



def _upgrade_meeting_a_writer_at_release(
    sqlite_url: URL, tmp_path: Path, make_engine: Callable[..., Engine], close_run_connection: bool
) -> None:
    """Upgrade one file while, from the release UPDATE on, another connection holds SQLite's write
    lock for 0.3 s (a plain BEGIN IMMEDIATE standing for a waiter's lock poll); with
    ``close_run_connection`` the run's own connection is also closed under that UPDATE, so the release
    falls back to a fresh connection. The run must succeed with the lock free."""
    import sqlite3

    folder = tmp_path / "migrations"
    table_file(folder, "1", "t1")
    engine = make_engine(sqlite_url)
    writer = sqlite3.connect(str(sqlite_url.database), isolation_level=None, check_same_thread=False)
    held: list[threading.Timer] = []

    @event.listens_for(engine, "before_cursor_execute")
    def hold_the_write_lock(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "SET is_locked = 0" in statement and not held:
            writer.execute("BEGIN IMMEDIATE")
            held.append(threading.Timer(0.3, writer.execute, args=("COMMIT",)))
            held[0].start()
            if close_run_connection:
                cursor.connection.close()

    try:
        result = Migrator(engine, folder).upgrade()
    finally:
        for timer in held:
            timer.join()
        writer.close()
    assert held, "the release UPDATE was never sent"
    assert [r.filename for r in result.applied] == ["V1__create_t1.sql"]
    assert lock_row(engine) == LOCK_FREE


def test_sqlite_release_waits_for_a_writer_instead_of_failing_at_once(
    sqlite_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    """The run ends while another connection holds SQLite's write lock: the release, which reads
    before it writes, gets "database is locked" at once (SQLite does not wait where waiting could
    deadlock), rolls back and retries until the writer is done. Before, the release failed twice at
    once (its retry on a fresh connection too) and failed a run whose migrations were in."""
    _upgrade_meeting_a_writer_at_release(sqlite_url, tmp_path, make_engine, close_run_connection=False)


def test_sqlite_release_on_a_fresh_connection_also_waits_for_a_writer(
    sqlite_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    """The run's own connection breaks at the release, so the release is retried on a fresh
    connection, and there it meets the other connection's write lock: the fresh release waits it out
    as the first one would. Before, the fresh release failed at once and failed a run whose
    migrations were in."""
    _upgrade_meeting_a_writer_at_release(sqlite_url, tmp_path, make_engine, close_run_connection=True)


def test_racer_that_waited_finds_nothing_to_do(
    db_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    project = JetbaseProject(tmp_path, db_url)
    write_migration(
        project.migrations_dir,
        "V1__gated.sql",
        """
        SELECT 'jb_gate_marker' AS gate;
        CREATE TABLE t1 (id INTEGER);
        -- rollback
        DROP TABLE t1;
        """,
    )
    table_file(project.migrations_dir, "2", "t2")
    first_engine, second_engine = make_engine(db_url), waiter_engine(make_engine, db_url)
    gate = StatementGate(first_engine, "jb_gate_marker")
    looks = count_lock_looks(second_engine)
    outcomes: dict[str, Any] = {}

    def run(name: str, engine: Engine) -> None:
        try:
            migrator = Migrator(
                engine, project.migrations_dir, lock_timeout=300.0, lock_poll_interval=0.05
            )
            outcomes[name] = migrator.upgrade()
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            outcomes[name] = exc

    first = threading.Thread(target=run, args=("first", first_engine))
    first.start()
    try:
        assert gate.reached.wait(timeout=300), outcomes
        second = threading.Thread(target=run, args=("second", second_engine))
        second.start()
        # Let the second engine poll the held lock a few times: it has then planned nothing yet.
        while len(looks) < 3 and second.is_alive():
            second.join(timeout=0.05)
    finally:
        gate.released.set()
        first.join()
    second.join()

    assert not isinstance(outcomes["first"], BaseException), outcomes["first"]
    assert not isinstance(outcomes["second"], BaseException), outcomes["second"]
    assert [r.filename for r in outcomes["first"].applied] == ["V1__gated.sql", "V2__create_t2.sql"]
    assert outcomes["second"].applied == ()
    assert applied_versions(first_engine) == ["1", "2"]
    assert lock_row(first_engine) == LOCK_FREE


def test_rollback_racer_decides_under_the_lock(
    db_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    """Two rollbacks to version 1 at once: the one that waited finds nothing left to roll back."""
    project = JetbaseProject(tmp_path, db_url)
    table_file(project.migrations_dir, "1", "t1")
    write_migration(
        project.migrations_dir,
        "V2__gated_rollback.sql",
        """
        CREATE TABLE t2 (id INTEGER);
        -- rollback
        SELECT 'jb_gate_marker' AS gate;
        DROP TABLE t2;
        """,
    )
    table_file(project.migrations_dir, "3", "t3")
    first_engine, second_engine = make_engine(db_url), waiter_engine(make_engine, db_url)
    Migrator(first_engine, project.migrations_dir).upgrade()
    gate = StatementGate(first_engine, "jb_gate_marker")
    looks = count_lock_looks(second_engine)
    outcomes: dict[str, Any] = {}

    def run(name: str, engine: Engine) -> None:
        try:
            migrator = Migrator(
                engine, project.migrations_dir, lock_timeout=300.0, lock_poll_interval=0.05
            )
            outcomes[name] = migrator.rollback(to_version="1")
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            outcomes[name] = exc

    first = threading.Thread(target=run, args=("first", first_engine))
    first.start()
    try:
        assert gate.reached.wait(timeout=300), outcomes
        second = threading.Thread(target=run, args=("second", second_engine))
        second.start()
        while len(looks) < 3 and second.is_alive():
            second.join(timeout=0.05)
    finally:
        gate.released.set()
        first.join()
    second.join()

    assert not isinstance(outcomes["first"], BaseException), outcomes["first"]
    assert not isinstance(outcomes["second"], BaseException), outcomes["second"]
    assert [r.filename for r in outcomes["first"].rolled_back] == [
        "V3__create_t3.sql",
        "V2__gated_rollback.sql",
    ]
    assert outcomes["second"].rolled_back == ()
    assert applied_versions(first_engine) == ["1"]
    assert table_exists(first_engine, "t1") and not table_exists(first_engine, "t2")


def test_two_migrators_at_once_apply_each_migration_once(
    postgres_url: URL, folder: Path, make_engine: Callable[..., Engine]
) -> None:
    for i in range(1, 4):
        body = f"CREATE TABLE c{i} (id INTEGER);\nSELECT pg_sleep(0.3);\n"
        write_migration(folder, f"V{i}__m{i}.sql", body)
    barrier = threading.Barrier(2)
    results: list[Any] = []
    logs: list[list[str]] = [[], []]

    class Capture(logging.Handler):
        def __init__(self, sink: list[str]) -> None:
            super().__init__()
            self.sink = sink

        def emit(self, record: logging.LogRecord) -> None:
            self.sink.append(record.getMessage())

    def run(index: int) -> None:
        logger = logging.getLogger(f"test.concurrent.{index}")
        logger.setLevel(logging.INFO)
        logger.addHandler(Capture(logs[index]))
        migrator = Migrator(make_engine(postgres_url), folder, lock_poll_interval=0.05, logger=logger)
        barrier.wait()
        results.append(migrator.upgrade())

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    applied = sorted(len(r.applied) for r in results)
    assert applied == [0, 3]
    assert any("Waiting up to" in m for m in logs[0] + logs[1])
    engine = make_engine(postgres_url)
    assert applied_versions(engine) == ["1", "2", "3"] and lock_row(engine) == LOCK_FREE
