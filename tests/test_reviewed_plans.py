"""Reviewed plans on the real databases: a dry run's plan and hash, an apply that runs exactly the
approved plan, and every way the plan can change between approval and apply refused before any
statement runs, with the database left as it was."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from airflow_provider_jetbase.migration import Migrator
from airflow_provider_jetbase.migration.errors import LintFailedError, PlanMismatchError
from airflow_provider_jetbase.migration.plan_markdown import render
from airflow_provider_jetbase.migration.review import ReviewRequest
from tests.operator_helpers import applied_versions, table_names, write_migrations


def _migrator(url: URL, folder: Path) -> Migrator:
    return Migrator(create_engine(url), folder, lock_timeout=5)


def _rows(url: URL) -> list[tuple[Any, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [
                tuple(r)
                for r in conn.execute(
                    text("SELECT version, filename, checksum FROM jetbase_migrations ORDER BY order_executed")
                )
            ]
    finally:
        engine.dispose()


def _state(url: URL) -> tuple[set[str], list[tuple[Any, ...]]]:
    """What a refused apply must leave unchanged: the tables and the version rows."""
    return table_names(url), _rows(url)


@pytest.fixture
def planned(db_url: URL, tmp_path: Path) -> tuple[URL, Path, dict[str, Any]]:
    """Version 1 applied; the approved plan is a dry-run upgrade of 2 and 3."""
    folder = write_migrations(tmp_path / "migrations")
    migrator = _migrator(db_url, folder)
    try:
        migrator.upgrade(count=1)
        result = migrator.upgrade(dry_run=True, review=ReviewRequest(connection_id="db", lint="warn"))
    finally:
        migrator.engine.dispose()
    return db_url, folder, result.plan.to_dict()


def _apply(url: URL, folder: Path, approved: dict[str, Any], with_plan: bool = True, **kwargs: Any) -> Any:
    migrator = _migrator(url, folder)
    review = ReviewRequest(
        connection_id="db",
        lint="warn",
        plan_hash=approved["plan_hash"],
        approved_plan=approved if with_plan else None,
    )
    try:
        return migrator.upgrade(review=review, **kwargs)
    finally:
        migrator.engine.dispose()


def _refused(url: URL, folder: Path, approved: dict[str, Any], **kwargs: Any) -> str:
    before = _state(url)
    with pytest.raises(PlanMismatchError) as caught:
        _apply(url, folder, approved, **kwargs)
    assert _state(url) == before, "a refused apply changed the database"
    assert caught.value.expected == approved["plan_hash"] != caught.value.actual
    return str(caught.value)


def test_dry_run_plan_is_a_complete_value(planned: tuple[URL, Path, dict[str, Any]]) -> None:
    url, _, plan = planned
    json.dumps(plan)
    assert plan["command"] == "upgrade" and plan["version_before"] == "1" and plan["version_after"] == "3"
    assert plan["database"]["connection_id"] == "db"
    assert plan["database"]["dialect"] in {"sqlite", "postgresql", "mysql"}
    assert url.database is not None and url.database in str(plan["database"]["database"])
    assert "password" not in json.dumps(plan["database"]).lower()
    assert [(s["filename"], s["version"], s["statements"]) for s in plan["steps"]] == [
        ("V2__create_b.sql", "2", ["CREATE TABLE table_b (id INTEGER PRIMARY KEY)"]),
        ("V3__create_c.sql", "3", ["CREATE TABLE table_c (id INTEGER PRIMARY KEY)"]),
    ]
    assert all(len(s["checksum"]) == 64 for s in plan["steps"])
    assert [row[0] for row in plan["applied"]] == ["1"]
    assert len(plan["plan_hash"]) == 64
    assert applied_versions(url) == ["1"]


def test_apply_with_the_approved_hash_runs_exactly_the_plan(
    planned: tuple[URL, Path, dict[str, Any]],
) -> None:
    url, folder, plan = planned
    result = _apply(url, folder, plan, with_plan=False)
    assert [r.filename for r in result.applied] == [s["filename"] for s in plan["steps"]]
    assert result.plan.plan_hash == plan["plan_hash"]
    assert applied_versions(url) == ["1", "2", "3"]


def test_a_file_added_after_approval_is_refused(planned: tuple[URL, Path, dict[str, Any]]) -> None:
    url, folder, plan = planned
    (folder / "V4__create_d.sql").write_text("CREATE TABLE table_d (id INTEGER PRIMARY KEY);\n")
    message = _refused(url, folder, plan)
    assert "file(s) added: V4__create_d.sql" in message
    assert "table_d" not in table_names(url)


def test_a_file_changed_after_approval_is_refused(planned: tuple[URL, Path, dict[str, Any]]) -> None:
    url, folder, plan = planned
    (folder / "V2__create_b.sql").write_text("CREATE TABLE table_b (id INTEGER PRIMARY KEY, x INTEGER);\n")
    assert "file(s) changed: V2__create_b.sql" in _refused(url, folder, plan)


def test_a_file_removed_after_approval_is_refused(planned: tuple[URL, Path, dict[str, Any]]) -> None:
    url, folder, plan = planned
    (folder / "V3__create_c.sql").unlink()
    assert "file(s) removed: V3__create_c.sql" in _refused(url, folder, plan)


def test_a_database_at_another_version_is_refused(planned: tuple[URL, Path, dict[str, Any]]) -> None:
    url, folder, plan = planned
    other = _migrator(url, folder)
    try:
        other.upgrade(count=1)  # someone applied version 2 between approval and apply
    finally:
        other.engine.dispose()
    message = _refused(url, folder, plan)
    assert "the database moved to another version: approved at version 1, now at 2" in message
    assert applied_versions(url) == ["1", "2"]


def test_a_different_target_is_refused(planned: tuple[URL, Path, dict[str, Any]]) -> None:
    url, folder, plan = planned
    message = _refused(url, folder, plan, to_version="2")
    assert "a different target or options: to_version None -> '2'" in message


def test_hash_alone_says_what_the_plan_now_is(planned: tuple[URL, Path, dict[str, Any]]) -> None:
    url, folder, plan = planned
    (folder / "V4__create_d.sql").write_text("CREATE TABLE table_d (id INTEGER PRIMARY KEY);\n")
    message = _refused(url, folder, plan, with_plan=False)
    assert "3 file(s) to run (V2__create_b.sql, V3__create_c.sql, V4__create_d.sql)" in message
    assert "Pass the approved plan itself" in message


def test_rollback_refuses_a_rollback_section_changed_after_approval(db_url: URL, tmp_path: Path) -> None:
    """A rollback section is not in Jetbase's checksum: the plan hash covers the statements."""
    folder = write_migrations(tmp_path / "migrations")
    migrator = _migrator(db_url, folder)
    try:
        migrator.upgrade()
        plan = migrator.rollback(dry_run=True, review=ReviewRequest(connection_id="db")).plan.to_dict()
    finally:
        migrator.engine.dispose()
    assert [s["statements"] for s in plan["steps"]] == [["DROP TABLE table_c"]]
    (folder / "V3__create_c.sql").write_text(
        "CREATE TABLE table_c (id INTEGER PRIMARY KEY);\n\n-- rollback\nDROP TABLE table_a;\n"
    )
    before = _state(db_url)
    again = _migrator(db_url, folder)
    review = ReviewRequest(connection_id="db", plan_hash=plan["plan_hash"], approved_plan=plan)
    try:
        with pytest.raises(PlanMismatchError, match="the rollback section of V3__create_c.sql changed"):
            again.rollback(review=review)
    finally:
        again.engine.dispose()
    assert _state(db_url) == before
    assert {"table_a", "table_c"} <= table_names(db_url)


