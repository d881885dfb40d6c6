"""Snapshot a live schema into a plain, JSON-able, normalised model.

Both sides of a drift comparison are *reflected* (the live target and a scratch database built by
replaying the migrations on the same server, or a snapshot reflected earlier from the target
itself), so types and defaults are compared as the server reports them, not as the migrations
wrote them: ``SERIAL``, ``INT`` and ``BOOLEAN`` come back identically on both sides. The
normalisation below only removes what differs between two databases on the same server even when
their schemas are the same: the database name MySQL writes into view definitions, the ``DEFINER``
of a view, and the schema qualification of sequence names in defaults.

Reflection is done in bulk with SQLAlchemy 2.0's ``get_multi_*`` calls (one query per facet on
PostgreSQL, whatever the number of tables). Facets a dialect cannot reflect (Databricks has no
indexes, ClickHouse no constraints) are recorded as unsupported and skipped by the comparison.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_jetbase.errors import JetbaseProviderError
from airflow_provider_jetbase.migration.dialects import dialect_name as canonical_dialect_name
from airflow_provider_jetbase.migration.dialects import known_dialect

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.engine.interfaces import Dialect

MODEL_FORMAT = 1
logger = logging.getLogger(__name__)

# Jetbase's own tables and every table of ours (jetbase_schema_snapshot, ...) share this prefix.
IGNORED_TABLE_PREFIX = "jetbase_"

FACETS = (
    "columns",
    "primary_key",
    "indexes",
    "unique_constraints",
    "foreign_keys",
    "check_constraints",
    "views",
    "sequences",
)

_WS = re.compile(r"\s+")
_MYSQL_DEFINER = re.compile(r"\s+DEFINER\s*=\s*(`[^`]*`|'[^']*'|\S+)@(`[^`]*`|'[^']*'|\S+)", re.IGNORECASE)


def is_ignored_table(name: str) -> bool:
    return name.lower().startswith(IGNORED_TABLE_PREFIX)


def _squash(text: str | None) -> str | None:
    if text is None:
        return None
    return _WS.sub(" ", str(text)).strip()


def _jsonable(value: Any) -> Any:
    """Turn reflected extras (dialect options, sortings) into stable JSON values."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


def _type_text(type_: Any, dialect: Dialect) -> str:
    try:
        compiled = type_.compile(dialect=dialect)
    except Exception:  # noqa: BLE001 - NullType and exotic reflected types have no DDL form
        compiled = repr(type_)
    return _squash(str(compiled)).upper()  # type: ignore[union-attr]


class SchemaModelError(JetbaseProviderError, ValueError):
    """A stored schema model (a snapshot) cannot be read back."""


