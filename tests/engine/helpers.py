"""The engine tests' shared vocabulary (tests/engine/ and the lock tests in tests/reliability/).

Rows, versions, the lock row and migration files come from ``tests.jetbase_cli`` (``write_migration``,
``version_rows``, ``applied_versions``, ``lock_row``, ``LOCK_FREE``, ``table_exists``,
``jetbase_checksum``); this module adds what the engine tests share on top: a one-table migration
file, the set of tables, holding the lock as the CLI does, and the bad-input baseline (a database
holding one applied migration, snapshotted so "unchanged" covers every row of every table). The
fixtures over them (``make_engine``, ``folder``, ``base``) are in tests/conftest.py.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from airflow_provider_jetbase.migration import Migrator
from tests.jetbase_cli import write_migration
from tests.reliability.snapshots import DbSnapshot, assert_unchanged


def table_file(folder: Path, version: str, table: str, subdir: str | None = None) -> Path:
    """``V<version>__create_<table>.sql``: create the table and insert one row; rollback drops it."""
    return write_migration(
        folder,
        f"V{version}__create_{table}.sql",
        f"""
        CREATE TABLE {table} (id INTEGER);
        INSERT INTO {table} (id) VALUES (1);
        -- rollback
        DROP TABLE {table};
        """,
        subdir=subdir,
    )


def tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def hold_lock_like_the_cli(engine: Engine) -> str:
    """Take the lock row as the jetbase CLI does (a random uuid4 as process_id); return that id."""
    process_id = str(uuid.uuid4())
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE jetbase_lock SET is_locked = TRUE, locked_at = CURRENT_TIMESTAMP, process_id = :p "
                "WHERE id = 1"
            ),
            {"p": process_id},
        )
    return process_id


# ----------------------------------------------------------------------------- bad-input baseline

# What the ``base`` fixture has applied before every bad-input case.
BASE = """
CREATE TABLE base_t (id INT PRIMARY KEY, note VARCHAR(20));
INSERT INTO base_t VALUES (1, 'kept');
-- rollback
DROP TABLE base_t;
"""

# Every case on ``base`` runs on each of these, asserting the same thing; where ClickHouse cannot
# keep the database unchanged the case says what remains. What of the corpus does not run on
# ClickHouse, and why:
# - a foreign ``jetbase_lock`` (test_version_table.py::test_table_of_another_tool_with_the_same_name):
#   Jetbase keeps no lock on ClickHouse and never reads that table;
# - the unreachable server and the refused port: they test the PostgreSQL driver's connect_timeout
#   and refusal, not the database;
# - the connection-mapping cases: no database is involved, they run once.
# Not excluded but different: a failed file is not rolled back (no transactions; the case checks
# what stays), and the operators need a pool there (no lock), which the operator cases give them.
BASE_KINDS = ("postgres", "clickhouse")


@dataclass
class Baseline:
    kind: str
    engine: Engine
    folder: Path
    before: DbSnapshot

    def migrator(self, **kwargs: Any) -> Migrator:
        return Migrator(self.engine, self.folder, lock_timeout=5, lock_poll_interval=0.2, **kwargs)

    def add(self, filename: str, body: str) -> Path:
        return write_migration(self.folder, filename, body)

    def unchanged(self, what: str) -> None:
        assert_unchanged(self.engine, self.before, what)


def fails(call: Any, error: type[BaseException], *culprits: str) -> BaseException:
    """``call()`` raises ``error`` whose message names every culprit; returns the error."""
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    for culprit in culprits:
        assert culprit in message, f"{culprit!r} not named in: {message}"
    return info.value
