"""ClickHouse's driver errors, made SQLAlchemy ``DBAPIError``s like every other database's.

clickhouse-sqlalchemy (HTTP and native drivers) raises its own ``DatabaseException``, which is not
its DB-API module's ``Error``, so SQLAlchemy passes it through unwrapped: every ``except DBAPIError``
of the engine missed it (a missing ``jetbase_migrations`` crashed the first upgrade instead of
being created, a failing file came out without its name). A ``handle_error`` listener on the
engine wraps it as SQLAlchemy wraps DB-API errors (``exc.orig`` is the driver's exception); the
server's error code is read from it by ``dialects._clickhouse_code``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError


def _wrap(context: Any) -> BaseException | None:
    # Imported here: only a ClickHouse engine (so clickhouse-sqlalchemy installed) has the listener.
    from clickhouse_sqlalchemy.exceptions import DatabaseException

    error = context.original_exception
    if context.sqlalchemy_exception is not None or not isinstance(error, DatabaseException):
        return None
    return DBAPIError.instance(
        context.statement, context.parameters, error, DatabaseException, dialect=context.dialect
    )


def wrap_clickhouse_driver_errors(engine: Engine) -> None:
    """Idempotent; does nothing for other databases."""
    if engine.dialect.name != "clickhouse":
        return
    if not event.contains(engine, "handle_error", _wrap):
        event.listen(engine, "handle_error", _wrap)
