"""Issue 10: the engine keeps Jetbase's state but not the CLI's bugs, on the real databases.

Where it is cheap, a test first shows what the ``jetbase`` 0.18.1 CLI does wrongly on the same
database and files (as documentation of why we differ), then that our engine does it right.
"""

from __future__ import annotations

import logging
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL

from tests.jetbase_cli import (
    LOCK_FREE,
    PROVIDER_TABLES,
    JetbaseProject,
    StatementGate,
    applied_versions,
    count_lock_looks,
    jetbase_checksum,
    lock_row,
    table_exists,
    version_rows,
    write_migration,
)


@pytest.fixture
def make_engine() -> Iterator[Callable[..., Engine]]:
    engines: list[Engine] = []

    def factory(url: URL, **kwargs: Any) -> Engine:
        engine = create_engine(url, **kwargs)
        engines.append(engine)
        return engine

    yield factory
    for engine in engines:
        engine.dispose()


def new_migrator(engine: Engine, folder: Path, **kwargs: Any) -> Any:
    from airflow_provider_jetbase.migration import Migrator

    return Migrator(engine, folder, **kwargs)


def errors() -> Any:
    from airflow_provider_jetbase.migration import errors as module

    return module


def create_table_file(folder: Path, version: str, table: str, subdir: str | None = None) -> Path:
    return write_migration(
        folder,
        f"V{version}__create_{table}.sql",
        f"""
        CREATE TABLE {table} (id INTEGER);
        -- rollback
        DROP TABLE {table};
        """,
        subdir=subdir,
    )


class RecordingHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        return "\n".join(r.getMessage() for r in self.records)


@pytest.fixture
def captured_logger(request: pytest.FixtureRequest) -> Iterator[tuple[logging.Logger, RecordingHandler]]:
    logger = logging.getLogger(f"tests.engine_correctness.{request.node.name}")
    handler = RecordingHandler()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, handler
    logger.removeHandler(handler)


# ------------------------------------------------------------------ 1. latest applied by version


