"""Discovery and parsing of migration files: our port of Jetbase's parser against Jetbase's own."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from jetbase.engine.checksum import calculate_checksum
from jetbase.engine.file_parser import parse_rollback_statements, parse_upgrade_statements
from jetbase.engine.version import get_migration_filepaths_by_version

from airflow_provider_jetbase.migration import (
    DuplicateVersionError,
    InvalidArgumentError,
    MigrationFileError,
    version_key,
)
from airflow_provider_jetbase.migration.files import discover, load_file

LOG = logging.getLogger("test_migration_files")

PARSER_CASES = {
    "simple": "CREATE TABLE a (id INT);\n-- rollback\nDROP TABLE a;\n",
    "multiline": "-- upgrade\nCREATE TABLE a (\n    id INT,\n    name TEXT\n);\n\n"
    "INSERT INTO a\nVALUES (1, 'x');\n-- rollback\nDROP TABLE a;\n",
    "comments": "-- a comment\n--another\nSELECT 1;   \n  -- indented comment\n  SELECT 2 ;\n"
    "--  ROLLBACK  \nSELECT 3;\n",
    "no_rollback": "SELECT 1;\nSELECT 2;\n",
    "missing_last_delimiter": "SELECT 1;\nSELECT 2\n-- rollback\nSELECT 3;\nSELECT 4\n",
    "custom_delimiter": "-- jetbase: delimiter=$$\n"
    "CREATE FUNCTION f() RETURNS int AS 'SELECT 1;' LANGUAGE sql$$\nSELECT 2$$\n"
    "-- rollback\nDROP FUNCTION f$$\n",
    "custom_delimiter_late": "SELECT 1;\n-- jetbase: delimiter=//\nSELECT 2//\n",
    "double_delimiter": "SELECT 1;;\nSELECT 2 ; ;\n",
    "trailing_comment": "SELECT 1; -- note\nSELECT 2;\n",
    "two_on_a_line": "SELECT 1; SELECT 2;\n",
    "block_comment": "/* header ; */\nSELECT 1;\n",
    "crlf": "SELECT 1;\r\nSELECT\r\n 2;\r\n-- rollback\r\nSELECT 3;\r\n",
    "cr_only": "SELECT 1;\rSELECT 2;\r",
    "empty": "",
    "only_comments": "-- nothing here\n-- rollback\n",
    "rollback_twice": "SELECT 1;\n-- rollback\nSELECT 2;\n-- rollback\nSELECT 3;\n",
    "unicode": "INSERT INTO t VALUES ('héllo ✓');\n-- rollback\nDELETE FROM t;\n",
    "tabs": "\tSELECT\t1;\n\t-- rollback\n\tSELECT 2;\n",
    "bom": "\ufeffSELECT 1;\n",
}


@pytest.mark.parametrize("name", sorted(PARSER_CASES))
def test_parser_port_matches_jetbase(name: str, tmp_path: Path) -> None:
    path = tmp_path / "V1__case.sql"
    path.write_bytes(PARSER_CASES[name].encode("utf-8"))
    ours = load_file(path, path.name)
    upgrade = parse_upgrade_statements(file_path=str(path))
    rollback = parse_rollback_statements(file_path=str(path))
    assert list(ours.upgrade.statements) == upgrade
    assert list(ours.rollback.statements) == rollback
    assert ours.checksum == calculate_checksum(sql_statements=upgrade)


def test_start_lines_point_at_the_statement(tmp_path: Path) -> None:
    path = tmp_path / "V1__x.sql"
    path.write_text(PARSER_CASES["multiline"])
    f = load_file(path, path.name)
    assert f.upgrade.start_lines == (2, 7)
    assert f.rollback.start_lines == (10,)


def _write(folder: Path, name: str, body: str = "SELECT 1;\n-- rollback\nSELECT 1;\n") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body, encoding="utf-8")
    return path


def test_version_order_matches_jetbase_with_mixed_forms(tmp_path: Path) -> None:
    names = [
        "V10__ten.sql",
        "V1__one.sql",
        "V1.1__one_one.sql",
        "V1_2__one_two.sql",
        "V2.0.1__two.sql",
        "sub/V20251225.120000__stamp.sql",
        "V1.10__one_ten.sql",
        "V1.9__one_nine.sql",
    ]
    for name in names:
        _write(tmp_path, name)
    ours = [f.version for f in discover(tmp_path, LOG).versioned]
    theirs = list(get_migration_filepaths_by_version(directory=str(tmp_path)))
    assert ours == theirs
    assert ours == ["1", "1.1", "1.2", "1.9", "1.10", "2.0.1", "10", "20251225.120000"]


def test_version_key_accepts_both_separators_and_rejects_junk() -> None:
    assert version_key("1_2") == version_key("1.2")
    assert version_key("1.10") > version_key("1.9")
    for bad in ("", "abc", "1..2", "1.2a", "-1"):
        with pytest.raises(InvalidArgumentError, match="Invalid migration version"):
            version_key(bad)


def test_non_migration_files_are_ignored_with_a_debug_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _write(tmp_path, "V1__one.sql")
    for junk in (".gitkeep", "README.md", "V1__one.sql~", ".V1__one.sql.swp", "notes.txt", "sub/.gitkeep"):
        _write(tmp_path, junk, "whatever")
    _write(tmp_path, ".#V2__lock.sql", "x")  # an editor lock file: hidden, ignored
    with caplog.at_level(logging.DEBUG, logger=LOG.name):
        found = discover(tmp_path, LOG)
    assert [f.filename for f in found.versioned] == ["V1__one.sql"]
    ignored = [r.getMessage() for r in caplog.records if "Ignoring" in r.getMessage()]
    assert any("README.md" in m for m in ignored) and any("V1__one.sql~" in m for m in ignored)
    assert any("sub/.gitkeep" in m for m in ignored)


@pytest.mark.parametrize("bad", ["v1__lower.sql", "V1a__x.sql", "V1__.sql", "X__x.sql", "V1_x.sql"])
def test_malformed_sql_filename_is_a_clear_error(tmp_path: Path, bad: str) -> None:
    _write(tmp_path, "V1__ok.sql")
    _write(tmp_path, f"nested/{bad}")
    with pytest.raises(MigrationFileError, match="Invalid migration filename") as caught:
        discover(tmp_path, LOG)
    assert f"nested/{bad}" in str(caught.value)


def test_duplicate_normalised_versions_name_both_files(tmp_path: Path) -> None:
    _write(tmp_path, "V2.0__a.sql")
    _write(tmp_path, "deeper/V2_0__b.sql")
    with pytest.raises(DuplicateVersionError) as caught:
        discover(tmp_path, LOG)
    assert "V2.0__a.sql" in str(caught.value) and "deeper/V2_0__b.sql" in str(caught.value)
    # V1 and V1.0 are two versions for Jetbase: not a duplicate.
    other = tmp_path / "other"
    _write(other, "V1__a.sql")
    _write(other, "V1.0__b.sql")
    assert {f.version for f in discover(other, LOG).versioned} == {"1", "1.0"}


def test_invalid_utf8_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "V1__latin1.sql").write_bytes(b"SELECT 1;\nINSERT INTO t VALUES ('caf\xe9');\n")
    with pytest.raises(MigrationFileError, match=r"V1__latin1\.sql is not valid UTF-8 \(line 2"):
        discover(tmp_path, LOG)


def test_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(MigrationFileError, match="does not exist"):
        discover(tmp_path / "nope", LOG)


def test_repeatables_are_ordered_by_path_like_jetbase(tmp_path: Path) -> None:
    _write(tmp_path, "b/RA__first.sql")
    _write(tmp_path, "a/RA__second.sql")
    _write(tmp_path, "ROC__view.sql")
    found = discover(tmp_path, LOG)
    assert [f.relpath for f in found.runs_always] == ["a/RA__second.sql", "b/RA__first.sql"]
    assert [f.filename for f in found.runs_on_change] == ["ROC__view.sql"]
    assert found.runs_always[0].description == "second"


HAZARDS = {
    "missing_delimiter": ("SELECT 1;\nSELECT 2\n", "line 2", "does not end with the delimiter"),
    "trailing_comment": ("SELECT 1; -- note\nSELECT 2;\n", "line 1", "after the delimiter"),
    "two_statements": ("SELECT 1; SELECT 2;\n", "line 1", "two statements on one line"),
    "block_comment": ("SELECT 1;\n/* c */ SELECT 2;\n", "line 2", "block comments"),
    "inline_comment": ("CREATE TABLE t (\n  id INT, -- key\n  x INT\n);\n", "line 2", "inline '-- comment'"),
    "no_upgrade": ("-- rollback\nSELECT 1;\n", "V1__h.sql", "no upgrade statements"),
}


@pytest.mark.parametrize("name", sorted(HAZARDS))
def test_parsing_hazards_are_named_with_file_and_line(tmp_path: Path, name: str) -> None:
    body, where, what = HAZARDS[name]
    path = tmp_path / "V1__h.sql"
    path.write_text(body)
    warnings = load_file(path, path.name).upgrade_warnings()
    assert any(w.startswith("V1__h.sql") and where in w and what in w for w in warnings), warnings
    # ... while the checksum stays Jetbase's.
    assert load_file(path, path.name).checksum == calculate_checksum(parse_upgrade_statements(str(path)))


def test_clean_files_have_no_hazards(tmp_path: Path) -> None:
    for name, body in (
        ("V1__a.sql", PARSER_CASES["multiline"]),
        ("V2__b.sql", "INSERT INTO t VALUES ('a;b', 'it''s -- not a comment');\n"),
        ("V3__c.sql", PARSER_CASES["custom_delimiter"]),
    ):
        path = tmp_path / name
        path.write_text(body)
        assert load_file(path, name).upgrade_warnings() == (), name


def test_directory_named_like_a_migration_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path, "V1__ok.sql")
    (tmp_path / "sub" / "V2__dir.sql").mkdir(parents=True)
    with pytest.raises(MigrationFileError, match="sub/V2__dir.sql in the migrations folder is a directory"):
        discover(tmp_path, LOG)


def test_byte_order_mark_is_a_hazard_but_kept_like_jetbase(tmp_path: Path) -> None:
    path = tmp_path / "V1__bom.sql"
    path.write_bytes("\ufeffSELECT 1;\nSELECT 2;\n".encode())
    migration = load_file(path, path.name)
    warnings = migration.upgrade_warnings()
    assert any(w.startswith("V1__bom.sql") and "UTF-8 byte-order mark" in w for w in warnings), warnings
    # Behaviour and checksum stay Jetbase's: the mark is still part of statement 1.
    assert list(migration.upgrade.statements) == parse_upgrade_statements(str(path))
    assert migration.upgrade.statements[0].startswith("\ufeff")
    assert migration.checksum == calculate_checksum(parse_upgrade_statements(str(path)))
    path.write_bytes(b"SELECT 1;\n")
    assert load_file(path, path.name).upgrade_warnings() == ()


@pytest.mark.parametrize("name", ["V1__x.SQL", "V1__x.Sql"])
def test_upper_case_sql_extension_is_refused_naming_the_file(tmp_path: Path, name: str) -> None:
    _write(tmp_path, name)
    with pytest.raises(MigrationFileError, match="lower-case '.sql'") as caught:
        discover(tmp_path, LOG)
    assert name in str(caught.value)


def test_name_like_a_migration_without_sql_extension_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _write(tmp_path, "V1__one.sql")
    _write(tmp_path, "V2__two.sql.bak")
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        found = discover(tmp_path, LOG)
    assert [f.filename for f in found.versioned] == ["V1__one.sql"]
    assert any(
        "V2__two.sql.bak" in r.getMessage() and "will NOT run" in r.getMessage() for r in caplog.records
    )


def test_kubernetes_configmap_layout_reads_each_file_once(tmp_path: Path) -> None:
    stamp = tmp_path / "..2026_01_01_00_00_00.123"
    stamp.mkdir()
    for name in ("V1__a.sql", "V2__b.sql"):
        (stamp / name).write_text("SELECT 1;\n", encoding="utf-8")
    (tmp_path / "..data").symlink_to(stamp.name)
    for name in ("V1__a.sql", "V2__b.sql"):
        (tmp_path / name).symlink_to(f"..data/{name}")
    found = discover(tmp_path, LOG)
    assert [f.relpath for f in found.versioned] == ["V1__a.sql", "V2__b.sql"]


def test_non_ascii_digits_in_a_version_are_refused_naming_the_file(tmp_path: Path) -> None:
    _write(tmp_path, "V\uff12__x.sql")
    with pytest.raises(MigrationFileError, match="ASCII digits") as caught:
        discover(tmp_path, LOG)
    assert "V\uff12__x.sql" in str(caught.value)
    with pytest.raises(InvalidArgumentError, match="'target_version'"):
        from airflow_provider_jetbase.migration.versions import normalise_version

        normalise_version("\uff11", "target_version")


@pytest.mark.parametrize("value", ["\uff12", "\u00b2"])
def test_non_ascii_count_is_a_parameter_error(value: str) -> None:
    from airflow_provider_jetbase.operators._params import to_optional_positive_int

    with pytest.raises(ValueError, match="Parameter 'count'"):
        to_optional_positive_int("count", value)
