"""The dialect table (migration/dialects.py) is the one home of per-database facts.

Adding a database is one entry there plus one connection mapping: these tests hold the entries to
what the modules that read them need, and keep the facts from drifting back into ``if dialect ==``
branches elsewhere.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from airflow_provider_jetbase.drift.replay import REPLAYABLE_DIALECTS
from airflow_provider_jetbase.drift.snapshot import create_table_sql
from airflow_provider_jetbase.migration.dialects import _DIALECTS, known_dialect, replayable_dialects

PACKAGE = Path(__file__).resolve().parents[1] / "airflow_provider_jetbase"

# Comparisons with a dialect's name that are rules about that database's own SQL, not facts another
# database could share: MySQL's DEFINER clause and backquotes in view definitions (drift/schema.py),
# PostgreSQL's CREATE INDEX CONCURRENTLY (migration/lint.py), the PostgreSQL URL scheme of a
# postgres connection (connection_mapping.py), and the driver-level patches that apply to one
# driver only (sqlite_tx.py: pysqlite; clickhouse_errors.py: clickhouse-sqlalchemy).
ALLOWED = {
    "drift/schema.py": 1,
    "migration/lint.py": 1,
    "connection_mapping.py": 1,
    "migration/sqlite_tx.py": 1,
    "migration/clickhouse_errors.py": 1,
}
_NAME_CHECK = re.compile(
    r"""(dialect(_name)?|\.name)\s*[!=]=\s*["'](postgresql|mysql|sqlite|snowflake|databricks|clickhouse)["']"""
    r"""|startswith\(\s*["']postgres"""
)


def test_no_module_but_the_table_branches_on_a_dialect_name() -> None:
    found: dict[str, int] = {}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative == "migration/dialects.py":
            continue
        hits = len(_NAME_CHECK.findall(path.read_text()))
        if hits:
            found[relative] = hits
    assert found == ALLOWED


@pytest.mark.parametrize("name", replayable_dialects())
def test_every_replay_factory_in_the_table_is_importable(name: str) -> None:
    factory = _DIALECTS[name].scratch_factory
    assert factory is not None
    module, _, attribute = factory.partition(":")
    assert callable(getattr(importlib.import_module(module), attribute))


def test_replayable_dialects_are_those_with_a_scratch_factory() -> None:
    assert set(REPLAYABLE_DIALECTS) == set(replayable_dialects()) == {"sqlite", "postgresql", "mysql"}


def test_every_entry_names_its_sqlglot_dialect() -> None:
    import sqlglot.dialects

    for name, dialect in _DIALECTS.items():
        assert dialect.sqlglot is not None, name
        assert sqlglot.dialects.Dialect.get(dialect.sqlglot) is not None, name


def test_aliases_reach_the_same_entry_and_unknown_databases_none() -> None:
    assert known_dialect("postgres") is known_dialect("postgresql") is _DIALECTS["postgresql"]
    assert known_dialect("mariadb") is _DIALECTS["mysql"]
    assert known_dialect("mssql") is None


def test_snapshot_table_ddl_comes_from_the_entry() -> None:
    assert create_table_sql("clickhouse").endswith(" ENGINE = MergeTree ORDER BY captured_at")
    assert "NOT NULL" not in create_table_sql("clickhouse")
    assert "model LONGTEXT NOT NULL" in create_table_sql("mysql")
    # A database the table does not know gets portable types.
    assert "model TEXT NOT NULL" in create_table_sql("mssql")