def test_postgres_time_zone_skew_does_not_fool_the_engine(
    postgres_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    project = JetbaseProject(tmp_path / "utc", postgres_url)
    for version, table in (("1", "t1"), ("2", "t2"), ("3", "t3"), ("4", "t4")):
        create_table_file(project.migrations_dir, version, table)
    project.upgrade(count=2).assert_ok()

    # V3 is applied by the CLI from a session in Los Angeles: its applied_at (a TIMESTAMP without
    # time zone filled by CURRENT_TIMESTAMP) is then hours *older* than V2's.
    la_url = postgres_url.update_query_dict({"options": "-c timezone=America/Los_Angeles"})
    la_project = JetbaseProject(tmp_path / "la", la_url)
    la_project.copy_migrations_from(project.migrations_dir)
    la_project.upgrade(count=1).assert_ok()
    engine = make_engine(postgres_url)
    with engine.connect() as conn:
        stamps: dict[str, Any] = {
            row[0]: row[1] for row in conn.execute(text("SELECT version, applied_at FROM jetbase_migrations"))
        }
    assert stamps["3"] < stamps["2"], f"precondition: V3 must look older than V2: {stamps}"

    # Documentation: the CLI now believes 2 is current and re-runs V3, which fails.
    assert "Latest migration version: 2" in project.current().messages
    project.upgrade().assert_failed_with("already exists")
    assert applied_versions(engine) == ["1", "2", "3"]

    migrator = new_migrator(engine, project.migrations_dir)
    assert migrator.current() == "3"
    assert [p.version for p in migrator.status().pending] == ["4"]
    result = migrator.upgrade()
    assert [r.filename for r in result.applied] == ["V4__create_t4.sql"]
    assert sorted(applied_versions(engine)) == ["1", "2", "3", "4"]
    assert migrator.current() == "4"

    rolled = migrator.rollback()
    assert [r.filename for r in rolled.rolled_back] == ["V4__create_t4.sql"]
    assert migrator.current() == "3"
    rolled = migrator.rollback()
    assert [r.filename for r in rolled.rolled_back] == ["V3__create_t3.sql"]
    assert applied_versions(engine) == ["1", "2"]
    assert table_exists(engine, "t2") and not table_exists(engine, "t3")


def test_missing_latest_file_with_skipped_validation_still_applies_next(
    db_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    project = JetbaseProject(tmp_path, db_url)
    create_table_file(project.migrations_dir, "1", "t1")
    v2 = create_table_file(project.migrations_dir, "2", "t2")
    create_table_file(project.migrations_dir, "3", "t3")
    engine = make_engine(db_url)
    migrator = new_migrator(engine, project.migrations_dir)
    migrator.upgrade(count=2)
    v2.unlink()

    # Documentation: the CLI silently skips V3 (it starts from the missing file and drops "the first").
    cli = project.upgrade(skip_validation=True).assert_ok()
    assert "Migrations are up to date." in cli.messages
    assert applied_versions(engine) == ["1", "2"]

    with pytest.raises(errors().ValidationFailedError) as caught:
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
    create_table_file(project.migrations_dir, "1", "t1")
    create_table_file(project.migrations_dir, "2", "t2")
    engine = make_engine(db_url)
    migrator = new_migrator(engine, project.migrations_dir)
    migrator.upgrade()
    create_table_file(project.migrations_dir, "1_5", "t15")
    create_table_file(project.migrations_dir, "3", "t3")

    with pytest.raises(errors().ValidationFailedError) as caught:
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


# ------------------------------------------------------------------ 2. rollback by applied rows


def test_rollback_touches_only_applied_rows(
    db_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    project = JetbaseProject(tmp_path, db_url)
    for version, table in (("1", "t1"), ("2", "t2"), ("3", "t3")):
        create_table_file(project.migrations_dir, version, table)
    engine = make_engine(db_url)
    migrator = new_migrator(engine, project.migrations_dir)
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


@pytest.mark.parametrize("count", [0, -1, "abc", 1.5])
def test_invalid_count_is_an_error(
    count: Any, sqlite_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    project = JetbaseProject(tmp_path, sqlite_url)
    create_table_file(project.migrations_dir, "1", "t1")
    create_table_file(project.migrations_dir, "2", "t2")
    engine = make_engine(sqlite_url)
    migrator = new_migrator(engine, project.migrations_dir)
    migrator.upgrade(count=1)
    before = version_rows(engine)
    for call in (lambda: migrator.upgrade(count=count), lambda: migrator.rollback(count=count)):
        with pytest.raises(errors().InvalidArgumentError) as caught:
            call()
        assert "count" in str(caught.value)
        assert version_rows(engine) == before
    assert lock_row(engine) == LOCK_FREE


def test_count_and_to_version_together_is_an_error(
    db_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    project = JetbaseProject(tmp_path, db_url)
    create_table_file(project.migrations_dir, "1", "t1")
    engine = make_engine(db_url)
    migrator = new_migrator(engine, project.migrations_dir)
    with pytest.raises(errors().InvalidArgumentError):
        migrator.upgrade(count=1, to_version="1")
    with pytest.raises(errors().InvalidArgumentError):
        migrator.rollback(count=1, to_version="1")
    assert applied_versions(engine) == []


def test_cli_count_zero_means_everything_documentation(sqlite_url: URL, tmp_path: Path) -> None:
    """Why we reject 0: the CLI applies every pending migration for ``--count 0``."""
    project = JetbaseProject(tmp_path, sqlite_url)
    for version, table in (("1", "t1"), ("2", "t2"), ("3", "t3")):
        create_table_file(project.migrations_dir, version, table)
    project.upgrade(count=0).assert_ok()
    engine = create_engine(sqlite_url)
    try:
        assert applied_versions(engine) == ["1", "2", "3"]
    finally:
        engine.dispose()


# ------------------------------------------------------------------ 3. decide under the lock


def test_racer_that_waited_finds_nothing_to_do(
    db_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    project = JetbaseProject(tmp_path, db_url)
    write_migration(
        project.migrations_dir,
        "V1__gated.sql",
        """
        SELECT 'jb_gate_marker' AS gate;
        CREATE TABLE t1 (id INTEGER);
        -- rollback
        DROP TABLE t1;
        """,
    )
    create_table_file(project.migrations_dir, "2", "t2")
    first_engine, second_engine = make_engine(db_url), make_engine(db_url)
    gate = StatementGate(first_engine, "jb_gate_marker")
    looks = count_lock_looks(second_engine)
    outcomes: dict[str, Any] = {}

    def run(name: str, engine: Engine) -> None:
        try:
            migrator = new_migrator(
                engine, project.migrations_dir, lock_timeout=300.0, lock_poll_interval=0.05
            )
            outcomes[name] = migrator.upgrade()
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            outcomes[name] = exc

    first = threading.Thread(target=run, args=("first", first_engine))
    first.start()
    try:
        assert gate.reached.wait(timeout=300), outcomes
        second = threading.Thread(target=run, args=("second", second_engine))
        second.start()
        # Let the second engine poll the held lock a few times: it has then planned nothing yet.
        while len(looks) < 3 and second.is_alive():
            second.join(timeout=0.05)
    finally:
        gate.released.set()
        first.join()
    second.join()

    assert not isinstance(outcomes["first"], BaseException), outcomes["first"]
    assert not isinstance(outcomes["second"], BaseException), outcomes["second"]
    assert [r.filename for r in outcomes["first"].applied] == ["V1__gated.sql", "V2__create_t2.sql"]
    assert outcomes["second"].applied == ()
    assert applied_versions(first_engine) == ["1", "2"]
    assert lock_row(first_engine) == LOCK_FREE


def test_rollback_racer_decides_under_the_lock(
    db_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    """Two rollbacks to version 1 at once: the one that waited finds nothing left to roll back."""
    project = JetbaseProject(tmp_path, db_url)
    create_table_file(project.migrations_dir, "1", "t1")
    write_migration(
        project.migrations_dir,
        "V2__gated_rollback.sql",
        """
        CREATE TABLE t2 (id INTEGER);
        -- rollback
        SELECT 'jb_gate_marker' AS gate;
        DROP TABLE t2;
        """,
    )
    create_table_file(project.migrations_dir, "3", "t3")
    first_engine, second_engine = make_engine(db_url), make_engine(db_url)
    new_migrator(first_engine, project.migrations_dir).upgrade()
    gate = StatementGate(first_engine, "jb_gate_marker")
    looks = count_lock_looks(second_engine)
    outcomes: dict[str, Any] = {}

    def run(name: str, engine: Engine) -> None:
        try:
            migrator = new_migrator(
                engine, project.migrations_dir, lock_timeout=300.0, lock_poll_interval=0.05
            )
            outcomes[name] = migrator.rollback(to_version="1")
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            outcomes[name] = exc

    first = threading.Thread(target=run, args=("first", first_engine))
    first.start()
    try:
        assert gate.reached.wait(timeout=300), outcomes
        second = threading.Thread(target=run, args=("second", second_engine))
        second.start()
        while len(looks) < 3 and second.is_alive():
            second.join(timeout=0.05)
    finally:
        gate.released.set()
        first.join()
    second.join()

    assert not isinstance(outcomes["first"], BaseException), outcomes["first"]
    assert not isinstance(outcomes["second"], BaseException), outcomes["second"]
    assert [r.filename for r in outcomes["first"].rolled_back] == [
        "V3__create_t3.sql",
        "V2__gated_rollback.sql",
    ]
    assert outcomes["second"].rolled_back == ()
    assert applied_versions(first_engine) == ["1"]
    assert table_exists(first_engine, "t1") and not table_exists(first_engine, "t2")


# ------------------------------------------------------------------ 9. lock robustness

KILLED_ENGINE_SCRIPT = """
import os, signal, sys
from sqlalchemy import create_engine, event
from airflow_provider_jetbase.migration import Migrator

engine = create_engine(sys.argv[1])

@event.listens_for(engine, "before_cursor_execute")
def die(conn, cursor, statement, *args):
    if "jb_kill_marker" in statement:
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 while holding the lock, mid-migration

Migrator(engine, sys.argv[2]).upgrade()
"""


def test_killed_engine_lock_is_proven_dead_but_a_cli_lock_is_never_taken_over(
    db_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    project = JetbaseProject(tmp_path, db_url)
    write_migration(
        project.migrations_dir,
        "V1__killed_here.sql",
        """
        SELECT 'jb_kill_marker' AS here;
        CREATE TABLE t1 (id INTEGER);
        -- rollback
        DROP TABLE t1;
        """,
    )
    create_table_file(project.migrations_dir, "2", "t2")
    script = tmp_path / "killed_engine.py"
    script.write_text(KILLED_ENGINE_SCRIPT)
    completed = subprocess.run(
        [
            sys.executable,
            str(script),
            db_url.render_as_string(hide_password=False),
            str(project.migrations_dir),
        ],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == -signal.SIGKILL, completed.stderr
    engine = make_engine(db_url)
    held = lock_row(engine)
    assert held is not None and held[0], "the killed engine did not hold the lock"
    assert applied_versions(engine) == []

    # Documentation: the CLI stays locked out until someone runs `jetbase unlock`.
    project.upgrade().assert_failed_with("Migration lock is already held by another process")
    # Without a stale policy we wait and time out, naming the dead holder...
    with pytest.raises(errors().LockTimeoutError) as caught:
        new_migrator(engine, project.migrations_dir, lock_timeout=0.3, lock_poll_interval=0.1).upgrade()
    assert str(held[2]) in str(caught.value)
    # ...with it, the dead pid on this host is proof enough to take over.
    result = new_migrator(
        engine, project.migrations_dir, lock_timeout=300.0, lock_poll_interval=0.1, stale_lock_after=3600.0
    ).upgrade()
    assert [r.filename for r in result.applied] == ["V1__killed_here.sql", "V2__create_t2.sql"]
    assert lock_row(engine) == LOCK_FREE

    # A lock written by the CLI (a random uuid4, no pid) is never presumed dead by that rule.
    cli_holder = str(uuid.uuid4())
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE jetbase_lock SET is_locked = TRUE, locked_at = CURRENT_TIMESTAMP, process_id = :p "
                "WHERE id = 1"
            ),
            {"p": cli_holder},
        )
    create_table_file(project.migrations_dir, "3", "t3")
    with pytest.raises(errors().LockTimeoutError):
        new_migrator(
            engine, project.migrations_dir, lock_timeout=0.3, lock_poll_interval=0.1, stale_lock_after=3600.0
        ).upgrade()
    assert lock_row(engine) == (True, True, cli_holder)
    assert applied_versions(engine) == ["1", "2"]


# ------------------------------------------------------------------ 4. atomic failures


def test_failing_migration_leaves_nothing_behind(
    db_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    project = JetbaseProject(tmp_path, db_url)
    create_table_file(project.migrations_dir, "1", "t1")
    write_migration(
        project.migrations_dir,
        "V2__fails_halfway.sql",
        """
        CREATE TABLE half_done (id INTEGER);
        INSERT INTO table_that_does_not_exist (id) VALUES (1);
        -- rollback
        DROP TABLE half_done;
        """,
    )
    create_table_file(project.migrations_dir, "3", "t3")
    engine = make_engine(db_url)
    with pytest.raises(errors().MigrationExecutionError) as caught:
        new_migrator(engine, project.migrations_dir).upgrade()
    error = caught.value
    message = str(error)
    assert "V2__fails_halfway.sql" in message and "table_that_does_not_exist" in message, message
    assert error.statement_number == 2
    assert re.search(r"statement\D{0,3}2\b", message, re.IGNORECASE), message
    assert [r.filename for r in error.applied] == ["V1__create_t1.sql"]
    assert applied_versions(engine) == ["1"]
    assert lock_row(engine) == LOCK_FREE
    assert not table_exists(engine, "t3")
    if engine.dialect.name == "mysql":
        # DDL commits implicitly there: the error must say the database may hold part of the file.
        assert error.partial and "part" in message.lower(), message
    else:
        assert not table_exists(engine, "half_done"), "the failed migration left its table behind"
        assert not error.partial


# ------------------------------------------------------------------ 5. non-migration files


def test_non_migration_files_are_ignored(
    db_url: URL,
    tmp_path: Path,
    make_engine: Callable[..., Engine],
    captured_logger: tuple[logging.Logger, RecordingHandler],
) -> None:
    logger, handler = captured_logger
    project = JetbaseProject(tmp_path, db_url)
    create_table_file(project.migrations_dir, "1", "t1")
    create_table_file(project.migrations_dir, "2", "t2", subdir="sub")
    (project.migrations_dir / ".gitkeep").write_text("")
    # Documentation: the CLI crashes on a .gitkeep (and rejects an editor backup, below).
    project.upgrade().assert_failed_with("substring not found")
    (project.migrations_dir / ".gitkeep").unlink()
    (project.migrations_dir / "V1__create_t1.sql~").write_text("editor backup: DROP TABLE t1;\n")
    project.upgrade().assert_failed_with("Invalid migration filename format: V1__create_t1.sql~")

    (project.migrations_dir / ".gitkeep").write_text("")
    (project.migrations_dir / "sub" / ".gitkeep").write_text("")
    (project.migrations_dir / "README.md").write_text("# migrations\nV9__not_a_migration.sql\n")

    engine = make_engine(db_url)
    migrator = new_migrator(engine, project.migrations_dir, logger=logger)
    result = migrator.upgrade()
    assert [r.filename for r in result.applied] == ["V1__create_t1.sql", "V2__create_t2.sql"]
    assert migrator.validate().ok
    assert migrator.status().pending == ()
    assert [r.filename for r in migrator.rollback().rolled_back] == ["V2__create_t2.sql"]
    debug_text = "\n".join(r.getMessage() for r in handler.records if r.levelno == logging.DEBUG)
    for name in (".gitkeep", "README.md"):
        assert name in debug_text, f"no debug line about ignoring {name}:\n{debug_text}"
    # A name that looks like a migration is ignored loudly, not in a DEBUG line.
    warning_text = "\n".join(r.getMessage() for r in handler.records if r.levelno == logging.WARNING)
    assert "V1__create_t1.sql~" in warning_text, f"no warning about the editor backup:\n{warning_text}"


@pytest.mark.parametrize("bad_name", ["V1_create_t9.sql", "create_t9.sql", "Vx__create_t9.sql", "V2__.sql"])
def test_badly_named_sql_file_is_a_clear_error(
    bad_name: str, sqlite_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    project = JetbaseProject(tmp_path, sqlite_url)
    create_table_file(project.migrations_dir, "1", "t1")
    (project.migrations_dir / bad_name).write_text("CREATE TABLE t9 (id INTEGER);\n")
    engine = make_engine(sqlite_url)
    with pytest.raises(errors().MigrationFileError) as caught:
        new_migrator(engine, project.migrations_dir).upgrade()
    assert bad_name in str(caught.value)
    assert applied_versions(engine) == []


# ------------------------------------------------------------------ 6. dry run is read-only

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
        create_table_file(project.migrations_dir, v, t) for v, t in (("1", "t1"), ("1_1", "t11"), ("2", "t2"))
    ]
    engine = make_engine(db_url)
    seen = record_statements(engine)
    migrator = new_migrator(engine, project.migrations_dir)

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


# ------------------------------------------------------------------ 7. parsing hazards

HAZARD_FILES = {
    # file name -> (body, 1-based line of the hazard)
    "V1__no_final_delimiter.sql": (
        "CREATE TABLE h1 (id INTEGER);\nCREATE TABLE h1_dropped (id INTEGER)\n",
        2,
    ),
    "V2__block_comment.sql": ("/* created for the report */\nCREATE TABLE h2 (id INTEGER);\n", 1),
    "V3__trailing_comment.sql": (
        "CREATE TABLE h3 (id INTEGER);\nCREATE TABLE h3b (id INTEGER); -- swallows the next line\n"
        "CREATE TABLE h3c (id INTEGER);\n",
        2,
    ),
    "V4__two_on_one_line.sql": ("CREATE TABLE h4 (id INTEGER); CREATE TABLE h4b (id INTEGER);\n", 1),
}


def names_line(warning: str, filename: str, line: int) -> bool:
    """``file:line`` (the compiler convention) or ``file ... line N``."""
    return f"{filename}:{line}" in warning or (
        filename in warning and re.search(rf"\bline {line}\b", warning) is not None
    )


def write_hazards(folder: Path) -> dict[str, tuple[Path, int]]:
    written: dict[str, tuple[Path, int]] = {}
    for name, (body, line) in HAZARD_FILES.items():
        path = folder / name
        path.write_text(body)
        written[name] = (path, line)
    return written


def test_parsing_hazards_are_warned_with_file_and_line(
    sqlite_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    project = JetbaseProject(tmp_path, sqlite_url)
    hazards = write_hazards(project.migrations_dir)
    engine = make_engine(sqlite_url)
    result = new_migrator(engine, project.migrations_dir).upgrade(dry_run=True)
    for name, (_path, line) in hazards.items():
        matching = [w for w in result.warnings if name in w]
        assert matching, f"no warning names {name}: {result.warnings}"
        assert any(names_line(w, name, line) for w in matching), (name, line, matching)
    for run in result.applied:
        assert run.checksum == jetbase_checksum(hazards[run.filename][0]), run.filename


def test_hazard_warnings_also_come_with_a_real_upgrade(
    db_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    """The hazards that still execute everywhere: a dropped last statement and a block comment."""
    project = JetbaseProject(tmp_path, db_url)
    for name in ("V1__no_final_delimiter.sql", "V2__block_comment.sql"):
        (project.migrations_dir / name).write_text(HAZARD_FILES[name][0])
    engine = make_engine(db_url)
    result = new_migrator(engine, project.migrations_dir).upgrade()
    assert any(names_line(w, "V1__no_final_delimiter.sql", 2) for w in result.warnings), result.warnings
    assert any("V2__block_comment.sql" in w for w in result.warnings), result.warnings
    # Same statements as the CLI: the undelimited one is dropped, and the checksums match Jetbase's.
    assert (
        table_exists(engine, "h1") and table_exists(engine, "h2") and not table_exists(engine, "h1_dropped")
    )
    for _order, _v, _d, filename, _t, checksum in version_rows(engine):
        assert checksum == jetbase_checksum(project.migrations_dir / filename)
    audit = project.run("validate-checksums").assert_ok()
    assert "All migration checksums are valid" in " ".join(audit.messages), audit.describe()


def test_strict_mode_turns_hazards_into_errors_before_anything_runs(
    sqlite_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    project = JetbaseProject(tmp_path, sqlite_url)
    create_table_file(project.migrations_dir, "0_1", "clean_first")
    write_hazards(project.migrations_dir)
    engine = make_engine(sqlite_url)
    with pytest.raises(errors().ParsingHazardError) as caught:
        new_migrator(engine, project.migrations_dir, strict=True).upgrade()
    message = str(caught.value)
    for name in HAZARD_FILES:
        assert name in message, message
    user_tables = [t for t in inspect(engine).get_table_names() if not t.startswith("jetbase_")]
    assert user_tables == [] and applied_versions(engine) == []


def test_rollback_hazards_are_warned_and_strict_refuses(
    sqlite_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    """A rollback section whose only statement lacks its delimiter: Jetbase drops it and "succeeds"."""
    project = JetbaseProject(tmp_path, sqlite_url)
    path = write_migration(
        project.migrations_dir, "V1__a.sql", "CREATE TABLE a (id INTEGER);\n-- rollback\nDROP TABLE a\n"
    )
    engine = make_engine(sqlite_url)
    new_migrator(engine, project.migrations_dir).upgrade()
    with pytest.raises(errors().ParsingHazardError) as caught:
        new_migrator(engine, project.migrations_dir, strict=True).rollback()
    assert names_line(str(caught.value), path.name, 3), str(caught.value)
    assert applied_versions(engine) == ["1"]

    dry = new_migrator(engine, project.migrations_dir).rollback(dry_run=True)
    assert any(names_line(w, path.name, 3) for w in dry.warnings), dry.warnings
    assert dry.rolled_back[0].statements == ()
    assert applied_versions(engine) == ["1"]


# ------------------------------------------------------------------ 8. postgres search_path


def tables_of(inspector: Any, schema: str) -> set[str]:
    return {t for t in inspector.get_table_names(schema=schema) if t not in PROVIDER_TABLES}


@pytest.mark.parametrize("driver_fixture", ["postgres_url", "postgres_psycopg3_url"])
def test_postgres_schema_via_search_path_option(
    driver_fixture: str, request: pytest.FixtureRequest, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    url: URL = request.getfixturevalue(driver_fixture)
    admin = make_engine(url)
    with admin.begin() as conn:
        conn.execute(text('CREATE SCHEMA "myschema"'))
    project = JetbaseProject(tmp_path / "cli", url.update_query_dict({"options": "-csearch_path=myschema"}))
    create_table_file(project.migrations_dir, "1", "t1")
    create_table_file(project.migrations_dir, "2", "t2")

    engine = make_engine(url, connect_args={"options": "-csearch_path=myschema"})
    migrator = new_migrator(engine, project.migrations_dir)
    assert [r.filename for r in migrator.upgrade(count=1).applied] == ["V1__create_t1.sql"]
    inspector = inspect(admin)
    assert tables_of(inspector, "myschema") == {"jetbase_migrations", "jetbase_lock", "t1"}
    assert inspector.get_table_names(schema="public") == []

    # The CLI, reaching the same schema through the URL option, continues from our rows.
    assert "Latest migration version: 1" in project.current().messages
    project.upgrade().assert_ok()
    assert migrator.current() == "2"
    assert [r.filename for r in migrator.rollback().rolled_back] == ["V2__create_t2.sql"]
    assert tables_of(inspect(admin), "myschema") == {
        "jetbase_migrations",
        "jetbase_lock",
        "t1",
    }

    if url.get_driver_name() == "psycopg2":
        # The CLI's own postgres_schema setting (SET search_path per transaction) sees our rows too.
        own = JetbaseProject(tmp_path / "cli_schema", url, postgres_schema="myschema")
        own.copy_migrations_from(project.migrations_dir)
        assert "Latest migration version: 1" in own.current().assert_ok().messages
    if url.get_driver_name() == "psycopg":
        # Documentation: the CLI's own postgres_schema setting breaks on psycopg 3.
        broken = JetbaseProject(tmp_path / "cli_schema", url, postgres_schema="myschema")
        broken.copy_migrations_from(project.migrations_dir)
        broken.current().assert_failed_with("syntax error")
