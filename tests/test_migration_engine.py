"""The migration engine on the real databases (SQLite file, PostgreSQL, MariaDB)."""

from __future__ import annotations

import importlib
import logging
import os
import re
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from jetbase.engine.checksum import calculate_checksum
from jetbase.engine.file_parser import parse_upgrade_statements
from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import URL, Connection, Engine

from airflow_provider_jetbase.migration import (
    InvalidArgumentError,
    LockTimeoutError,
    MigrationExecutionError,
    MigrationFileError,
    Migrator,
    ParsingHazardError,
    ValidationFailedError,
    VersionNotFoundError,
    fetch_current_version,
)
from tests.jetbase_cli import LOCK_FREE, lock_row

# ------------------------------------------------------------------ helpers


@pytest.fixture
def engines() -> Iterator[Callable[..., Engine]]:
    made: list[Engine] = []

    def factory(url: URL, **kwargs: Any) -> Engine:
        engine = create_engine(url, **kwargs)
        made.append(engine)
        return engine

    yield factory
    for engine in made:
        engine.dispose()


def write(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(body).lstrip(), encoding="utf-8")
    return path


def table_file(folder: Path, version: str, table: str) -> Path:
    return write(
        folder,
        f"V{version}__create_{table}.sql",
        f"""
        CREATE TABLE {table} (id INTEGER);
        INSERT INTO {table} (id) VALUES (1);
        -- rollback
        DROP TABLE {table};
        """,
    )


def tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def rows(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text(
                    "SELECT version, description, filename, migration_type, checksum "
                    "FROM jetbase_migrations ORDER BY order_executed"
                )
            )
        ]


def versions(engine: Engine) -> list[str]:
    return [r[0] for r in rows(engine) if r[3] == "VERSIONED"]


def jetbase_checksum(path: Path) -> str:
    return calculate_checksum(parse_upgrade_statements(file_path=str(path)))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "migrations"
    path.mkdir()
    return path


# ------------------------------------------------------------------ upgrade / rollback basics

MIXED = ["1", "1.1", "1_2", "2.0.1", "10", "20251225.120000"]


def test_upgrade_status_rollback_in_version_order(
    db_url: URL, folder: Path, engines: Callable[..., Engine]
) -> None:
    for i, version in enumerate(reversed(MIXED)):
        table_file(folder, version, f"t{i}")
    engine = engines(db_url)
    migrator = Migrator(engine, folder)

    status = migrator.status()
    assert status.current is None and [p.version for p in status.pending] == [
        "1", "1.1", "1.2", "2.0.1", "10", "20251225.120000"
    ]  # fmt: skip

    result = migrator.upgrade()
    assert [r.version for r in result.applied] == ["1", "1.1", "1.2", "2.0.1", "10", "20251225.120000"]
    assert (result.version_before, result.version_after, result.dry_run) == (None, "20251225.120000", False)
    # Rows are the CLI's: normalised version, description text, file name, type, Jetbase's checksum.
    for version, description, filename, mtype, checksum in rows(engine):
        assert mtype == "VERSIONED"
        assert filename[1:].split("__")[0].replace("_", ".") == version
        assert description == filename.split("__", 1)[1][:-4].replace("_", " ")
        assert checksum == jetbase_checksum(folder / filename)
    assert ("1.2", "create t3", "V1_2__create_t3.sql") in [r[:3] for r in rows(engine)]
    assert migrator.current() == "20251225.120000"
    assert [h.version for h in migrator.history()] == versions(engine)
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
    assert versions(engine) == ["1", "1.1"] and migrator.current() == "1.1"
    assert lock_row(engine) == LOCK_FREE


