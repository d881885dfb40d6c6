"""Parsing migration files on the real databases: custom delimiters, comments and multi-line
statements as Jetbase splits them; parsing hazards (a last statement without delimiter, comments,
two statements on one line, empty, huge or non-UTF-8 files) are warnings naming the file and line,
and errors before anything runs in strict mode.

Elsewhere: the parser against Jetbase's own, without a database, in tests/test_migration_files.py;
which files are read in test_discovery.py."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import URL, Engine

from airflow_provider_jetbase.migration import (
    MigrationFileError,
    Migrator,
    ParsingHazardError,
)
from tests.engine.helpers import Baseline, fails, table_file, tables
from tests.jetbase_cli import (
    LOCK_FREE,
    JetbaseProject,
    applied_versions,
    jetbase_checksum,
    lock_row,
    table_exists,
    version_rows,
    write_migration,
)


def test_custom_delimiter_comments_and_multiline(
    db_url: URL, folder: Path, make_engine: Callable[..., Engine]
) -> None:
    write_migration(
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
        write_migration(
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
    engine = make_engine(db_url)
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
    for _v, _d, filename, _t, checksum in version_rows(engine, include_order=False):
        assert checksum == jetbase_checksum(folder / filename)
    migrator.rollback(count=5)
    assert "d1" not in tables(engine)


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
    result = Migrator(engine, project.migrations_dir).upgrade(dry_run=True)
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
    result = Migrator(engine, project.migrations_dir).upgrade()
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


def test_hazard_warnings_and_strict_mode(
    sqlite_url: URL, folder: Path, make_engine: Callable[..., Engine]
) -> None:
    write_migration(
        folder, "V1__hazard.sql", "CREATE TABLE h1 (id INTEGER);\nCREATE TABLE h1_dropped (id INTEGER)\n"
    )
    engine = make_engine(sqlite_url)
    with pytest.raises(ParsingHazardError, match="V1__hazard.sql line 2") as caught:
        Migrator(engine, folder, strict=True).upgrade()
    assert len(caught.value.hazards) == 1
    assert tables(engine) <= {"jetbase_migrations", "jetbase_lock"}
    assert applied_versions(engine) == [] and lock_row(engine) == LOCK_FREE
    dry = Migrator(engine, folder).upgrade(dry_run=True)
    assert any("V1__hazard.sql line 2" in w and "silently drops" in w for w in dry.warnings)
    real = Migrator(engine, folder).upgrade()
    assert real.warnings == dry.warnings
    assert "h1" in tables(engine) and "h1_dropped" not in tables(engine)  # same statements as the CLI


def test_strict_mode_turns_hazards_into_errors_before_anything_runs(
    sqlite_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    project = JetbaseProject(tmp_path, sqlite_url)
    table_file(project.migrations_dir, "0_1", "clean_first")
    write_hazards(project.migrations_dir)
    engine = make_engine(sqlite_url)
    with pytest.raises(ParsingHazardError) as caught:
        Migrator(engine, project.migrations_dir, strict=True).upgrade()
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
    Migrator(engine, project.migrations_dir).upgrade()
    with pytest.raises(ParsingHazardError) as caught:
        Migrator(engine, project.migrations_dir, strict=True).rollback()
    assert names_line(str(caught.value), path.name, 3), str(caught.value)
    assert applied_versions(engine) == ["1"]

    dry = Migrator(engine, project.migrations_dir).rollback(dry_run=True)
    assert any(names_line(w, path.name, 3) for w in dry.warnings), dry.warnings
    assert dry.rolled_back[0].statements == ()
    assert applied_versions(engine) == ["1"]


# ------------------------------------------------------------------ bad-input corpus (PostgreSQL, ClickHouse)


def test_empty_file_is_an_error_in_strict_mode_and_a_named_warning_otherwise(
    base: Baseline, caplog: pytest.LogCaptureFixture
) -> None:
    base.add("V2__empty.sql", "")
    (base.folder / "V2__empty.sql").write_bytes(b"")
    fails(base.migrator(strict=True).upgrade, MigrationFileError, "V2__empty.sql")
    base.unchanged("strict upgrade of an empty file")
    with caplog.at_level(logging.WARNING):
        result = base.migrator().upgrade(dry_run=True)
    assert any("V2__empty.sql" in w and "no upgrade statements" in w for w in result.warnings), (
        result.warnings
    )
    assert "V2__empty.sql" in caplog.text
    base.unchanged("dry run of an empty file")


@pytest.mark.parametrize(
    ("body", "line"),
    [
        ("CREATE TABLE t2 (id INT);\nCREATE TABLE t3 (id INT)\n", 2),  # last statement without ';'
        ("CREATE TABLE t2 (id INT); -- trailing comment\nCREATE TABLE t3 (id INT);\n", 1),
        ("CREATE TABLE t2 (id INT); CREATE TABLE t3 (id INT);\n", 1),
        ("CREATE TABLE t2 (id INT);\n/* block */ CREATE TABLE t3 (id INT);\n", 2),
    ],
    ids=["no-final-delimiter", "comment-after-delimiter", "two-on-one-line", "block-comment"],
)
def test_parsing_hazard_strict_error_names_file_and_line(base: Baseline, body: str, line: int) -> None:
    base.add("V2__hazard.sql", body)
    fails(base.migrator(strict=True).upgrade, MigrationFileError, "V2__hazard.sql", f"line {line}")
    base.unchanged("strict upgrade with a parsing hazard")
    dry = base.migrator().upgrade(dry_run=True)
    assert any("V2__hazard.sql" in w and f"line {line}" in w for w in dry.warnings), dry.warnings
    base.unchanged("dry run with a parsing hazard")


def test_invalid_utf8_names_file_and_line(base: Baseline) -> None:
    (base.folder / "V2__latin1.sql").write_bytes(b"CREATE TABLE t2 (id INT);\n-- caf\xe9\nSELECT 1;\n")
    fails(base.migrator().upgrade, MigrationFileError, "V2__latin1.sql", "line 2", "UTF-8")
    base.unchanged("upgrade of a non-UTF-8 file")


def test_huge_file_without_final_delimiter(base: Baseline) -> None:
    # ~8 MB of one statement that never ends: strict mode refuses it before anything runs.
    body = "INSERT INTO base_t VALUES\n" + ",\n".join(f"({i}, 'x')" for i in range(2, 600_000)) + "\n"
    (base.folder / "V2__huge.sql").write_text(body)
    fails(base.migrator(strict=True).upgrade, MigrationFileError, "V2__huge.sql", "line 1")
    base.unchanged("strict upgrade of a huge file without delimiter")
