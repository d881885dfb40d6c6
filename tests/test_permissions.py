"""Permissions on Jetbase's tables: a user who may not read them gets an error naming the table and
the missing privilege, never an empty history.

Each test creates its own PostgreSQL role or MariaDB user (unique name, on the real servers, dropped
afterwards), applies migrations as the administrator, then acts as that user.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Engine
from sqlalchemy.pool import NullPool

from airflow_provider_jetbase.migration import Migrator, TablePermissionError
from tests import dbs
from tests.airflow_harness import conn_env_value
from tests.jetbase_cli import lock_row, version_rows
from tests.operator_helpers import CONN_ID, make_dag, task_context

# V1 and V2 can run twice without failing, so a re-apply would show as extra rows, not an error.
MIGRATIONS = {
    "V1__items.sql": "CREATE TABLE IF NOT EXISTS items (note VARCHAR(20));\n"
    "INSERT INTO items (note) VALUES ('v1');\n-- rollback\nDROP TABLE items;\n",
    "V2__more.sql": "INSERT INTO items (note) VALUES ('v2');\n-- rollback\nDELETE FROM items;\n",
}


@dataclass
class Restricted:
    """An administrator engine and a restricted user's URL on one fresh database."""

    kind: str
    admin: Engine
    user_url: URL
    user: str
    folder: Path
    engines: list[Engine]

    def grant(self, table: str, privileges: str) -> None:
        with self.admin.begin() as conn:
            if self.kind == "postgres":
                conn.execute(text(f'GRANT {privileges} ON {table} TO "{self.user}"'))
            else:
                conn.execute(
                    text(f"GRANT {privileges} ON `{self.admin.url.database}`.{table} TO '{self.user}'@'%'")
                )

    def user_engine(self) -> Engine:
        engine = create_engine(self.user_url, poolclass=NullPool)
        self.engines.append(engine)
        return engine

    def items(self) -> list[str]:
        with self.admin.connect() as conn:
            return [row[0] for row in conn.execute(text("SELECT note FROM items ORDER BY note"))]


