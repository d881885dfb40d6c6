"""The drift report: findings with a severity, a JSON form for XCom and a table for the task log."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from airflow_provider_jetbase.errors import ParameterError

ERROR = "error"
WARNING = "warning"
INFO = "info"

# The outcome of a check: it ran and found nothing failing, it ran and found drift, or it could not
# do what was asked (the report's ``error`` says why) - never read as "no drift".
OK = "ok"
DRIFT = "drift"
NOT_RUN = "error"

SCHEMA = "schema"
MIGRATION = "migration"
CHECK = "check"

# Kinds that describe the live schema differing from what the migrations produce. The alias
# "schema" in ``fail_on`` stands for all of them.
SCHEMA_KINDS = frozenset(
    {
        "table_added",
        "table_dropped",
        "column_added",
        "column_dropped",
        "column_type_changed",
        "nullability_changed",
        "default_changed",
        "column_definition_changed",
        "primary_key_changed",
        "index_added",
        "index_dropped",
        "index_changed",
        "unique_constraint_added",
        "unique_constraint_dropped",
        "unique_constraint_changed",
        "foreign_key_added",
        "foreign_key_dropped",
        "foreign_key_changed",
        "check_constraint_added",
        "check_constraint_dropped",
        "check_constraint_changed",
        "view_added",
        "view_dropped",
        "view_changed",
        "sequence_added",
        "sequence_dropped",
        # The expected schema could not be built: the check cannot vouch for the schema.
        "replay_failed",
    }
)

MIGRATION_KINDS = frozenset(
    {
        "checksum_mismatch",
        "missing_file",
        "out_of_order",
        "missing_repeatable_file",
        "pending_migration",
        "stale_lock",
        "lock_held",
    }
)

# About the check itself. "replay_refused" / "replay_unavailable": replay could not run (a statement
# reached outside the scratch database, or the confined scratch target could not be set up) and the
# schema was compared with the stored snapshot instead.
CHECK_KINDS = frozenset({"snapshot_missing", "snapshot_outdated", "replay_refused", "replay_unavailable"})

ALL_KINDS = SCHEMA_KINDS | MIGRATION_KINDS | CHECK_KINDS


# Never drift, whatever fail_on says: the lock being held right now is just information.
_ALWAYS_INFO = frozenset({"lock_held"})


def resolve_fail_on(fail_on: str | tuple[str, ...] | list[str] | frozenset[str] | set[str]) -> frozenset[str]:
    """Expand the aliases ``"schema"``, ``"migration"`` and ``"all"`` and reject unknown kinds."""
    items = [fail_on] if isinstance(fail_on, str) else list(fail_on)
    kinds: set[str] = set()
    for item in items:
        name = str(item).strip()
        if name == "schema":
            kinds |= SCHEMA_KINDS
        elif name == "migration":
            kinds |= MIGRATION_KINDS - _ALWAYS_INFO
        elif name == "all":
            kinds |= ALL_KINDS - _ALWAYS_INFO
        elif name in ALL_KINDS:
            kinds.add(name)
        else:
            raise ParameterError(
                f"fail_on: unknown finding kind {name!r}; use 'schema', 'migration', 'all' or one of "
                f"{', '.join(sorted(ALL_KINDS))}"
            )
    return frozenset(kinds)


def category_of(kind: str) -> str:
    if kind in SCHEMA_KINDS:
        return SCHEMA
    if kind in MIGRATION_KINDS:
        return MIGRATION
    return CHECK


@dataclass(frozen=True)
class Finding:
    """One difference. ``object`` names what differs (``users.email``, ``orders.ix_user``,
    a filename); ``expected``/``actual`` hold the two sides for schema findings."""

    kind: str
    message: str
    object: str | None = None
    expected: Any = None
    actual: Any = None
    version: str | None = None
    filename: str | None = None
    severity: str = WARNING

    @property
    def category(self) -> str:
        return category_of(self.kind)

    def with_severity(self, severity: str) -> Finding:
        return replace(self, severity=severity)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "category": self.category,
            "severity": self.severity,
            "object": self.object,
            "message": self.message,
            "expected": self.expected,
            "actual": self.actual,
            "version": self.version,
            "filename": self.filename,
        }


@dataclass(frozen=True)
class DriftReport:
    """The outcome of one drift check. ``failed`` is True when a finding's kind is in fail_on;
    ``error`` is set when the check could not be carried out (``status`` is then ``"error"``)."""

    dialect: str
    method: str  # "replay" | "snapshot" | "none"
    method_detail: str
    findings: tuple[Finding, ...]
    current_version: str | None
    applied_count: int
    pending_count: int
    fail_on: tuple[str, ...]
    checked_at: str
    duration_ms: float
    tables_checked: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)
    error: str | None = None

    @property
    def status(self) -> str:
        if self.error is not None:
            return NOT_RUN
        return DRIFT if self.failed else OK

    @property
    def failed(self) -> bool:
        return any(f.severity == ERROR for f in self.findings)

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == ERROR)

    def counts(self) -> dict[str, int]:
        counter = Counter(f.severity for f in self.findings)
        return {sev: counter.get(sev, 0) for sev in (ERROR, WARNING, INFO)}

    def summary(self) -> str:
        counts = self.counts()
        if self.error is not None:
            return (
                f"Jetbase drift check: COULD NOT RUN - {self.error}; {counts[ERROR]} error(s), "
                f"{counts[WARNING]} warning(s) among the migration checks that did run; version "
                f"{self.current_version or '(none)'}, {self.applied_count} applied, "
                f"{self.pending_count} pending"
            )
        verdict = "DRIFT" if self.failed else ("OK with warnings" if counts[WARNING] else "OK")
        return (
            f"Jetbase drift check: {verdict} - {counts[ERROR]} error(s), {counts[WARNING]} warning(s), "
            f"{counts[INFO]} info; version {self.current_version or '(none)'}, "
            f"{self.applied_count} applied, {self.pending_count} pending; "
            f"schema compared by {self.method} ({self.method_detail}), {self.tables_checked} table(s)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.status == OK,
            "status": self.status,
            "error": self.error,
            "dialect": self.dialect,
            "method": self.method,
            "method_detail": self.method_detail,
            "current_version": self.current_version,
            "applied_count": self.applied_count,
            "pending_count": self.pending_count,
            "tables_checked": self.tables_checked,
            "fail_on": list(self.fail_on),
            "counts": self.counts(),
            "findings": [f.to_dict() for f in self.findings],
            "notes": list(self.notes),
            "checked_at": self.checked_at,
            "duration_ms": round(self.duration_ms, 1),
        }

    def to_text(self, max_width: int = 160) -> str:
        """A fixed-width table for the task log."""
        lines = [self.summary()]
        if self.findings:
            rows = [("SEVERITY", "KIND", "OBJECT", "DETAIL")]
            order = {ERROR: 0, WARNING: 1, INFO: 2}
            for f in sorted(self.findings, key=lambda f: (order.get(f.severity, 3), f.category, f.kind)):
                rows.append((f.severity.upper(), f.kind, f.object or f.filename or "-", f.message))
            widths = [max(len(r[i]) for r in rows) for i in range(3)]
            rule = (
                "  ".join("-" * w for w in widths) + "  " + "-" * min(max_width, max(len(r[3]) for r in rows))
            )
            for index, row in enumerate(rows):
                head = "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3]))
                lines.append(f"{head}  {_clip(row[3], max_width)}")
                if index == 0:
                    lines.append(rule)
        else:
            lines.append("No findings.")
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
