"""SQLite's PRAGMAs that are no-ops inside a transaction (foreign_keys, journal_mode), on real SQLite
files: SQLite's table-rebuild recipe, misplaced PRAGMAs, and the connection's setting afterwards.

"Foreign keys enabled" is SQLAlchemy's documented recipe (a ``connect`` listener running ``PRAGMA
foreign_keys = ON``): SQLite's own default is off, and the setting belongs to each connection.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Engine, make_url

from airflow_provider_jetbase.migration import MigrationExecutionError, MigrationFileError, Migrator
from tests.jetbase_cli import JetbaseProject, jetbase_checksum, version_rows, write_migration

PARENT_AND_CHILD = """
CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT);
CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent ON DELETE CASCADE);
INSERT INTO parent (id, name) VALUES (1, 'a'), (2, 'b');
INSERT INTO child (id, parent_id) VALUES (10, 1), (11, 1), (12, 2);
-- rollback
DROP TABLE child;
DROP TABLE parent;
"""

# https://www.sqlite.org/lang_altertable.html#otheralter: add a NOT NULL column with a default.
REBUILD_RECIPE = """
PRAGMA foreign_keys = OFF;
CREATE TABLE new_parent (id INTEGER PRIMARY KEY, name TEXT, active INTEGER NOT NULL DEFAULT 1);
INSERT INTO new_parent (id, name) SELECT id, name FROM parent;
DROP TABLE parent;
ALTER TABLE new_parent RENAME TO parent;
PRAGMA foreign_key_check;
PRAGMA foreign_keys = ON;
"""


def _foreign_keys_on(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


@pytest.fixture
def engines() -> Iterator[Callable[..., Engine]]:
    made: list[Engine] = []

    def factory(url: URL, *, foreign_keys: bool) -> Engine:
        # One pooled connection: the next checkout is the very connection the migrations used.
        engine = create_engine(url, pool_size=1, max_overflow=0)
        if foreign_keys:
            event.listen(engine, "connect", _foreign_keys_on)
        made.append(engine)
        return engine

    yield factory
    for engine in made:
        engine.dispose()


def enable_cli_foreign_keys(project: JetbaseProject) -> None:
    """The CLI imports env.py (once per setting it reads): the same SQLAlchemy recipe there turns
    foreign keys on for every connection of the CLI's process."""
    with (project.jetbase_dir / "env.py").open("a") as env:
        env.write(
            "from sqlalchemy import event\n"
            "from sqlalchemy.engine import Engine\n"
            "event.listen(Engine, 'connect', lambda c, r: c.execute('PRAGMA foreign_keys = ON'))\n"
        )


def dump(url: URL) -> list[str]:
    assert url.database is not None
    raw = sqlite3.connect(url.database)
    try:
        return list(raw.iterdump())
    finally:
        raw.close()


