"""Who holds the lock: the process id the engine writes (a UUID carrying the namespace, pid and start
time), and what a waiter that times out is told (the holder, since when, how to unlock), with the
holder's log line tying its process id to its owner.

Elsewhere: taking over stale locks in test_lock_stale_rows.py, a removed lock row in
test_lock_lost.py, two runs at once in test_concurrency.py."""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine

from airflow_provider_jetbase.migration import (
    LockTimeoutError,
    Migrator,
)
from tests.engine.helpers import hold_lock_like_the_cli, table_file, tables
from tests.jetbase_cli import (
    LOCK_FREE,
    applied_versions,
    lock_row,
    write_migration,
)


def test_lock_timeout_says_who_holds_it_and_how_to_unlock(
    db_url: URL, folder: Path, make_engine: Callable[..., Engine]
) -> None:
    table_file(folder, "1", "l1")
    engine = make_engine(db_url)
    Migrator(engine, folder).upgrade()
    table_file(folder, "2", "l2")
    process_id = hold_lock_like_the_cli(engine)
    migrator = Migrator(engine, folder, lock_timeout=0.3, lock_poll_interval=0.05)
    info = migrator.lock_status()
    assert info.is_locked and info.process_id == process_id and info.supported
    with pytest.raises(LockTimeoutError) as caught:
        migrator.upgrade()
    message = str(caught.value)
    assert process_id in message and "since" in message and "jetbase unlock" in message
    assert "Migrator(engine, migrations_dir).unlock()" in message and "probably the jetbase CLI" in message
    assert applied_versions(engine) == ["1"] and lock_row(engine) == (True, True, process_id)
    migrator.unlock()
    assert lock_row(engine) == LOCK_FREE
    assert [r.version for r in migrator.upgrade().applied] == ["2"]


def test_lock_holder_is_named_to_waiters(
    postgres_url: URL, folder: Path, make_engine: Callable[..., Engine], caplog: pytest.LogCaptureFixture
) -> None:
    write_migration(folder, "V1__slow.sql", "SELECT pg_sleep(1.5);\n")
    engine = make_engine(postgres_url)
    holder = Migrator(engine, folder, lock_owner="dag=d task=t run=r1")
    started = threading.Event()

    def on_sleep(conn: Connection, cursor: Any, statement: str, *args: Any) -> None:
        if "pg_sleep" in statement:
            started.set()

    event.listen(engine, "before_cursor_execute", on_sleep)
    with caplog.at_level(logging.INFO, logger="airflow_provider_jetbase.migration"):
        thread = threading.Thread(target=holder.upgrade)
        thread.start()
        assert started.wait(60)
        other = Migrator(make_engine(postgres_url), folder, lock_timeout=0.2, lock_poll_interval=0.05)
        with pytest.raises(LockTimeoutError) as caught:
            other.upgrade()
        thread.join()
    process_id = caught.value.holder.process_id
    assert f"pid {os.getpid()} on this host" in str(caught.value) and process_id in str(caught.value)
    # The holder's log line ties that process_id to its owner (e.g. the Airflow task instance).
    acquired = [
        r.getMessage() for r in caplog.records if "Acquired the Jetbase migration lock" in r.getMessage()
    ]
    assert any(process_id in m and "owner dag=d task=t run=r1" in m for m in acquired), acquired
    assert lock_row(engine) == LOCK_FREE and applied_versions(engine) == ["1"]
    assert tables(engine) == {"jetbase_migrations", "jetbase_lock"}  # no table of ours


def test_process_id_is_a_uuid_that_carries_namespace_pid_and_start_time() -> None:
    from airflow_provider_jetbase.migration.holder import namespace_fingerprint, start_ticks
    from airflow_provider_jetbase.migration.lock import make_process_id, parse_process_id

    for pid in (1, 4242, 4194303, os.getpid()):
        process_id = make_process_id(pid)
        assert len(process_id) == 36 and uuid.UUID(process_id).version == 8
        identity = parse_process_id(process_id)
        assert identity is not None and identity.pid == pid
        assert identity.namespace == namespace_fingerprint() != 0
        assert identity.start_ticks == (start_ticks(pid) or 0) & 0xFFFFFFFF
    assert make_process_id(7) != make_process_id(7)
    assert parse_process_id(str(uuid.uuid4())) is None  # what the CLI writes
    assert parse_process_id(None) is None and parse_process_id("") is None
