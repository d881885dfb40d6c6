"""A killed or timed-out upgrade task stops its migration on the server at once.

The real JetbaseUpgradeOperator runs in a subprocess whose SIGTERM and ``execution_timeout`` are
wired exactly as Airflow 3.3's task runner wires them (``tests.reliability.workers``). The long
migration sleeps for a session setting the killed run's connection sets to 600 s, longer than the
2-minute hang guard: the statement ending before the guard is the proof that it was cancelled on
the server, not waited for. The retry's connection does not set it, so the same file (same checksum)
sleeps 0 s and the retry applies everything.

Real servers: PostgreSQL with psycopg2 and psycopg 3, MariaDB.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Engine

from tests.jetbase_cli import applied_versions, lock_row, write_migration
from tests.reliability.workers import RESULT

REPO_ROOT = Path(__file__).resolve().parents[2]
GUARD_SECONDS = 120.0  # hang guards, not speed assertions
MARKER = "jbtest_long_migration"
CONN_ID = "jb_kill"

SLEEP = {
    "postgres": f"SELECT pg_sleep(coalesce(current_setting('jbtest.sleep', true), '0')::float), '{MARKER}';",
    "mysql": f"SELECT SLEEP(COALESCE(@jbtest_sleep, 0)), '{MARKER}';",
}
RUNNING = {
    "postgres": "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
    "AND pid <> pg_backend_pid() AND state = 'active' AND query LIKE :q",
    "mysql": "SELECT count(*) FROM information_schema.processlist WHERE db = DATABASE() "
    "AND id <> CONNECTION_ID() AND info LIKE :q",
}
DRIVERS = {  # parameter -> (server kind, connection extra besides the sleep setting)
    "psycopg2": ("postgres", {}),
    "psycopg": ("postgres", {"driver": "psycopg"}),
    "mysql": ("mysql", {}),
}


def write_folder(folder: Path, kind: str) -> None:
    # DML only around the sleep, so even MariaDB (DDL commits implicitly) can roll V2 back whole.
    write_migration(
        folder, "V1__first.sql", "CREATE TABLE first_t (id INT);\nINSERT INTO first_t VALUES (1);"
    )
    write_migration(folder, "V2__long.sql", f"INSERT INTO first_t VALUES (2);\n{SLEEP[kind]}\n")
    write_migration(folder, "V3__after.sql", "INSERT INTO first_t VALUES (3);")


def connection(url: URL, kind: str, extra: dict[str, Any], sleep: float) -> str:
    extra = dict(extra)
    if sleep:
        if kind == "postgres":
            extra["options"] = f"-c jbtest.sleep={sleep}"
        else:
            extra["init_command"] = f"SET @jbtest_sleep = {sleep}"
    return json.dumps(
        {
            "conn_type": kind,
            "host": url.host,
            "port": url.port,
            "login": url.username,
            "schema": url.database,
            "extra": extra,
        }
    )


def start_task(conn: str, folder: Path, home: Path, *extra: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW__"))}
    env[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = conn
    env["AIRFLOW_HOME"] = str(home)
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.workers", "operator-upgrade", CONN_ID, str(folder), *extra],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def poll(condition: Callable[[], bool], what: str, proc: subprocess.Popen[str] | None = None) -> None:
    deadline = time.monotonic() + GUARD_SECONDS
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None and not condition():
            pytest.fail(f"task exited before {what}: {proc.communicate()}")
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting until {what}")


def running(engine: Engine, kind: str) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(text(RUNNING[kind]), {"q": f"%{MARKER}'%"}).scalar_one())


def result(proc: subprocess.Popen[str]) -> tuple[dict[str, Any], str]:
    stdout, stderr = proc.communicate(timeout=GUARD_SECONDS)
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT)]
    assert lines, f"no result line\n{stdout}\n{stderr}"
    return json.loads(lines[-1][len(RESULT) :]), stderr


def first_t(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(text("SELECT id FROM first_t ORDER BY id"))]


@pytest.mark.parametrize("how", ["sigterm", "execution_timeout"])
@pytest.mark.parametrize("driver", sorted(DRIVERS))
def test_killed_or_timed_out_task_cancels_the_statement_frees_the_lock_and_the_retry_applies(
    driver: str, how: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    kind, extra = DRIVERS[driver]
    url: URL = request.getfixturevalue("postgres_url" if kind == "postgres" else "mysql_url")
    folder = tmp_path / "migrations"
    write_folder(folder, kind)
    engine = create_engine(url)
    try:
        args = ("--execution-timeout", "3") if how == "execution_timeout" else ()
        proc = start_task(connection(url, kind, extra, sleep=600), folder, tmp_path / "home", *args)
        try:
            poll(lambda: running(engine, kind), "the long statement runs on the server", proc)
            stopped_from = time.monotonic()
            if how == "sigterm":
                os.kill(proc.pid, signal.SIGTERM)
            outcome, stderr = result(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=GUARD_SECONDS)
        print(
            f"\n{driver} {how}: task ended {time.monotonic() - stopped_from:.2f} s after the kill point"
        )

        expected = "TaskKilledError" if how == "sigterm" else "AirflowTaskTimeout"
        assert outcome["error"] == expected, (outcome, stderr[-3000:])
        notes = " ".join(outcome["notes"])
        assert "the migration stopped" in notes and "V2__long.sql was cancelled" in notes, (
            outcome,
            stderr[-3000:],
        )
        if kind == "postgres":
            assert "nothing of V2__long.sql was applied" in notes, notes
        else:
            assert "may hold part of V2__long.sql" in notes, notes  # what MariaDB cannot promise, said
        # The server agrees: the statement is gone, the lock is free, V2 left nothing.
        poll(lambda: not running(engine, kind), "the cancelled statement is gone from the server")
        lock = lock_row(engine)
        assert lock is not None and lock[0] is False, lock
        assert applied_versions(engine) == ["1"] and first_t(engine) == [1]

        # The retry (same files, a connection that does not sleep) applies the rest.
        retry = start_task(connection(url, kind, extra, sleep=0), folder, tmp_path / "home")
        retried, retry_err = result(retry)
        assert retried["ok"] and retried["applied"] == ["2", "3"], (retried, retry_err[-3000:])
        assert applied_versions(engine) == ["1", "2", "3"] and first_t(engine) == [1, 2, 3]
    finally:
        engine.dispose()
