"""A plan as a value to review and approve: what would run, on which database, and its hash.

Pure: built from what the planner decided and the inputs it decided from (no connection, no clock).
``plan_hash`` is a SHA-256 over everything that decides what would run: the database identity, the
version before, the ``jetbase_migrations`` rows the decision read, every file's name and checksum,
the exact statements of every step (a rollback section is not in Jetbase's checksum) and the
options. Lint findings, timings and the Markdown are not in it: they describe the plan, they do not
decide it. An apply given the approved hash recomputes the plan under the lock and refuses to run
anything when the hash differs; :func:`explain_mismatch` says what changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_jetbase.migration.errors import InvalidArgumentError
from airflow_provider_jetbase.migration.files import MigrationSet
from airflow_provider_jetbase.migration.lint import LintFinding, check_mode
from airflow_provider_jetbase.migration.planner import PlannedFile
from airflow_provider_jetbase.migration.results import AppliedMigration, _ToDict

_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class ReviewRequest:
    """How an upgrade or rollback is reviewed. ``plan_hash``: the approved plan's hash, checked under
    the lock before anything runs; ``approved_plan``: that plan itself (its ``to_dict()``), when
    known, so a mismatch says exactly what changed; ``lint``: ``"warn"``, ``"fail"`` or ``"off"``."""

    connection_id: str | None = None
    lint: str = "off"
    plan_hash: str | None = None
    approved_plan: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "lint", check_mode(self.lint))
        if self.plan_hash is not None:
            cleaned = self.plan_hash.strip().lower()
            if len(cleaned) != 64 or not set(cleaned) <= _HEX:
                raise InvalidArgumentError(
                    "'plan_hash' must be the 64 hexadecimal digits of a plan's SHA-256, got "
                    f"{self.plan_hash!r}"
                )
            object.__setattr__(self, "plan_hash", cleaned)


@dataclass(frozen=True)
class DatabaseIdentity(_ToDict):
    """Which database a plan is for, without credentials."""

    dialect: str
    host: str | None
    port: int | None
    database: str | None
    connection_id: str | None

    def describe(self) -> str:
        where = self.host or ""
        if self.port is not None:
            where += f":{self.port}"
        where += f"/{self.database}" if self.database else ""
        label = f"{self.dialect}://{where}" if where else self.dialect
        return f"{self.connection_id} ({label})" if self.connection_id else label


def database_identity(url: Any, dialect: str, connection_id: str | None) -> DatabaseIdentity:
    """From a SQLAlchemy URL: host, port and database only (never the user or password)."""
    return DatabaseIdentity(dialect, url.host or None, url.port, url.database or None, connection_id)


@dataclass(frozen=True)
class PlanStep(_ToDict):
    """One file of the plan: the section it runs (``upgrade`` or ``rollback``) and its statements,
    exactly as they would be sent, with the line each starts on."""

    filename: str
    relpath: str
    version: str | None
    migration_type: str
    checksum: str
    section: str
    statements: tuple[str, ...]
    start_lines: tuple[int, ...]


@dataclass(frozen=True)
class ReviewPlan(_ToDict):
    """``files``: (filename, checksum) of every file of the folder; ``applied``: the rows the decision
    read, as (version, filename, migration_type, checksum)."""

    command: str
    database: DatabaseIdentity
    version_before: str | None
    version_after: str | None
    options: Mapping[str, Any]
    steps: tuple[PlanStep, ...]
    files: tuple[tuple[str, str], ...]
    applied: tuple[tuple[str | None, str, str, str | None], ...]
    lint: tuple[LintFinding, ...] = ()
    warnings: tuple[str, ...] = ()
    plan_hash: str = field(default="")


def _decision(plan: ReviewPlan) -> dict[str, Any]:
    return {
        "command": plan.command,
        "database": plan.database.to_dict(),
        "version_before": plan.version_before,
        "applied": [list(row) for row in plan.applied],
        "files": [list(f) for f in plan.files],
        "steps": [[s.filename, s.section, list(s.statements)] for s in plan.steps],
        "options": dict(plan.options),
    }


def compute_hash(plan: ReviewPlan) -> str:
    canonical = json.dumps(_decision(plan), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def build_review(
    command: str,
    database: DatabaseIdentity,
    version_before: str | None,
    version_after: str | None,
    steps: Sequence[PlannedFile],
    files: MigrationSet,
    applied: Sequence[AppliedMigration],
    options: Any,
    lint: Sequence[LintFinding] = (),
    warnings: Sequence[str] = (),
) -> ReviewPlan:
    """``options``: the planner's checked options (a dataclass)."""
    section = "rollback" if command == "rollback" else "upgrade"
    every_file = sorted(
        (f.filename, f.checksum) for f in (*files.versioned, *files.runs_always, *files.runs_on_change)
    )
    rows = sorted(
        ((r.version, r.filename, r.migration_type, r.checksum) for r in applied),
        key=lambda r: (r[2], r[1], r[0] or ""),
    )
    plan = ReviewPlan(
        command=command,
        database=database,
        version_before=version_before,
        version_after=version_after,
        options=dataclasses.asdict(options),
        steps=tuple(
            PlanStep(
                s.file.filename,
                s.file.relpath,
                s.file.version,
                s.file.migration_type,
                s.file.checksum,
                section,
                s.section.statements,
                s.section.start_lines,
            )
            for s in steps
        ),
        files=tuple(every_file),
        applied=tuple(rows),
        lint=tuple(lint),
        warnings=tuple(warnings),
    )
    return dataclasses.replace(plan, plan_hash=compute_hash(plan))


