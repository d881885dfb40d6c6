"""Per-dialect SQL: Jetbase's own query classes, chosen from ``engine.dialect.name``.

Jetbase's ``query_loader`` picks the class from its global configuration (and creates an engine per
query); here the class is chosen from the injected engine's dialect, once per run. The few
statements Jetbase has no query for (reading the lock holder's ``process_id``, the lock-age clock,
the stale-lock takeover) are defined next to them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
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


def _driver_error(exc: BaseException) -> BaseException:
    orig = getattr(exc, "orig", None)
    return orig if isinstance(orig, BaseException) else exc


def _sqlstate(exc: BaseException) -> str | None:
    # psycopg 3 calls it sqlstate, psycopg2 pgcode; Snowflake's connector has sqlstate too.
    err = _driver_error(exc)
    code = getattr(err, "sqlstate", None) or getattr(err, "pgcode", None)
    return str(code) if code else None


def _errno(exc: BaseException) -> int | None:
    err = _driver_error(exc)
    for candidate in (getattr(err, "errno", None), getattr(err, "code", None), *err.args[:1]):
        if isinstance(candidate, int) and not isinstance(candidate, bool):
            return candidate
    return None


_CLICKHOUSE_CODE_RE = re.compile(r"^\s*Code:\s*(\d+)\b")


def _clickhouse_code(exc: BaseException) -> int | None:
    # clickhouse-sqlalchemy wraps its driver's error in a DatabaseException whose str() starts with
    # "Orig exception: ": the driver's error is its `orig`. The server's text ("Code: 60. ...") leads
    # with the code; the HTTP driver's error has the HTTP status (500) in `code`, so the text comes
    # first and `code` (the native driver's, the server's own) only when there is no text to read.
    err = _driver_error(exc)
    inner = getattr(err, "orig", None)
    if isinstance(inner, BaseException):
        err = inner
    match = _CLICKHOUSE_CODE_RE.match(str(err))
    if match:
        return int(match.group(1))
    code = getattr(err, "code", None)
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def _sqlite_message(exc: BaseException) -> str:
    return str(_driver_error(exc)).strip().lower()


def _databricks_error_class(exc: BaseException) -> str:
    # Databricks prefixes its messages with a stable error class: "[TABLE_OR_VIEW_NOT_FOUND] ...".
    match = re.match(r"^\s*\[([A-Z_.]+)\]", str(_driver_error(exc)))
    return match.group(1).split(".")[0] if match else ""


@dataclass(frozen=True)
class TableErrors:
    """How a database says "no such table", "no such column" and "permission denied", decided from
    its error codes (SQLSTATE, errno, error class). Never from message text alone: a permission error
    names the table too ("permission denied for table jetbase_migrations"), and reading that as
    "missing" made a role without SELECT see an empty history and re-apply every migration.
    SQLite has no codes for these (all are SQLITE_ERROR): its fixed message prefix is the rule, and it
    has no privileges to confuse it with."""

    missing_table: Callable[[BaseException, str], bool]
    missing_column: Callable[[BaseException], bool]
    permission_denied: Callable[[BaseException], bool]


def _sqlite_missing_table(exc: BaseException, table: str) -> bool:
    message = _sqlite_message(exc)
    return message in {f"no such table: {table}", f"no such table: main.{table}"}


_TABLE_ERRORS: dict[str, TableErrors] = {
    # 42P01 undefined_table, 42703 undefined_column, 42501 insufficient_privilege.
    "postgresql": TableErrors(
        lambda e, t: _sqlstate(e) == "42P01",
        lambda e: _sqlstate(e) == "42703",
        lambda e: _sqlstate(e) == "42501",
    ),
    # 1146 ER_NO_SUCH_TABLE, 1054 ER_BAD_FIELD_ERROR, 1142/1143 table/column access denied, 1044 db.
    "mysql": TableErrors(
        lambda e, t: _errno(e) == 1146,
        lambda e: _errno(e) == 1054,
        lambda e: _errno(e) in {1142, 1143, 1044},
    ),
    # SQLITE_READONLY (8) and SQLITE_AUTH (23) are SQLite's closest to a missing privilege.
    "sqlite": TableErrors(
        _sqlite_missing_table,
        lambda e: _sqlite_message(e).startswith("no such column"),
        lambda e: getattr(_driver_error(e), "sqlite_errorcode", None) in {8, 23},
    ),
    # 2003 is "does not exist or not authorized": Snowflake itself does not tell the two apart (it
    # hides objects a role cannot see), so an unauthorised table reads as missing there. 904: invalid
    # identifier; 3001: insufficient privileges.
    "snowflake": TableErrors(
        lambda e, t: _errno(e) == 2003,
        lambda e: _errno(e) == 904,
        lambda e: _errno(e) == 3001,
    ),
    "databricks": TableErrors(
        lambda e, t: _databricks_error_class(e) == "TABLE_OR_VIEW_NOT_FOUND" or _sqlstate(e) == "42P01",
        lambda e: _databricks_error_class(e) == "UNRESOLVED_COLUMN",
        lambda e: _databricks_error_class(e) in {"INSUFFICIENT_PERMISSIONS", "PERMISSION_DENIED"},
    ),
    # 60 UNKNOWN_TABLE, 47 UNKNOWN_IDENTIFIER, 16 NO_SUCH_COLUMN_IN_TABLE, 497 ACCESS_DENIED.
    "clickhouse": TableErrors(
        lambda e, t: _clickhouse_code(e) == 60,
        lambda e: _clickhouse_code(e) in {16, 47},
        lambda e: _clickhouse_code(e) == 497,
    ),
}

# A database the table does not know: nothing is ever read as "missing", every error is raised.
_NO_RULES = TableErrors(lambda e, t: False, lambda e: False, lambda e: False)


def table_errors(name: str) -> TableErrors:
    """The error rules of a SQLAlchemy dialect name (``engine.dialect.name``)."""
    return _TABLE_ERRORS.get(dialect_name(name), _NO_RULES)


# How the authority of an OpenLineage namespace is made (LineageNaming.authority).
HOST_PORT = "host:port"
HOST = "host"
SNOWFLAKE_ACCOUNT = "account"
FILE_PATH = "path"


@dataclass(frozen=True)
class LineageNaming:
    """How OpenLineage names this database's tables (https://openlineage.io/docs/spec/naming): the
    namespace ``<scheme>://<authority>`` and the levels of a dataset name, outermost first. SQLite has
    no rule there (and the official SQLite hook no OpenLineage support): its namespace is the file's
    path after ``sqlite://``, as OpenLineage's dbt integration names DuckDB files, and a name is the
    bare table name. ``default_schema``: where an unqualified table lives when the URL names none."""

    scheme: str
    authority: str  # HOST_PORT, HOST, SNOWFLAKE_ACCOUNT or FILE_PATH
    default_port: int | None
    levels: tuple[str, ...]  # of ("database", "schema", "table")
    default_schema: str | None = None


_DB_SCHEMA_TABLE = ("database", "schema", "table")
_DB_TABLE = ("database", "table")


@dataclass(frozen=True)
class Dialect:
    name: str  # Jetbase's DatabaseType value
    queries: type[BaseQueries]
    # DDL inside a transaction is rolled back with it (SQLite: with the pysqlite recipe applied).
    transactional_ddl: bool
    supports_lock: bool
    # The database clock, comparable with what Jetbase's acquire statement writes into locked_at.
    now_sql: str
    lineage: LineageNaming

    @property
    def errors(self) -> TableErrors:
        return table_errors(self.name)

    @property
    def read_lock_stmt(self) -> TextClause:
        return text(
            f"SELECT is_locked, locked_at, process_id, {self.now_sql} AS db_now "  # noqa: S608 - now_sql is the dialect's own constant
            "FROM jetbase_lock WHERE id = 1"
        )

    @property
    def refresh_lock_stmt(self) -> TextClause:
        """The holder's heartbeat and ownership check: touch ``locked_at`` only while the row is ours."""
        return text(
            f"UPDATE jetbase_lock SET locked_at = {self.now_sql} "  # noqa: S608 - now_sql is the dialect's own constant
            "WHERE id = 1 AND is_locked = TRUE AND process_id = :p"
        )

    @property
    def takeover_lock_stmt(self) -> TextClause:
        return text(
            f"UPDATE jetbase_lock SET process_id = :new_process_id, locked_at = {self.now_sql} "  # noqa: S608 - now_sql is the dialect's own constant
            "WHERE id = 1 AND process_id = :old_process_id"
        )


