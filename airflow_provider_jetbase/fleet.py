"""Fleets: one DAG migrates many databases with a mapped ``JetbaseUpgradeOperator``.

Pure pieces, no Airflow import (the summary operator and the example DAG use them):

- :func:`matching_connection_ids`: the connection ids of a worker's ``AIRFLOW_CONN_*`` variables that
  match a glob pattern, the input of ``.expand(jetbase_conn_id=...)``. Airflow 3's Task SDK fetches a
  connection by id only and cannot list the metadata database's connections; keep such a list in a
  Variable instead (docs/fleets.md).
- :func:`summarize`: reduces what each mapped upgrade left in XCom (its return value when it
  succeeded, its ``jetbase_error`` record when it failed, nothing when it never ran) into one row per
  database, in the order of the targets.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

CONN_ENV_PREFIX = "AIRFLOW_CONN_"

# The status of a database in a fleet run.
MIGRATED = "migrated"
UP_TO_DATE = "up to date"
FAILED = "failed"
NO_RESULT = "no result"  # the mapped task never ran (upstream failed, skipped) or left nothing


def matching_connection_ids(pattern: str, environ: Mapping[str, str] | None = None) -> list[str]:
    """Sorted ids of the connections defined as ``AIRFLOW_CONN_<ID>`` variables whose id matches
    ``pattern`` (``fnmatch`` glob, case-insensitive: Airflow looks ``<ID>`` up upper-cased, so
    ``AIRFLOW_CONN_WAREHOUSE_EU`` is the connection ``warehouse_eu``). ``environ`` defaults to the
    calling process's environment: call it in a task, where the worker's variables are."""
    source = os.environ if environ is None else environ
    wanted = pattern.lower()
    found = {
        name[len(CONN_ENV_PREFIX) :].lower()
        for name in source
        if name.upper().startswith(CONN_ENV_PREFIX) and len(name) > len(CONN_ENV_PREFIX)
    }
    return sorted(conn_id for conn_id in found if fnmatch.fnmatchcase(conn_id, wanted))


@dataclass(frozen=True)
class FleetRow:
    """One database of a fleet run. ``applied``: the versions this run applied (on a failure, those
    committed before it); ``duration_ms``: the mapped task's migration time."""

    database: str
    status: str
    version_before: str | None
    version_after: str | None
    applied: tuple[str, ...]
    duration_ms: float | None
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        row = asdict(self)
        row["applied"] = list(self.applied)
        return row


def _versions(record: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(str(v) for v in record.get("versions_applied") or () if v is not None)


def _duration(record: Mapping[str, Any]) -> float | None:
    value = record.get("duration_ms")
    return None if value is None else float(value)


def summarize(
    conn_ids: Sequence[str],
    results: Sequence[Mapping[str, Any] | None],
    errors: Sequence[Mapping[str, Any] | None],
) -> list[FleetRow]:
    """One row per target, in order: ``results[i]`` and ``errors[i]`` are what map index ``i`` (the
    task that migrated ``conn_ids[i]``) returned and recorded on failure, ``None`` when absent. A
    return value wins over an error record (a retry that succeeded after a failed try)."""
    if not len(conn_ids) == len(results) == len(errors):
        raise ValueError(
            f"summarize() needs one result and one error slot per target: {len(conn_ids)} targets, "
            f"{len(results)} results, {len(errors)} errors"
        )
    rows = []
    for conn_id, result, error in zip(conn_ids, results, errors, strict=True):
        if result is not None:
            applied = _versions(result)
            rows.append(
                FleetRow(
                    database=conn_id,
                    status=MIGRATED if applied and not result.get("dry_run") else UP_TO_DATE,
                    version_before=result.get("version_before"),
                    version_after=result.get("version_after"),
                    applied=applied,
                    duration_ms=_duration(result),
                    error=None,
                )
            )
        elif error is not None:
            rows.append(
                FleetRow(
                    database=conn_id,
                    status=FAILED,
                    version_before=error.get("version_before"),
                    version_after=error.get("version_after"),
                    applied=_versions(error),
                    duration_ms=_duration(error),
                    error=str(error.get("error") or "failed"),
                )
            )
        else:
            rows.append(FleetRow(conn_id, NO_RESULT, None, None, (), None, None))
    return rows


def counts(rows: Iterable[FleetRow]) -> dict[str, int]:
    """How many databases are in each status (every status present, zeros included)."""
    tally = dict.fromkeys((MIGRATED, UP_TO_DATE, FAILED, NO_RESULT), 0)
    for row in rows:
        tally[row.status] = tally.get(row.status, 0) + 1
    return tally


def render_table(rows: Sequence[FleetRow]) -> str:
    """A fixed-width text table for the task log, one line per database."""
    header = ("database", "status", "before", "after", "applied", "duration", "error")
    lines = [
        (
            row.database,
            row.status,
            row.version_before or "-",
            row.version_after or "-",
            ",".join(row.applied) or "-",
            "-" if row.duration_ms is None else f"{row.duration_ms / 1000:.2f} s",
            # One line per database: the full error is in the task's own log and XCom.
            (" ".join(row.error.split())[:120] if row.error else "-"),
        )
        for row in rows
    ]
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines, strict=True)]

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *(fmt(line) for line in lines)])