def test_count_to_version_and_dry_run(db_url: URL, folder: Path, engines: Callable[..., Engine]) -> None:
    for i, version in enumerate(["1", "1_1", "1.2", "2", "3"]):
        table_file(folder, version, f"c{i}")
    engine = engines(db_url)
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
    assert versions(engine) == ["1", "1.1", "1.2"]
    # to_version already applied: nothing versioned to do, not an error.
    assert migrator.upgrade(to_version="1_1").applied == ()

    preview_back = migrator.rollback(to_version="1", dry_run=True)
    assert [r.version for r in preview_back.rolled_back] == ["1.2", "1.1"]
    assert preview_back.rolled_back[0].statements == ("DROP TABLE c2",)
    assert versions(engine) == ["1", "1.1", "1.2"]
    assert migrator.upgrade().version_after == "3"
    assert migrator.upgrade().applied == ()  # nothing to do


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_count_must_be_a_positive_int(
    bad: Any, sqlite_url: URL, folder: Path, engines: Callable[..., Engine]
) -> None:
    table_file(folder, "1", "a")
    engine = engines(sqlite_url)
    migrator = Migrator(engine, folder)
    with pytest.raises(InvalidArgumentError, match="'count' must be a positive integer"):
        migrator.upgrade(count=bad)
    with pytest.raises(InvalidArgumentError, match="'count' must be a positive integer"):
        migrator.rollback(count=bad)
    assert not tables(engine)


def test_argument_errors(sqlite_url: URL, folder: Path, engines: Callable[..., Engine]) -> None:
    table_file(folder, "1", "a")
    table_file(folder, "2", "b")
    engine = engines(sqlite_url)
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
    assert versions(engine) == [] and lock_row(engine) == LOCK_FREE
    migrator.upgrade(count=1)
    with pytest.raises(VersionNotFoundError, match="version 2: it has a file but has not been applied"):
        migrator.rollback(to_version="2")
    with pytest.raises(VersionNotFoundError, match="version 9: it has no row"):
        migrator.rollback(to_version="9")
    assert versions(engine) == ["1"]
    assert migrator.rollback().rolled_back[0].version == "1"
    assert migrator.rollback().rolled_back == ()  # nothing to roll back


def test_rollback_errors_come_before_anything_runs(
    db_url: URL, folder: Path, engines: Callable[..., Engine]
) -> None:
    table_file(folder, "1", "r1")
    write(folder, "V2__no_rollback.sql", "CREATE TABLE r2 (id INTEGER);\n")
    table_file(folder, "3", "r3")
    engine = engines(db_url)
    migrator = Migrator(engine, folder)
    migrator.upgrade()
    with pytest.raises(MigrationFileError, match="V2__no_rollback.sql has no '-- rollback' section"):
        migrator.rollback(count=2)
    assert versions(engine) == ["1", "2", "3"] and {"r1", "r2", "r3"} <= tables(engine)
    (folder / "V3__create_r3.sql").unlink()
    with pytest.raises(MigrationFileError, match=r"version 3: its file \(V3__create_r3.sql\) is missing"):
        migrator.rollback(dry_run=True)
    assert versions(engine) == ["1", "2", "3"] and lock_row(engine) == LOCK_FREE


def test_rollback_touches_only_applied_versions(
    db_url: URL, folder: Path, engines: Callable[..., Engine]
) -> None:
    for version, table in (("1", "a1"), ("2", "a2"), ("3", "a3")):
        table_file(folder, version, table)
    engine = engines(db_url)
    migrator = Migrator(engine, folder)
    migrator.upgrade()
    # A file inside the range that was never applied: its rollback must not run (it would drop a2).
    write(folder, "V2_5__never_applied.sql", "SELECT 1;\n-- rollback\nDROP TABLE a2;\n")
    result = migrator.rollback(to_version="2")
    assert [r.filename for r in result.rolled_back] == ["V3__create_a3.sql"]
    assert "a2" in tables(engine) and "a3" not in tables(engine)
    assert versions(engine) == ["1", "2"]


# ------------------------------------------------------------------ validation


