"""The lint rules (migration/lint.py), pure and fast: each rule with a case that triggers it and one
that does not, the ``-- jetbase-lint: allow`` comment, and statements sqlglot cannot read."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_jetbase.migration.files import load_file
from airflow_provider_jetbase.migration.lint import RULES, LintFinding, blocking, lint_plan
from airflow_provider_jetbase.migration.planner import PlannedFile


def _lint(tmp_path: Path, body: str, dialect: str = "postgresql", direction: str = "upgrade") -> list[str]:
    return [f.rule for f in _findings(tmp_path, body, dialect, direction) if not f.accepted]


def _findings(
    tmp_path: Path, body: str, dialect: str = "postgresql", direction: str = "upgrade"
) -> list[LintFinding]:
    path = tmp_path / "V1__x.sql"
    path.write_text(body)
    f = load_file(path, path.name)
    section = f.rollback if direction == "rollback" else f.upgrade
    return list(lint_plan([PlannedFile(f, section)], dialect, direction))


ROLLBACK = "\n-- rollback\nSELECT 1;\n"

# rule, dialect, statement that breaks it, a close statement that does not.
CASES = [
    ("drop-table", "postgresql", "DROP TABLE users;", "DROP VIEW users_v;"),
    ("drop-schema", "postgresql", "DROP SCHEMA app CASCADE;", "CREATE SCHEMA app;"),
    ("drop-database", "mysql", "DROP DATABASE app;", "CREATE DATABASE app;"),
    (
        "drop-column",
        "postgresql",
        "ALTER TABLE users DROP COLUMN email;",
        "ALTER TABLE users ADD COLUMN email TEXT;",
    ),
    ("truncate", "postgresql", "TRUNCATE users;", "DELETE FROM users WHERE id = 1;"),
    ("delete-without-where", "sqlite", "DELETE FROM users;", "DELETE FROM users WHERE id = 1;"),
    (
        "update-without-where",
        "mysql",
        "UPDATE users SET name = 'x';",
        "UPDATE users SET name = 'x' WHERE id = 1;",
    ),
    (
        "alter-column-type",
        "postgresql",
        "ALTER TABLE users ALTER COLUMN id TYPE BIGINT;",
        "ALTER TABLE users ALTER COLUMN id SET DEFAULT 0;",
    ),
    (
        "alter-column-type",
        "mysql",
        "ALTER TABLE users MODIFY COLUMN id BIGINT;",
        "ALTER TABLE users ADD COLUMN n INT;",
    ),
    (
        "add-not-null-column",
        "postgresql",
        "ALTER TABLE users ADD COLUMN n INT NOT NULL;",
        "ALTER TABLE users ADD COLUMN n INT NOT NULL DEFAULT 0;",
    ),
    (
        "create-index-not-concurrently",
        "postgresql",
        "CREATE INDEX users_name ON users (name);",
        "CREATE INDEX CONCURRENTLY users_name ON users (name);",
    ),
    ("transaction-control", "postgresql", "COMMIT;", "SAVEPOINT s1;"),
    ("transaction-control", "mysql", "SET autocommit = 1;", "SET autocommit = 0;"),
    (
        "mixed-ddl-dml",
        "mysql",
        "CREATE TABLE t (id INT);\nINSERT INTO t VALUES (1);",
        "CREATE TABLE t (id INT);\nCREATE TABLE u (id INT);",
    ),
]


@pytest.mark.parametrize(("rule", "dialect", "bad", "good"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_rule_fires_on_its_statement_and_not_on_a_close_one(
    tmp_path: Path, rule: str, dialect: str, bad: str, good: str
) -> None:
    assert rule in _lint(tmp_path, bad + ROLLBACK, dialect)
    assert rule not in _lint(tmp_path, good + ROLLBACK, dialect)


def test_every_rule_has_a_case() -> None:
    covered = {c[0] for c in CASES} | {"no-rollback-section", "not-linted"}
    assert covered == set(RULES)


def test_index_and_not_null_column_on_a_table_created_in_the_plan_are_fine(tmp_path: Path) -> None:
    body = (
        "CREATE TABLE users (id INT);\nCREATE INDEX users_id ON users (id);\n"
        "ALTER TABLE users ADD COLUMN n INT NOT NULL;\n" + ROLLBACK
    )
    assert _lint(tmp_path, body) == []


def test_create_index_without_concurrently_is_only_a_postgresql_finding(tmp_path: Path) -> None:
    assert _lint(tmp_path, "CREATE INDEX i ON users (name);" + ROLLBACK, "mysql") == []


def test_mixed_ddl_dml_is_only_a_mysql_finding(tmp_path: Path) -> None:
    body = "CREATE TABLE t (id INT);\nINSERT INTO t VALUES (1);" + ROLLBACK
    assert _lint(tmp_path, body, "postgresql") == []
    [finding] = [f for f in _findings(tmp_path, body, "mysql") if f.rule == "mixed-ddl-dml"]
    assert finding.line == 2 and "DDL from line 1, DML from line 2" in finding.message


def test_no_rollback_section(tmp_path: Path) -> None:
    assert _lint(tmp_path, "CREATE TABLE t (id INT);\n") == ["no-rollback-section"]
    assert _lint(tmp_path, "CREATE TABLE t (id INT);\n-- rollback\nDROP TABLE t;\n") == []


def test_rollback_sections_are_linted_in_a_rollback(tmp_path: Path) -> None:
    body = "CREATE TABLE t (id INT);\n-- rollback\nDROP TABLE t;\n"
    [finding] = _findings(tmp_path, body, direction="rollback")
    assert (finding.rule, finding.severity, finding.file, finding.line) == (
        "drop-table",
        "destructive",
        "V1__x.sql",
        3,
    )


def test_unreadable_statement_is_not_linted_never_a_failure(tmp_path: Path) -> None:
    findings = _findings(tmp_path, "CREATE TABLE (((;\nDO $$ BEGIN END $$;\n" + ROLLBACK)
    assert [(f.rule, f.severity, f.line) for f in findings] == [
        ("not-linted", "info", 1),
        ("not-linted", "info", 2),
    ]
    assert blocking(findings) == ()


def test_findings_carry_file_line_severity_and_explanation(tmp_path: Path) -> None:
    body = "CREATE TABLE a (id INT);\n\nDELETE\n  FROM a;\n" + ROLLBACK
    [finding] = _findings(tmp_path, body)
    assert finding.to_dict() == {
        "rule": "delete-without-where",
        "severity": "destructive",
        "file": "V1__x.sql",
        "line": 3,
        "message": RULES["delete-without-where"][1],
        "accepted": False,
    }


def test_allow_comment_accepts_only_its_rule_on_its_statement(tmp_path: Path) -> None:
    body = (
        "-- jetbase-lint: allow drop-table\n"
        "DROP TABLE a;\n"
        "DROP TABLE b;\n"
        "-- jetbase-lint: allow truncate, delete-without-where\n"
        "DELETE FROM c;\n" + ROLLBACK
    )
    findings = _findings(tmp_path, body)
    assert [(f.rule, f.line, f.accepted) for f in findings] == [
        ("drop-table", 2, True),
        ("drop-table", 3, False),
        ("delete-without-where", 5, True),
    ]
    assert [f.line for f in blocking(findings)] == [3]


def test_allow_comment_inside_a_multiline_statement(tmp_path: Path) -> None:
    body = "DELETE\n-- jetbase-lint: allow delete-without-where\nFROM c;\n" + ROLLBACK
    assert [f.accepted for f in _findings(tmp_path, body)] == [True]


def test_file_level_findings_are_accepted_anywhere_in_the_section(tmp_path: Path) -> None:
    body = "-- jetbase-lint: allow no-rollback-section\nCREATE TABLE t (id INT);\n"
    assert [(f.rule, f.accepted) for f in _findings(tmp_path, body)] == [("no-rollback-section", True)]


def test_allow_comment_does_not_change_jetbase_checksum(tmp_path: Path) -> None:
    """The installed jetbase package's own parser and checksum, on the file with and without it."""
    from jetbase.engine.checksum import calculate_checksum
    from jetbase.engine.file_parser import parse_upgrade_statements

    plain = "DROP TABLE a;\nDELETE\nFROM c;\n-- rollback\nCREATE TABLE a (id INT);\n"
    allowed = (
        "-- jetbase-lint: allow drop-table\nDROP TABLE a;\nDELETE\n"
        "-- jetbase-lint: allow delete-without-where\nFROM c;\n-- rollback\nCREATE TABLE a (id INT);\n"
    )
    checksums = []
    for name, body in (("V1__plain.sql", plain), ("V1__allowed.sql", allowed)):
        path = tmp_path / name
        path.write_text(body)
        jetbase_checksum = calculate_checksum(sql_statements=parse_upgrade_statements(file_path=str(path)))
        assert load_file(path, name).checksum == jetbase_checksum
        checksums.append(jetbase_checksum)
    assert checksums[0] == checksums[1]
    assert [f.accepted for f in _findings(tmp_path, allowed)] == [True, True]


