"""A signal during a long migration statement cancels it on the server, at once.

What Airflow does on a kill or an ``execution_timeout`` is raise an exception from a signal handler
in the task's main thread. ``run_cancellable`` keeps that thread free (the migration runs in a
worker thread), so the exception arrives while the driver is still blocked in C, and the running
statement is cancelled with the driver's own means: psycopg2 ``cancel()``, psycopg 3
``cancel_safe()``, MySQL ``KILL QUERY`` from a second connection, SQLite ``interrupt()``.

The statement would run for 10 minutes; the hang guard is 2 minutes. So it ending before the guard
is the proof it was cancelled. The signal is SIGUSR1 with a handler of the test's own (restored
afterwards), sent when the statement is seen running on the server.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Engine

from airflow_provider_jetbase.migration import Migrator
from airflow_provider_jetbase.migration.cancel import run_cancellable
from tests.jetbase_cli import applied_versions, lock_row, write_migration

GUARD_SECONDS = 120.0  # hang guard, not a speed assertion
MARKER = "jbtest_long_statement"
LONG = {
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000000) "
    f"SELECT count(*), '{MARKER}' FROM c;",
    "postgresql": f"SELECT pg_sleep(600), '{MARKER}';",
    "mysql": f"SELECT SLEEP(600), '{MARKER}';",
}
LOG = logging.getLogger("test_cancel")


class Interrupted(Exception):
    """What the test's signal handler raises, as Airflow's kill and timeout handlers do."""


@pytest.fixture
def interrupting_signal() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(f"signal {signum}")

    previous = signal.signal(signal.SIGUSR1, handler)
    yield
    signal.signal(signal.SIGUSR1, previous)


def write_folder(folder: Path, dialect: str) -> None:
    write_migration(
        folder, "V1__first.sql", "CREATE TABLE first_t (id INT);\nINSERT INTO first_t VALUES (1);"
    )
    write_migration(folder, "V2__long.sql", f"INSERT INTO first_t VALUES (2);\n{LONG[dialect]}\n")


def running_on_server(engine: Engine, started: threading.Event) -> Callable[[], bool]:
    """Whether the long statement is running on the server (SQLite: has been sent to the library)."""
    name = engine.dialect.name
    if name == "sqlite":
        return started.is_set
    query = {
        "postgresql": "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE :q "
        "AND pid <> pg_backend_pid() AND datname = current_database()",
        "mysql": "SELECT count(*) FROM information_schema.processlist WHERE info LIKE :q "
        "AND id <> CONNECTION_ID() AND db = DATABASE()",
    }[name]

    def check() -> bool:
        with engine.connect() as conn:
            return bool(conn.execute(text(query), {"q": f"%{MARKER}'%"}).scalar_one())

    return check


@pytest.mark.parametrize("fixture", ["sqlite_url", "postgres_url", "postgres_psycopg3_url", "mysql_url"])
def test_signal_during_a_long_statement_cancels_it_rolls_back_and_frees_the_lock(
    fixture: str, request: pytest.FixtureRequest, tmp_path: Path, interrupting_signal: None
) -> None:
    url: URL = request.getfixturevalue(fixture)
    engine = create_engine(url)
    observer = create_engine(url)
    try:
        folder = tmp_path / "migrations"
        write_folder(folder, engine.dialect.name)
        started = threading.Event()

        @event.listens_for(engine, "before_cursor_execute")
        def _seen(conn: object, cursor: object, statement: str, *args: object) -> None:
            if MARKER in statement:
                started.set()

        is_running = running_on_server(observer, started)
        sent: list[float] = []

        def interrupt_when_running() -> None:
            deadline = time.monotonic() + GUARD_SECONDS
            while time.monotonic() < deadline and not is_running():
                time.sleep(0.05)
            sent.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGUSR1)

        migrator = Migrator(engine, folder, lock_timeout=5)
        trigger = threading.Thread(target=interrupt_when_running, daemon=True)
        trigger.start()
        with pytest.raises(Interrupted) as caught:
            run_cancellable(migrator.upgrade, migrator.canceller, grace=GUARD_SECONDS, logger=LOG)
        stopped_after = time.monotonic() - sent[0]
        trigger.join(GUARD_SECONDS)
        print(f"\n{fixture}: interrupted -> migration stopped after {stopped_after:.2f} s")

        notes = " ".join(getattr(caught.value, "__notes__", []))
        assert "the migration stopped" in notes and "V2__long.sql was cancelled" in notes, notes
        if engine.dialect.name != "mysql":
            assert "nothing of V2__long.sql was applied" in notes, notes
        # The database says the same: V2's insert rolled back (InnoDB rolls DML back on MariaDB too),
        # no V2 row, the lock free, and nothing of ours still running on the server.
        assert applied_versions(observer) == ["1"]
        with observer.connect() as conn:
            assert [r[0] for r in conn.execute(text("SELECT id FROM first_t ORDER BY id"))] == [1]
        assert lock_row(observer) is not None and not lock_row(observer)[0]  # type: ignore[index]
        assert not is_running() or engine.dialect.name == "sqlite"
    finally:
        engine.dispose()
        observer.dispose()
