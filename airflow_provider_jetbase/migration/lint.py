"""Lint of the statements a plan would run: destructive and risky SQL, found with sqlglot.

Pure: statements in, findings out, no connection. sqlglot is imported on the first statement to
lint (an up-to-date upgrade never imports it), and a statement it cannot read is reported as
``not-linted``, never as a failure: the database, not the linter, decides what is valid SQL.

A finding is accepted on purpose with a whole-line comment on (or just above) the statement:
``-- jetbase-lint: allow <rule>[, <rule>...]``. Jetbase drops whole-line comments before it
computes the checksum, so the comment never changes it. Findings about a whole file
(``no-rollback-section``, ``mixed-ddl-dml``) are accepted by such a comment anywhere in the section.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_provider_jetbase.migration.dialects import known_dialect
from airflow_provider_jetbase.migration.errors import InvalidArgumentError
from airflow_provider_jetbase.migration.files import VERSIONED, transaction_control
from airflow_provider_jetbase.migration.planner import PlannedFile
from airflow_provider_jetbase.migration.results import _ToDict

DESTRUCTIVE = "destructive"
RISKY = "risky"
INFO = "info"

LINT_MODES = ("warn", "fail", "off")

# rule id -> (severity, one-line explanation). One home for every rule's wording.
RULES: dict[str, tuple[str, str]] = {
    "drop-table": (DESTRUCTIVE, "DROP TABLE deletes the table and all its rows"),
    "drop-schema": (DESTRUCTIVE, "DROP SCHEMA deletes the schema and everything in it"),
    "drop-database": (DESTRUCTIVE, "DROP DATABASE deletes the whole database"),
    "drop-column": (DESTRUCTIVE, "DROP COLUMN deletes the column and its data"),
    "truncate": (DESTRUCTIVE, "TRUNCATE deletes every row of the table"),
    "delete-without-where": (DESTRUCTIVE, "DELETE without WHERE deletes every row of the table"),
    "update-without-where": (DESTRUCTIVE, "UPDATE without WHERE changes every row of the table"),
    "alter-column-type": (
        RISKY,
        "changing a column's type can rewrite the table under an exclusive lock and fail on existing data",
    ),
    "add-not-null-column": (
        RISKY,
        "adding a NOT NULL column without a DEFAULT fails on a table that has rows",
    ),
    "create-index-not-concurrently": (
        RISKY,
        "CREATE INDEX without CONCURRENTLY blocks writes to the table while the index builds",
    ),
    "transaction-control": (
        RISKY,
        "transaction control inside a file ends the transaction the file runs in: it is no longer atomic",
    ),
    "mixed-ddl-dml": (
        RISKY,
        "the file mixes DDL and DML: MySQL commits DDL implicitly, so a failure part-way leaves the "
        "file half applied",
    ),
    "no-rollback-section": (RISKY, "the file has no '-- rollback' section: it cannot be rolled back"),
    "not-linted": (INFO, "the SQL parser could not read this statement: not linted"),
}

@dataclass(frozen=True)
class LintFinding(_ToDict):
    """``line`` is the 1-based line where the statement starts (None: the file as a whole);
    ``accepted``: a ``-- jetbase-lint: allow <rule>`` comment accepts it."""

    rule: str
    severity: str
    file: str
    line: int | None
    message: str
    accepted: bool = False


def check_mode(lint: Any) -> str:
    mode = str(lint).strip().lower() if lint is not None else "warn"
    if mode not in LINT_MODES:
        raise InvalidArgumentError(f"'lint' must be one of {', '.join(LINT_MODES)}, got {lint!r}")
    return mode


def blocking(findings: Sequence[LintFinding]) -> tuple[LintFinding, ...]:
    """What ``lint="fail"`` refuses: destructive and risky findings not accepted on purpose."""
    return tuple(f for f in findings if f.severity != INFO and not f.accepted)


class _DropSqlglotFallbackWarnings(logging.Filter):
    """sqlglot logs a WARNING for every statement it reads as an opaque Command; we report those
    as ``not-linted`` findings instead of letting them scroll by in the task log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Falling back to parsing as a 'Command'" not in record.getMessage()


