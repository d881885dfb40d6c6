"""Which files a run reads from the migrations folder, on the real databases: non-migration files are
ignored (a name that looks like a migration loudly), a badly named or duplicate-version file, a
directory named like a migration, a missing, unreadable or non-folder folder, unreadable files and
symlink loops are errors naming the culprit, raised before the database changes.

Elsewhere: discovery without a database in tests/test_migration_files.py."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL, Engine

from airflow_provider_jetbase.migration import (
    DuplicateVersionError,
    MigrationFileError,
    Migrator,
)
from tests.engine.helpers import Baseline, fails, table_file
from tests.jetbase_cli import (
    JetbaseProject,
    applied_versions,
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
    logger = logging.getLogger(f"tests.engine.discovery.{request.node.name}")
    handler = RecordingHandler()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, handler
    logger.removeHandler(handler)


def test_non_migration_files_are_ignored(
    db_url: URL,
    tmp_path: Path,
    make_engine: Callable[..., Engine],
    captured_logger: tuple[logging.Logger, RecordingHandler],
) -> None:
    logger, handler = captured_logger
    project = JetbaseProject(tmp_path, db_url)
    table_file(project.migrations_dir, "1", "t1")
    table_file(project.migrations_dir, "2", "t2", subdir="sub")
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
    migrator = Migrator(engine, project.migrations_dir, logger=logger)
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
    table_file(project.migrations_dir, "1", "t1")
    (project.migrations_dir / bad_name).write_text("CREATE TABLE t9 (id INTEGER);\n")
    engine = make_engine(sqlite_url)
    with pytest.raises(MigrationFileError) as caught:
        Migrator(engine, project.migrations_dir).upgrade()
    assert bad_name in str(caught.value)
    assert applied_versions(engine) == []


# ------------------------------------------------------------------ bad-input corpus (PostgreSQL, ClickHouse)


@pytest.mark.parametrize(
    "filename",
    [
        "V2_add_users.sql",  # no "__"
        "Vx__bad_version.sql",
        "V2.__trailing_dot.sql",
        "V__no_version.sql",
        "V2__.sql",  # empty description
        "v2__lowercase.sql",
        "RA_single_underscore.sql",
        "ROC__.sql",
        "V2-3__dash.sql",
        "V1..2__double_dot.sql",
        "notes.sql",
    ],
)
def test_malformed_filename(base: Baseline, filename: str) -> None:
    base.add(filename, "CREATE TABLE should_not_exist (id INT);")
    for call in (
        base.migrator().upgrade,
        lambda: base.migrator().upgrade(dry_run=True),
        base.migrator().status,
    ):
        fails(call, MigrationFileError, filename)
    base.unchanged(f"upgrade with {filename}")


@pytest.mark.parametrize(
    ("first", "second"),
    [("V2__a.sql", "V2__b.sql"), ("V2.0__a.sql", "V2_0__b.sql"), ("V2_1__a.sql", "V2.1__b.sql")],
)
def test_duplicate_versions(base: Baseline, first: str, second: str) -> None:
    base.add(first, "CREATE TABLE dup_a (id INT);")
    base.add(second, "CREATE TABLE dup_b (id INT);")
    fails(base.migrator().upgrade, DuplicateVersionError, first, second)
    base.unchanged("upgrade with duplicate versions")


def test_directory_named_like_a_migration(base: Baseline) -> None:
    (base.folder / "V3__dir.sql").mkdir()
    fails(base.migrator().upgrade, MigrationFileError, "V3__dir.sql")
    base.unchanged("upgrade with a directory named V3__dir.sql")


def test_missing_folder(base: Baseline, tmp_path: Path) -> None:
    missing = tmp_path / "no_such_folder"
    fails(Migrator(base.engine, missing).upgrade, MigrationFileError, str(missing))
    base.unchanged("upgrade from a missing folder")


def test_folder_is_a_file(base: Baseline, tmp_path: Path) -> None:
    not_a_dir = tmp_path / "migrations.txt"
    not_a_dir.write_text("x")
    fails(Migrator(base.engine, not_a_dir).upgrade, MigrationFileError, str(not_a_dir))
    base.unchanged("upgrade from a file instead of a folder")


# Imports first, as root (the checkout and its virtualenv may be root-only), then drop to nobody.
_READ_FOLDER = """
import logging, os, sys
from pathlib import Path
from airflow_provider_jetbase.migration.errors import MigrationFileError
from airflow_provider_jetbase.migration.files import discover
os.setgroups([])
os.setgid(65534)
os.setuid(65534)
try:
    discover(Path(sys.argv[1]), logging.getLogger("unreadable"))