def test_no_steps_never_imports_the_parser() -> None:
    assert lint_plan([], "postgresql", "upgrade") == ()


# CREATE TABLE statements whose new table's name the lint reads without sqlglot, with the dialect.
PLAIN_CREATES = [
    ("postgresql", "CREATE TABLE users (id INT)"),
    ("postgresql", "create table if not exists App.Users(id INT)"),
    ("postgresql", "CREATE TEMP TABLE scratch (id INT)"),
    ("mysql", "/* note */ CREATE TABLE db1.orders (id INT) ENGINE=InnoDB"),
    ("sqlite", "CREATE TEMPORARY TABLE IF NOT EXISTS t_2 (\n  id INTEGER PRIMARY KEY\n)"),
    ("snowflake", "CREATE TABLE db.sch.events (id NUMBER)"),
]


@pytest.mark.parametrize(("dialect", "statement"), PLAIN_CREATES)
def test_plain_create_table_is_read_without_the_parser_as_sqlglot_reads_it(
    dialect: str, statement: str
) -> None:
    import sqlglot

    from airflow_provider_jetbase.migration.dialects import known_dialect
    from airflow_provider_jetbase.migration.lint import _CREATE_TABLE_RE, _table_name

    facts = known_dialect(dialect)
    parsed = sqlglot.parse_one(statement, read=facts.sqlglot if facts else None)
    match = _CREATE_TABLE_RE.match(statement)
    assert match is not None
    assert match.group(1).lower() == _table_name(parsed.this)


def test_plain_create_table_skips_the_parser_and_still_counts_as_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlglot

    parsed: list[str] = []
    real_parse = sqlglot.parse

    def spy(sql: str, *args: object, **kwargs: object) -> object:
        parsed.append(sql)
        return real_parse(sql, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sqlglot, "parse", spy)
    body = (
        'CREATE TABLE users (id INT);\nCREATE TABLE "Quoted" (id INT);\n'
        "ALTER TABLE users ADD COLUMN n INT NOT NULL;\nALTER TABLE old ADD COLUMN n INT NOT NULL;\n"
        + ROLLBACK
    )
    assert _lint(tmp_path, body) == ["add-not-null-column"]
    assert [(f.rule, f.line) for f in _findings(tmp_path, body)] == [("add-not-null-column", 4)]
    # The quoted name and the ALTERs go to sqlglot; the plain CREATE TABLE does not.
    assert not any(sql.startswith("CREATE TABLE users") for sql in parsed)
    assert any(sql.startswith('CREATE TABLE "Quoted"') for sql in parsed)
