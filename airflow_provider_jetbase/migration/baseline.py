"""Baseline: adopt a database whose schema already exists by recording its versioned files as applied.

Flyway and Atlas call this a baseline; Jetbase has none. A team that starts using Jetbase on a
database built before it (by hand, by another tool) says "the schema is at version X": the
versioned files up to and including X get their ``jetbase_migrations`` rows without running, so
the ``jetbase`` CLI and the provider both continue from there (the next upgrade applies only the
later files).

This module is the baseline's pure planner (no connection, no logging, like ``planner.py``);
``Migrator.baseline`` reads the rows under the lock, calls it, and writes the plan's rows. The
decisions:

- Only a database with no row in ``jetbase_migrations`` (or no table yet) is adopted. One that has
  any row, versioned or repeatable, is already managed by Jetbase: it is refused, naming what it
  has, and nothing is written. A baseline never rewrites history (rollback and
  ``jetbase fix-checksums`` are the tools for that).
- ``to_version`` must be the version of a versioned file; the rows are those files at or below it
  in version order, each exactly the row the upgrade (and the CLI) inserts for that file: the same
  INSERT, description, migration_type and checksum, with ``order_executed`` and ``applied_at`` left
  to the database. So a baseline to X leaves the rows ``jetbase upgrade --to-version X`` would have
  left for the versioned files, but ``applied_at``.
- Repeatable files (``RA__``, ``ROC__``) are NOT recorded. A runs-always file runs on every upgrade
  whether it has a row or not, so a row would change nothing. A runs-on-change row would claim that
  the database holds the file's current content (its view, its procedure), which a baseline cannot
  check: an adopted database often holds an older definition, and a recorded checksum would make
  every later upgrade skip the file until it changes. Without a row, the next upgrade runs it once,
  which repeatable files are written to allow (``CREATE OR REPLACE ...``), and records it then.
- ``applied_at`` increases in version order, 1 ms apart, the last row at the database's "now".
  The CLI finds its latest version with ``ORDER BY applied_at DESC LIMIT 1`` (and its rollback
  targets the same way): rows inserted in one transaction would all get the same time (PostgreSQL's
  CURRENT_TIMESTAMP is the transaction's start; SQLite's clock has milliseconds), and on such a tie
  the CLI may take 1 for the latest version and re-run every later file. The rows keep Jetbase's
  INSERT; an UPDATE in the same transaction sets these times. Not on ClickHouse, where Jetbase's
  query orders by ``order_executed`` instead (read from Jetbase's own query, not assumed here).
- Every row is written in one transaction, committed after the lock row proves still ours: a
  baseline is all or nothing. A dry run writes nothing, creates no table and takes no lock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from airflow_provider_jetbase.migration.dialects import Dialect
from airflow_provider_jetbase.migration.errors import (
    BaselineRefusedError,
    InvalidArgumentError,
    VersionNotFoundError,
)
from airflow_provider_jetbase.migration.files import VERSIONED, MigrationFile, MigrationSet
from airflow_provider_jetbase.migration.results import AppliedMigration, BaselineRow
from airflow_provider_jetbase.migration.timestamps import parse_db_timestamp
from airflow_provider_jetbase.migration.versions import normalise_version, version_order

# How many applied rows a refusal names before it says "and N more".
_NAMED_ROWS = 20
# Between two baseline rows' applied_at: the coarsest clock Jetbase writes (SQLite's) has milliseconds.
STAMP_STEP = dt.timedelta(milliseconds=1)
RESTAMP_STMT = text(
    "UPDATE jetbase_migrations SET applied_at = :applied_at "
    "WHERE version = :version AND migration_type = 'VERSIONED'"
)


@dataclass(frozen=True)
class BaselinePlan:
    """``files``: the versioned files to record, in version order; ``not_recorded``: the repeatable
    files; ``pending``: the versioned files above ``to_version``."""

    to_version: str
    files: tuple[MigrationFile, ...]
    not_recorded: tuple[MigrationFile, ...]
    pending: tuple[MigrationFile, ...]


def baseline_target(files: MigrationSet, to_version: Any) -> str:
    """``to_version`` normalised (``1_2`` -> ``1.2``), refused unless a versioned file has it.
    Checked before the database is touched, so a wrong version changes nothing."""
    if to_version is None or (isinstance(to_version, str) and not to_version.strip()):
        raise InvalidArgumentError(
            "A baseline needs 'to_version': the version the existing schema is at (its files up to and "
            "including it are recorded as applied)"
        )
    target = normalise_version(to_version, "to_version")
    if target not in files.by_version():
        known = ", ".join(str(f.version) for f in files.versioned) or "none"
        raise VersionNotFoundError(
            f"Cannot baseline to version {target}: no versioned migration file has it in "
            f"{files.directory} (versions there: {known}). Nothing was written."
        )
    return target


def _describe_rows(applied: Sequence[AppliedMigration]) -> str:
    versions = sorted(
        (str(r.version) for r in applied if r.migration_type == VERSIONED and r.version), key=version_order
    )
    repeatables = sorted(r.filename for r in applied if r.migration_type != VERSIONED)
    parts = []
    for label, names in (("versions", versions), ("repeatable files", repeatables)):
        if names:
            shown = ", ".join(names[:_NAMED_ROWS])
            more = f" and {len(names) - _NAMED_ROWS} more" if len(names) > _NAMED_ROWS else ""
            parts.append(f"{label} {shown}{more}")
    return "; ".join(parts)


def plan_baseline(files: MigrationSet, applied: Sequence[AppliedMigration], to_version: str) -> BaselinePlan:
    """Raises BaselineRefusedError when ``applied`` has any row; ``to_version`` comes from
    :func:`baseline_target`."""
    if applied:
        raise BaselineRefusedError(
            f"Cannot baseline: jetbase_migrations already has {len(applied)} row(s) "
            f"({_describe_rows(applied)}). A baseline only adopts a database with no applied "
            "migrations; this one is already managed by Jetbase, so use an upgrade. Nothing was written.",
            applied=tuple(applied),
        )
    limit = version_order(to_version)
    recorded = tuple(f for f in files.versioned if version_order(str(f.version)) <= limit)
    pending = tuple(f for f in files.versioned if version_order(str(f.version)) > limit)
    return BaselinePlan(to_version, recorded, (*files.runs_always, *files.runs_on_change), pending)


def rows_table(rows: Sequence[BaselineRow]) -> str:
    """A fixed-width table of the rows: version, file, migration_type, checksum, description."""
    header = ("version", "file", "migration_type", "checksum", "description")
    cells = [(str(r.version), r.filename, r.migration_type, r.checksum, r.description) for r in rows]
    widths = [max(len(header[i]), *(len(c[i]) for c in cells)) if cells else len(header[i]) for i in range(5)]

    def line(values: tuple[str, ...]) -> str:
        return " | ".join(f"{v:<{w}}" for v, w in zip(values, widths, strict=True)).rstrip()

    separator = "-+-".join("-" * w for w in widths)
    return "\n".join([line(header), separator, *(line(c) for c in cells)])


def needs_ordered_stamps(dialect: Dialect) -> bool:
    """True where Jetbase picks the latest version by ``applied_at`` (all but ClickHouse)."""
    return "applied_at" in str(dialect.queries.latest_version_query())


def applied_at_stamps(dialect: Dialect, db_now: Any, count: int) -> list[Any]:
    """``count`` values for ``applied_at``, 1 ms apart, the last one ``db_now`` (the database's clock,
    read in the baseline's transaction), each in the form the column takes: a naive ``datetime``, or
    on SQLite the text Jetbase's default writes (``%Y-%m-%d %H:%M:%f``), which sorts as text."""
    now = parse_db_timestamp(db_now)
    if now is None:
        raise ValueError(f"The database clock returned {db_now!r}, which is not a timestamp")
    stamps = [now - STAMP_STEP * (count - 1 - i) for i in range(count)]
    if dialect.timestamps_as_text:
        return [s.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] for s in stamps]
    return stamps
