"""Upgrades on the real databases (SQLite file, PostgreSQL, MariaDB): version order, what each row
records, ``count`` and ``to_version`` as targets, and ``V1`` against ``V1.0``.

Elsewhere: argument errors in test_arguments.py, what blocks an upgrade in test_validation.py, a
failing file in test_failures.py, RA/ROC files in test_repeatables.py, the plan without a database
in tests/test_planner.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import URL, Engine

from airflow_provider_jetbase.migration import (
    Migrator,
)
from tests.engine.helpers import Baseline, table_file, tables
from tests.jetbase_cli import (
    LOCK_FREE,
    applied_versions,
    jetbase_checksum,
    lock_row,
    version_rows,
)

MIXED = ["1", "1.1", "1_2", "2.0.1", "10", "20251225.120000"]


def test_upgrade_status_rollback_in_version_order(
    db_url: URL, folder: Path, make_engine: Callable[..., Engine]
) -> None:
    for i, version in enumerate(reversed(MIXED)):
        table_file(folder, version, f"t{i}")
    engine = make_engine(db_url)
    migrator = Migrator(engine, folder)

    status = migrator.status()
    assert status.current is None and [p.version for p in status.pending] == [
        "1", "1.1", "1.2", "2.0.1", "10", "20251225.120000"
    ]  # fmt: skip

    result = migrator.upgrade()
    assert [r.version for r in result.applied] == ["1", "1.1", "1.2", "2.0.1", "10", "20251225.120000"]
    assert (result.version_before, result.version_after, result.dry_run) == (None, "20251225.120000", False)
    # Rows are the CLI's: normalised version, description text, file name, type, Jetbase's checksum.
    for version, description, filename, mtype, checksum in version_rows(engine, include_order=False):
        assert mtype == "VERSIONED"
        assert filename[1:].split("__")[0].replace("_", ".") == version
        assert description == filename.split("__", 1)[1][:-4].replace("_", " ")
        assert checksum == jetbase_checksum(folder / filename)
    recorded = [r[:3] for r in version_rows(engine, include_order=False)]
    assert ("1.2", "create t3", "V1_2__create_t3.sql") in recorded
    assert migrator.current() == "20251225.120000"
    assert [h.version for h in migrator.history()] == applied_versions(engine)
    assert migrator.status().pending == ()
    assert result.to_dict()["applied"][0]["statements"] == [
        "CREATE TABLE t5 (id INTEGER)",
        "INSERT INTO t5 (id) VALUES (1)",
    ]

    back = migrator.rollback(count=2)
    assert [r.version for r in back.rolled_back] == ["20251225.120000", "10"]
    assert (back.version_before, back.version_after) == ("20251225.120000", "2.0.1")
    assert migrator.current() == "2.0.1"
    back = migrator.rollback(to_version="1_1")
    assert [r.version for r in back.rolled_back] == ["2.0.1", "1.2"]
    assert applied_versions(engine) == ["1", "1.1"] and migrator.current() == "1.1"
    assert lock_row(engine) == LOCK_FREE


def test_count_to_version_and_dry_run(db_url: URL, folder: Path, make_engine: Callable[..., Engine]) -> None:
    for i, version in enumerate(["1", "1_1", "1.2", "2", "3"]):
        table_file(folder, version, f"c{i}")
    engine = make_engine(db_url)
    migrator = Migrator(engine, folder)

    preview = migrator.upgrade(count=2, dry_run=True)
    assert preview.dry_run and [r.filename for r in preview.applied] == [
        "V1__create_c0.sql",
        "V1_1__create_c1.sql",
    ]
    assert preview.applied[1].statements == ("CREATE TABLE c1 (id INTEGER)", "INSERT INTO c1 (id) VALUES (1)")
    assert preview.version_after == "1.1"
    assert not tables(engine)  # the dry run created nothing

    assert [r.version for r in migrator.upgrade(count=2).applied] == ["1", "1.1"]
    assert [r.version for r in migrator.upgrade(to_version="1.2").applied] == ["1.2"]
    assert [r.version for r in migrator.upgrade(to_version="3", dry_run=True).applied] == ["2", "3"]
    assert applied_versions(engine) == ["1", "1.1", "1.2"]
    # to_version already applied: nothing versioned to do, not an error.
    assert migrator.upgrade(to_version="1_1").applied == ()

    preview_back = migrator.rollback(to_version="1", dry_run=True)
    assert [r.version for r in preview_back.rolled_back] == ["1.2", "1.1"]
    assert preview_back.rolled_back[0].statements == ("DROP TABLE c2",)
    assert applied_versions(engine) == ["1", "1.1", "1.2"]
    assert migrator.upgrade().version_after == "3"
    assert migrator.upgrade().applied == ()  # nothing to do


def test_v1_and_v1_0_are_two_versions_applied_in_a_fixed_order(base: Baseline) -> None:
    """Decision (as Jetbase): ``V1`` and ``V1.0`` are different versions. packaging orders them equal,
    so the engine breaks the tie by the version string: ``1`` before ``1.0``, on every run."""
    base.add("V1.0__same_as_one.sql", "CREATE TABLE one_dot_zero (id INT);")
    result = base.migrator().upgrade(skip_file_validation=True)
    assert [r.version for r in result.applied] == ["1.0"]
    with base.engine.connect() as conn:
        versions = [
            r[0] for r in conn.execute(text("SELECT version FROM jetbase_migrations ORDER BY order_executed"))
        ]
    assert versions == ["1", "1.0"]
    assert [p.version for p in base.migrator().status().pending] == []
