"""The plan value (migration/review.py) and its Markdown (migration/plan_markdown.py), pure: what the
hash covers and what it does not, and the rendering's size limit."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from pathlib import Path

import pytest

from airflow_provider_jetbase.migration.errors import InvalidArgumentError
from airflow_provider_jetbase.migration.files import discover
from airflow_provider_jetbase.migration.lint import LintFinding
from airflow_provider_jetbase.migration.plan_markdown import render
from airflow_provider_jetbase.migration.planner import plan_upgrade, upgrade_options
from airflow_provider_jetbase.migration.results import AppliedMigration
from airflow_provider_jetbase.migration.review import (
    DatabaseIdentity,
    ReviewPlan,
    ReviewRequest,
    build_review,
    compute_hash,
)
from tests.operator_helpers import write_migrations

DB = DatabaseIdentity("postgresql", "db.example", 5432, "warehouse", "wh")


def _review(
    folder: Path, applied: list[AppliedMigration], database: DatabaseIdentity = DB, **options: object
) -> ReviewPlan:
    files = discover(folder, logging.getLogger("test"))
    checked = upgrade_options(**options)  # type: ignore[arg-type]
    plan = plan_upgrade(files, applied, checked)
    return build_review(
        "upgrade", database, plan.version_before, plan.version_after, plan.steps, files, applied, checked
    )


def _row(version: str, checksum: str, order: int = 1, at: str = "2026-01-01") -> AppliedMigration:
    return AppliedMigration(
        order,
        version,
        "create a",
        f"V{version}__create_a.sql",
        "VERSIONED",
        dt.datetime.fromisoformat(at),
        checksum,
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_migrations(tmp_path / "m")


def test_hash_is_stable_and_ignores_what_does_not_decide(folder: Path) -> None:
    checksum = discover(folder, logging.getLogger("t")).versioned[0].checksum
    first = _review(folder, [_row("1", checksum)])
    assert first.plan_hash == _review(folder, [_row("1", checksum)]).plan_hash
    # When and in which order a row was written does not decide what runs.
    assert first.plan_hash == _review(folder, [_row("1", checksum, order=7, at="2030-05-05")]).plan_hash
    # Lint findings describe the plan; they are not in its hash.
    finding = LintFinding("drop-table", "destructive", "V2__create_b.sql", 1, "x")
    assert compute_hash(dataclasses.replace(first, lint=(finding,), warnings=("w",))) == first.plan_hash
    assert compute_hash(dataclasses.replace(first, version_before="0")) != first.plan_hash


def test_hash_covers_database_version_rows_files_and_options(folder: Path) -> None:
    checksum = discover(folder, logging.getLogger("t")).versioned[0].checksum
    base = _review(folder, [_row("1", checksum)]).plan_hash
    assert (
        _review(folder, [_row("1", checksum)], dataclasses.replace(DB, connection_id="other")).plan_hash
        != base
    )
    assert _review(folder, [_row("1", checksum)], dataclasses.replace(DB, database="other")).plan_hash != base
    assert _review(folder, []).plan_hash != base
    assert _review(folder, [_row("1", checksum)], count=1).plan_hash != base
    assert _review(folder, [_row("1", checksum)], skip_checksum_validation=True).plan_hash != base
    (folder / "V9__later.sql").write_text("CREATE TABLE later (id INTEGER);\n")
    assert _review(folder, [_row("1", checksum)], to_version="3").plan_hash != base


def test_identity_has_no_credentials() -> None:
    from sqlalchemy.engine import make_url

    from airflow_provider_jetbase.migration.review import database_identity

    identity = database_identity(make_url("postgresql://user:s3cret@h:5433/db"), "postgresql", "c")
    assert identity == DatabaseIdentity("postgresql", "h", 5433, "db", "c")
    assert "s3cret" not in str(identity.to_dict()) and "user" not in str(identity.to_dict())


def test_review_request_checks_its_values() -> None:
    assert ReviewRequest(plan_hash="AB" * 32).plan_hash == "ab" * 32
    with pytest.raises(InvalidArgumentError, match="plan_hash"):
        ReviewRequest(plan_hash="abc")
    with pytest.raises(InvalidArgumentError, match="lint"):
        ReviewRequest(lint="loud")


def test_markdown_escapes_cells_and_fences(tmp_path: Path) -> None:
    folder = write_migrations(
        tmp_path / "m", {"V1__odd.sql": "INSERT INTO t (a) VALUES ('x | ```y```');\n-- rollback\nSELECT 1;\n"}
    )
    markdown = render(_review(folder, []))
    assert "````sql\nINSERT INTO t (a) VALUES ('x | ```y```');\n````" in markdown


def test_markdown_is_cut_at_the_limit_with_a_note(tmp_path: Path) -> None:
    files = {
        f"V{n}__t{n}.sql": f"CREATE TABLE t{n} (id INTEGER, {'c' * 200} INTEGER);\n" for n in range(1, 30)
    }
    plan = _review(write_migrations(tmp_path / "m", files), [])
    full = render(plan, limit=1_000_000)
    assert "Cut here" not in full and "t29" in full
    for limit in (400, 2_000, 5_000):
        cut = render(plan, limit=limit)
        assert len(cut) <= limit
        assert f"Cut here at {limit} characters" in cut and plan.plan_hash[:16] in cut


def test_markdown_names_the_versions_before_and_after(folder: Path) -> None:
    first = render(_review(folder, []))
    assert "Version **none (no migration applied)** → **" in first and "**None**" not in first
    checksum = discover(folder, logging.getLogger("t")).versioned[0].checksum
    later = render(_review(folder, [_row("1", checksum)]))
    assert "Version **1** → **" in later
