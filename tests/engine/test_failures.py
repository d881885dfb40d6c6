"""A migration that fails: the error names the file, the statement and its line; the files before it
stay applied, the failed one leaves nothing behind (except on MariaDB and ClickHouse, where DDL is not
transactional and the error says the database may hold part of the file), the lock is released.

Elsewhere: a COMMIT inside a file in tests/test_transaction_control.py, killed runs in
tests/reliability/test_crash.py."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine

from airflow_provider_jetbase.migration import (
    MigrationExecutionError,
    Migrator,
)
from tests.engine.helpers import Baseline, fails, table_file, tables
from tests.jetbase_cli import (
    LOCK_FREE,
    JetbaseProject,
    applied_versions,
    lock_row,
    table_exists,
    write_migration,
)
from tests.reliability.snapshots import snapshot


def test_failing_migration_leaves_nothing_behind(
    db_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    project = JetbaseProject(tmp_path, db_url)
    table_file(project.migrations_dir, "1", "t1")
    write_migration(
        project.migrations_dir,
        "V2__fails_halfway.sql",
        """
        CREATE TABLE half_done (id INTEGER);
        INSERT INTO table_that_does_not_exist (id) VALUES (1);
        -- rollback
        DROP TABLE half_done;
        """,
    )
    table_file(project.migrations_dir, "3", "t3")
    engine = make_engine(db_url)
    with pytest.raises(MigrationExecutionError) as caught:
        Migrator(engine, project.migrations_dir).upgrade()
    error = caught.value
    message = str(error)
    assert "V2__fails_halfway.sql" in message and "table_that_does_not_exist" in message, message
    assert error.statement_number == 2
    assert re.search(r"statement\D{0,3}2\b", message, re.IGNORECASE), message
    assert [r.filename for r in error.applied] == ["V1__create_t1.sql"]
    assert applied_versions(engine) == ["1"]
    assert lock_row(engine) == LOCK_FREE
    assert not table_exists(engine, "t3")
    if engine.dialect.name == "mysql":
        # DDL commits implicitly there: the error must say the database may hold part of the file.
        assert error.partial and "part" in message.lower(), message
    else:
        assert not table_exists(engine, "half_done"), "the failed migration left its table behind"
        assert not error.partial


def _five_with_failure(folder: Path) -> None:
    table_file(folder, "1", "f1")
    table_file(folder, "2", "f2")
    write_migration(
        folder,
        "V3__broken.sql",
        """
        CREATE TABLE f3 (id INTEGER);
        INSERT INTO no_such_table (id) VALUES (1);
        -- rollback
        DROP TABLE f3;
        """,
    )
    table_file(folder, "4", "f4")
    table_file(folder, "5", "f5")


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_failing_migration_leaves_nothing_of_itself(
    kind: str, request: pytest.FixtureRequest, folder: Path, make_engine: Callable[..., Engine]
) -> None:
    url: URL = request.getfixturevalue(f"{kind}_url")
    _five_with_failure(folder)
    engine = make_engine(url)
    with pytest.raises(MigrationExecutionError) as caught:
        Migrator(engine, folder).upgrade()
    error = caught.value
    assert error.filename == "V3__broken.sql" and error.statement_number == 2 and not error.partial
    message = str(error)
    assert "V3__broken.sql" in message and "statement 2 of 2 (line 2)" in message
    assert "no_such_table" in message and "rolled back" in message
    assert [r.filename for r in error.applied] == ["V1__create_f1.sql", "V2__create_f2.sql"]
    assert applied_versions(engine) == ["1", "2"]
    assert {"f1", "f2"} <= tables(engine) and not {"f3", "f4", "f5"} & tables(engine)
    assert lock_row(engine) == LOCK_FREE


def test_mariadb_failure_says_the_file_may_be_partly_applied(
    mysql_url: URL, folder: Path, make_engine: Callable[..., Engine]
) -> None:
    _five_with_failure(folder)
    engine = make_engine(mysql_url)
    with pytest.raises(MigrationExecutionError) as caught:
        Migrator(engine, folder).upgrade()
    message = str(caught.value)
    assert (
        caught.value.partial and "may hold part of V3__broken.sql" in message and "MySQL/MariaDB" in message
    )
    assert "statement 2 of 2" in message and "no_such_table" in message
    assert applied_versions(engine) == ["1", "2"] and "f3" in tables(engine)  # the implicit DDL commit
    assert lock_row(engine) == LOCK_FREE


def test_keyboard_interrupt_mid_migration_releases_the_lock(
    sqlite_url: URL, folder: Path, make_engine: Callable[..., Engine]
) -> None:
    table_file(folder, "1", "k1")
    table_file(folder, "2", "k2")
    engine = make_engine(sqlite_url)

    def interrupt(conn: Connection, cursor: Any, statement: str, *args: Any) -> None:
        if "INSERT INTO k2" in statement:
            raise KeyboardInterrupt

    event.listen(engine, "before_cursor_execute", interrupt)
    with pytest.raises(KeyboardInterrupt):
        Migrator(engine, folder).upgrade()
    event.remove(engine, "before_cursor_execute", interrupt)
    assert applied_versions(engine) == ["1"] and "k2" not in tables(engine)
    assert lock_row(engine) == LOCK_FREE


# ------------------------------------------------------------------ bad-input corpus (PostgreSQL, ClickHouse)


def test_failing_statement_names_file_statement_and_line(base: Baseline) -> None:
    base.add("V2__broken.sql", "CREATE TABLE two (id INT);\n\nCREATE TABLE three (id NOPE);\n")
    err = fails(
        base.migrator().upgrade, MigrationExecutionError, "V2__broken.sql", "statement 2 of 2", "line 3"
    )
    assert "nope" in str(err).lower()
    if base.kind == "postgres":
        base.unchanged("failed upgrade (PostgreSQL rolls the file back)")
        return
    # ClickHouse has no transactions: statement 1 stays (an empty table ``two``), and the error says
    # so; everything else, the version table included (no row for V2), is as it was.
    assert "may hold part of V2__broken.sql" in str(err) and "repair by hand" in str(err)
    after = snapshot(base.engine)
    assert after.rows == {**base.before.rows, "two": []}, base.before.diff(after)
    assert {t: d for t, d in after.schema.items() if t != "two"} == base.before.schema
    assert [c[0] for c in after.schema["two"]["columns"]] == ["id"]
