"""The stale-lock policy (``stale_lock_after``), on every database: a lock whose holder is proven
dead (a pid of this host that no longer runs, e.g. an engine killed with SIGKILL) or that is older
than the limit is taken over, loudly; a lock written by the jetbase CLI (a random uuid4, no pid) is
never presumed dead by the pid rule. Lock rows written by hand or by another tool: a held row whose
``process_id`` is NULL or empty names no holder, so only the age rule can free it.

Elsewhere: a live holder in another PID namespace in test_lock_pid_namespaces.py, SIGKILL during a
long PostgreSQL migration in test_crash.py, who holds the lock in test_lock_holder.py."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Engine

from airflow_provider_jetbase.migration import (
    LockTimeoutError,
    Migrator,
)
from airflow_provider_jetbase.migration.dialects import dialect_for
from tests.engine.helpers import hold_lock_like_the_cli, table_file
from tests.jetbase_cli import (
    LOCK_FREE,
    JetbaseProject,
    applied_versions,
    lock_row,
    write_migration,
)

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


# ------------------------------------------------------------------ proven dead, or old


def test_stale_lock_of_a_dead_local_process_is_taken_over(
    sqlite_url: URL, folder: Path, make_engine: Callable[..., Engine], caplog: pytest.LogCaptureFixture
) -> None:
    from airflow_provider_jetbase.migration.lock import make_process_id

    table_file(folder, "1", "s1")
    engine = make_engine(sqlite_url)
    Migrator(engine, folder).upgrade()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    process_id = make_process_id(dead_pid)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE jetbase_lock SET is_locked = TRUE, process_id = :p WHERE id = 1"), {"p": process_id}
        )
    table_file(folder, "2", "s2")
    with pytest.raises(LockTimeoutError, match=f"pid {dead_pid} on this host"):
        Migrator(engine, folder, lock_timeout=0.1, lock_poll_interval=0.05).upgrade()
    with caplog.at_level(logging.WARNING, logger="airflow_provider_jetbase.migration"):
        result = Migrator(engine, folder, lock_timeout=5, stale_lock_after=3600).upgrade()
    assert [r.version for r in result.applied] == ["2"]
    assert any("TAKING OVER A STALE JETBASE LOCK" in r.getMessage() and "no longer running" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    assert lock_row(engine) == LOCK_FREE


def test_stale_lock_by_age(sqlite_url: URL, folder: Path, make_engine: Callable[..., Engine]) -> None:
    table_file(folder, "1", "a1")
    engine = make_engine(sqlite_url)
    Migrator(engine, folder).upgrade()
    hold_lock_like_the_cli(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE jetbase_lock SET locked_at = '2020-01-01 00:00:00.000' WHERE id = 1"))
    table_file(folder, "2", "a2")
    result = Migrator(engine, folder, lock_timeout=5, stale_lock_after=60).upgrade()
    assert [r.version for r in result.applied] == ["2"] and lock_row(engine) == LOCK_FREE


KILLED_ENGINE_SCRIPT = """
import os, signal, sys
from sqlalchemy import create_engine, event
from airflow_provider_jetbase.migration import Migrator

engine = create_engine(sys.argv[1])

@event.listens_for(engine, "before_cursor_execute")
def die(conn, cursor, statement, *args):
    if "jb_kill_marker" in statement:
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 while holding the lock, mid-migration

Migrator(engine, sys.argv[2]).upgrade()
"""


def test_killed_engine_lock_is_proven_dead_but_a_cli_lock_is_never_taken_over(
    db_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    project = JetbaseProject(tmp_path, db_url)
    write_migration(
        project.migrations_dir,
        "V1__killed_here.sql",
        """
        SELECT 'jb_kill_marker' AS here;
        CREATE TABLE t1 (id INTEGER);
        -- rollback
        DROP TABLE t1;
        """,
    )
    table_file(project.migrations_dir, "2", "t2")
    script = tmp_path / "killed_engine.py"
    script.write_text(KILLED_ENGINE_SCRIPT)
    completed = subprocess.run(
        [
            sys.executable,
            str(script),
            db_url.render_as_string(hide_password=False),
            str(project.migrations_dir),
        ],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == -signal.SIGKILL, completed.stderr
    engine = make_engine(db_url)
    held = lock_row(engine)
    assert held is not None and held[0], "the killed engine did not hold the lock"
    assert applied_versions(engine) == []

    # Documentation: the CLI stays locked out until someone runs `jetbase unlock`.
    project.upgrade().assert_failed_with("Migration lock is already held by another process")
    # Without a stale policy we wait and time out, naming the dead holder...
    with pytest.raises(LockTimeoutError) as caught:
        Migrator(engine, project.migrations_dir, lock_timeout=0.3, lock_poll_interval=0.1).upgrade()
    assert str(held[2]) in str(caught.value)
    # ...with it, the dead pid on this host is proof enough to take over.
    result = Migrator(
        engine, project.migrations_dir, lock_timeout=300.0, lock_poll_interval=0.1, stale_lock_after=3600.0
    ).upgrade()
    assert [r.filename for r in result.applied] == ["V1__killed_here.sql", "V2__create_t2.sql"]
    assert lock_row(engine) == LOCK_FREE

    # A lock written by the CLI (a random uuid4, no pid) is never presumed dead by that rule.
    cli_holder = str(uuid.uuid4())
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE jetbase_lock SET is_locked = TRUE, locked_at = CURRENT_TIMESTAMP, process_id = :p "
                "WHERE id = 1"
            ),
            {"p": cli_holder},
        )
    table_file(project.migrations_dir, "3", "t3")
    with pytest.raises(LockTimeoutError):
        Migrator(
            engine, project.migrations_dir, lock_timeout=0.3, lock_poll_interval=0.1, stale_lock_after=3600.0
        ).upgrade()
    assert lock_row(engine) == (True, True, cli_holder)
    assert applied_versions(engine) == ["1", "2"]