_DIALECTS: dict[str, Dialect] = {
    "postgresql": Dialect(
        "postgresql",
        PostgresQueries,
        True,
        True,
        "LOCALTIMESTAMP",
        LineageNaming("postgres", HOST_PORT, 5432, _DB_SCHEMA_TABLE, "public"),
    ),
    "sqlite": Dialect(
        "sqlite",
        SQLiteQueries,
        True,
        True,
        "STRFTIME('%Y-%m-%d %H:%M:%f', 'NOW')",
        LineageNaming("sqlite", FILE_PATH, None, ("table",)),
    ),
    "mysql": Dialect(
        "mysql",
        MySQLQueries,
        False,
        True,
        "CURRENT_TIMESTAMP(6)",
        LineageNaming("mysql", HOST_PORT, 3306, _DB_TABLE),
    ),
    "snowflake": Dialect(
        "snowflake",
        SnowflakeQueries,
        False,
        True,
        "CURRENT_TIMESTAMP()::TIMESTAMP_NTZ",
        LineageNaming("snowflake", SNOWFLAKE_ACCOUNT, None, _DB_SCHEMA_TABLE, "PUBLIC"),
    ),
    # Unity Catalog: catalog.schema.table; the catalog comes from the connection (extra 'catalog').
    "databricks": Dialect(
        "databricks",
        DatabricksQueries,
        False,
        True,
        "CURRENT_TIMESTAMP()",
        LineageNaming("databricks", HOST, None, _DB_SCHEMA_TABLE, "default"),
    ),
    # The port of the URL: the HTTP interface the provider speaks (8123/8443).
    "clickhouse": Dialect(
        "clickhouse",
        ClickHouseQueries,
        False,
        False,
        "now64(6)",
        LineageNaming("clickhouse", HOST_PORT, 8123, _DB_TABLE),
    ),
}

LOCK_PROCESS_ID = text("SELECT process_id FROM jetbase_lock WHERE id = 1")
LOCK_OWNER = text("SELECT is_locked, process_id FROM jetbase_lock WHERE id = 1")


def dialect_name(name: str) -> str:
    lowered = name.lower()
    if lowered.startswith("postgres"):
        return "postgresql"
    if lowered in {"mysql", "mariadb"}:
        return "mysql"
    return lowered


def known_dialect(name: str) -> Dialect | None:
    """The dialect of a SQLAlchemy dialect name, or None for a database the table does not know."""
    return _DIALECTS.get(dialect_name(name))


def dialect_for(engine: Engine) -> Dialect:
    name = dialect_name(engine.dialect.name)
    try:
        return _DIALECTS[name]
    except KeyError:
        raise InvalidArgumentError(
            f"Unsupported database {engine.dialect.name!r}: Jetbase supports {', '.join(sorted(_DIALECTS))}"
        ) from None
