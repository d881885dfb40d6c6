"""A plan as Markdown for a human reviewer: a table of the files, the lint findings, the SQL.

Kept under ``limit`` characters (an approval page or an XCom is not the place for megabytes of SQL):
whole parts are added while they fit, and a note says what was cut and where the full plan is.
"""

from __future__ import annotations

from collections.abc import Sequence

from airflow_provider_jetbase.migration.lint import findings_table, summary
from airflow_provider_jetbase.migration.review import ReviewPlan

DEFAULT_LIMIT = 30_000


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines.extend("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows)
    return lines


def _fence(sql: str) -> str:
    """A fence longer than any run of backticks in the SQL, so the block cannot end early."""
    longest, run = 0, 0
    for char in sql:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    return "`" * max(3, longest + 1)


def _version(version: str | None) -> str:
    # None is a database without applied versioned migrations, not a version called "None".
    return version if version is not None else "none (no migration applied)"


def render(plan: ReviewPlan, limit: int = DEFAULT_LIMIT) -> str:
    steps = plan.steps
    verb = "roll back" if plan.command == "rollback" else "apply"
    head = [
        f"### Jetbase {plan.command} plan: {_cell(plan.database.describe())}",
        "",
        f"Version **{_version(plan.version_before)}** → **{_version(plan.version_after)}**, "
        f"{len(steps)} file(s) to {verb}. "
        f"Plan hash `{plan.plan_hash}`.",
        "",
    ]
    if not steps:
        head.append("Nothing to run: the database is up to date." if plan.command == "upgrade" else "")
    parts: list[str] = ["\n".join(head)]
    if steps:
        rows = [
            (
                str(n),
                s.version or "-",
                f"`{s.relpath}`",
                s.migration_type,
                str(len(s.statements)),
                s.checksum[:12],
            )
            for n, s in enumerate(steps, 1)
        ]
        parts.append(
            "\n".join(_table(("#", "version", "file", "type", "statements", "checksum"), rows)) + "\n"
        )
    if plan.lint:
        header, lint_rows = findings_table(plan.lint)
        title = f"#### Lint findings: {summary(plan.lint)}"
        parts.append("\n".join([title, "", *_table(header, lint_rows)]) + "\n")
    elif steps:
        parts.append("No lint findings.\n")
    if plan.warnings:
        parts.append("\n".join(["#### Warnings", "", *(f"- {_cell(w)}" for w in plan.warnings)]) + "\n")
    for n, s in enumerate(steps, 1):
        sql = "\n".join(f"{statement};" for statement in s.statements) or "-- (no statements)"
        fence = _fence(sql)
        parts.append(f"#### {n}. `{s.relpath}` ({s.section})\n\n{fence}sql\n{sql}\n{fence}\n")
    return _fit(parts, limit, plan.plan_hash)


def _fit(parts: list[str], limit: int, plan_hash: str) -> str:
    out: list[str] = []
    size = 0
    for index, part in enumerate(parts):
        remaining = len(parts) - index
        note = (
            f"\n_Cut here at {limit} characters: {remaining} more part(s) of the plan (SQL of later files "
            f"first) are not shown. The full plan, with every statement, is the task's XCom `plan` "
            f"(plan hash `{plan_hash[:16]}...`)._\n"
        )
        if size + len(part) + 1 + (len(note) if remaining > 1 else 0) > limit:
            # The head always fits in a sane limit; past that, stop at a whole part.
            if not out:
                out.append(part[: max(0, limit - len(note) - 1)])  # -1: the newline joining them
            out.append(note)
            return "\n".join(out)
        out.append(part)
        size += len(part) + 1
    return "\n".join(out)
