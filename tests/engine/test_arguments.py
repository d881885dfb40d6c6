"""Bad arguments: ``count``, ``to_version`` (malformed, unknown, never applied, together with ``count``)
and the Migrator's settings. Each is an ``InvalidArgumentError`` or ``VersionNotFoundError`` naming
the argument, raised before the database changes.

The bad-input cases (the ``base`` fixture, tests/engine/helpers.py) run on PostgreSQL and ClickHouse
against a database holding one applied migration and compare a snapshot of every row afterwards."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import URL, Engine

from airflow_provider_jetbase.migration import (
    InvalidArgumentError,
    Migrator,
    VersionNotFoundError,
)
from tests.engine.helpers import Baseline, fails, table_file, tables
from tests.jetbase_cli import (
    LOCK_FREE,
    JetbaseProject,
    applied_versions,
    lock_row,
    version_rows,
)


@pytest.mark.parametrize("count", [0, -1, "abc", 1.5])
def test_invalid_count_is_an_error(
    count: Any, sqlite_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    project = JetbaseProject(tmp_path, sqlite_url)
    table_file(project.migrations_dir, "1", "t1")
    table_file(project.migrations_dir, "2", "t2")
    engine = make_engine(sqlite_url)
    migrator = Migrator(engine, project.migrations_dir)
    migrator.upgrade(count=1)
    before = version_rows(engine)
    for call in (lambda: migrator.upgrade(count=count), lambda: migrator.rollback(count=count)):
        with pytest.raises(InvalidArgumentError) as caught:
            call()
        assert "count" in str(caught.value)
        assert version_rows(engine) == before
    assert lock_row(engine) == LOCK_FREE


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_count_must_be_a_positive_int(
    bad: Any, sqlite_url: URL, folder: Path, make_engine: Callable[..., Engine]
) -> None:
    table_file(folder, "1", "a")
    engine = make_engine(sqlite_url)
    migrator = Migrator(engine, folder)
    with pytest.raises(InvalidArgumentError, match="'count' must be a positive integer"):
        migrator.upgrade(count=bad)
    with pytest.raises(InvalidArgumentError, match="'count' must be a positive integer"):
        migrator.rollback(count=bad)
    assert not tables(engine)


def test_count_and_to_version_together_is_an_error(
    db_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    project = JetbaseProject(tmp_path, db_url)
    table_file(project.migrations_dir, "1", "t1")
    engine = make_engine(db_url)
    migrator = Migrator(engine, project.migrations_dir)
    with pytest.raises(InvalidArgumentError):
        migrator.upgrade(count=1, to_version="1")
    with pytest.raises(InvalidArgumentError):
        migrator.rollback(count=1, to_version="1")
    assert applied_versions(engine) == []


def test_cli_count_zero_means_everything_documentation(sqlite_url: URL, tmp_path: Path) -> None:
    """Why we reject 0: the CLI applies every pending migration for ``--count 0``."""
    project = JetbaseProject(tmp_path, sqlite_url)
    for version, table in (("1", "t1"), ("2", "t2"), ("3", "t3")):
        table_file(project.migrations_dir, version, table)
    project.upgrade(count=0).assert_ok()
    engine = create_engine(sqlite_url)
    try:
        assert applied_versions(engine) == ["1", "2", "3"]
    finally:
        engine.dispose()


def test_argument_errors(sqlite_url: URL, folder: Path, make_engine: Callable[..., Engine]) -> None:
    table_file(folder, "1", "a")
    table_file(folder, "2", "b")
    engine = make_engine(sqlite_url)
    migrator = Migrator(engine, folder)
    with pytest.raises(InvalidArgumentError, match="both 'count'"):
        migrator.upgrade(count=1, to_version="2")
    with pytest.raises(InvalidArgumentError, match="both 'count'"):
        migrator.rollback(count=1, to_version="1")
    with pytest.raises(InvalidArgumentError, match="Invalid 'to_version' 'two'"):
        migrator.upgrade(to_version="two")
    assert not tables(engine)
    with pytest.raises(VersionNotFoundError, match="to_version 7 has no migration file"):
        migrator.upgrade(to_version="7")
    assert applied_versions(engine) == [] and lock_row(engine) == LOCK_FREE
    migrator.upgrade(count=1)
    with pytest.raises(VersionNotFoundError, match="version 2: it has a file but has not been applied"):
        migrator.rollback(to_version="2")
    with pytest.raises(VersionNotFoundError, match="version 9: it has no row"):
        migrator.rollback(to_version="9")
    assert applied_versions(engine) == ["1"]
    assert migrator.rollback().rolled_back[0].version == "1"
    assert migrator.rollback().rolled_back == ()  # nothing to roll back


@pytest.mark.parametrize(
    ("stale", "heartbeat", "expected"),
    [
        (0, 10.0, "must be > 0"),
        (-1, 10.0, "must be > 0"),
        (29, 10.0, "must be at least 30 seconds"),
        (1, 0.5, "must be at least 1.5"),
    ],
)
def test_stale_lock_after_below_the_heartbeat_margin_is_rejected(
    sqlite_url: URL,
    folder: Path,
    make_engine: Callable[..., Engine],
    stale: float,
    heartbeat: float,
    expected: str,
) -> None:
    with pytest.raises(InvalidArgumentError, match=f"'stale_lock_after' {expected}"):
        Migrator(make_engine(sqlite_url), folder, stale_lock_after=stale, lock_heartbeat_interval=heartbeat)


# ------------------------------------------------------------------ bad-input corpus (PostgreSQL, ClickHouse)


@pytest.mark.parametrize("command", ["upgrade", "rollback"])
@pytest.mark.parametrize("count", [0, -1, "abc", 1.5, True])
def test_bad_count(base: Baseline, command: str, count: Any) -> None:
    base.add("V2__two.sql", "CREATE TABLE two (id INT);\n-- rollback\nDROP TABLE two;")
    fails(lambda: getattr(base.migrator(), command)(count=count), InvalidArgumentError, "count", repr(count))
    base.unchanged(f"{command}(count={count!r})")


@pytest.mark.parametrize("command", ["upgrade", "rollback"])
def test_both_count_and_to_version(base: Baseline, command: str) -> None:
    fails(
        lambda: getattr(base.migrator(), command)(count=1, to_version="1"),
        InvalidArgumentError,
        "count",
        "to_version",
    )
    base.unchanged(f"{command} with both count and to_version")


@pytest.mark.parametrize("command", ["upgrade", "rollback"])
def test_to_version_not_found(base: Baseline, command: str) -> None:
    fails(lambda: getattr(base.migrator(), command)(to_version="9_9"), VersionNotFoundError, "9.9")
    base.unchanged(f"{command} to an unknown version")


@pytest.mark.parametrize("command", ["upgrade", "rollback"])
@pytest.mark.parametrize("to_version", ["abc", "1.x", "", "1;DROP TABLE base_t"])
def test_to_version_malformed(base: Baseline, command: str, to_version: str) -> None:
    fails(
        lambda: getattr(base.migrator(), command)(to_version=to_version),
        InvalidArgumentError,
        repr(to_version),
    )
    base.unchanged(f"{command}(to_version={to_version!r})")


def test_rollback_to_a_version_with_a_file_that_was_never_applied(base: Baseline) -> None:
    base.add("V2__two.sql", "CREATE TABLE two (id INT);\n-- rollback\nDROP TABLE two;")
    fails(lambda: base.migrator().rollback(to_version="2"), VersionNotFoundError, "2", "not been applied")
    base.unchanged("rollback to a never-applied version")


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"lock_timeout": -1}, "lock_timeout"),
        ({"lock_poll_interval": 0}, "lock_poll_interval"),
        ({"stale_lock_after": -5}, "stale_lock_after"),
    ],
)
def test_bad_migrator_settings(base: Baseline, kwargs: dict[str, Any], name: str) -> None:
    fails(lambda: Migrator(base.engine, base.folder, **kwargs), InvalidArgumentError, name)
    base.unchanged(f"Migrator({kwargs})")