def test_validation_errors_and_skips(db_url: URL, folder: Path, engines: Callable[..., Engine]) -> None:
    table_file(folder, "1", "v1")
    table_file(folder, "3", "v3")
    engine = engines(db_url)
    migrator = Migrator(engine, folder)
    migrator.upgrade()
    assert migrator.validate().ok

    # out of order: a new file below the latest applied version
    table_file(folder, "2", "v2")
    with pytest.raises(ValidationFailedError, match="V2__create_v2.sql has version 2, lower than") as caught:
        migrator.upgrade()
    assert [f.kind for f in caught.value.report.findings] == ["out_of_order"]
    assert [f.kind for f in migrator.validate().findings] == ["out_of_order"]
    assert versions(engine) == ["1", "3"] and lock_row(engine) == LOCK_FREE

    # changed checksum of an applied file
    write(
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
    assert sorted(versions(engine)) == ["1", "2", "3"]


def test_missing_latest_file_with_skipped_validation_still_applies_next(
    db_url: URL, folder: Path, engines: Callable[..., Engine]
) -> None:
    table_file(folder, "1", "m1")
    table_file(folder, "2", "m2")
    engine = engines(db_url)
    migrator = Migrator(engine, folder)
    migrator.upgrade()
    (folder / "V2__create_m2.sql").unlink()
    table_file(folder, "3", "m3")
    result = migrator.upgrade(skip_validation=True)
    assert [r.version for r in result.applied] == ["3"]  # the CLI silently skips it
    assert versions(engine) == ["1", "2", "3"]


def test_missing_repeatable_file_is_reported(
    sqlite_url: URL, folder: Path, engines: Callable[..., Engine]
) -> None:
    table_file(folder, "1", "x")
    write(folder, "RA__noop.sql", "SELECT 1;\n")
    engine = engines(sqlite_url)
    migrator = Migrator(engine, folder)
    migrator.upgrade()
    (folder / "RA__noop.sql").unlink()
    assert [f.kind for f in migrator.validate().findings] == ["missing_repeatable_file"]
    with pytest.raises(ValidationFailedError, match="RA__noop.sql"):
        migrator.upgrade()


# ------------------------------------------------------------------ repeatables, delimiters, comments


def test_runs_always_and_runs_on_change_across_runs(
    db_url: URL, folder: Path, engines: Callable[..., Engine]
) -> None:
    write(
        folder, "V1__log.sql", "CREATE TABLE run_log (note VARCHAR(40));\n-- rollback\nDROP TABLE run_log;\n"
    )
    write(folder, "RA__stamp.sql", "INSERT INTO run_log (note) VALUES ('ra');\n")
    write(folder, "ROC__roc.sql", "INSERT INTO run_log (note) VALUES ('roc1');\n")
    engine = engines(db_url)
    migrator = Migrator(engine, folder)

    def notes() -> list[str]:
        with engine.connect() as conn:
            return sorted(r[0] for r in conn.execute(text("SELECT note FROM run_log")))

    first = migrator.upgrade()
    assert [r.filename for r in first.applied] == ["V1__log.sql", "RA__stamp.sql", "ROC__roc.sql"]
    assert [(r[2], r[3]) for r in rows(engine)] == [
        ("V1__log.sql", "VERSIONED"),
        ("RA__stamp.sql", "RUNS_ALWAYS"),
        ("ROC__roc.sql", "RUNS_ON_CHANGE"),
    ]
    assert [r[0] for r in rows(engine)] == ["1", None, None]
    second = migrator.upgrade()
    assert [r.filename for r in second.applied] == ["RA__stamp.sql"]
    assert notes() == ["ra", "ra", "roc1"] and len(rows(engine)) == 3  # RA row updated, not duplicated
    write(folder, "ROC__roc.sql", "INSERT INTO run_log (note) VALUES ('roc2');\n")
    third = migrator.upgrade()
    assert [r.filename for r in third.applied] == ["RA__stamp.sql", "ROC__roc.sql"]
    assert notes() == ["ra", "ra", "ra", "roc1", "roc2"] and len(rows(engine)) == 3
    assert rows(engine)[2][4] == jetbase_checksum(folder / "ROC__roc.sql")
    assert [p.filename for p in migrator.status().pending] == ["RA__stamp.sql"]


def test_custom_delimiter_comments_and_multiline(
    db_url: URL, folder: Path, engines: Callable[..., Engine]
) -> None:
    write(
        folder,
        "V1__custom.sql",
        """
        -- jetbase: delimiter=//
        -- a comment line
        CREATE TABLE d1 (
            id INTEGER,
            note VARCHAR(50)
        )//

        INSERT INTO d1 (id, note) VALUES (1, 'semi;colon')//
        -- rollback
        DROP TABLE d1//
        """,
    )
    if db_url.get_backend_name() == "postgresql":
        write(
            folder,
            "V2__function.sql",
            """
            -- jetbase: delimiter=$$$
            CREATE FUNCTION add_one(i INTEGER) RETURNS INTEGER AS $body$
            BEGIN
                RETURN i + 1;
            END;
            $body$ LANGUAGE plpgsql$$$
            -- rollback
            DROP FUNCTION add_one(INTEGER)$$$
            """,
        )
    engine = engines(db_url)
    migrator = Migrator(engine, folder)
    result = migrator.upgrade()
    assert result.applied[0].statements == (
        "CREATE TABLE d1 ( id INTEGER, note VARCHAR(50) )",
        "INSERT INTO d1 (id, note) VALUES (1, 'semi;colon')",
    )
    assert result.warnings == ()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT note FROM d1")).scalar_one() == "semi;colon"
        if db_url.get_backend_name() == "postgresql":
            assert conn.execute(text("SELECT add_one(41)")).scalar_one() == 42
    for _v, _d, filename, _t, checksum in rows(engine):
        assert checksum == jetbase_checksum(folder / filename)
    migrator.rollback(count=5)
    assert "d1" not in tables(engine)


# ------------------------------------------------------------------ failures and atomicity


def _five_with_failure(folder: Path) -> None:
    table_file(folder, "1", "f1")
    table_file(folder, "2", "f2")
    write(
        folder,
        "V3__broken.sql",
        """
        CREATE TABLE f3 (id INTEGER);
        INSERT INTO no_such_table (id) VALUES (1);
        -- rollback
        DROP TABLE f3;
        """,
    )
    table_file(folder, "4", "f4")
    table_file(folder, "5", "f5")


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_failing_migration_leaves_nothing_of_itself(
    kind: str, request: pytest.FixtureRequest, folder: Path, engines: Callable[..., Engine]
) -> None:
    url: URL = request.getfixturevalue(f"{kind}_url")
    _five_with_failure(folder)
    engine = engines(url)
    with pytest.raises(MigrationExecutionError) as caught:
        Migrator(engine, folder).upgrade()
    error = caught.value
    assert error.filename == "V3__broken.sql" and error.statement_number == 2 and not error.partial
    message = str(error)
    assert "V3__broken.sql" in message and "statement 2 of 2 (line 2)" in message
    assert "no_such_table" in message and "rolled back" in message
    assert [r.filename for r in error.applied] == ["V1__create_f1.sql", "V2__create_f2.sql"]
    assert versions(engine) == ["1", "2"]
    assert {"f1", "f2"} <= tables(engine) and not {"f3", "f4", "f5"} & tables(engine)
    assert lock_row(engine) == LOCK_FREE


def test_mariadb_failure_says_the_file_may_be_partly_applied(
    mysql_url: URL, folder: Path, engines: Callable[..., Engine]
) -> None:
    _five_with_failure(folder)
    engine = engines(mysql_url)
    with pytest.raises(MigrationExecutionError) as caught:
        Migrator(engine, folder).upgrade()
    message = str(caught.value)
    assert (
        caught.value.partial and "may hold part of V3__broken.sql" in message and "MySQL/MariaDB" in message
    )
    assert "statement 2 of 2" in message and "no_such_table" in message
    assert versions(engine) == ["1", "2"] and "f3" in tables(engine)  # the implicit DDL commit
    assert lock_row(engine) == LOCK_FREE


def test_keyboard_interrupt_mid_migration_releases_the_lock(
    sqlite_url: URL, folder: Path, engines: Callable[..., Engine]
) -> None:
    table_file(folder, "1", "k1")
    table_file(folder, "2", "k2")
    engine = engines(sqlite_url)

    def interrupt(conn: Connection, cursor: Any, statement: str, *args: Any) -> None:
        if "INSERT INTO k2" in statement:
            raise KeyboardInterrupt

    event.listen(engine, "before_cursor_execute", interrupt)
    with pytest.raises(KeyboardInterrupt):
        Migrator(engine, folder).upgrade()
    event.remove(engine, "before_cursor_execute", interrupt)
    assert versions(engine) == ["1"] and "k2" not in tables(engine)
    assert lock_row(engine) == LOCK_FREE


def test_sqlite_recipe_is_applied_once(sqlite_url: URL, folder: Path, engines: Callable[..., Engine]) -> None:
    from airflow_provider_jetbase.migration import sqlite_tx

    engine = engines(sqlite_url)
    connect_listeners = len(engine.pool.dispatch.connect)
    Migrator(engine, folder)
    Migrator(engine, folder)
    assert event.contains(engine, "begin", sqlite_tx._on_begin)
    assert event.contains(engine, "connect", sqlite_tx._on_connect)
    assert len(engine.dispatch.begin) == 1 and len(engine.pool.dispatch.connect) == connect_listeners + 1


# ------------------------------------------------------------------ dry run, hazards, strict


def test_dry_run_on_a_brand_new_database_creates_nothing(
    db_url: URL, folder: Path, engines: Callable[..., Engine]
) -> None:
    table_file(folder, "1", "n1")
    write(folder, "RA__a.sql", "SELECT 1;\n")
    engine = engines(db_url)
    migrator = Migrator(engine, folder)
    result = migrator.upgrade(dry_run=True)
    assert [r.filename for r in result.applied] == ["V1__create_n1.sql", "RA__a.sql"]
    assert migrator.rollback(dry_run=True).rolled_back == ()
    assert migrator.status().current is None and migrator.history() == [] and migrator.current() is None
    assert migrator.validate().ok and not migrator.lock_status().is_locked
    assert tables(engine) == set()


def test_hazard_warnings_and_strict_mode(
    sqlite_url: URL, folder: Path, engines: Callable[..., Engine]
) -> None:
    write(folder, "V1__hazard.sql", "CREATE TABLE h1 (id INTEGER);\nCREATE TABLE h1_dropped (id INTEGER)\n")
    engine = engines(sqlite_url)
    with pytest.raises(ParsingHazardError, match="V1__hazard.sql line 2") as caught:
        Migrator(engine, folder, strict=True).upgrade()
    assert len(caught.value.hazards) == 1
    assert tables(engine) <= {"jetbase_migrations", "jetbase_lock"}
    assert versions(engine) == [] and lock_row(engine) == LOCK_FREE
    dry = Migrator(engine, folder).upgrade(dry_run=True)
    assert any("V1__hazard.sql line 2" in w and "silently drops" in w for w in dry.warnings)
    real = Migrator(engine, folder).upgrade()
    assert real.warnings == dry.warnings
    assert "h1" in tables(engine) and "h1_dropped" not in tables(engine)  # same statements as the CLI


# ------------------------------------------------------------------ lock


def _hold_lock_like_the_cli(engine: Engine) -> str:
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


def test_lock_timeout_says_who_holds_it_and_how_to_unlock(
    db_url: URL, folder: Path, engines: Callable[..., Engine]
) -> None:
    table_file(folder, "1", "l1")
    engine = engines(db_url)
    Migrator(engine, folder).upgrade()
    table_file(folder, "2", "l2")
    process_id = _hold_lock_like_the_cli(engine)
    migrator = Migrator(engine, folder, lock_timeout=0.3, lock_poll_interval=0.05)
    info = migrator.lock_status()
    assert info.is_locked and info.process_id == process_id and info.supported
    with pytest.raises(LockTimeoutError) as caught:
        migrator.upgrade()
    message = str(caught.value)
    assert process_id in message and "since" in message and "jetbase unlock" in message
    assert "Migrator(engine, migrations_dir).unlock()" in message and "probably the jetbase CLI" in message
    assert versions(engine) == ["1"] and lock_row(engine) == (True, True, process_id)
    migrator.unlock()
    assert lock_row(engine) == LOCK_FREE
    assert [r.version for r in migrator.upgrade().applied] == ["2"]


def test_lock_holder_is_named_to_waiters(
    postgres_url: URL, folder: Path, engines: Callable[..., Engine], caplog: pytest.LogCaptureFixture
) -> None:
    write(folder, "V1__slow.sql", "SELECT pg_sleep(1.5);\n")
    engine = engines(postgres_url)
    holder = Migrator(engine, folder, lock_owner="dag=d task=t run=r1")
    started = threading.Event()

    def on_sleep(conn: Connection, cursor: Any, statement: str, *args: Any) -> None:
        if "pg_sleep" in statement:
            started.set()

    event.listen(engine, "before_cursor_execute", on_sleep)
    with caplog.at_level(logging.INFO, logger="airflow_provider_jetbase.migration"):
        thread = threading.Thread(target=holder.upgrade)
        thread.start()
        assert started.wait(60)
        other = Migrator(engines(postgres_url), folder, lock_timeout=0.2, lock_poll_interval=0.05)
        with pytest.raises(LockTimeoutError) as caught:
            other.upgrade()
        thread.join()
    process_id = caught.value.holder.process_id
    assert f"pid {os.getpid()} on this host" in str(caught.value) and process_id in str(caught.value)
    # The holder's log line ties that process_id to its owner (e.g. the Airflow task instance).
    acquired = [
        r.getMessage() for r in caplog.records if "Acquired the Jetbase migration lock" in r.getMessage()
    ]
    assert any(process_id in m and "owner dag=d task=t run=r1" in m for m in acquired), acquired
    assert lock_row(engine) == LOCK_FREE and versions(engine) == ["1"]
    assert tables(engine) == {"jetbase_migrations", "jetbase_lock"}  # no table of ours


def test_process_id_is_a_uuid_that_carries_namespace_pid_and_start_time() -> None:
    from airflow_provider_jetbase.migration.holder import namespace_fingerprint, start_ticks
    from airflow_provider_jetbase.migration.lock import make_process_id, parse_process_id

    for pid in (1, 4242, 4194303, os.getpid()):
        process_id = make_process_id(pid)
        assert len(process_id) == 36 and uuid.UUID(process_id).version == 8
        identity = parse_process_id(process_id)
        assert identity is not None and identity.pid == pid
        assert identity.namespace == namespace_fingerprint() != 0
        assert identity.start_ticks == (start_ticks(pid) or 0) & 0xFFFFFFFF
    assert make_process_id(7) != make_process_id(7)
    assert parse_process_id(str(uuid.uuid4())) is None  # what the CLI writes
    assert parse_process_id(None) is None and parse_process_id("") is None


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
    engines: Callable[..., Engine],
    stale: float,
    heartbeat: float,
    expected: str,
) -> None:
    with pytest.raises(InvalidArgumentError, match=f"'stale_lock_after' {expected}"):
        Migrator(engines(sqlite_url), folder, stale_lock_after=stale, lock_heartbeat_interval=heartbeat)


