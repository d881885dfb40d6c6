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
    # Another writer holds the database for now: wait and try again (SQLite's "database is locked";
    # servers wait on row locks instead of failing).
    busy: Callable[[BaseException], bool] = lambda e: False


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
        lambda e: "locked" in _sqlite_message(e),
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
# Where a URL names database and schema (LineageNaming.url_layout).
URL_DATABASE = "database"
URL_DATABASE_SLASH_SCHEMA = "database/schema"
URL_QUERY = "query"


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
    # Where the URL (as connection_mapping writes it) names database and schema: URL_DATABASE (the
    # URL's database), URL_DATABASE_SLASH_SCHEMA ("<database>/<schema>", Snowflake) or URL_QUERY
    # (the ``catalog`` and ``schema`` query parameters, Databricks).
    url_layout: str = "database"
    default_database: str | None = None


_DB_SCHEMA_TABLE = ("database", "schema", "table")
_DB_TABLE = ("database", "table")


@dataclass(frozen=True)
class AdvisoryLock:
    """A session-level lock the database drops when the session ends (migration/heartbeat.py).
    ``key_sql`` reads what the key is derived from (where ``jetbase_lock`` lives); ``:k`` is the key."""

    key_sql: str
    # True: a signed 64-bit integer key (pg_advisory_lock); False: a lock name (GET_LOCK).
    integer_key: bool
    try_sql: str
    release_sql: str


@dataclass(frozen=True)
class SnapshotStorage:
    """How the drift check's ``jetbase_schema_snapshot`` table is written (drift/snapshot.py)."""

    # captured_at, jetbase_version, fingerprint, model
    types: tuple[str, str, str, str] = ("VARCHAR(40)", "VARCHAR(255)", "VARCHAR(64)", "TEXT")
    not_null: str = " NOT NULL"
    table_options: str = ""
    delete_from: str = "DELETE FROM {table}"


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
    # A failed statement aborts the whole transaction (PostgreSQL): a read that may fail inside the
    # caller's transaction runs in a savepoint.
    failed_statement_aborts_transaction: bool = False
    advisory_lock: AdvisoryLock | None = None
    snapshot: SnapshotStorage = SnapshotStorage()
    # The drift check's replay into a scratch database: "module:function" of its factory (a context
    # manager, drift/scratch.py), imported only when a replay runs; None where it is not supported.
    scratch_factory: str | None = None
    # View definitions and foreign keys name the current database (MySQL), which the schema
    # comparison strips like a schema name: this reads that name.
    database_in_definitions_sql: str | None = None
    has_materialized_views: bool = False
    # SQLAlchemy reflects every facet of the schema (columns, keys, indexes, constraints): a
    # reflection failure is an error, not a facet recorded as unsupported (drift/schema.py).
    reflects_every_facet: bool = False
    # One writer at a time for the whole database (SQLite's file lock): a side connection for the
    # heartbeat would only wait on the migration's write lock, so the run refreshes ``locked_at``
    # inside each migration's transaction instead, which also takes that write lock.
    single_writer: bool = False
    # Some PRAGMAs are ignored inside a transaction (SQLite): they run before BEGIN or after COMMIT
    # (migration/sqlite_pragmas.py).
    pragmas_outside_transaction: bool = False
    # Jetbase's timestamps are text in this database ("%Y-%m-%d %H:%M:%f", SQLite), not a timestamp type.
    timestamps_as_text: bool = False
    # sqlglot's name of the dialect, for the lint (migration/lint.py).
    sqlglot: str | None = None
    # What a failure part-way through a file may leave behind where DDL is not rolled back; {file}
    # is the migration. None: the generic note (migration/migrator.py).
    partial_failure_note: str | None = None
    # DDL commits the open transaction (MySQL): a file mixing DDL and DML is half applied when it
    # fails part-way, which the lint flags.
    ddl_commits_implicitly: bool = False
    # A data-modifying CTE (``WITH x AS (UPDATE ... RETURNING ...) INSERT ...``, PostgreSQL): a
    # migration's version row and the lock's ownership proof go to the server as one statement, one
    # round trip fewer per file (MigrationLock.record_owned).
    data_modifying_cte: bool = False

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


_SCRATCH = "airflow_provider_jetbase.drift.scratch"

