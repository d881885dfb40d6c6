"""Reading ``jetbase_migrations``: applied rows and the current version.

"Latest applied" is the highest VERSIONED version in Jetbase's version order (``versions.py``),
never the row with the newest ``applied_at``: the CLI's choice by ``applied_at`` picks the wrong
row when sessions run in different time zones or across a DST change.
Rows are read by column name, so an added column (Jetbase PR #93) does not break us.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from airflow_provider_jetbase.migration.dialects import known_dialect, table_errors
from airflow_provider_jetbase.migration.errors import IncompatibleTableError, TablePermissionError
from airflow_provider_jetbase.migration.results import AppliedMigration
from airflow_provider_jetbase.migration.timestamps import parse_db_timestamp
from airflow_provider_jetbase.migration.versions import latest_version

_CURRENT_VERSION_SQL = text("SELECT version FROM jetbase_migrations WHERE migration_type = 'VERSIONED'")
_APPLIED_SQL = text(
    "SELECT order_executed, version, description, filename, migration_type, applied_at, checksum "
    "FROM jetbase_migrations ORDER BY order_executed"
)

T = TypeVar("T")


def is_missing_table_error(conn: Connection, exc: BaseException, table: str = "jetbase_migrations") -> bool:
    """True only when the database says ``table`` does not exist, by its error code (the rule of
    each dialect lives in ``dialects.TableErrors``); a permission error is never "missing"."""
    return table_errors(conn.dialect.name).missing_table(exc, table)


def _first_line(exc: BaseException) -> str:
    lines = str(getattr(exc, "orig", exc)).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def permission_error(table: str, privilege: str, exc: BaseException) -> TablePermissionError:
    return TablePermissionError(
        f"The database user lacks the {privilege} privilege on {table} ({_first_line(exc)}), so "
        f"Jetbase's state cannot be read or changed and nothing was assumed or run. Grant SELECT, "
        f"INSERT, UPDATE and DELETE on {table} to the connection's user (or use a user that has them).",
        table=table,
        privilege=privilege,
    )


def missing_or_raise(conn: Connection, exc: DBAPIError, table: str, privilege: str = "SELECT") -> None:
    """Returns when ``table`` does not exist; otherwise raises: IncompatibleTableError for another
    tool's table, TablePermissionError for a missing privilege, the error itself for anything else."""
    rules = table_errors(conn.dialect.name)
    if rules.missing_table(exc, table):
        return
    if rules.permission_denied(exc):
        raise permission_error(table, privilege, exc) from exc
    if rules.missing_column(exc):
        raise incompatible_table_error(table, exc) from exc
    raise exc


_SHAPES = {
    "jetbase_migrations": text(
        "SELECT order_executed, version, description, filename, migration_type, applied_at, checksum "
        "FROM jetbase_migrations WHERE 1 = 0"
    ),
    "jetbase_lock": text("SELECT id, is_locked, locked_at, process_id FROM jetbase_lock WHERE 1 = 0"),
}


def incompatible_table_error(table: str, exc: BaseException) -> IncompatibleTableError:
    return IncompatibleTableError(
        f"A table named {table} exists but does not have Jetbase's columns, so it belongs to something "
        f"else ({_first_line(exc)}). Nothing was changed: rename "
        "that table, or point the connection at another database or schema."
    )


def check_tables(conn: Connection, tables: Iterable[str]) -> None:
    """Raise IncompatibleTableError if one of Jetbase's tables exists with another tool's columns.
    A missing table is fine (it will be created); a table the user may not read raises
    TablePermissionError. Must be called outside a transaction."""
    for table in tables:
        try:
            conn.execute(_SHAPES[table]).fetchall()
        except DBAPIError as exc:
            missing_or_raise(conn, exc, table)
        finally:
            if conn.in_transaction():
                conn.rollback()


def query_or_none(conn: Connection, run: Callable[[], T], table: str = "jetbase_migrations") -> T | None:
    """Run a read of ``table``; None if it does not exist, IncompatibleTableError if it is another
    tool's, TablePermissionError if the user may not read it. The connection is left as found: a
    failed statement inside the caller's PostgreSQL transaction is confined to a savepoint, and a
    transaction this function had to begin is ended."""
    if conn.in_transaction():
        facts = known_dialect(conn.dialect.name)
        if facts is not None and facts.failed_statement_aborts_transaction:
            try:
                with conn.begin_nested():
                    return run()
            except DBAPIError as exc:
                missing_or_raise(conn, exc, table)
                return None
        try:
            return run()
        except DBAPIError as exc:
            missing_or_raise(conn, exc, table)
            return None
    try:
        return run()
    except DBAPIError as exc:
        missing_or_raise(conn, exc, table)
        return None
    finally:
        if conn.in_transaction():
            conn.rollback()


def fetch_current_version(conn: Connection) -> str | None:
    """The latest applied VERSIONED version by version order, in ONE query; None when the table is
    missing or holds no versioned row."""
    versions = fetch_versioned_versions(conn)
    return latest_version(versions) if versions else None


def fetch_versioned_versions(conn: Connection) -> list[str] | None:
    """Every applied VERSIONED version (unordered), in ONE query; None when the table is missing."""

    def run() -> list[str]:
        return [row[0] for row in conn.execute(_CURRENT_VERSION_SQL)]

    return query_or_none(conn, run)


def _to_datetime(value: Any) -> dt.datetime | str | None:
    # What cannot be parsed is kept as text: history shows it rather than hiding the row's time.
    parsed = parse_db_timestamp(value)
    return parsed if parsed is not None or value is None else str(value)


def fetch_applied(conn: Connection) -> list[AppliedMigration] | None:
    """Every row of ``jetbase_migrations`` in execution order, or None when the table is missing."""

    def run() -> list[AppliedMigration]:
        rows = []
        for row in conn.execute(_APPLIED_SQL):
            m = {str(k).lower(): v for k, v in row._mapping.items()}
            rows.append(
                AppliedMigration(
                    order_executed=int(m["order_executed"]) if m["order_executed"] is not None else None,
                    version=m["version"],
                    description=m["description"],
                    filename=m["filename"],
                    migration_type=str(m["migration_type"]),
                    applied_at=_to_datetime(m["applied_at"]),
                    checksum=m["checksum"],
                )
            )
        return rows

    return query_or_none(conn, run)
