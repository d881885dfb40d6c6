"""The lower bound for upgrade/rollback: the migration files' statements run by the raw driver.

Files are found and parsed with Jetbase's own pure functions (the same parsing the engine and the
CLI use), then each migration runs in ONE transaction together with one version-row INSERT (one
DELETE on rollback) into a table shaped like `jetbase_migrations`. No lock, no validation, no
SQLAlchemy: nothing a real tool could skip is left out except bookkeeping.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from jetbase.database.queries.mysql import MySQLQueries
from jetbase.database.queries.postgres import PostgresQueries
from jetbase.database.queries.sqlite import SQLiteQueries
from jetbase.engine.checksum import calculate_checksum
from jetbase.engine.file_parser import (
    get_description_from_filename,
    parse_rollback_statements,
    parse_upgrade_statements,
)
from jetbase.engine.version import get_migration_filepaths_by_version
from sqlalchemy.engine import URL

CREATE_TABLE = {
    "sqlite": str(SQLiteQueries.create_migrations_table_stmt()),
    "postgres": str(PostgresQueries.create_migrations_table_stmt()),
    "mysql": str(MySQLQueries.create_migrations_table_stmt()),
}


def _connect(kind: str, url: URL) -> tuple[Any, Callable[[], object], Callable[[], object], str]:
    """(connection, begin, commit, paramstyle marker) for one raw DB-API connection."""
    if kind == "sqlite":
        import sqlite3

        # isolation_level=None: we issue BEGIN/COMMIT ourselves so DDL is inside the transaction,
        # exactly one commit (one fsync) per migration.
        conn = sqlite3.connect(str(url.database), isolation_level=None)
        return conn, lambda: conn.execute("BEGIN"), lambda: conn.execute("COMMIT"), "?"
    if kind == "postgres":
        import psycopg2

        options = url.query.get("options")  # e.g. -c synchronous_commit=off, as the other methods get it
        conn = psycopg2.connect(
            host=url.host,
            port=url.port,
            user=url.username,
            dbname=url.database,
            **({"options": options} if options else {}),
        )
        return conn, lambda: None, conn.commit, "%s"
    import pymysql

    conn = pymysql.connect(
        host=url.host,
        port=url.port,
        user=url.username,
        password=url.password or "",
        database=url.database,
        autocommit=False,
    )
    return conn, conn.begin, conn.commit, "%s"


def _versions(folder: str) -> list[tuple[str, str]]:
    return list(get_migration_filepaths_by_version(directory=folder).items())


def raw_upgrade(kind: str, url: URL, folder: str) -> int:
    conn, begin, commit, mark = _connect(kind, url)
    insert = (
        "INSERT INTO jetbase_migrations (version, description, filename, migration_type, checksum) "
        f"VALUES ({mark}, {mark}, {mark}, 'VERSIONED', {mark})"
    )
    try:
        cur = conn.cursor()
        begin()
        cur.execute(CREATE_TABLE[kind].strip().rstrip(";"))
        commit()
        applied = 0
        for version, path in _versions(folder):
            statements = parse_upgrade_statements(path)
            filename = os.path.basename(path)
            begin()
            for statement in statements:
                cur.execute(statement)
            cur.execute(
                insert,
                (version, get_description_from_filename(filename), filename, calculate_checksum(statements)),
            )
            commit()
            applied += 1
        return applied
    finally:
        conn.close()


def raw_rollback(kind: str, url: URL, folder: str, count: int) -> int:
    conn, begin, commit, mark = _connect(kind, url)
    delete = f"DELETE FROM jetbase_migrations WHERE version = {mark} AND migration_type = 'VERSIONED'"
    try:
        cur = conn.cursor()
        # The latest `count` applied versions, newest first: one query, like a real tool would do.
        cur.execute(
            "SELECT version FROM jetbase_migrations WHERE migration_type = 'VERSIONED' "
            f"ORDER BY order_executed DESC LIMIT {int(count)}"
        )
        targets = [row[0] for row in cur.fetchall()]
        paths = dict(_versions(folder))
        for version in targets:
            statements = parse_rollback_statements(paths[version])
            begin()
            for statement in statements:
                cur.execute(statement)
            cur.execute(delete, (version,))
            commit()
        return len(targets)
    finally:
        conn.close()
