"""Databricks, as far as it can honestly be tested without a Databricks workspace.

No local server can stand in for one (``databricks-sql-connector`` refuses servers below its own
protocol version, which no open-source Thrift server reports, and Delta's IDENTITY columns and
MERGE need Databricks itself), so nothing here executes SQL on Databricks. What is checked:

- every statement the provider sends to a Databricks connection (Jetbase's Databricks queries, and
  the engine's own lock, state and snapshot statements) parses as Databricks SQL with sqlglot's
  ``databricks`` dialect, with unsupported constructs raised rather than dropped;
- the lock protocol is right when the driver reports ``rowcount = -1`` for an UPDATE, as Databricks
  connectors before databricks-sql-python PR #847 do: shown on a real SQLite database whose driver
  is made to report -1, since the logic under test is the engine's, not the database's.

The connection mapping and dialect loading are in tests/test_hook_cloud.py and
tests/test_connection_mapping.py.
"""

from __future__ import annotations

import datetime as dt
import inspect
import itertools
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import TextClause, create_engine, event, text
from sqlalchemy.engine import Engine

from airflow_provider_jetbase.migration import Migrator
from airflow_provider_jetbase.migration.dialects import LOCK_OWNER, LOCK_PROCESS_ID, Dialect, dialect_for
from airflow_provider_jetbase.migration.errors import LockLostError, LockTimeoutError
from tests.conftest import require_module
from tests.jetbase_cli import applied_versions, lock_row, write_migration

# ------------------------------------------------------------------------------- the SQL parses


def _databricks_dialect() -> Dialect:
    # Building an engine does not connect: it only loads databricks-sqlalchemy's dialect.
    engine = create_engine("databricks://token:unused@dbc.example.net?http_path=/sql/1.0/warehouses/x")
    try:
        return dialect_for(engine)
    finally:
        engine.dispose()


def _jetbase_statements(dialect: Dialect) -> dict[str, str]:
    """Every statement of Jetbase's Databricks query class (inherited ones included), with every
    combination of arguments for those that take some: a query added to Jetbase is covered."""
    from jetbase.enums import MigrationType

    found: dict[str, str] = {}
    for name, member in inspect.getmembers(dialect.queries, callable):
        if name.startswith("_"):
            continue
        params = inspect.signature(member).parameters
        if not params:
            calls: list[dict[str, Any]] = [{}]
        else:
            assert set(params) == {"ascending", "all_repeatables", "migration_type"}, (name, params)
            # Both filters at once would build two WHERE clauses (invalid SQL on every database):
            # Jetbase never asks for that.
            calls = [
                {"ascending": a, "all_repeatables": r, "migration_type": t}
                for a, r, t in itertools.product((True, False), (True, False), (None, *MigrationType))
                if not (r and t)
            ]
        for kwargs in calls:
            statement = member(**kwargs)
            if isinstance(statement, TextClause):
                found[f"jetbase {name}({kwargs or ''})"] = statement.text
    return found


def _engine_statements(dialect: Dialect) -> dict[str, str]:
    """The statements the provider's engine adds to Jetbase's on a Databricks connection."""
    from airflow_provider_jetbase.drift.snapshot import create_table_sql
    from airflow_provider_jetbase.migration import state
    from airflow_provider_jetbase.migration.lock import LockHolder, _takeover_stmt

    found = {
        "read lock": dialect.read_lock_stmt.text,
        "refresh lock (heartbeat, ownership check)": dialect.refresh_lock_stmt.text,
        "takeover": dialect.takeover_lock_stmt.text,
        "lock process_id": LOCK_PROCESS_ID.text,
        "lock owner": LOCK_OWNER.text,
        "current version": state._CURRENT_VERSION_SQL.text,
        "applied rows": state._APPLIED_SQL.text,
        "snapshot table": create_table_sql("databricks"),
    }
    found.update({f"table shape {table}": stmt.text for table, stmt in state._SHAPES.items()})
    when = dt.datetime(2026, 1, 1)
    for process_id, locked_at in itertools.product((None, "p"), (None, when)):
        holder = LockHolder(process_id, locked_at, None, locked_at)
        found[f"stale takeover {process_id=} {locked_at=}"] = _takeover_stmt(dialect, holder).text
    return found


def _parse_databricks(sql: str) -> Any:
    """One statement, parsed and regenerated as Databricks SQL; anything sqlglot would drop or
    could only keep as an opaque command is an error."""
    sqlglot = require_module("sqlglot")
    from sqlglot import exp
    from sqlglot.errors import ErrorLevel

    trees = [t for t in sqlglot.parse(sql, read="databricks", error_level=ErrorLevel.RAISE) if t is not None]
    assert len(trees) == 1, f"expected one statement, got {len(trees)}: {sql}"
    tree = trees[0]
    assert not isinstance(tree, exp.Command), f"not understood as Databricks SQL: {sql}"
    regenerated = tree.sql(dialect="databricks", unsupported_level=ErrorLevel.RAISE)
    assert sqlglot.parse_one(regenerated, read="databricks") == tree, regenerated
    return tree


_DATABRICKS_TYPES = {"BIGINT", "INT", "SMALLINT", "TINYINT", "BOOLEAN", "TEXT", "TIMESTAMPTZ", "TIMESTAMP"}