def child_ids(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return [int(r[0]) for r in conn.execute(text("SELECT id FROM child ORDER BY id"))]


def pooled_foreign_keys(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one())


def versions(engine: Engine) -> list[str]:
    return [str(r[1]) for r in version_rows(engine) if r[4] == "VERSIONED"]


def test_rebuild_recipe_keeps_child_rows_with_foreign_keys_enabled(
    tmp_path: Path, sqlite_url: URL, engines: Callable[..., Engine]
) -> None:
    folder = tmp_path / "migrations"
    write_migration(folder, "V1__parent_and_child.sql", PARENT_AND_CHILD)
    write_migration(folder, "V2__rebuild_parent.sql", REBUILD_RECIPE)
    engine = engines(sqlite_url, foreign_keys=True)

    result = Migrator(engine, folder).upgrade()

    assert [r.version for r in result.applied] == ["1", "2"]
    assert child_ids(engine) == [10, 11, 12]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id, active FROM parent ORDER BY id")).all() == [(1, 1), (2, 1)]
        # The rebuilt table is still the children's parent, and enforcement is back on.
        with pytest.raises(Exception, match="FOREIGN KEY constraint failed"):
            conn.execute(text("INSERT INTO child (id, parent_id) VALUES (13, 99)"))
        conn.rollback()
    assert pooled_foreign_keys(engine) == 1
    # The statements and checksum are Jetbase's own, PRAGMAs included.
    assert result.applied[1].statements[0] == "PRAGMA foreign_keys = OFF"
    assert result.applied[1].checksum == jetbase_checksum(folder / "V2__rebuild_parent.sql")


def test_rebuild_recipe_in_the_rollback_section_keeps_child_rows(
    tmp_path: Path, sqlite_url: URL, engines: Callable[..., Engine]
) -> None:
    folder = tmp_path / "migrations"
    write_migration(folder, "V1__parent_and_child.sql", PARENT_AND_CHILD)
    write_migration(
        folder,
        "V2__add_active.sql",
        "ALTER TABLE parent ADD COLUMN active INTEGER NOT NULL DEFAULT 1;\n-- rollback\n"
        + REBUILD_RECIPE.replace(", active INTEGER NOT NULL DEFAULT 1", ""),
    )
    engine = engines(sqlite_url, foreign_keys=True)
    migrator = Migrator(engine, folder)
    migrator.upgrade()

    migrator.rollback()

    assert versions(engine) == ["1"]
    assert child_ids(engine) == [10, 11, 12]
    assert pooled_foreign_keys(engine) == 1


@pytest.mark.parametrize(
    ("body", "line"),
    [
        pytest.param(
            "CREATE TABLE new_parent (id INTEGER PRIMARY KEY);\nPRAGMA foreign_keys = OFF;\n"
            "DROP TABLE parent;\n",
            2,
            id="after-a-statement",
        ),
        pytest.param(
            "PRAGMA foreign_keys = OFF;\nDROP TABLE child;\n\npragma   JOURNAL_MODE=wal;\n"
            "CREATE TABLE t (id INTEGER);\n",
            4,
            id="journal-mode-in-the-middle",
        ),
    ],
)
def test_pragma_between_statements_is_refused_before_anything_runs(
    tmp_path: Path, sqlite_url: URL, engines: Callable[..., Engine], body: str, line: int
) -> None:
    folder = tmp_path / "migrations"
    write_migration(folder, "V1__parent_and_child.sql", PARENT_AND_CHILD)
    engine = engines(sqlite_url, foreign_keys=True)
    Migrator(engine, folder).upgrade()
    write_migration(folder, "V2__other.sql", "CREATE TABLE other (id INTEGER);\n")
    write_migration(folder, "V3__misplaced.sql", body)
    snapshot = dump(sqlite_url)

    for dry_run in (True, False):
        with pytest.raises(MigrationFileError) as caught:
            Migrator(engine, folder).upgrade(dry_run=dry_run)
        assert f"V3__misplaced.sql line {line}: PRAGMA" in str(caught.value)
        assert "Nothing was run (upgrade)" in str(caught.value)
        assert caught.value.filename == "V3__misplaced.sql"

    # Not even V2, which comes first and is fine, ran.
    assert dump(sqlite_url) == snapshot
    assert versions(engine) == ["1"]
    assert child_ids(engine) == [10, 11, 12]


def test_misplaced_pragma_in_a_rollback_section_is_refused(
    tmp_path: Path, sqlite_url: URL, engines: Callable[..., Engine]
) -> None:
    folder = tmp_path / "migrations"
    write_migration(
        folder,
        "V1__parent_and_child.sql",
        PARENT_AND_CHILD.replace("DROP TABLE child;", "DROP TABLE child;\nPRAGMA foreign_keys = OFF;"),
    )
    engine = engines(sqlite_url, foreign_keys=True)
    migrator = Migrator(engine, folder)
    migrator.upgrade()

    with pytest.raises(MigrationFileError, match=r"V1__parent_and_child\.sql line 7: PRAGMA foreign_keys"):
        migrator.rollback()

    assert versions(engine) == ["1"]
    assert child_ids(engine) == [10, 11, 12]


@pytest.mark.parametrize("configured", [True, False], ids=["configured-on", "configured-off"])
def test_connection_gets_its_foreign_keys_setting_back_after_each_file(
    tmp_path: Path, sqlite_url: URL, engines: Callable[..., Engine], configured: bool
) -> None:
    folder = tmp_path / "migrations"
    write_migration(folder, "V1__parent_and_child.sql", PARENT_AND_CHILD)
    # Turns them off and never back on: the next file must still run with the configured setting.
    write_migration(folder, "V2__off.sql", "PRAGMA foreign_keys = OFF;\nCREATE TABLE t2 (id INTEGER);\n")
    write_migration(folder, "V3__reads.sql", "CREATE TABLE seen AS SELECT * FROM pragma_foreign_keys;\n")
    # Turns them on for its own statements only.
    write_migration(
        folder,
        "V4__on.sql",
        "PRAGMA foreign_keys = ON;\nCREATE TABLE seen_on AS SELECT * FROM pragma_foreign_keys;\n",
    )
    engine = engines(sqlite_url, foreign_keys=configured)

    Migrator(engine, folder).upgrade()

    with engine.connect() as conn:
        assert conn.execute(text("SELECT * FROM seen")).scalar_one() == int(configured)
        assert conn.execute(text("SELECT * FROM seen_on")).scalar_one() == 1
    assert pooled_foreign_keys(engine) == int(configured)


def test_failing_file_after_a_leading_pragma_restores_foreign_keys(
    tmp_path: Path, sqlite_url: URL, engines: Callable[..., Engine]
) -> None:
    folder = tmp_path / "migrations"
    write_migration(folder, "V1__parent_and_child.sql", PARENT_AND_CHILD)
    write_migration(
        folder,
        "V2__fails.sql",
        "PRAGMA foreign_keys = OFF;\nCREATE TABLE new_parent (id INTEGER PRIMARY KEY);\n"
        "DROP TABLE parent;\nINSERT INTO missing_table VALUES (1);\n",
    )
    engine = engines(sqlite_url, foreign_keys=True)

    with pytest.raises(MigrationExecutionError) as caught:
        Migrator(engine, folder).upgrade()

    assert "V2__fails.sql failed at statement 4 of 4 (line 4)" in str(caught.value)
    assert "no such table: missing_table" in str(caught.value)
    assert pooled_foreign_keys(engine) == 1
    assert versions(engine) == ["1"]
    assert child_ids(engine) == [10, 11, 12]
    with engine.connect() as conn:
        tables = {r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'"))}
    assert "new_parent" not in tables and "parent" in tables


def test_leading_journal_mode_takes_effect(
    tmp_path: Path, sqlite_url: URL, engines: Callable[..., Engine]
) -> None:
    folder = tmp_path / "migrations"
    write_migration(folder, "V1__wal.sql", "PRAGMA journal_mode = WAL;\nCREATE TABLE t (id INTEGER);\n")
    engine = engines(sqlite_url, foreign_keys=False)

    Migrator(engine, folder).upgrade()

    engine.dispose()
    assert sqlite_url.database is not None
    with sqlite3.connect(sqlite_url.database) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    raw.close()


def test_rebuild_recipe_through_the_cli_matches_the_engine(
    tmp_path: Path, engines: Callable[..., Engine]
) -> None:
    cli_url = make_url(f"sqlite:///{tmp_path / 'cli.db'}")
    engine_url = make_url(f"sqlite:///{tmp_path / 'engine.db'}")
    project = JetbaseProject(tmp_path / "cli", cli_url)
    enable_cli_foreign_keys(project)
    project.write("V1__parent_and_child.sql", PARENT_AND_CHILD)
    project.write("V2__rebuild_parent.sql", REBUILD_RECIPE)

    project.upgrade().assert_ok()
    engine = engines(engine_url, foreign_keys=True)
    Migrator(engine, project.migrations_dir).upgrade()

    cli_engine = engines(cli_url, foreign_keys=False)
    assert child_ids(cli_engine) == child_ids(engine) == [10, 11, 12]
    assert version_rows(cli_engine) == version_rows(engine)


def test_cli_has_foreign_keys_on_through_env_py(tmp_path: Path, engines: Callable[..., Engine]) -> None:
    """The control for the test above: without the PRAGMA, the CLI's DROP TABLE cascades."""
    url = make_url(f"sqlite:///{tmp_path / 'cli.db'}")
    project = JetbaseProject(tmp_path / "cli", url)
    enable_cli_foreign_keys(project)
    project.write("V1__parent_and_child.sql", PARENT_AND_CHILD)
    project.write("V2__rebuild_parent.sql", REBUILD_RECIPE.replace("PRAGMA foreign_keys = OFF;\n", ""))

    project.upgrade().assert_ok()

    assert child_ids(engines(url, foreign_keys=False)) == []