# ------------------------------------------------------------------------------------- mismatch
def _names(items: Sequence[str]) -> str:
    shown = ", ".join(items[:10])
    return shown + (f" and {len(items) - 10} more" if len(items) > 10 else "")


def _differences(approved: Mapping[str, Any], current: ReviewPlan) -> list[str]:
    """What differs between the approved plan (its to_dict()) and the current one, in words."""
    found: list[str] = []
    now = current.to_dict()
    if approved.get("command") != now["command"]:
        found.append(f"a different command: approved {approved.get('command')}, now {now['command']}")
    if approved.get("database") != now["database"]:
        was = approved.get("database") or {}
        found.append(
            "a different database: approved for "
            + DatabaseIdentity(
                str(was.get("dialect")),
                was.get("host"),
                was.get("port"),
                was.get("database"),
                was.get("connection_id"),
            ).describe()
            + f", now {current.database.describe()}"
        )
    if approved.get("version_before") != now["version_before"]:
        found.append(
            f"the database moved to another version: approved at version {approved.get('version_before')}, "
            f"now at {now['version_before']}"
        )
    if approved.get("options") != now["options"]:
        was_options = approved.get("options") or {}
        changed = sorted(
            k for k in set(was_options) | set(now["options"]) if was_options.get(k) != now["options"].get(k)
        )
        found.append(
            "a different target or options: "
            + ", ".join(f"{k} {was_options.get(k)!r} -> {now['options'].get(k)!r}" for k in changed)
        )
    was_files = {str(name): str(checksum) for name, checksum in approved.get("files") or ()}
    now_files = dict(current.files)
    added = sorted(set(now_files) - set(was_files))
    removed = sorted(set(was_files) - set(now_files))
    changed_files = sorted(n for n in set(now_files) & set(was_files) if now_files[n] != was_files[n])
    if added:
        found.append(f"file(s) added: {_names(added)}")
    if removed:
        found.append(f"file(s) removed: {_names(removed)}")
    if changed_files:
        found.append(f"file(s) changed: {_names(changed_files)}")
    was_steps = {s.get("filename"): s.get("statements") for s in approved.get("steps") or ()}
    for step in current.steps:
        before = was_steps.get(step.filename)
        if (
            before is not None
            and list(before) != list(step.statements)
            and step.filename not in changed_files
        ):
            found.append(f"the {step.section} section of {step.filename} changed")
    if [list(r) for r in approved.get("applied") or ()] != [list(r) for r in current.applied] and (
        approved.get("version_before") == now["version_before"]
    ):
        found.append("jetbase_migrations changed (rows were added, removed or updated since the plan)")
    was_order = [s.get("filename") for s in approved.get("steps") or ()]
    now_order = [s.filename for s in current.steps]
    if was_order != now_order:
        found.append(
            f"it would now run {len(now_order)} file(s) ({_names(now_order) or 'none'}) instead of "
            f"{len(was_order)} ({_names([str(n) for n in was_order]) or 'none'})"
        )
    return found


def explain_mismatch(expected: str, approved: Mapping[str, Any] | None, current: ReviewPlan) -> str:
    """The error message when the recomputed plan's hash is not the approved one."""
    head = (
        f"The {current.command} plan changed since it was approved, nothing was run: approved plan_hash "
        f"{expected[:16]}..., the plan now is {current.plan_hash[:16]}... on {current.database.describe()}."
    )
    if approved is not None and approved.get("plan_hash") == expected:
        differences = _differences(approved, current) or ["an input of the plan (see the two plans)"]
        return head + "\nWhat changed:\n" + "\n".join(f"  - {d}" for d in differences)
    steps = [s.filename for s in current.steps]
    return (
        head
        + f"\nNow: version before {current.version_before}, options {dict(current.options)}, "
        + f"{len(steps)} file(s) to run ({_names(steps) or 'none'}), {len(current.files)} file(s) in the "
        + f"folder, {len(current.applied)} row(s) in jetbase_migrations."
        + "\nPass the approved plan itself (the dry run's XCom 'plan') to see exactly what changed."
    )