def test_every_statement_sent_to_databricks_parses_as_databricks_sql() -> None:
    from sqlglot import exp

    dialect = _databricks_dialect()
    assert dialect.name == "databricks" and dialect.supports_lock
    statements = {**_jetbase_statements(dialect), **_engine_statements(dialect)}
    kinds: dict[str, str] = {}
    for label, sql in statements.items():
        tree = _parse_databricks(sql)
        kinds[label] = type(tree).__name__
        for column in tree.find_all(exp.ColumnDef):
            # The types Databricks has (sqlglot reads STRING as TEXT and TIMESTAMP as TIMESTAMPTZ).
            assert column.args["kind"].this.name in _DATABRICKS_TYPES, (label, column.sql("databricks"))
    # Jetbase's class is seen whole: the lock's MERGE seed and the IDENTITY version table are in.
    assert kinds["jetbase initialize_lock_record_stmt()"] == "Merge"
    assert kinds["jetbase create_migrations_table_stmt()"] == "Create"
    assert kinds["jetbase acquire_lock_stmt()"] == "Update"
    assert sum(label.startswith("jetbase migration_records_query") for label in kinds) == 10
    assert len(statements) >= 45, sorted(statements)


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT IGNORE INTO jetbase_lock (id, is_locked) VALUES (1, FALSE)",  # MySQL's seed
        "SELECT is_locked FROM jetbase_lock WHERE id = 1 FOR UPDATE",  # no row locks on Databricks
        "SELECT COUNT(*) > 0 AS table_exists FROM information_schema.tables WHERE table_schema = DATABASE()"
        " AND table_name = 'jetbase_lock'",  # MySQL's exists check
    ],
    ids=["insert-ignore", "for-update", "mysql-exists-check"],
)
def test_the_parse_check_rejects_sql_databricks_does_not_have(sql: str) -> None:
    with pytest.raises(Exception) as caught:
        _parse_databricks(sql)
    assert type(caught.value).__name__ in {"ParseError", "UnsupportedError"}, caught.value


# ------------------------------------------------------------------------------- rowcount = -1


class _UnknownRowcountCursor(sqlite3.Cursor):
    @property
    def rowcount(self) -> int:
        return -1


class _UnknownRowcountConnection(sqlite3.Connection):
    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        return super().cursor(_UnknownRowcountCursor)


@pytest.fixture
def unknown_rowcount_engine(tmp_path: Path) -> Iterator[Engine]:
    """A real SQLite database whose driver reports rowcount -1 for every statement."""
    path = tmp_path / "target.db"

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(path, factory=_UnknownRowcountConnection, check_same_thread=False)

    engine = create_engine("sqlite://", creator=connect)
    with engine.begin() as conn:
        assert conn.execute(text("CREATE TABLE probe (id INT)")).rowcount == -1
        conn.execute(text("DROP TABLE probe"))
    yield engine
    engine.dispose()


def _hold(engine: Engine, process_id: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE jetbase_lock SET is_locked = TRUE, locked_at = '2026-01-01', process_id = :p"),
            {"p": process_id},
        )


def test_unknown_rowcount_lock_is_free_taken_and_released(
    unknown_rowcount_engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_migration(tmp_path / "m", "V1__first.sql", "CREATE TABLE first_t (id INT);")
    with caplog.at_level(logging.INFO):
        result = Migrator(unknown_rowcount_engine, tmp_path / "m").upgrade()
    assert [r.filename for r in result.applied] == ["V1__first.sql"]
    assert lock_row(unknown_rowcount_engine) == (False, False, None)
    assert any("Released the Jetbase migration lock" in r.getMessage() for r in caplog.records)


def test_unknown_rowcount_does_not_make_a_held_lock_look_taken(
    unknown_rowcount_engine: Engine, tmp_path: Path
) -> None:
    folder = tmp_path / "m"
    write_migration(folder, "V1__first.sql", "CREATE TABLE first_t (id INT);")
    Migrator(unknown_rowcount_engine, folder).upgrade()
    write_migration(folder, "V2__second.sql", "CREATE TABLE second_t (id INT);")
    cli_holder = "0b7e3c2a-8d1f-4c55-9f0e-3a2b1c4d5e6f"
    _hold(unknown_rowcount_engine, cli_holder)
    migrator = Migrator(unknown_rowcount_engine, folder, lock_timeout=0.5, lock_poll_interval=0.1)
    # The acquire UPDATE matched nothing, and says -1: only reading the row back shows that.
    with pytest.raises(LockTimeoutError, match=cli_holder):
        migrator.upgrade()
    assert applied_versions(unknown_rowcount_engine) == ["1"]
    assert lock_row(unknown_rowcount_engine) == (True, True, cli_holder)


def test_unknown_rowcount_release_notices_a_lock_that_is_no_longer_ours(
    unknown_rowcount_engine: Engine, tmp_path: Path
) -> None:
    """The lock is forced over to someone else after the last migration committed: the release
    UPDATE matches nothing and the driver says -1; the run must not report a clean release."""
    folder = tmp_path / "m"
    write_migration(folder, "V1__first.sql", "CREATE TABLE first_t (id INT);")
    engine = unknown_rowcount_engine
    other = "11111111-2222-3333-4444-555555555555"
    reads: list[str] = []

    def take_over_before_release(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        # The run reads process_id twice: to confirm its acquisition, then when releasing.
        if statement == LOCK_PROCESS_ID.text:
            reads.append(statement)
            if len(reads) == 2:
                cursor.execute("UPDATE jetbase_lock SET process_id = ? WHERE id = 1", (other,))

    event.listen(engine, "before_cursor_execute", take_over_before_release)
    with pytest.raises(LockLostError, match="no longer this run's"):
        Migrator(engine, folder).upgrade()
    event.remove(engine, "before_cursor_execute", take_over_before_release)
    assert len(reads) == 2
    assert applied_versions(engine) == ["1"]
    assert lock_row(engine) == (True, True, other)
