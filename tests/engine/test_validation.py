"""Validation before an upgrade: a changed checksum, an applied file that is missing and a file below
the latest applied version (out of order) block the run unless skipped; skipped, the out-of-order
file is applied with a warning and the file after a missing one is applied, never silently skipped.

Elsewhere: the same rules without a database in tests/test_planner.py, a missing RA/ROC file in
test_repeatables.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.engine import URL, Engine

from airflow_provider_jetbase.migration import (
    Migrator,
    ValidationFailedError,
)
from tests.engine.helpers import BASE, Baseline, fails, table_file
from tests.jetbase_cli import (
    LOCK_FREE,
    JetbaseProject,
    applied_versions,
    lock_row,
    table_exists,
    write_migration,
)
from tests.reliability.snapshots import assert_unchanged, snapshot


def test_validation_errors_and_skips(db_url: URL, folder: Path, make_engine: Callable[..., Engine]) -> None:
    table_file(folder, "1", "v1")
    table_file(folder, "3", "v3")
    engine = make_engine(db_url)
    migrator = Migrator(engine, folder)
    migrator.upgrade()
    assert migrator.validate().ok

    # out of order: a new file below the latest applied version
    table_file(folder, "2", "v2")
    with pytest.raises(ValidationFailedError, match="V2__create_v2.sql has version 2, lower than") as caught:
        migrator.upgrade()
    assert [f.kind for f in caught.value.report.findings] == ["out_of_order"]
    assert [f.kind for f in migrator.validate().findings] == ["out_of_order"]
    assert applied_versions(engine) == ["1", "3"] and lock_row(engine) == LOCK_FREE

    # changed checksum of an applied file
    write_migration(
        folder, "V1__create_v1.sql", "CREATE TABLE v1 (id INTEGER, x INTEGER);\n-- rollback\nDROP TABLE v1;\n"
    )
    with pytest.raises(ValidationFailedError, match="V1__create_v1.sql \\(version 1\\) has changed"):
        migrator.upgrade(skip_file_validation=True)
    kinds = sorted(f.kind for f in migrator.validate().findings)
    assert kinds == ["checksum_mismatch", "out_of_order"]

    # missing applied file
    (folder / "V3__create_v3.sql").unlink()
    report = migrator.validate()
    assert sorted(f.kind for f in report.findings) == ["checksum_mismatch", "missing_file", "out_of_order"]
    missing = next(f for f in report.findings if f.kind == "missing_file")
    assert (missing.version, missing.filename) == ("3", "V3__create_v3.sql")
    assert report.to_dict()["ok"] is False
    with pytest.raises(ValidationFailedError, match="Version 3 \\(V3__create_v3.sql\\) has been applied"):
        migrator.upgrade(skip_checksum_validation=True)

    # skipping everything applies the out-of-order file, with a warning (never silently skipped)
    result = migrator.upgrade(skip_validation=True)
    assert [r.version for r in result.applied] == ["2"]
    assert any("applying it out of order" in w for w in result.warnings)
    assert sorted(applied_versions(engine)) == ["1", "2", "3"]


def test_missing_latest_file_with_skipped_validation_still_applies_next(
    db_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    project = JetbaseProject(tmp_path, db_url)
    table_file(project.migrations_dir, "1", "t1")
    v2 = table_file(project.migrations_dir, "2", "t2")
    table_file(project.migrations_dir, "3", "t3")
    engine = make_engine(db_url)
    migrator = Migrator(engine, project.migrations_dir)
    migrator.upgrade(count=2)
    v2.unlink()

    # Documentation: the CLI silently skips V3 (it starts from the missing file and drops "the first").
    cli = project.upgrade(skip_validation=True).assert_ok()
    assert "Migrations are up to date." in cli.messages
    assert applied_versions(engine) == ["1", "2"]

    with pytest.raises(ValidationFailedError) as caught:
        migrator.upgrade()
    findings = caught.value.report.findings
    assert any(f.kind == "missing_file" and f.version == "2" for f in findings), findings
    assert "2" in str(caught.value)
    assert applied_versions(engine) == ["1", "2"]

    result = migrator.upgrade(skip_validation=True)
    assert [r.filename for r in result.applied] == ["V3__create_t3.sql"]
    assert applied_versions(engine) == ["1", "2", "3"]
    assert table_exists(engine, "t3")


def test_out_of_order_file_is_an_error_or_applied_with_a_warning_never_skipped(
    db_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    project = JetbaseProject(tmp_path, db_url)
    table_file(project.migrations_dir, "1", "t1")
    table_file(project.migrations_dir, "2", "t2")
    engine = make_engine(db_url)
    migrator = Migrator(engine, project.migrations_dir)
    migrator.upgrade()
    table_file(project.migrations_dir, "1_5", "t15")
    table_file(project.migrations_dir, "3", "t3")

    with pytest.raises(ValidationFailedError) as caught:
        migrator.upgrade()
    assert "V1_5__create_t15.sql" in str(caught.value)
    assert applied_versions(engine) == ["1", "2"]

    # Documentation: with validation skipped the CLI silently never applies 1.5.
    project.upgrade(skip_validation=True).assert_ok()
    assert applied_versions(engine) == ["1", "2", "3"] and not table_exists(engine, "t15")

    result = migrator.upgrade(skip_file_validation=True)
    assert [r.filename for r in result.applied] == ["V1_5__create_t15.sql"]
    assert any("V1_5__create_t15.sql" in w for w in result.warnings), result.warnings
    assert sorted(applied_versions(engine)) == ["1", "1.5", "2", "3"] and table_exists(engine, "t15")
    assert migrator.current() == "3"


# ------------------------------------------------------------------ bad-input corpus (PostgreSQL, ClickHouse)


def test_changed_checksum(base: Baseline) -> None:
    (base.folder / "V1__base.sql").write_text(BASE.replace("'kept'", "'edited'"))
    base.add("V2__two.sql", "CREATE TABLE two (id INT);")
    fails(base.migrator().upgrade, ValidationFailedError, "V1__base.sql", "checksum")
    base.unchanged("upgrade after editing an applied file")


def test_applied_file_missing(base: Baseline) -> None:
    (base.folder / "V1__base.sql").unlink()
    base.add("V2__two.sql", "CREATE TABLE two (id INT);")
    fails(base.migrator().upgrade, ValidationFailedError, "V1__base.sql", "missing")
    base.unchanged("upgrade with an applied file missing")


def test_out_of_order_new_file(base: Baseline) -> None:
    base.add("V2__two.sql", "CREATE TABLE two (id INT);")
    base.migrator().upgrade()
    before = snapshot(base.engine)
    base.add("V1_5__late.sql", "CREATE TABLE late (id INT);")
    fails(base.migrator().upgrade, ValidationFailedError, "V1_5__late.sql", "1.5")
    assert_unchanged(base.engine, before, "upgrade with an out-of-order file")