def test_two_migrators_at_once_apply_each_migration_once(
    postgres_url: URL, folder: Path, engines: Callable[..., Engine]
) -> None:
    for i in range(1, 4):
        write(folder, f"V{i}__m{i}.sql", f"CREATE TABLE c{i} (id INTEGER);\nSELECT pg_sleep(0.3);\n")
    barrier = threading.Barrier(2)
    results: list[Any] = []
    logs: list[list[str]] = [[], []]

    class Capture(logging.Handler):
        def __init__(self, sink: list[str]) -> None:
            super().__init__()
            self.sink = sink

        def emit(self, record: logging.LogRecord) -> None:
            self.sink.append(record.getMessage())

    def run(index: int) -> None:
        logger = logging.getLogger(f"test.concurrent.{index}")
        logger.setLevel(logging.INFO)
        logger.addHandler(Capture(logs[index]))
        migrator = Migrator(engines(postgres_url), folder, lock_poll_interval=0.05, logger=logger)
        barrier.wait()
        results.append(migrator.upgrade())

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    applied = sorted(len(r.applied) for r in results)
    assert applied == [0, 3]
    assert any("Waiting up to" in m for m in logs[0] + logs[1])
    engine = engines(postgres_url)
    assert versions(engine) == ["1", "2", "3"] and lock_row(engine) == LOCK_FREE