@contextlib.contextmanager
def _quiet_sqlglot() -> Iterator[None]:
    logger = logging.getLogger("sqlglot")
    quiet = _DropSqlglotFallbackWarnings()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def _table_name(node: Any) -> str | None:
    """A table's name as written, lower-cased, without quotes (``s.t`` -> ``s.t``)."""
    from sqlglot import exp

    if isinstance(node, exp.Schema):
        node = node.this
    if isinstance(node, exp.Table):
        parts = [p.name for p in node.parts]
        return ".".join(parts).lower() if parts else None
    return None


def _statement_rules(expression: Any, dialect: str, created: set[str]) -> list[str]:
    """The rules one parsed statement breaks. ``created``: tables created earlier in the plan, which
    are new (empty), so adding a NOT NULL column or an index to them is harmless."""
    from sqlglot import exp

    rules: list[str] = []
    if isinstance(expression, exp.Drop):
        kind = str(expression.args.get("kind") or "").upper()
        rule = {"TABLE": "drop-table", "SCHEMA": "drop-schema", "DATABASE": "drop-database"}.get(kind)
        if rule is not None:
            rules.append(rule)
    elif isinstance(expression, exp.TruncateTable):
        rules.append("truncate")
    elif isinstance(expression, exp.Delete) and expression.args.get("where") is None:
        rules.append("delete-without-where")
    elif isinstance(expression, exp.Update) and expression.args.get("where") is None:
        rules.append("update-without-where")
    elif isinstance(expression, exp.Alter):
        table = _table_name(expression.this)
        for action in expression.args.get("actions") or ():
            if isinstance(action, exp.Drop) and str(action.args.get("kind") or "").upper() == "COLUMN":
                rules.append("drop-column")
            elif (isinstance(action, exp.AlterColumn) and action.args.get("dtype") is not None) or (
                isinstance(action, exp.ModifyColumn)
            ):
                rules.append("alter-column-type")
            elif isinstance(action, exp.ColumnDef) and table not in created:
                kinds = [type(c.kind) for c in action.args.get("constraints") or ()]
                if exp.NotNullColumnConstraint in kinds and exp.DefaultColumnConstraint not in kinds:
                    rules.append("add-not-null-column")
    elif isinstance(expression, exp.Create):
        kind = str(expression.args.get("kind") or "").upper()
        if kind == "TABLE":
            name = _table_name(expression.this)
            if name is not None:
                created.add(name)
        elif kind == "INDEX" and dialect == "postgresql" and not expression.args.get("concurrently"):
            index = expression.this
            table = _table_name(index.args.get("table")) if isinstance(index, exp.Index) else None
            if table not in created:
                rules.append("create-index-not-concurrently")
    return sorted(set(rules), key=rules.index)


def _kind(expression: Any) -> str | None:
    from sqlglot import exp

    if isinstance(expression, (exp.Create, exp.Drop, exp.Alter, exp.TruncateTable)):
        return "DDL"
    if isinstance(expression, (exp.Insert, exp.Update, exp.Delete, exp.Merge)):
        return "DML"
    return None


# Statements no rule can apply to, known by their first word: not parsed (parsing is ~1 ms a
# statement, and data migrations are mostly INSERTs). INSERT and friends only count as DML for
# ``mixed-ddl-dml``, which needs no parse either.
_NO_RULE_WORDS = frozenset(
    {"SELECT", "GRANT", "REVOKE", "COMMENT", "ANALYZE", "VACUUM", "CALL", "EXPLAIN", "SHOW", "USE", "PRAGMA"}
)
_INSERT_WORDS = frozenset({"INSERT", "REPLACE"})
_FIRST_WORD_RE = re.compile(r"^\s*(?:/\*.*?\*/\s*)*([A-Za-z]+)", re.DOTALL)
# ``CREATE TABLE <plain name> (``: no rule applies to a new table, and all the lint needs of it is its
# name (``created``), so the most common migration statement skips the parse too. Quoted or unusual
# names go to sqlglot, which knows each dialect's quoting.
_CREATE_TABLE_RE = re.compile(
    r"^\s*(?:/\*.*?\*/\s*)*CREATE\s+(?:(?:TEMP|TEMPORARY)\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?"
    r"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*){0,2})\s*\(",
    re.DOTALL | re.IGNORECASE,
)