def _write(folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    for name, body in MIGRATIONS.items():
        (folder / name).write_text(body, encoding="utf-8")
    return folder


@contextlib.contextmanager
def database_user(kind: str, url: URL) -> Iterator[tuple[str, URL]]:
    """A login role (PostgreSQL) or user (MariaDB) with no privilege on Jetbase's tables, dropped
    afterwards; it may create tables, as a migrating user must."""
    user = dbs.new_name("jbrole")
    admin = create_engine(url, poolclass=NullPool)
    try:
        with admin.begin() as conn:
            if kind == "postgres":
                conn.execute(text(f'CREATE ROLE "{user}" LOGIN'))
                conn.execute(text(f'GRANT USAGE, CREATE ON SCHEMA public TO "{user}"'))
            else:
                conn.execute(text(f"CREATE USER '{user}'@'%'"))
                conn.execute(text(f"GRANT CREATE ON `{url.database}`.* TO '{user}'@'%'"))
        try:
            yield user, url.set(username=user, password=None if kind == "postgres" else "")
        finally:
            with admin.begin() as conn:
                if kind == "postgres":
                    conn.execute(text(f'DROP OWNED BY "{user}"'))
                    conn.execute(text(f'DROP ROLE "{user}"'))
                else:
                    conn.execute(text(f"DROP USER '{user}'@'%'"))
    finally:
        admin.dispose()


def _restricted(kind: str, url: URL, tmp_path: Path) -> Iterator[Restricted]:
    admin = create_engine(url, poolclass=NullPool)
    engines: list[Engine] = []
    folder = _write(tmp_path / "migrations")
    Migrator(admin, folder).upgrade()
    try:
        with database_user(kind, url) as (user, user_url):
            restricted = Restricted(kind, admin, user_url, user, folder, engines)
            restricted.grant("items", "ALL PRIVILEGES")
            if kind == "postgres":
                with admin.begin() as conn:
                    conn.execute(text(f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{user}"'))
            try:
                yield restricted
            finally:
                for engine in engines:
                    engine.dispose()
    finally:
        admin.dispose()


@pytest.fixture(params=["postgres", "postgres_psycopg3", "mysql"])
def restricted(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Restricted]:
    url: URL = request.getfixturevalue(f"{request.param}_url")
    yield from _restricted("mysql" if request.param == "mysql" else "postgres", url, tmp_path)


def _no_select_on_versions(r: Restricted) -> None:
    """INSERT, UPDATE and DELETE on jetbase_migrations but no SELECT; full rights on the lock."""
    r.grant("jetbase_migrations", "INSERT, UPDATE, DELETE")
    r.grant("jetbase_lock", "SELECT, INSERT, UPDATE, DELETE")


def _assert_names_table_and_privilege(
    exc: pytest.ExceptionInfo[TablePermissionError], table: str, privilege: str
) -> None:
    assert exc.value.table == table and exc.value.privilege == privilege
    assert f"lacks the {privilege} privilege on {table}" in str(exc.value)


READS: dict[str, Callable[[Migrator], Any]] = {
    "status": lambda m: m.status(),
    "current": lambda m: m.current(),
    "history": lambda m: m.history(),
    "validate": lambda m: m.validate(),
    "upgrade dry run": lambda m: m.upgrade(dry_run=True),
    "rollback dry run": lambda m: m.rollback(dry_run=True),
    "upgrade": lambda m: m.upgrade(),
}


def test_reading_the_history_without_select_raises_naming_table_and_privilege(restricted: Restricted) -> None:
    _no_select_on_versions(restricted)
    migrator = Migrator(restricted.user_engine(), restricted.folder)
    for name, call in READS.items():
        with pytest.raises(TablePermissionError) as exc:
            call(migrator)
        _assert_names_table_and_privilege(exc, "jetbase_migrations", "SELECT")
        assert name  # the loop variable names the command in the traceback on failure


def test_user_with_insert_but_no_select_never_reapplies_applied_migrations(restricted: Restricted) -> None:
    before_rows = version_rows(restricted.admin)
    assert restricted.items() == ["v1", "v2"]
    _no_select_on_versions(restricted)
    with pytest.raises(TablePermissionError):
        Migrator(restricted.user_engine(), restricted.folder).upgrade()
    assert restricted.items() == ["v1", "v2"]
    assert version_rows(restricted.admin) == before_rows
    held = lock_row(restricted.admin)
    assert held is not None and not held[0]  # the failed run left the lock free


def test_unlock_without_privileges_on_the_lock_table_raises_and_leaves_the_lock_held(
    restricted: Restricted,
) -> None:
    restricted.grant("jetbase_migrations", "SELECT, INSERT, UPDATE, DELETE")
    with restricted.admin.begin() as conn:
        conn.execute(
            text(
                "UPDATE jetbase_lock SET is_locked = TRUE, locked_at = CURRENT_TIMESTAMP, "
                "process_id = 'held-by-admin' WHERE id = 1"
            )
        )
    migrator = Migrator(restricted.user_engine(), restricted.folder)
    with pytest.raises(TablePermissionError) as exc:
        migrator.unlock()
    _assert_names_table_and_privilege(exc, "jetbase_lock", "SELECT")
    restricted.grant("jetbase_lock", "SELECT")  # may read the lock but not change it
    with pytest.raises(TablePermissionError) as exc:
        migrator.unlock()
    _assert_names_table_and_privilege(exc, "jetbase_lock", "UPDATE")
    assert lock_row(restricted.admin) == (True, True, "held-by-admin")


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_fresh_database_still_reads_as_nothing_applied_for_a_restricted_user(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # The other side of the rule: a table that really does not exist is "nothing applied".
    url: URL = request.getfixturevalue(f"{kind}_url")
    with database_user(kind, url) as (user, user_url):
        if kind == "mysql":
            # MariaDB answers "SELECT command denied" for a table that does not exist when the user
            # has no privilege that could cover it, so only a database-wide grant sees 1146.
            grant_engine = create_engine(url, poolclass=NullPool)
            with grant_engine.begin() as conn:
                conn.execute(text(f"GRANT ALL ON `{url.database}`.* TO '{user}'@'%'"))
            grant_engine.dispose()
        engine = create_engine(user_url, poolclass=NullPool)
        try:
            migrator = Migrator(engine, _write(tmp_path / "migrations"))
            assert migrator.current() is None
            assert migrator.history() == []
            assert [p.filename for p in migrator.status().pending] == sorted(MIGRATIONS)
            migrator.unlock()  # no lock table: nothing to release, no error
        finally:
            engine.dispose()


@pytest.fixture
def restricted_conn(restricted: Restricted, monkeypatch: pytest.MonkeyPatch) -> Restricted:
    _no_select_on_versions(restricted)
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", conn_env_value(restricted.user_url))
    return restricted


def test_sensor_poke_fails_at_once_when_the_version_table_cannot_be_read(restricted_conn: Restricted) -> None:
    from airflow_provider_jetbase.sensors.jetbase import JetbaseVersionSensor

    with make_dag("t_sensor_permissions"):
        sensor = JetbaseVersionSensor(
            task_id="wait", jetbase_conn_id=CONN_ID, target_version="3", deferrable=False
        )
    with pytest.raises(TablePermissionError) as exc:
        sensor.poke(task_context(sensor))  # type: ignore[arg-type]  # the keys poke reads, not a full Context
    _assert_names_table_and_privilege(exc, "jetbase_migrations", "SELECT")


def test_trigger_yields_a_failure_event_when_the_version_table_cannot_be_read(
    restricted_conn: Restricted, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_jetbase.triggers.jetbase import JetbaseVersionTrigger, VersionChecker

    # Bounded by the number of checks, not by time: a trigger that waits instead of failing turns
    # its third check into an error event this test rejects.
    real_check = VersionChecker.check
    checks: list[int] = []

    def counted_check(self: VersionChecker) -> tuple[bool, str | None]:
        checks.append(1)
        if len(checks) > 2:
            raise AssertionError("the trigger kept waiting")
        return real_check(self)

    monkeypatch.setattr(VersionChecker, "check", counted_check)

    async def first_event() -> Any:
        async for event in JetbaseVersionTrigger(CONN_ID, "3", poke_interval=0.01).run():
            return event
        raise AssertionError("run() ended without an event")

    event = asyncio.run(first_event())
    assert event.payload["status"] == "error"
    assert "TablePermissionError" in event.payload["message"]
    assert "lacks the SELECT privilege on jetbase_migrations" in event.payload["message"]
    assert len(checks) == 1