def test_stale_lock_of_a_dead_local_process_is_taken_over(
    sqlite_url: URL, folder: Path, engines: Callable[..., Engine], caplog: pytest.LogCaptureFixture
) -> None:
    from airflow_provider_jetbase.migration.lock import make_process_id

    table_file(folder, "1", "s1")
    engine = engines(sqlite_url)
    Migrator(engine, folder).upgrade()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    process_id = make_process_id(dead_pid)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE jetbase_lock SET is_locked = TRUE, process_id = :p WHERE id = 1"), {"p": process_id}
        )
    table_file(folder, "2", "s2")
    with pytest.raises(LockTimeoutError, match=f"pid {dead_pid} on this host"):
        Migrator(engine, folder, lock_timeout=0.1, lock_poll_interval=0.05).upgrade()
    with caplog.at_level(logging.WARNING, logger="airflow_provider_jetbase.migration"):
        result = Migrator(engine, folder, lock_timeout=5, stale_lock_after=3600).upgrade()
    assert [r.version for r in result.applied] == ["2"]
    assert any("TAKING OVER A STALE JETBASE LOCK" in r.getMessage() and "no longer running" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    assert lock_row(engine) == LOCK_FREE


def test_stale_lock_by_age(sqlite_url: URL, folder: Path, engines: Callable[..., Engine]) -> None:
    table_file(folder, "1", "a1")
    engine = engines(sqlite_url)
    Migrator(engine, folder).upgrade()
    _hold_lock_like_the_cli(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE jetbase_lock SET locked_at = '2020-01-01 00:00:00.000' WHERE id = 1"))
    table_file(folder, "2", "a2")
    result = Migrator(engine, folder, lock_timeout=5, stale_lock_after=60).upgrade()
    assert [r.version for r in result.applied] == ["2"] and lock_row(engine) == LOCK_FREE


# ------------------------------------------------------------------ state helpers, time zones


def test_fetch_current_version_on_a_missing_table_keeps_the_transaction_usable(
    postgres_url: URL, engines: Callable[..., Engine]
) -> None:
    engine = engines(postgres_url)
    with engine.connect() as conn:
        assert fetch_current_version(conn) is None
        assert not conn.in_transaction()
        with conn.begin():
            conn.execute(text("CREATE TABLE keep (id INTEGER)"))
            assert fetch_current_version(conn) is None
            conn.execute(text("INSERT INTO keep VALUES (1)"))  # not "current transaction is aborted"
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM keep")).scalar_one() == 1


def test_version_order_not_applied_at_across_time_zones(
    postgres_url: URL, folder: Path, engines: Callable[..., Engine]
) -> None:
    tokyo = engines(postgres_url, connect_args={"options": "-c timezone=Asia/Tokyo"})
    los_angeles = engines(postgres_url, connect_args={"options": "-c timezone=America/Los_Angeles"})
    table_file(folder, "1", "z1")
    table_file(folder, "2", "z2")
    Migrator(tokyo, folder).upgrade()
    table_file(folder, "3", "z3")
    Migrator(los_angeles, folder).upgrade()
    with tokyo.connect() as conn:
        by_applied_at = conn.execute(
            text("SELECT version FROM jetbase_migrations ORDER BY applied_at DESC LIMIT 1")
        ).scalar_one()
    assert by_applied_at == "2"  # what the CLI would take as "latest"
    migrator = Migrator(tokyo, folder)
    assert migrator.current() == "3" and migrator.status().current == "3"
    table_file(folder, "4", "z4")
    assert [r.version for r in migrator.upgrade().applied] == ["4"]  # V3 is not re-run
    assert [r.version for r in migrator.rollback(count=2).rolled_back] == ["4", "3"]
    assert versions(tokyo) == ["1", "2"] and "z2" in tables(tokyo) and "z3" not in tables(tokyo)


# ------------------------------------------------------------------ process hygiene and logs


def test_engine_never_changes_cwd_or_environment(
    sqlite_url: URL, folder: Path, engines: Callable[..., Engine]
) -> None:
    table_file(folder, "1", "e1")
    cwd, env = os.getcwd(), dict(os.environ)
    migrator = Migrator(engines(sqlite_url), folder)
    migrator.upgrade(dry_run=True)
    migrator.upgrade()
    migrator.status()
    migrator.validate()
    migrator.rollback()
    migrator.unlock()
    assert os.getcwd() == cwd and dict(os.environ) == env


def test_the_jetbase_modules_the_engine_runs_never_log() -> None:
    """Why the engine forwards no ``jetbase`` log records: the only Jetbase code it runs (queries,
    constants, the file parser and the checksum) neither logs nor prints, nor imports
    ``jetbase.logging`` (whose stderr handler and propagate=False would bypass the task log). If a
    Jetbase release changes that, this fails and forwarding is needed again."""
    probe = (
        "import sys, airflow_provider_jetbase.migration, airflow_provider_jetbase.drift.check\n"
        "print('\\n'.join(sorted(m for m in sys.modules if m == 'jetbase' or m.startswith('jetbase.'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    assert "jetbase.engine.file_parser" in loaded and "jetbase.logging" not in loaded, loaded
    talkers = []
    for name in loaded:
        source_file = getattr(sys.modules.get(name) or importlib.import_module(name), "__file__", None)
        if source_file is None:  # a namespace package: no code of its own
            continue
        source = Path(source_file).read_text()
        if re.search(r"\b(import logging|getLogger|logger\.|print\()", source):
            talkers.append(name)
    assert talkers == [], f"Jetbase modules run by the engine that log or print: {talkers}"


def test_results_are_json_serialisable(sqlite_url: URL, folder: Path, engines: Callable[..., Engine]) -> None:
    import json

    table_file(folder, "1", "j1")
    write(folder, "ROC__x.sql", "SELECT 1;\n")
    migrator = Migrator(engines(sqlite_url), folder)
    payloads = [
        migrator.upgrade(dry_run=True).to_dict(),
        migrator.upgrade().to_dict(),
        migrator.status().to_dict(),
        migrator.validate().to_dict(),
        migrator.lock_status().to_dict(),
        migrator.rollback().to_dict(),
    ]
    decoded = json.loads(json.dumps(payloads))
    status = decoded[2]
    assert status["current"] == "1" and status["applied"][0]["filename"] == "V1__create_j1.sql"
    assert (
        isinstance(status["applied"][0]["applied_at"], str) and status["applied"][0]["applied_at"][:2] == "20"
    )
    assert decoded[3] == {"findings": [], "ok": True}
    assert decoded[5]["rolled_back"][0]["statements"] == ["DROP TABLE j1"]


@pytest.mark.parametrize(
    ("table", "ddl"),
    [
        ("jetbase_migrations", "CREATE TABLE jetbase_migrations (id INTEGER PRIMARY KEY, name VARCHAR(20))"),
        ("jetbase_lock", "CREATE TABLE jetbase_lock (id INTEGER PRIMARY KEY, holder VARCHAR(20))"),
    ],
)
def test_same_named_table_of_another_tool_is_refused_untouched(
    table: str, ddl: str, db_url: URL, folder: Path, engines: Callable[..., Engine]
) -> None:
    from airflow_provider_jetbase.migration import IncompatibleTableError

    engine = engines(db_url)
    with engine.begin() as conn:
        conn.execute(text(ddl))
    table_file(folder, "1", "o1")
    with pytest.raises(IncompatibleTableError, match=f"A table named {table} exists but does not have"):
        Migrator(engine, folder).upgrade()
    assert tables(engine) == {table}
    if table == "jetbase_migrations":
        with pytest.raises(IncompatibleTableError, match=table):
            Migrator(engine, folder).upgrade(dry_run=True)
