"""Dry runs and the read-only commands write nothing: on a brand-new database no table is created,
with the tables present neither the version rows nor the lock change, and the previewed statements
and checksums are Jetbase's.

Elsewhere: dry runs with count/to_version in test_upgrade.py, hazard warnings of a dry run in
test_parsing.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.engine import URL, Engine

from airflow_provider_jetbase.migration import (
    Migrator,
)
from tests.engine.helpers import table_file, tables
from tests.jetbase_cli import (
    JetbaseProject,
    jetbase_checksum,
    lock_row,
    table_exists,
    version_rows,
    write_migration,
)

WRITE_PREFIXES = ("create", "insert", "update", "delete", "drop", "alter", "merge", "replace", "truncate")


def record_statements(engine: Engine) -> list[str]:
    seen: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", before)
    return seen


def test_dry_run_on_a_brand_new_database_writes_nothing(
    db_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    from jetbase.engine.file_parser import parse_rollback_statements, parse_upgrade_statements

    project = JetbaseProject(tmp_path, db_url)
    paths = [
        table_file(project.migrations_dir, v, t) for v, t in (("1", "t1"), ("1_1", "t11"), ("2", "t2"))
    ]
    engine = make_engine(db_url)
    seen = record_statements(engine)
    migrator = Migrator(engine, project.migrations_dir)

    result = migrator.upgrade(dry_run=True)
    assert result.dry_run
    assert [r.filename for r in result.applied] == [p.name for p in paths]
    for run, path in zip(result.applied, paths, strict=True):
        assert list(run.statements) == parse_upgrade_statements(str(path))
        assert run.checksum == jetbase_checksum(path)
    assert inspect(engine).get_table_names() == [], "a dry run created tables"
    # The read-only commands too (the CLI's `status` creates the version table).
    assert migrator.current() is None and migrator.history() == []
    assert [p.filename for p in migrator.status().pending] == [p.name for p in paths]
    assert migrator.validate().ok
    assert not migrator.lock_status().is_locked
    assert inspect(engine).get_table_names() == [], "a read-only command created tables"
    writes = [s for s in seen if s.lower().startswith(WRITE_PREFIXES)]
    assert writes == [], writes

    # With the tables present and two versions applied, dry runs still do not touch the lock.
    migrator.upgrade(count=2)
    seen.clear()
    before_rows, before_lock = version_rows(engine), lock_row(engine)
    rollback = migrator.rollback(count=2, dry_run=True)
    assert [r.filename for r in rollback.rolled_back] == [paths[1].name, paths[0].name]
    assert list(rollback.rolled_back[0].statements) == parse_rollback_statements(str(paths[1]))
    upgrade = migrator.upgrade(dry_run=True)
    assert [r.filename for r in upgrade.applied] == [paths[2].name]
    writes = [s for s in seen if s.lower().startswith(WRITE_PREFIXES)]
    assert writes == [], writes
    assert version_rows(engine) == before_rows and lock_row(engine) == before_lock
    assert not table_exists(engine, "t2")


def test_dry_run_on_a_brand_new_database_creates_nothing(
    db_url: URL, folder: Path, make_engine: Callable[..., Engine]
) -> None:
    table_file(folder, "1", "n1")
    write_migration(folder, "RA__a.sql", "SELECT 1;\n")
    engine = make_engine(db_url)
    migrator = Migrator(engine, folder)
    result = migrator.upgrade(dry_run=True)
    assert [r.filename for r in result.applied] == ["V1__create_n1.sql", "RA__a.sql"]
    assert migrator.rollback(dry_run=True).rolled_back == ()
    assert migrator.status().current is None and migrator.history() == [] and migrator.current() is None
    assert migrator.validate().ok and not migrator.lock_status().is_locked
    assert tables(engine) == set()