@dataclass(frozen=True)
class SchemaModel:
    """A normalised, JSON-able picture of one schema.

    ``tables`` maps table name to ``{"columns": {name: {...}}, "primary_key": {...} | None,
    "indexes": {key: {...}}, "unique_constraints": {...}, "foreign_keys": {...},
    "check_constraints": {...}}``; ``views`` maps view name to ``{"materialized": bool,
    "definition": str | None}``. ``unsupported`` lists the facets the dialect could not reflect.
    """

    dialect: str
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    views: dict[str, dict[str, Any]] = field(default_factory=dict)
    sequences: tuple[str, ...] = ()
    unsupported: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MODEL_FORMAT,
            "dialect": self.dialect,
            "tables": self.tables,
            "views": self.views,
            "sequences": list(self.sequences),
            "unsupported": list(self.unsupported),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def fingerprint(self) -> str:
        """SHA-256 of the canonical JSON form: equal schemas give equal fingerprints."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SchemaModel:
        if data.get("format") != MODEL_FORMAT:
            raise SchemaModelError(
                f"schema model format {data.get('format')!r} is not supported (expected {MODEL_FORMAT})"
            )
        return cls(
            dialect=str(data["dialect"]),
            tables=dict(data.get("tables") or {}),
            views=dict(data.get("views") or {}),
            sequences=tuple(data.get("sequences") or ()),
            unsupported=tuple(data.get("unsupported") or ()),
        )

    @classmethod
    def from_json(cls, text: str) -> SchemaModel:
        return cls.from_dict(json.loads(text))


class _Normaliser:
    """What must be stripped so two databases with the same schema reflect the same text."""

    def __init__(self, dialect_name: str, schema_names: Iterable[str | None]) -> None:
        self.dialect_name = dialect_name
        self.schema_names = {s for s in schema_names if s}

    def default(self, value: Any) -> str | None:
        text = _squash(value)
        if text is None:
            return None
        for schema in self.schema_names:
            # nextval('app.users_id_seq'::regclass) vs nextval('users_id_seq'::regclass)
            text = re.sub(rf"'\"?{re.escape(schema)}\"?\.", "'", text)
        return text

    def view_definition(self, value: str | None) -> str | None:
        text = _squash(value)
        if text is None:
            return None
        if self.dialect_name == "mysql":
            text = _MYSQL_DEFINER.sub("", text)
            for schema in self.schema_names:
                text = text.replace(f"`{schema}`.", "")
        for schema in self.schema_names:
            text = text.replace(f'"{schema}".', "")
        return text

    def referred_schema(self, value: str | None) -> str | None:
        return None if value in self.schema_names else value


def _key(name: str | None, signature: str) -> str:
    # Unnamed constraints (SQLite) are identified by what they cover.
    return name if name else f"({signature})"


def _column_entry(col: Mapping[str, Any], dialect: Dialect, norm: _Normaliser) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "type": _type_text(col["type"], dialect),
        "nullable": bool(col.get("nullable", True)),
        "default": norm.default(col.get("default")),
    }
    if col.get("identity"):
        entry["identity"] = _jsonable(col["identity"])
    if col.get("computed"):
        computed = dict(col["computed"])
        computed["sqltext"] = _squash(computed.get("sqltext"))
        entry["computed"] = _jsonable(computed)
    return entry


def _index_entry(ix: Mapping[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "columns": [c for c in ix.get("column_names") or []],
        "unique": bool(ix.get("unique", False)),
    }
    expressions = ix.get("expressions")
    if expressions and any(e is not None for e in expressions):
        entry["expressions"] = [_squash(e) for e in expressions]
    for extra in ("column_sorting", "dialect_options"):
        if ix.get(extra):
            entry[extra] = _jsonable(ix[extra])
    return entry


def _fk_entry(fk: Mapping[str, Any], norm: _Normaliser) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "columns": list(fk.get("constrained_columns") or []),
        "referred_schema": norm.referred_schema(fk.get("referred_schema")),
        "referred_table": fk.get("referred_table"),
        "referred_columns": list(fk.get("referred_columns") or []),
    }
    if fk.get("options"):
        entry["options"] = _jsonable(fk["options"])
    return entry


def _reflect_facet(
    unsupported: list[str], facet: str, call: Callable[[], Mapping[Any, Any]], strict: bool
) -> Mapping[Any, Any] | None:
    try:
        return call()
    except NotImplementedError:
        unsupported.append(facet)
        return None
    except Exception as exc:
        # Third-party dialects (and emulators) break on some catalogue queries; a facet they
        # cannot read is left out rather than failing the whole check. Not on the core three.
        if strict:
            raise
        logger.warning(
            "Cannot reflect %s on this database (%s: %s): not compared", facet, type(exc).__name__, exc
        )
        unsupported.append(facet)
        return None


def snapshot_schema(bind: Engine | Connection, schema: str | None = None) -> SchemaModel:
    """Reflect ``schema`` (default: the connection's default schema) into a :class:`SchemaModel`.

    Read-only: it runs catalogue queries and nothing else. Jetbase's tables and ours (every table
    whose name starts with ``jetbase_``) are left out.
    """
    from sqlalchemy import inspect
    from sqlalchemy.engine import Engine

    if isinstance(bind, Engine):
        with bind.connect() as conn:
            return snapshot_schema(conn, schema)

    conn = bind
    inspector = inspect(conn)
    dialect = conn.dialect
    dialect_name = canonical_dialect_name(dialect.name)
    schema_names: list[str | None] = [schema, getattr(inspector, "default_schema_name", None)]
    facts = known_dialect(dialect.name)
    if facts is not None and facts.database_in_definitions_sql:
        schema_names.append(conn.exec_driver_sql(facts.database_in_definitions_sql).scalar())
    norm = _Normaliser(dialect_name, schema_names)
    unsupported: list[str] = []

    table_names = sorted(n for n in inspector.get_table_names(schema=schema) if not is_ignored_table(n))
    tables: dict[str, dict[str, Any]] = {
        name: {
            "columns": {},
            "primary_key": None,
            "indexes": {},
            "unique_constraints": {},
            "foreign_keys": {},
            "check_constraints": {},
        }
        for name in table_names
    }

    if table_names:
        multi: dict[str, Any] = {"schema": schema, "filter_names": table_names}
        strict = facts is not None and facts.reflects_every_facet
        columns = _reflect_facet(unsupported, "columns", lambda: inspector.get_multi_columns(**multi), strict)
        pks = _reflect_facet(
            unsupported, "primary_key", lambda: inspector.get_multi_pk_constraint(**multi), strict
        )
        indexes = _reflect_facet(unsupported, "indexes", lambda: inspector.get_multi_indexes(**multi), strict)
        uniques = _reflect_facet(
            unsupported, "unique_constraints", lambda: inspector.get_multi_unique_constraints(**multi), strict
        )
        fks = _reflect_facet(
            unsupported, "foreign_keys", lambda: inspector.get_multi_foreign_keys(**multi), strict
        )
        checks = _reflect_facet(
            unsupported, "check_constraints", lambda: inspector.get_multi_check_constraints(**multi), strict
        )

        for (_, table), cols in (columns or {}).items():
            if table in tables:
                tables[table]["columns"] = {c["name"]: _column_entry(c, dialect, norm) for c in cols}
        for (_, table), pk in (pks or {}).items():
            if table in tables and pk and pk.get("constrained_columns"):
                tables[table]["primary_key"] = {
                    "name": pk.get("name"),
                    "columns": list(pk["constrained_columns"]),
                }
        for (_, table), ixs in (indexes or {}).items():
            if table in tables:
                entries = {}
                for ix in ixs:
                    entry = _index_entry(ix)
                    entries[_key(ix.get("name"), ",".join(str(c) for c in entry["columns"]))] = entry
                tables[table]["indexes"] = entries
        for (_, table), ucs in (uniques or {}).items():
            if table in tables:
                tables[table]["unique_constraints"] = {
                    _key(uc.get("name"), ",".join(uc["column_names"])): {"columns": list(uc["column_names"])}
                    for uc in ucs
                }
        for (_, table), fklist in (fks or {}).items():
            if table in tables:
                entries = {}
                for fk in fklist:
                    entry = _fk_entry(fk, norm)
                    signature = (
                        f"{','.join(entry['columns'])}->{entry['referred_table']}"
                        f"({','.join(entry['referred_columns'])})"
                    )
                    entries[_key(fk.get("name"), signature)] = entry
                tables[table]["foreign_keys"] = entries
        for (_, table), cks in (checks or {}).items():
            if table in tables:
                tables[table]["check_constraints"] = {
                    _key(ck.get("name"), _squash(ck.get("sqltext")) or ""): {
                        "sqltext": _squash(ck.get("sqltext"))
                    }
                    for ck in cks
                }

    views: dict[str, dict[str, Any]] = {}
    view_lists: list[tuple[bool, Callable[[], list[str]]]] = [
        (False, lambda: inspector.get_view_names(schema=schema))
    ]
    if facts is not None and facts.has_materialized_views:
        view_lists.append((True, lambda: inspector.get_materialized_view_names(schema=schema)))
    try:
        for materialized, lister in view_lists:
            for view in sorted(lister()):
                if is_ignored_table(view):
                    continue
                try:
                    definition = norm.view_definition(inspector.get_view_definition(view, schema=schema))
                except NotImplementedError:
                    definition = None
                views[view] = {"materialized": materialized, "definition": definition}
    except NotImplementedError:
        unsupported.append("views")

    sequences: tuple[str, ...] = ()
    if dialect.supports_sequences:
        try:
            # jetbase_migrations' identity sequence is Jetbase's, like the table.
            sequences = tuple(
                sorted(s for s in inspector.get_sequence_names(schema=schema) if not is_ignored_table(s))
            )
        except NotImplementedError:
            unsupported.append("sequences")

    return SchemaModel(
        dialect=dialect_name,
        tables=tables,
        views=views,
        sequences=sequences,
        unsupported=tuple(sorted(set(unsupported))),
    )
