"""What a migration run changed, as lineage: each table created, altered or dropped, named by
OpenLineage's rules for the database (https://openlineage.io/docs/spec/naming).

Pure: SQL text and URL parts in, names and lifecycle states out; no connection and nothing of
OpenLineage (operators/_lineage.py turns these into OpenLineage facets). The per-dialect naming
facts live in the dialect table (migration/dialects.py, ``Dialect.lineage``). Statements are read
with sqlglot; one it cannot read, or that changes no table (an INSERT, a CREATE INDEX), adds no
dataset: it is still reported in the SQL job facet.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from airflow_provider_jetbase.migration.dialects import (
    FILE_PATH,
    HOST,
    HOST_PORT,
    SNOWFLAKE_ACCOUNT,
    URL_DATABASE_SLASH_SCHEMA,
    URL_QUERY,
    LineageNaming,
    known_dialect,
)
from airflow_provider_jetbase.migration.results import MigrationRun, _ToDict

# OpenLineage's LifecycleStateChange values.
CREATE = "CREATE"
ALTER = "ALTER"
DROP = "DROP"
OVERWRITE = "OVERWRITE"
RENAME = "RENAME"
TRUNCATE = "TRUNCATE"

# The kinds of CREATE/DROP/ALTER that make or remove a dataset.
_DATASET_KINDS = {"TABLE", "VIEW"}


@dataclass(frozen=True)
class LineageTarget(_ToDict):
    """Where the datasets of one database live: the OpenLineage namespace, and the database (catalog)
    and schema an unqualified table name belongs to. Never a user name or password."""

    dialect: str  # our dialect name (migration/dialects.py)
    namespace: str
    database: str | None
    schema: str | None
    levels: tuple[str, ...]


@dataclass(frozen=True)
class TableChange(_ToDict):
    """One dataset a run changed: its name in the target's namespace and the lifecycle state change
    (``CREATE``, ``ALTER``, ``DROP``, ``OVERWRITE``, ``RENAME``, ``TRUNCATE``); ``previous_name``
    is the name before a ``RENAME``."""

    name: str
    state: str
    previous_name: str | None = None


@dataclass(frozen=True)
class LineageRecord(_ToDict):
    """What an upgrade or rollback task reports to OpenLineage: the files it ran (committed ones
    only when it failed) and the versions before and after (None when they could not be read)."""

    command: str  # "upgrade" or "rollback"
    target: LineageTarget
    runs: tuple[MigrationRun, ...]
    version_before: str | None
    version_after: str | None
    dry_run: bool
    failed: bool = False

    @property
    def statements(self) -> tuple[str, ...]:
        """What was sent to the database, in order; nothing in a dry run (nothing was)."""
        if self.dry_run:
            return ()
        return tuple(statement for run in self.runs for statement in run.statements)

    def changes(self) -> tuple[TableChange, ...]:
        return table_changes(self.statements, self.target) if self.statements else ()


def _snowflake_account(account: str) -> str:
    # OpenLineage's own normalisation (legacy locators get their region and cloud), when its
    # integration package is there (it is whenever the OpenLineage provider is); else as written.
    try:
        from openlineage.common.provider.snowflake import fix_account_name
    except ImportError:
        return account
    return str(fix_account_name(account))


def namespace(naming: LineageNaming, host: str | None, port: int | None, path: str | None) -> str:
    """``<scheme>://<authority>`` for the URL parts of a connection."""
    if naming.authority == FILE_PATH:
        return f"{naming.scheme}://{path or ''}"
    where = host or "localhost"
    if naming.authority == SNOWFLAKE_ACCOUNT:
        where = _snowflake_account(where)
    elif naming.authority == HOST_PORT:
        chosen = port or naming.default_port
        where = f"{where}:{chosen}" if chosen else where
    elif naming.authority != HOST:
        raise ValueError(f"unknown OpenLineage authority kind {naming.authority!r}")
    return f"{naming.scheme}://{where}"


def lineage_target(url: Any, dialect: str) -> LineageTarget | None:
    """The target of a SQLAlchemy URL (only its host, port, database and query are read); None for
    a database the dialect table does not know."""
    known = known_dialect(dialect)
    if known is None:
        return None
    naming = known.lineage
    database: str | None = url.database or None
    schema: str | None = naming.default_schema
    query = dict(url.query or {})
    if naming.url_layout == URL_DATABASE_SLASH_SCHEMA and database:
        # connection_mapping writes "<database>/<schema>" into the URL's database.
        parts = [unquote(p) for p in database.split("/") if p]
        database = parts[0] if parts else None
        if len(parts) > 1:
            schema = parts[1]
    elif naming.url_layout == URL_QUERY:
        database = _query_value(query, "catalog")
        schema = _query_value(query, "schema") or schema
    database = database or naming.default_database
    return LineageTarget(
        dialect=known.name,
        namespace=namespace(
            naming, url.host, url.port, url.database if naming.authority == FILE_PATH else None
        ),
        database=database,
        schema=schema,
        levels=naming.levels,
    )