except MigrationFileError as exc:
    print("REFUSED", exc)
else:
    print("READ")
"""


@pytest.mark.parametrize("where", ["folder", "subfolder"])
def test_unreadable_folder(base: Baseline, where: str) -> None:
    """chmod 000 cannot stop root, and CI runs as root: there the folder is read by the engine's folder
    reader (what every command reads first, before touching the database) in a child process that
    drops to the unprivileged user ``nobody`` after its imports."""
    base.add("V2__two.sql", "CREATE TABLE two (id INT);")
    (base.folder / "sub").mkdir()
    (base.folder / "sub" / "V3__three.sql").write_text("CREATE TABLE three (id INT);")
    if os.geteuid() != 0:
        locked = base.folder if where == "folder" else base.folder / "sub"
        locked.chmod(0)
        try:
            fails(base.migrator().upgrade, MigrationFileError, str(locked))
            base.unchanged("upgrade from an unreadable folder")
        finally:
            locked.chmod(0o755)
        return
    # tmp_path's parents are root-only (0700): the folder for "nobody" lives in a directory it may enter.
    shared = Path(tempfile.mkdtemp(prefix="jbtest-unreadable-"))
    try:
        shared.chmod(0o755)
        folder = shared / "migrations"
        shutil.copytree(base.folder, folder)
        locked = folder if where == "folder" else folder / "sub"
        locked.chmod(0)
        child = subprocess.run(
            [sys.executable, "-c", _READ_FOLDER, str(folder)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert child.stdout.startswith("REFUSED"), (child.stdout, child.stderr)
        assert str(locked) in child.stdout, child.stdout
    finally:
        for path in (shared / "migrations", shared / "migrations" / "sub"):
            if path.exists() or path.is_dir():
                path.chmod(0o755)
        shutil.rmtree(shared)
    base.unchanged("nothing ran")


def test_unreadable_file(base: Baseline) -> None:
    """A read error that even root gets: the file is a symlink to /proc/self/mem (EIO on read)."""
    (base.folder / "V2__unreadable.sql").symlink_to("/proc/self/mem")
    fails(base.migrator().upgrade, MigrationFileError, "V2__unreadable.sql")
    base.unchanged("upgrade with an unreadable file")


def test_symlink_loop_file(base: Baseline) -> None:
    (base.folder / "V2__loop.sql").symlink_to("V2__loop.sql")
    fails(base.migrator().upgrade, MigrationFileError, "V2__loop.sql")
    base.unchanged("upgrade with a self-referencing symlink")


def test_dangling_symlink(base: Baseline) -> None:
    (base.folder / "V2__dangling.sql").symlink_to("does_not_exist.sql")
    fails(base.migrator().upgrade, MigrationFileError, "V2__dangling.sql")
    base.unchanged("upgrade with a dangling symlink")


def test_directory_symlink_loop_does_not_hang(base: Baseline) -> None:
    (base.folder / "sub").mkdir()
    (base.folder / "sub" / "back").symlink_to("..")
    base.add("V2__two.sql", "CREATE TABLE two (id INT);")
    pending = [p.filename for p in base.migrator().status().pending]
    assert pending == ["V2__two.sql"]