def _first_word(statement: str) -> str:
    match = _FIRST_WORD_RE.match(statement)
    return match.group(1).upper() if match else ""


def _finding(
    rule: str, file: str, line: int | None, allowed: frozenset[str], detail: str = ""
) -> LintFinding:
    severity, explanation = RULES[rule]
    return LintFinding(rule, severity, file, line, explanation + detail, rule in allowed)


def lint_plan(steps: Sequence[PlannedFile], dialect: str, direction: str) -> tuple[LintFinding, ...]:
    """Findings for the sections the plan would run, in plan order. ``dialect``: our dialect name
    (``postgresql``, ``mysql``, ``sqlite``...); ``direction``: ``"upgrade"`` or ``"rollback"``."""
    if not steps:
        return ()
    import sqlglot
    from sqlglot.errors import SqlglotError

    facts = known_dialect(dialect)
    read = facts.sqlglot if facts else None
    implicit_ddl_commit = bool(facts and facts.ddl_commits_implicitly)
    findings: list[LintFinding] = []
    created: set[str] = set()
    with _quiet_sqlglot():
        for step in steps:
            f, section = step.file, step.section
            allows = section.lint_allows or tuple(frozenset() for _ in section.statements)
            anywhere = frozenset().union(*allows) if allows else frozenset()
            if direction == "upgrade" and f.migration_type == VERSIONED and not f.has_rollback_marker:
                findings.append(_finding("no-rollback-section", f.relpath, None, anywhere))
            first_line: dict[str, int] = {}
            for statement, line, allowed in zip(section.statements, section.start_lines, allows, strict=True):
                keyword = transaction_control(statement)
                if keyword is not None:
                    findings.append(
                        _finding("transaction-control", f.relpath, line, allowed, f" ({keyword})")
                    )
                    continue
                word = _first_word(statement)
                if word in _INSERT_WORDS:
                    first_line.setdefault("DML", line)
                    continue
                if word in _NO_RULE_WORDS:
                    continue
                new_table = _CREATE_TABLE_RE.match(statement) if word == "CREATE" else None
                if new_table is not None:
                    first_line.setdefault("DDL", line)
                    created.add(new_table.group(1).lower())
                    continue
                try:
                    parsed = [e for e in sqlglot.parse(statement, read=read) if e is not None]
                except SqlglotError:
                    parsed = []
                except Exception:  # noqa: BLE001 - a parser bug must not fail a migration either
                    parsed = []
                if not parsed or any(isinstance(e, sqlglot.exp.Command) for e in parsed):
                    findings.append(_finding("not-linted", f.relpath, line, allowed))
                for expression in parsed:
                    kind = _kind(expression)
                    if kind is not None:
                        first_line.setdefault(kind, line)
                    findings.extend(
                        _finding(rule, f.relpath, line, allowed)
                        for rule in _statement_rules(expression, dialect, created)
                    )
            if implicit_ddl_commit and len(first_line) == 2:
                detail = f" (DDL from line {first_line['DDL']}, DML from line {first_line['DML']})"
                findings.append(
                    _finding("mixed-ddl-dml", f.relpath, max(first_line.values()), anywhere, detail)
                )
    return tuple(findings)


def summary(findings: Sequence[LintFinding]) -> str:
    """``"2 destructive (1 accepted), 4 risky, 1 not linted"``, or ``"no findings"``."""
    parts = []
    for severity, label in ((DESTRUCTIVE, "destructive"), (RISKY, "risky"), (INFO, "not linted")):
        found = [f for f in findings if f.severity == severity]
        accepted = sum(f.accepted for f in found)
        if found:
            parts.append(f"{len(found)} {label}" + (f" ({accepted} accepted)" if accepted else ""))
    return ", ".join(parts) or "no findings"


def findings_table(findings: Sequence[LintFinding]) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """Header and rows of the findings, for a text or Markdown table."""
    rows: list[tuple[str, ...]]
    header = ("severity", "rule", "file", "line", "explanation")
    rows = [
        (
            f.severity + (" (accepted)" if f.accepted else ""),
            f.rule,
            f.file,
            str(f.line) if f.line is not None else "-",
            f.message,
        )
        for f in findings
    ]
    return header, rows
