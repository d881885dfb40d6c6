"""Planning: pure functions from (migration files, ``jetbase_migrations`` rows, options) to a plan.

No connection, no logging, no clock: every rule about what an upgrade or a rollback runs (version
order, ``count``, ``to_version``, out-of-order files, validation, strict mode) is decided here, so it
can be tested without a database. ``Migrator`` reads the rows under the lock, calls these functions,
logs the plan's notes and hazards, and runs the plan (or, in a dry run, returns it as the result).

A plan is complete: the version before and after, the files in the order they run with the exact
statements each sends, and every warning, so it can be shown or compared before it runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from airflow_provider_jetbase.migration.errors import (
    InvalidArgumentError,
    MigrationFileError,
    ParsingHazardError,
    ValidationFailedError,
    VersionNotFoundError,
)
from airflow_provider_jetbase.migration.files import (
    RUNS_ALWAYS,
    RUNS_ON_CHANGE,
    VERSIONED,
    MigrationFile,
    MigrationSet,
    Section,
)
from airflow_provider_jetbase.migration.results import (
    AppliedMigration,
    PendingMigration,
    ValidationFinding,
    ValidationReport,
)
from airflow_provider_jetbase.migration.versions import (
    latest_version,
    normalise_version,
    version_key,
    version_order,
)


# ---------------------------------------------------------------------------------------- options
@dataclass(frozen=True)
class UpgradeOptions:
    """Checked options of an upgrade: build them with :func:`upgrade_options`."""

    count: int | None = None
    to_version: str | None = None  # normalised ("1_2" -> "1.2")
    skip_validation: bool = False
    skip_checksum_validation: bool = False
    skip_file_validation: bool = False
    strict: bool = False


@dataclass(frozen=True)
class RollbackOptions:
    """Checked options of a rollback: build them with :func:`rollback_options`."""

    count: int | None = 1
    to_version: str | None = None  # normalised
    strict: bool = False


def check_count(count: Any) -> int | None:
    if count is None:
        return None
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise InvalidArgumentError(f"'count' must be a positive integer, got {count!r}")
    return count


def check_exclusive(count: Any, to_version: Any, command: str) -> None:
    if count is not None and to_version is not None:
        raise InvalidArgumentError(
            f"Cannot specify both 'count' ({count!r}) and 'to_version' ({to_version!r}) for {command}: "
            "choose one, or neither"
        )


def upgrade_options(
    count: Any = None,
    to_version: Any = None,
    *,
    skip_validation: bool = False,
    skip_checksum_validation: bool = False,
    skip_file_validation: bool = False,
    strict: bool = False,
) -> UpgradeOptions:
    check_exclusive(count, to_version, "upgrade")
    return UpgradeOptions(
        count=check_count(count),
        to_version=normalise_version(to_version, "to_version") if to_version is not None else None,
        skip_validation=skip_validation,
        skip_checksum_validation=skip_checksum_validation,
        skip_file_validation=skip_file_validation,
        strict=strict,
    )


def rollback_options(count: Any = None, to_version: Any = None, *, strict: bool = False) -> RollbackOptions:
    """Neither ``count`` nor ``to_version``: roll back one version."""
    check_exclusive(count, to_version, "rollback")
    checked = check_count(count)
    target = normalise_version(to_version, "to_version") if to_version is not None else None
    if checked is None and target is None:
        checked = 1
    return RollbackOptions(count=checked, to_version=target, strict=strict)


# ------------------------------------------------------------------------------------------ plans
@dataclass(frozen=True)
class PlannedFile:
    """One file of a plan and the section it runs. ``row_exists``: a repeatable file already has its
    ``jetbase_migrations`` row, so the run updates that row instead of inserting one."""

    file: MigrationFile
    section: Section
    row_exists: bool = False

    @property
    def statements(self) -> tuple[str, ...]:
        return self.section.statements


@dataclass(frozen=True)
class UpgradePlan:
    """``steps``: pending versioned files in version order, then runs-always, then changed
    runs-on-change files (Jetbase's order). ``warnings``: out-of-order notes, then ``hazards``
    (parsing hazards, logged as warnings). ``findings``: everything validation found, including what
    the skip options let through. ``notes``: informational lines for the log."""

    version_before: str | None
    version_after: str | None
    steps: tuple[PlannedFile, ...]
    findings: tuple[ValidationFinding, ...]
    warnings: tuple[str, ...]
    hazards: tuple[str, ...]
    notes: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.steps


@dataclass(frozen=True)
class RollbackPlan:
    """``steps``: the versions to roll back, newest first by version order, each with its rollback
    section. ``warnings`` are the parsing hazards of those sections."""

    version_before: str | None
    version_after: str | None
    steps: tuple[PlannedFile, ...]
    warnings: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not self.steps


# ------------------------------------------------------------------------------------- validation
def _applied_versions(applied: Sequence[AppliedMigration]) -> dict[str, AppliedMigration]:
    return {r.version: r for r in applied if r.migration_type == VERSIONED and r.version}


def find_problems(files: MigrationSet, applied: Sequence[AppliedMigration]) -> tuple[ValidationFinding, ...]:
    """Jetbase's pre-upgrade validation, as findings: out-of-order files, applied versions and
    repeatables whose file is missing, and changed checksums."""
    findings: list[ValidationFinding] = []
    rows = _applied_versions(applied)
    by_version = files.by_version()
    latest = latest_version(rows)
    if latest is not None:
        # "Lower than" as Jetbase compares (packaging), not the tie-broken order: V1 is not below V1.0.
        latest_key = version_key(latest)
        for f in files.versioned:
            assert f.version is not None
            if f.version not in rows and version_key(f.version) < latest_key:
                findings.append(
                    ValidationFinding(
                        "out_of_order",
                        f"{f.relpath} has version {f.version}, lower than the latest applied version "
                        f"{latest}, and has not been applied: rename it to a version above {latest}",
                        f.version,
                        f.filename,
                    )
                )
    for version, row in rows.items():
        if version not in by_version:
            findings.append(
                ValidationFinding(
                    "missing_file",
                    f"Version {version} ({row.filename}) has been applied but its file is missing from "
                    f"the migrations folder {files.directory}",
                    version,
                    row.filename,
                )
            )
    repeatable = files.repeatable_filenames()
    for row in applied:
        if row.migration_type in (RUNS_ALWAYS, RUNS_ON_CHANGE) and row.filename not in repeatable:
            findings.append(
                ValidationFinding(
                    "missing_repeatable_file",
                    f"Repeatable migration {row.filename} ({row.migration_type}) has been applied but "
                    f"its file is missing from the migrations folder {files.directory}",
                    None,
                    row.filename,
                )
            )
    for version, row in rows.items():
        changed = by_version.get(version)
        if changed is not None and row.checksum != changed.checksum:
            findings.append(
                ValidationFinding(
                    "checksum_mismatch",
                    f"{changed.relpath} (version {version}) has changed since it was applied: its "
                    f"checksum is {changed.checksum[:12]}... but jetbase_migrations has "
                    f"{str(row.checksum)[:12]}... "
                    "Restore the file, or record the change with `jetbase fix-checksums`",
                    version,
                    changed.filename,
                )
            )
    return tuple(findings)


def _check_hazards(hazards: Sequence[str], command: str, strict: bool) -> None:
    if hazards and strict:
        raise ParsingHazardError(
            f"strict mode: {len(hazards)} parsing hazard(s) found, nothing was run ({command}):\n"
            + "\n".join(f"  - {h}" for h in hazards),
            hazards=tuple(hazards),
        )


# ---------------------------------------------------------------------------------------- pending
def _pending_files(
    files: MigrationSet, applied: Sequence[AppliedMigration]
) -> tuple[list[MigrationFile], list[PlannedFile], list[PlannedFile]]:
    """Versioned files without a row; every runs-always file; runs-on-change files whose checksum
    differs from their row's (or that have none)."""
    applied_versions = _applied_versions(applied)
    ra_rows = {r.filename for r in applied if r.migration_type == RUNS_ALWAYS}
    roc_rows = {r.filename: r.checksum for r in applied if r.migration_type == RUNS_ON_CHANGE}
    versioned = [f for f in files.versioned if f.version not in applied_versions]
    runs_always = [PlannedFile(f, f.upgrade, f.filename in ra_rows) for f in files.runs_always]
    runs_on_change = [
        PlannedFile(f, f.upgrade, f.filename in roc_rows)
        for f in files.runs_on_change
        if roc_rows.get(f.filename) != f.checksum
    ]
    return versioned, runs_always, runs_on_change


def pending(files: MigrationSet, applied: Sequence[AppliedMigration]) -> tuple[PendingMigration, ...]:
    """What a plain upgrade would run, as the status report lists it."""
    versioned, runs_always, runs_on_change = _pending_files(files, applied)
    return (
        *(PendingMigration(f.version, f.filename, VERSIONED) for f in versioned),
        *(PendingMigration(None, p.file.filename, RUNS_ALWAYS) for p in runs_always),
        *(PendingMigration(None, p.file.filename, RUNS_ON_CHANGE) for p in runs_on_change),
    )


# ---------------------------------------------------------------------------------------- upgrade
def plan_upgrade(
    files: MigrationSet, applied: Sequence[AppliedMigration], options: UpgradeOptions
) -> UpgradePlan:
    """Raises ValidationFailedError (validation not skipped), VersionNotFoundError (``to_version``
    has no file) or ParsingHazardError (strict mode)."""
    applied_versions = _applied_versions(applied)
    latest = latest_version(applied_versions)
    # With no versioned row there is nothing to be out of order with, missing or changed; a
    # repeatable row without its file alone does not block an upgrade (as Jetbase).
    findings = find_problems(files, applied) if latest is not None else ()
    if not options.skip_validation:
        blocking = [
            f
            for f in findings
            if (f.kind == "checksum_mismatch" and not options.skip_checksum_validation)
            or (f.kind != "checksum_mismatch" and not options.skip_file_validation)
        ]
        if blocking:
            raise ValidationFailedError(
                "Validation failed, nothing was run:\n"
                + "\n".join(f"  - {f.message}" for f in blocking)
                + "\n(skip_checksum_validation, skip_file_validation or skip_validation bypass these "
                "checks)",
                report=ValidationReport(findings),
            )
    notes: list[str] = []
    versioned, runs_always, runs_on_change = _pending_files(files, applied)
    target = options.to_version
    if target is not None:
        found = files.by_version().get(target)
        if found is None:
            raise VersionNotFoundError(f"to_version {target} has no migration file in {files.directory}")
        if target in applied_versions:
            notes.append(f"Version {target} is already applied: no versioned migration to run.")
            versioned = []
        else:
            limit = version_order(target)
            versioned = [f for f in versioned if version_order(str(f.version)) <= limit]
    elif options.count is not None:
        versioned = versioned[: options.count]
    warnings: list[str] = []
    if latest is not None:
        latest_key = version_key(latest)
        for f in versioned:
            assert f.version is not None
            if version_key(f.version) < latest_key:
                warnings.append(
                    f"{f.relpath}: version {f.version} is below the latest applied version {latest}; "
                    "applying it out of order because file validation is skipped"
                )
    steps = (*(PlannedFile(f, f.upgrade) for f in versioned), *runs_always, *runs_on_change)
    hazards = tuple(h for step in steps for h in step.file.upgrade_warnings())
    _check_hazards(hazards, "upgrade", options.strict)
    return UpgradePlan(
        version_before=latest,
        version_after=latest_version([latest, *(f.version for f in versioned)]),
        steps=steps,
        findings=findings,
        warnings=(*warnings, *hazards),
        hazards=hazards,
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------------------- rollback
def plan_rollback(
    files: MigrationSet, applied: Sequence[AppliedMigration], options: RollbackOptions
) -> RollbackPlan:
    """Targets exactly the versions that have rows, newest first by version order. Raises
    VersionNotFoundError (``to_version`` not applied), MigrationFileError (a target's file is missing
    or has no ``-- rollback`` section) or ParsingHazardError (strict mode)."""
    rows = _applied_versions(applied)
    newest_first = sorted(rows, key=version_order, reverse=True)
    before = newest_first[0] if newest_first else None
    target = options.to_version
    if target is not None:
        if target not in rows:
            known = (
                "has a file but has not been applied"
                if target in files.by_version()
                else ("has no row in jetbase_migrations and no file")
            )
            raise VersionNotFoundError(f"Cannot roll back to version {target}: it {known}")
        limit = version_order(target)
        targets = [v for v in newest_first if version_order(v) > limit]
    else:
        assert options.count is not None
        targets = newest_first[: options.count]
    if not targets:
        return RollbackPlan(before, before, (), ())
    by_version = files.by_version()
    steps: list[PlannedFile] = []
    for v in targets:
        f = by_version.get(v)
        if f is None:
            row = next(r for r in applied if r.version == v and r.migration_type == VERSIONED)
            raise MigrationFileError(
                f"Cannot roll back version {v}: its file ({row.filename}) is missing from "
                f"{files.directory}. Nothing was rolled back.",
                filename=row.filename,
            )
        if not f.has_rollback_marker:
            raise MigrationFileError(
                f"Cannot roll back version {v}: {f.relpath} has no '-- rollback' section. "
                "Nothing was rolled back.",
                filename=f.filename,
            )
        steps.append(PlannedFile(f, f.rollback))
    hazards = tuple(h for step in steps for h in step.file.rollback_warnings())
    _check_hazards(hazards, "rollback", options.strict)
    remaining = [v for v in newest_first if v not in set(targets)]
    return RollbackPlan(before, remaining[0] if remaining else None, tuple(steps), hazards)
