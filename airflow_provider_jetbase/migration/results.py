"""Result values returned by the engine: frozen dataclasses with a JSON-able ``to_dict()``."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any


def _jsonable(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


class _ToDict:
    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = _jsonable(self)
        return result


@dataclass(frozen=True)
class MigrationRun(_ToDict):
    """One file executed (or, in a dry run, that would be executed).

    ``statements`` are exactly the strings sent to the database, one per ``execute``;
    ``checksum`` is the file's upgrade checksum as Jetbase computes it.
    """

    filename: str
    version: str | None
    migration_type: str
    statements: tuple[str, ...]
    checksum: str
    duration_ms: float


@dataclass(frozen=True)
class UpgradeResult(_ToDict):
    """``version_after`` is, in a dry run, the version the upgrade would reach."""

    applied: tuple[MigrationRun, ...]
    dry_run: bool
    version_before: str | None
    version_after: str | None
    warnings: tuple[str, ...]
    # The reviewed plan (migration/review.py's ReviewPlan): what was decided, its hash and lint.
    plan: Any = None


@dataclass(frozen=True)
class RollbackResult(_ToDict):
    rolled_back: tuple[MigrationRun, ...]
    dry_run: bool
    version_before: str | None
    version_after: str | None
    warnings: tuple[str, ...]
    plan: Any = None  # as UpgradeResult.plan


@dataclass(frozen=True)
class AppliedMigration(_ToDict):
    """A row of ``jetbase_migrations``. ``applied_at`` is a naive datetime as the DB stores it."""

    order_executed: int | None
    version: str | None
    description: str | None
    filename: str
    migration_type: str
    applied_at: dt.datetime | str | None
    checksum: str | None


@dataclass(frozen=True)
class PendingMigration(_ToDict):
    version: str | None
    filename: str
    migration_type: str


@dataclass(frozen=True)
class StatusReport(_ToDict):
    applied: tuple[AppliedMigration, ...]
    pending: tuple[PendingMigration, ...]
    current: str | None


@dataclass(frozen=True)
class ValidationFinding(_ToDict):
    """``kind``: "checksum_mismatch", "missing_file", "out_of_order" or "missing_repeatable_file"."""

    kind: str
    message: str
    version: str | None
    filename: str | None


@dataclass(frozen=True)
class ValidationReport(_ToDict):
    findings: tuple[ValidationFinding, ...]

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        result = super().to_dict()
        result["ok"] = self.ok
        return result


@dataclass(frozen=True)
class LockInfo(_ToDict):
    """``supported`` is False on ClickHouse, where Jetbase has no lock."""

    is_locked: bool
    locked_at: dt.datetime | None
    process_id: str | None
    supported: bool


@dataclass(frozen=True)
class BaselineRow(_ToDict):
    """A ``jetbase_migrations`` row a baseline writes (or, in a dry run, would write): the values of
    the INSERT the upgrade issues for the file; ``order_executed`` and ``applied_at`` are left to the
    database, as the ``jetbase`` CLI leaves them."""

    version: str | None
    description: str
    filename: str
    migration_type: str
    checksum: str


@dataclass(frozen=True)
class BaselineResult(_ToDict):
    """``recorded``: the rows written (dry run: that would be), in the order they are inserted.
    ``not_recorded``: the repeatable files (the next upgrade runs them); ``pending``: the versioned
    files above ``version_after`` (the next upgrade applies them)."""

    recorded: tuple[BaselineRow, ...]
    dry_run: bool
    version_after: str
    not_recorded: tuple[str, ...]
    pending: tuple[str, ...]