def _query_value(query: dict[str, Any], key: str) -> str | None:
    value = query.get(key)
    if isinstance(value, (tuple, list)):
        value = value[0] if value else None
    return str(value) if value else None


def _dataset_name(table: Any, target: LineageTarget, inherit: Any = None) -> str | None:
    """``table`` (a sqlglot Table) qualified to the target's levels; ``inherit``: the table whose
    catalog and schema an unqualified new name keeps (``ALTER TABLE s.t RENAME TO u``)."""
    name = table.name
    if not name:
        return None
    db = table.db or (inherit.db if inherit is not None else "")
    catalog = table.catalog or (inherit.catalog if inherit is not None else "")
    if target.levels == ("table",):
        return str(name)
    if target.levels == ("database", "table"):
        parts = [db or target.database, name]
    else:
        parts = [catalog or target.database, db or target.schema, name]
    return ".".join(str(p) for p in parts if p)


def _changes_of(expression: Any, target: LineageTarget) -> list[TableChange]:
    from sqlglot import exp

    if isinstance(expression, exp.Create):
        if str(expression.args.get("kind") or "").upper() not in _DATASET_KINDS:
            return []
        node = expression.this
        table = node.this if isinstance(node, exp.Schema) else node
        if not isinstance(table, exp.Table):
            return []
        name = _dataset_name(table, target)
        state = OVERWRITE if expression.args.get("replace") else CREATE
        return [TableChange(name, state)] if name else []
    if isinstance(expression, exp.Drop):
        if str(expression.args.get("kind") or "").upper() not in _DATASET_KINDS:
            return []
        tables = expression.args.get("tables") or [expression.this]
        names = [_dataset_name(t, target) for t in tables if isinstance(t, exp.Table)]
        return [TableChange(n, DROP) for n in names if n]
    if isinstance(expression, exp.TruncateTable):
        names = [_dataset_name(t, target) for t in expression.expressions if isinstance(t, exp.Table)]
        return [TableChange(n, TRUNCATE) for n in names if n]
    alter = getattr(exp, "Alter", None) or getattr(exp, "AlterTable", None)
    if alter is not None and isinstance(expression, alter):
        if str(expression.args.get("kind") or "TABLE").upper() not in _DATASET_KINDS:
            return []
        table = expression.this
        if not isinstance(table, exp.Table):
            return []
        old = _dataset_name(table, target)
        if not old:
            return []
        for action in expression.args.get("actions") or ():
            # sqlglot's node for RENAME TO (RenameTable before sqlglot 26.x).
            if type(action).__name__ in {"AlterRename", "RenameTable"} and isinstance(action.this, exp.Table):
                new = _dataset_name(action.this, target, inherit=table)
                if new:
                    return [TableChange(new, RENAME, previous_name=old)]
        return [TableChange(old, ALTER)]
    return []


def _merge(first: TableChange, later: TableChange) -> TableChange:
    """One dataset changed twice in a run: it ends dropped if the last change drops it; else the
    first change says what happened to it (a table created then altered was created)."""
    if later.state == DROP:
        return later
    return first


def table_changes(statements: Iterable[str], target: LineageTarget) -> tuple[TableChange, ...]:
    """The datasets the statements change, one per name, in the order first changed. A renamed
    table is reported under its new name (its old one as ``previous_name``)."""
    import sqlglot
    from sqlglot.errors import SqlglotError
    from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

    from airflow_provider_jetbase.migration.lint import _quiet_sqlglot

    known = known_dialect(target.dialect)
    read = known.sqlglot if known else None
    found: dict[str, TableChange] = {}
    with _quiet_sqlglot():
        for statement in statements:
            try:
                parsed = [e for e in sqlglot.parse(statement, read=read) if e is not None]
            except SqlglotError:
                continue
            for expression in parsed:
                # Unquoted identifiers as the database folds them (lower on PostgreSQL, upper on
                # Snowflake), so "CREATE TABLE Foo" and "DROP TABLE foo" are one dataset.
                with contextlib.suppress(SqlglotError):
                    expression = normalize_identifiers(expression, dialect=read)
                for change in _changes_of(expression, target):
                    if change.previous_name is not None and change.previous_name in found:
                        # Known under its old name in this run: one entry, and a table this run
                        # created is still reported as created (under its final name).
                        was = found.pop(change.previous_name)
                        if was.state in (CREATE, OVERWRITE):
                            change = TableChange(change.name, was.state)
                    seen = found.get(change.name)
                    found[change.name] = change if seen is None else _merge(seen, change)
    return tuple(found.values())