def test_lint_fail_refuses_before_anything_runs(db_url: URL, tmp_path: Path) -> None:
    folder = write_migrations(
        tmp_path / "migrations",
        {
            "V1__create.sql": "CREATE TABLE t (id INTEGER PRIMARY KEY);\n-- rollback\nDROP TABLE t;\n",
            "V2__wipe.sql": "CREATE TABLE u (id INTEGER);\nDELETE FROM t;\n-- rollback\nDROP TABLE u;\n",
        },
    )
    migrator = _migrator(db_url, folder)
    try:
        migrator.upgrade(count=1)
        before = _state(db_url)
        with pytest.raises(LintFailedError) as caught:
            migrator.upgrade(review=ReviewRequest(lint="fail"))
        assert _state(db_url) == before and "u" not in table_names(db_url)
        expected = [("delete-without-where", "V2__wipe.sql", 2)]
        if db_url.get_backend_name() == "mysql":  # DDL commits implicitly there
            expected.append(("mixed-ddl-dml", "V2__wipe.sql", 2))
        assert [(f.rule, f.file, f.line) for f in caught.value.findings] == expected
        # Accepted on purpose: the same checksum, and the upgrade runs.
        (folder / "V2__wipe.sql").write_text(
            "CREATE TABLE u (id INTEGER);\n-- jetbase-lint: allow delete-without-where, mixed-ddl-dml\n"
            "DELETE FROM t;\n-- rollback\nDROP TABLE u;\n"
        )
        result = migrator.upgrade(review=ReviewRequest(lint="fail"))
    finally:
        migrator.engine.dispose()
    assert applied_versions(db_url) == ["1", "2"]
    assert [(f.rule, f.accepted) for f in result.plan.lint] == [(rule, True) for rule, _, _ in expected]


def test_markdown_of_a_real_plan(planned: tuple[URL, Path, dict[str, Any]]) -> None:
    url, folder, _ = planned
    migrator = _migrator(url, folder)
    try:
        plan = migrator.upgrade(dry_run=True, review=ReviewRequest(connection_id="db", lint="warn")).plan
    finally:
        migrator.engine.dispose()
    markdown = render(plan)
    assert f"Plan hash `{plan.plan_hash}`" in markdown
    assert "| 1 | 2 | `V2__create_b.sql` | VERSIONED | 1 |" in markdown
    assert "```sql\nCREATE TABLE table_b (id INTEGER PRIMARY KEY);\n```" in markdown
    cut = render(plan, limit=700)
    assert len(cut) <= 700 and "Cut here at 700 characters" in cut and "table_c" not in cut
