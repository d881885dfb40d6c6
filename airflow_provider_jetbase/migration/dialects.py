"""Per-dialect SQL: Jetbase's own query classes, chosen from ``engine.dialect.name``.

Jetbase's ``query_loader`` picks the class from its global configuration (and creates an engine per
query); here the class is chosen from the injected engine's dialect, once per run. The few
statements Jetbase has no query for (reading the lock holder's ``process_id``, the lock-age clock,
the stale-lock takeover) are defined next to them.
"""

from __future__ import annotations

from dataclasses import dataclass

from jetbase.database.queries.base import BaseQueries
from jetbase.database.queries.clickhouse import ClickHouseQueries
from jetbase.database.queries.databricks import DatabricksQueries
from jetbase.database.queries.mysql import MySQLQueries
from jetbase.database.queries.postgres import PostgresQueries
from jetbase.database.queries.snowflake import SnowflakeQueries
from jetbase.database.queries.sqlite import SQLiteQueries
from sqlalchemy import TextClause, text
from sqlalchemy.engine import Engine

from airflow_provider_jetbase.migration.errors import InvalidArgumentError


@dataclass(frozen=True)
class Dialect:
    name: str  # Jetbase's DatabaseType value
    queries: type[BaseQueries]
    # DDL inside a transaction is rolled back with it (SQLite: with the pysqlite recipe applied).
    transactional_ddl: bool
    supports_lock: bool
    # The database clock, comparable with what Jetbase's acquire statement writes into locked_at.
    now_sql: str

    @property
    def read_lock_stmt(self) -> TextClause:
        return text(
            f"SELECT is_locked, locked_at, process_id, {self.now_sql} AS db_now "
            "FROM jetbase_lock WHERE id = 1"
        )

    @property
    def takeover_lock_stmt(self) -> TextClause:
        return text(
            f"UPDATE jetbase_lock SET process_id = :new_process_id, locked_at = {self.now_sql} "
            "WHERE id = 1 AND process_id = :old_process_id"
        )


_DIALECTS: dict[str, Dialect] = {
    "postgresql": Dialect("postgresql", PostgresQueries, True, True, "LOCALTIMESTAMP"),
    "sqlite": Dialect("sqlite", SQLiteQueries, True, True, "STRFTIME('%Y-%m-%d %H:%M:%f', 'NOW')"),
    "mysql": Dialect("mysql", MySQLQueries, False, True, "CURRENT_TIMESTAMP(6)"),
    "snowflake": Dialect("snowflake", SnowflakeQueries, False, True, "CURRENT_TIMESTAMP()::TIMESTAMP_NTZ"),
    "databricks": Dialect("databricks", DatabricksQueries, False, True, "CURRENT_TIMESTAMP()"),
    "clickhouse": Dialect("clickhouse", ClickHouseQueries, False, False, "now64(6)"),
}

LOCK_PROCESS_ID = text("SELECT process_id FROM jetbase_lock WHERE id = 1")


def dialect_name(name: str) -> str:
    lowered = name.lower()
    if lowered.startswith("postgres"):
        return "postgresql"
    if lowered in {"mysql", "mariadb"}:
        return "mysql"
    return lowered


def dialect_for(engine: Engine) -> Dialect:
    name = dialect_name(engine.dialect.name)
    try:
        return _DIALECTS[name]
    except KeyError:
        raise InvalidArgumentError(
            f"Unsupported database {engine.dialect.name!r}: Jetbase supports {', '.join(sorted(_DIALECTS))}"
        ) from None
