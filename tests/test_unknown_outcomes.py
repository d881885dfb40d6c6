"""A COMMIT whose reply is lost: the engine must say the outcome was unknown, re-read the database on a
fresh connection, and report (and clean up after) what is really there.

The engine reaches the real server through ``tests/faults.py``'s proxy, which breaks one chosen
COMMIT: forwarded and committed by the server, its reply dropped (``deliver=True``), or never
forwarded (``deliver=False``). Every check of the outcome reads the real server directly, not
through the proxy.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Engine

from airflow_provider_jetbase.migration import Migrator
from airflow_provider_jetbase.migration.errors import LockAcquireUnknownError, MigrationExecutionError
from tests import dbs
from tests.faults import FaultProxy
from tests.jetbase_cli import LOCK_FREE, lock_row, write_migration

# V2 is DML only, so that on MariaDB too its transaction is all or nothing (DDL commits implicitly).
V2_STATEMENT = "INSERT INTO items VALUES (2)"
V3_ROLLBACK = "DELETE FROM items WHERE id = 3"


@dataclass
class Target:
    kind: str
    direct: Engine  # the real server
    proxy: FaultProxy
    engine: Engine  # the same database through the proxy


@pytest.fixture(params=["postgres", "mysql"])
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    kind: str = request.param
    url: URL = request.getfixturevalue(f"{kind}_url")
    upstream = (dbs.PG_HOST, dbs.PG_PORT) if kind == "postgres" else (dbs.MYSQL_HOST, dbs.MYSQL_PORT)
    direct = create_engine(url)
    with FaultProxy("postgres" if kind == "postgres" else "mysql", *upstream) as proxy:
        engine = create_engine(proxy.url(url))
        try:
            yield Target(kind, direct, proxy, engine)
        finally:
            engine.dispose()
            direct.dispose()


def _write_folder(folder: Path) -> Path:
    write_migration(folder, "V1__items.sql", "CREATE TABLE items (id INT);\n-- rollback\nDROP TABLE items;")
    write_migration(
        folder, "V2__second.sql", f"{V2_STATEMENT};\n-- rollback\nDELETE FROM items WHERE id = 2;"
    )
    write_migration(folder, "V3__third.sql", f"INSERT INTO items VALUES (3);\n-- rollback\n{V3_ROLLBACK};")
    return folder


def _versions(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(conn.execute(text("SELECT version FROM jetbase_migrations")).scalars().all())


def _items(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return sorted(conn.execute(text("SELECT id FROM items")).scalars().all())


def _migrator(target: Target, folder: Path) -> Migrator:
    return Migrator(target.engine, folder, lock_timeout=30.0, lock_poll_interval=0.2)


def test_upgrade_lost_commit_reply_reports_the_file_applied(target: Target, tmp_path: Path) -> None:
    folder = _write_folder(tmp_path / "migrations")
    target.proxy.arm(after=V2_STATEMENT, deliver=True)

    with pytest.raises(MigrationExecutionError) as caught:
        _migrator(target, folder).upgrade()

    assert target.proxy.fired.is_set() and target.proxy.reply_dropped
    error = caught.value
    message = str(error)
    assert error.filename == "V2__second.sql"
    assert error.commit_outcome == "committed", message
    assert "failed at COMMIT" in message
    assert "outcome was unknown" in message
    assert "re-read on a fresh connection, shows V2__second.sql IS applied" in message
    assert "rolled back" not in message and "nothing of" not in message, message
    assert not error.partial
    assert [run.filename for run in error.applied] == ["V1__items.sql"]
    # The real server: V2 and its row are committed, V3 never ran, and the lock was released.
    assert _versions(target.direct) == ["1", "2"]
    assert _items(target.direct) == [2]
    assert lock_row(target.direct) == LOCK_FREE

    again = _migrator(target, folder).upgrade()

    assert [run.filename for run in again.applied] == ["V3__third.sql"]
    assert _versions(target.direct) == ["1", "2", "3"]
    assert _items(target.direct) == [2, 3]  # V2 ran once


def test_upgrade_commit_never_delivered_reports_the_file_not_applied(target: Target, tmp_path: Path) -> None:
    folder = _write_folder(tmp_path / "migrations")
    target.proxy.arm(after=V2_STATEMENT, deliver=False)

    with pytest.raises(MigrationExecutionError) as caught:
        _migrator(target, folder).upgrade()

    assert target.proxy.fired.is_set()
    error = caught.value
    message = str(error)
    assert error.filename == "V2__second.sql"
    assert error.commit_outcome == "not committed", message
    assert "outcome was unknown" in message
    assert "has no row for V2__second.sql: it was not recorded" in message
    assert "IS applied" not in message
    # MariaDB commits DDL implicitly: the message says what may remain; PostgreSQL rolls all back.
    may_remain = "may hold part of V2__second.sql" in message
    assert may_remain == (target.direct.dialect.name == "mysql"), message
    assert error.partial == may_remain
    assert _versions(target.direct) == ["1"]
    assert _items(target.direct) == []  # the server rolled V2's transaction back
    assert lock_row(target.direct) == LOCK_FREE

    again = _migrator(target, folder).upgrade()

    assert [run.filename for run in again.applied] == ["V2__second.sql", "V3__third.sql"]
    assert _items(target.direct) == [2, 3]


def test_rollback_lost_commit_reply_reports_the_rollback_committed(target: Target, tmp_path: Path) -> None:
    folder = _write_folder(tmp_path / "migrations")
    _migrator(target, folder).upgrade()
    target.proxy.arm(after=V3_ROLLBACK, deliver=True)

    with pytest.raises(MigrationExecutionError) as caught:
        _migrator(target, folder).rollback(count=1)

    assert target.proxy.fired.is_set() and target.proxy.reply_dropped
    error = caught.value
    message = str(error)
    assert error.filename == "V3__third.sql"
    assert error.commit_outcome == "committed", message
    assert "outcome was unknown" in message
    assert "no longer has V3__third.sql's row: the rollback was committed" in message
    assert "nothing of" not in message, message
    assert _versions(target.direct) == ["1", "2"]
    assert _items(target.direct) == [2]
    assert lock_row(target.direct) == LOCK_FREE

    again = _migrator(target, folder).rollback(count=1)

    assert [run.filename for run in again.rolled_back] == ["V2__second.sql"]  # not V3 a second time
    assert _versions(target.direct) == ["1"]


def test_lock_acquire_lost_commit_reply_releases_the_lock(target: Target, tmp_path: Path) -> None:
    folder = _write_folder(tmp_path / "migrations")
    target.proxy.arm(after="SET is_locked = TRUE", deliver=True)

    with pytest.raises(LockAcquireUnknownError) as caught:
        _migrator(target, folder).upgrade()

    assert target.proxy.fired.is_set() and target.proxy.reply_dropped
    error = caught.value
    message = str(error)
    assert error.held_after is False, message
    assert "The connection failed while committing the Jetbase lock acquisition" in message
    assert f"the commit had gone through (process_id {error.process_id})" in message
    assert "the lock was released again, nothing was migrated" in message
    # The real server: the lock is free, as the jetbase CLI reads it, and nothing ran.
    assert lock_row(target.direct) == LOCK_FREE
    assert _versions(target.direct) == []

    again = _migrator(target, folder).upgrade()

    assert [run.filename for run in again.applied] == ["V1__items.sql", "V2__second.sql", "V3__third.sql"]
    assert lock_row(target.direct) == LOCK_FREE
