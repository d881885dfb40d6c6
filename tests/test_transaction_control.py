"""Migrations that run their own COMMIT, BEGIN or ROLLBACK: warned in the plan and the dry run,
refused in strict mode, and a failure after one never claims "nothing was applied"."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, inspect
from sqlalchemy.engine import URL

from airflow_provider_jetbase.migration import MigrationExecutionError, Migrator, ParsingHazardError
from airflow_provider_jetbase.migration.files import load_file, transaction_control
from tests.jetbase_cli import applied_versions, jetbase_checksum, table_exists, write_migration

SELF_COMMITTING = """\
CREATE TABLE tc_first (id INTEGER);
COMMIT;
CREATE TABLE tc_second (id INTEGER);
INSERT INTO tc_missing VALUES (1);
-- rollback
DROP TABLE tc_second;
DROP TABLE tc_first;
"""


@pytest.fixture
def make_engine() -> Iterator[Callable[[URL], Engine]]:
    engines: list[Engine] = []

    def factory(url: URL) -> Engine:
        engine = create_engine(url)
        engines.append(engine)
        return engine

    yield factory
    for engine in engines:
        engine.dispose()


@pytest.mark.parametrize(
    ("statement", "keyword"),
    [
        ("COMMIT", "COMMIT"),
        ("commit work", "COMMIT"),
        ("/* done */ COMMIT", "COMMIT"),
        ("END", "END"),
        ("BEGIN", "BEGIN"),
        ("START TRANSACTION READ WRITE", "START TRANSACTION"),
        ("ROLLBACK", "ROLLBACK"),
        ("ABORT", "ABORT"),
        ("PREPARE TRANSACTION 'x'", "PREPARE TRANSACTION"),
        ("XA START 'x'", "XA START"),
        ("SET autocommit = 1", "SET autocommit"),
        ("SET @@session.autocommit=ON", "SET autocommit"),
    ],
)
def test_transaction_control_statements_are_recognised(statement: str, keyword: str) -> None:
    assert transaction_control(statement) == keyword


@pytest.mark.parametrize(
    "statement",
    [
        "SAVEPOINT s1",
        "RELEASE SAVEPOINT s1",
        "ROLLBACK TO SAVEPOINT s1",
        "ROLLBACK WORK TO s1",
        "SET autocommit = 0",
        "SET search_path TO app",
        "PREPARE q AS SELECT 1",
        "BEGIN NOT ATOMIC SELECT 1; END",
        "CREATE PROCEDURE p() BEGIN COMMIT; END",
        "DO $$ BEGIN COMMIT; END $$",
        "SELECT 'COMMIT'",
        "COMMITTED_ROWS",
    ],
)
def test_savepoints_and_bodies_that_mention_commit_are_not_transaction_control(statement: str) -> None:
    assert transaction_control(statement) is None


def test_transaction_control_is_a_hazard_naming_file_and_line_and_keeps_jetbases_checksum(
    tmp_path: Path,
) -> None:
    path = write_migration(tmp_path, "V1__self_committing.sql", SELF_COMMITTING)
    migration = load_file(path, path.name)
    warnings = migration.upgrade_warnings()
    assert any(
        w.startswith("V1__self_committing.sql line 2: transaction control statement 'COMMIT'")
        for w in warnings
    ), warnings
    assert len(warnings) == 1, warnings
    assert migration.checksum == jetbase_checksum(path)

    rollback = write_migration(tmp_path, "V2__r.sql", "SELECT 1;\n-- rollback\nDELETE FROM t;\nROLLBACK;\n")
    assert any(
        "V2__r.sql line 4" in w and "'ROLLBACK'" in w
        for w in load_file(rollback, "V2__r.sql").rollback_warnings()
    )


def test_failure_after_a_commit_in_the_file_says_part_of_it_stays_applied(
    db_url: URL, tmp_path: Path, make_engine: Callable[[URL], Engine], caplog: pytest.LogCaptureFixture
) -> None:
    write_migration(tmp_path, "V1__self_committing.sql", SELF_COMMITTING)
    engine = make_engine(db_url)
    caplog.set_level(logging.WARNING)
    with pytest.raises(MigrationExecutionError) as caught:
        Migrator(engine, tmp_path).upgrade()
    error = caught.value
    message = str(error)
    assert error.partial is True
    assert "'COMMIT' at line 2" in message and "was NOT rolled back" in message, message
    assert "nothing of" not in message and "was rolled back: nothing" not in message, message
    # What the message says is what the database holds: the statement before COMMIT stayed.
    assert table_exists(engine, "tc_first")
    assert applied_versions(engine) == []
    # The hazard was logged before the file ran, not only after it failed.
    assert any("transaction control statement 'COMMIT'" in r.getMessage() for r in caplog.records)


def test_dry_run_warns_about_transaction_control_and_runs_nothing(
    db_url: URL, tmp_path: Path, make_engine: Callable[[URL], Engine]
) -> None:
    write_migration(tmp_path, "V1__self_committing.sql", SELF_COMMITTING)
    engine = make_engine(db_url)
    result: Any = Migrator(engine, tmp_path).upgrade(dry_run=True)
    assert any("V1__self_committing.sql line 2" in w and "'COMMIT'" in w for w in result.warnings), (
        result.warnings
    )
    assert not table_exists(engine, "tc_first")


def test_strict_mode_refuses_a_file_with_transaction_control_before_anything_runs(
    db_url: URL, tmp_path: Path, make_engine: Callable[[URL], Engine]
) -> None:
    write_migration(tmp_path, "V1__clean.sql", "CREATE TABLE tc_clean (id INTEGER);\n")
    write_migration(tmp_path, "V2__self_committing.sql", SELF_COMMITTING)
    engine = make_engine(db_url)
    with pytest.raises(ParsingHazardError) as caught:
        Migrator(engine, tmp_path, strict=True).upgrade()
    assert "V2__self_committing.sql line 2" in str(caught.value), str(caught.value)
    user_tables = [t for t in inspect(engine).get_table_names() if not t.startswith("jetbase_")]
    assert user_tables == [] and applied_versions(engine) == []
