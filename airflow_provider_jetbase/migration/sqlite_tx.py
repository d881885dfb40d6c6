"""Transactional DDL on SQLite: SQLAlchemy's documented pysqlite recipe, applied to a given engine.

Python's ``sqlite3`` module manages transactions itself and, through pysqlite, SQLAlchemy's
``BEGIN`` is never emitted, so a migration's ``CREATE TABLE`` survives the rollback of its failed
transaction (the CLI leaves such half-applied files behind). The recipe
(https://docs.sqlalchemy.org/en/20/dialects/sqlite.html#serializable-isolation-savepoints-transactional-ddl)
turns the driver's own handling off on connect and emits ``BEGIN`` when SQLAlchemy begins.

The listeners are plain module functions, so registering twice is detected and skipped. Connections
pooled before the recipe was applied are switched over on their next ``begin``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine


def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
    dbapi_connection.isolation_level = None


def _on_begin(conn: Connection) -> None:
    dbapi_connection = conn.connection.dbapi_connection
    if dbapi_connection is not None and dbapi_connection.isolation_level is not None:
        dbapi_connection.isolation_level = None
    conn.exec_driver_sql("BEGIN")


def make_sqlite_ddl_transactional(engine: Engine) -> None:
    """Idempotent; does nothing for other databases."""
    if engine.dialect.name != "sqlite" or engine.dialect.driver != "pysqlite":
        return
    if not event.contains(engine, "connect", _on_connect):
        event.listen(engine, "connect", _on_connect)
    if not event.contains(engine, "begin", _on_begin):
        event.listen(engine, "begin", _on_begin)
