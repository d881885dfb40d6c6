"""Rollbacks on the real databases: only applied rows are rolled back (never the rollback section of a
file that was not applied), and a missing file or ``-- rollback`` section refuses the run before
anything runs, leaving the database as it was.

Elsewhere: the rollback targets together with the upgrade ones in test_upgrade.py, bad ``count`` /
``to_version`` in test_arguments.py, rollback parsing hazards in test_parsing.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.engine import URL, Engine

from airflow_provider_jetbase.migration import (
    MigrationFileError,
    Migrator,
)
from tests.engine.helpers import Baseline, fails, table_file, tables
from tests.jetbase_cli import (
    LOCK_FREE,
    JetbaseProject,
    applied_versions,
    lock_row,
    table_exists,
    write_migration,
)
from tests.reliability.snapshots import assert_unchanged, snapshot


def test_rollback_touches_only_applied_rows(
    db_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    project = JetbaseProject(tmp_path, db_url)
    for version, table in (("1", "t1"), ("2", "t2"), ("3", "t3")):
        table_file(project.migrations_dir, version, table)
    engine = make_engine(db_url)
    migrator = Migrator(engine, project.migrations_dir)
    migrator.upgrade()
    # Added later, never applied, inside the range 2..3: its rollback must not run.
    never_applied = write_migration(
        project.migrations_dir,
        "V2_5__never_applied.sql",
        """
        CREATE TABLE t2_5 (id INTEGER);
        -- rollback
        CREATE TABLE rollback_of_2_5_ran (id INTEGER);
        """,
    )

    result = migrator.rollback(count=2)
    assert [r.filename for r in result.rolled_back] == ["V3__create_t3.sql", "V2__create_t2.sql"]
    assert applied_versions(engine) == ["1"]
    assert not table_exists(engine, "rollback_of_2_5_ran")
    assert not table_exists(engine, "t2") and not table_exists(engine, "t3") and table_exists(engine, "t1")

    # Documentation: the same situation through the CLI runs V2_5's rollback section.
    never_applied.rename(tmp_path / never_applied.name)
    project.upgrade().assert_ok()
    (tmp_path / never_applied.name).rename(never_applied)
    project.rollback(count=2).assert_ok()
    assert table_exists(engine, "rollback_of_2_5_ran"), "the CLI no longer runs unapplied rollbacks?"


def test_rollback_touches_only_applied_versions(
    db_url: URL, folder: Path, make_engine: Callable[..., Engine]
) -> None:
    for version, table in (("1", "a1"), ("2", "a2"), ("3", "a3")):
        table_file(folder, version, table)
    engine = make_engine(db_url)
    migrator = Migrator(engine, folder)
    migrator.upgrade()
    # A file inside the range that was never applied: its rollback must not run (it would drop a2).
    write_migration(folder, "V2_5__never_applied.sql", "SELECT 1;\n-- rollback\nDROP TABLE a2;\n")
    result = migrator.rollback(to_version="2")
    assert [r.filename for r in result.rolled_back] == ["V3__create_a3.sql"]
    assert "a2" in tables(engine) and "a3" not in tables(engine)
    assert applied_versions(engine) == ["1", "2"]


def test_rollback_errors_come_before_anything_runs(
    db_url: URL, folder: Path, make_engine: Callable[..., Engine]
) -> None:
    table_file(folder, "1", "r1")
    write_migration(folder, "V2__no_rollback.sql", "CREATE TABLE r2 (id INTEGER);\n")
    table_file(folder, "3", "r3")
    engine = make_engine(db_url)
    migrator = Migrator(engine, folder)
    migrator.upgrade()
    with pytest.raises(MigrationFileError, match="V2__no_rollback.sql has no '-- rollback' section"):
        migrator.rollback(count=2)
    assert applied_versions(engine) == ["1", "2", "3"] and {"r1", "r2", "r3"} <= tables(engine)
    (folder / "V3__create_r3.sql").unlink()
    with pytest.raises(MigrationFileError, match=r"version 3: its file \(V3__create_r3.sql\) is missing"):
        migrator.rollback(dry_run=True)
    assert applied_versions(engine) == ["1", "2", "3"] and lock_row(engine) == LOCK_FREE


# ------------------------------------------------------------------ bad-input corpus (PostgreSQL, ClickHouse)


def test_missing_rollback_section(base: Baseline) -> None:
    base.add("V2__no_rollback.sql", "CREATE TABLE two (id INT);")
    base.migrator().upgrade()
    before = snapshot(base.engine)
    fails(base.migrator().rollback, MigrationFileError, "V2__no_rollback.sql", "rollback")
    assert_unchanged(base.engine, before, "rollback without a rollback section")


def test_rollback_of_an_applied_version_whose_file_is_gone(base: Baseline) -> None:
    path = base.add("V2__gone.sql", "CREATE TABLE two (id INT);\n-- rollback\nDROP TABLE two;")
    base.migrator().upgrade()
    before = snapshot(base.engine)
    path.unlink()
    fails(base.migrator().rollback, MigrationFileError, "V2__gone.sql", "2")
    assert_unchanged(base.engine, before, "rollback of a missing file")
