"""Whole-database snapshots (schema + every row of every table) to prove "nothing changed"."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from tests.jetbase_cli import schema_snapshot


@dataclass(frozen=True)
class DbSnapshot:
    schema: dict[str, Any]
    rows: dict[str, list[str]]

    def diff(self, other: DbSnapshot) -> str:
        lines = []
        if self.schema != other.schema:
            lines.append(f"schema: {self.schema} != {other.schema}")
        for table in sorted(set(self.rows) | set(other.rows)):
            if self.rows.get(table) != other.rows.get(table):
                lines.append(f"rows of {table}: {self.rows.get(table)} != {other.rows.get(table)}")
        return "\n".join(lines)


def snapshot(engine: Engine) -> DbSnapshot:
    rows: dict[str, list[str]] = {}
    quote = engine.dialect.identifier_preparer.quote
    with engine.connect() as conn:
        for table in sorted(inspect(conn).get_table_names()):
            result = conn.execute(text(f"SELECT * FROM {quote(table)}"))
            rows[table] = sorted(repr(tuple(r)) for r in result)
    return DbSnapshot(schema=schema_snapshot(engine), rows=rows)


def assert_unchanged(engine: Engine, before: DbSnapshot, what: str) -> None:
    after = snapshot(engine)
    assert after == before, f"{what} changed the database:\n{before.diff(after)}"