_DIALECTS: dict[str, Dialect] = {
    "postgresql": Dialect(
        "postgresql",
        PostgresQueries,
        transactional_ddl=True,
        supports_lock=True,
        now_sql="LOCALTIMESTAMP",
        lineage=LineageNaming("postgres", HOST_PORT, 5432, _DB_SCHEMA_TABLE, "public"),
        failed_statement_aborts_transaction=True,
        advisory_lock=AdvisoryLock(
            "SELECT current_database(), current_schema()",
            integer_key=True,
            try_sql="SELECT pg_try_advisory_lock(:k)",
            release_sql="SELECT pg_advisory_unlock(:k)",
        ),
        scratch_factory=f"{_SCRATCH}:postgres_scratch",
        has_materialized_views=True,
        reflects_every_facet=True,
        sqlglot="postgres",
        data_modifying_cte=True,
    ),
    "sqlite": Dialect(
        "sqlite",
        SQLiteQueries,
        transactional_ddl=True,
        supports_lock=True,
        now_sql="STRFTIME('%Y-%m-%d %H:%M:%f', 'NOW')",
        lineage=LineageNaming("sqlite", FILE_PATH, None, ("table",)),
        scratch_factory=f"{_SCRATCH}:sqlite_scratch",
        reflects_every_facet=True,
        single_writer=True,
        pragmas_outside_transaction=True,
        timestamps_as_text=True,
        sqlglot="sqlite",
    ),
    "mysql": Dialect(
        "mysql",
        MySQLQueries,
        transactional_ddl=False,
        supports_lock=True,
        now_sql="CURRENT_TIMESTAMP(6)",
        lineage=LineageNaming("mysql", HOST_PORT, 3306, _DB_TABLE),
        advisory_lock=AdvisoryLock(
            "SELECT DATABASE()",
            integer_key=False,
            try_sql="SELECT GET_LOCK(:k, 0)",
            release_sql="SELECT RELEASE_LOCK(:k)",
        ),
        snapshot=SnapshotStorage(types=("VARCHAR(40)", "VARCHAR(255)", "CHAR(64)", "LONGTEXT")),
        scratch_factory=f"{_SCRATCH}:mysql_scratch",
        reflects_every_facet=True,
        database_in_definitions_sql="SELECT DATABASE()",
        sqlglot="mysql",
        partial_failure_note="MySQL/MariaDB commits DDL implicitly, so the database may hold part of "
        "{file} (statements before the failed one, and DDL is never rolled back): check it and repair "
        "by hand before retrying.",
        ddl_commits_implicitly=True,
    ),
    "snowflake": Dialect(
        "snowflake",
        SnowflakeQueries,
        transactional_ddl=False,
        supports_lock=True,
        now_sql="CURRENT_TIMESTAMP()::TIMESTAMP_NTZ",
        lineage=LineageNaming(
            "snowflake", SNOWFLAKE_ACCOUNT, None, _DB_SCHEMA_TABLE, "PUBLIC", URL_DATABASE_SLASH_SCHEMA
        ),
        sqlglot="snowflake",
    ),
    "databricks": Dialect(
        "databricks",
        DatabricksQueries,
        transactional_ddl=False,
        supports_lock=True,
        now_sql="CURRENT_TIMESTAMP()",
        lineage=LineageNaming("databricks", HOST, None, _DB_SCHEMA_TABLE, "default", URL_QUERY),
        snapshot=SnapshotStorage(types=("STRING", "STRING", "STRING", "STRING")),
        sqlglot="databricks",
    ),
    "clickhouse": Dialect(
        "clickhouse",
        ClickHouseQueries,
        transactional_ddl=False,
        supports_lock=False,
        now_sql="now64(6)",
        lineage=LineageNaming("clickhouse", HOST_PORT, 8123, _DB_TABLE, default_database="default"),
        snapshot=SnapshotStorage(
            types=("String", "Nullable(String)", "String", "String"),
            not_null="",
            table_options=" ENGINE = MergeTree ORDER BY captured_at",
            delete_from="ALTER TABLE {table} DELETE",
        ),
        sqlglot="clickhouse",
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


def replayable_dialects() -> tuple[str, ...]:
    """The dialects the drift check can replay into a scratch database."""
    return tuple(name for name, d in _DIALECTS.items() if d.scratch_factory)


def known_dialect(name: str) -> Dialect | None:
    """The table's entry for a SQLAlchemy dialect name; None for a database it does not know (the
    schema comparison and snapshot still work there, with the defaults)."""
    return _DIALECTS.get(dialect_name(name))


def dialect_for(engine: Engine) -> Dialect:
    name = dialect_name(engine.dialect.name)
    try:
        return _DIALECTS[name]
    except KeyError:
        raise InvalidArgumentError(
            f"Unsupported database {engine.dialect.name!r}: Jetbase supports {', '.join(sorted(_DIALECTS))}"
        ) from None
