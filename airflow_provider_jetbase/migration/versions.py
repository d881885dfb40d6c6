"""Jetbase's migration versions: their normal form, how two compare, and the one order they run in.

Jetbase compares versions with ``packaging.version`` (``V1_10`` after ``V1_9``). packaging says
``Version("1") == Version("1.0")`` while Jetbase stores them as two versions, so every *order*
(sorting files, "latest applied", rollback targets) uses :func:`version_order`, which breaks that
tie by the version string: the order is total and the same on every run. Jetbase's own "is lower
than" checks (out-of-order files, the sensor's "reached") use :func:`version_key` as Jetbase does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from packaging.version import Version

from airflow_provider_jetbase.migration.errors import InvalidArgumentError

# ASCII only: ``\d`` also matches "２" and "²", which packaging then rejects with a bare error.
_VERSION_RE = re.compile(r"^[0-9]+([._][0-9]+)*$", re.ASCII)


def normalise_version(version: str | int | float, parameter: str | None = None) -> str:
    """``"1_2"`` and ``"1.2"`` both become ``"1.2"``, the form Jetbase stores; junk is an error
    (naming ``parameter`` when given)."""
    candidate = str(version).strip()
    if candidate[:1] in {"V", "v"}:
        candidate = candidate[1:]
    if not _VERSION_RE.match(candidate):
        what = f"'{parameter}'" if parameter else "migration version"
        raise InvalidArgumentError(
            f"Invalid {what} {version!r}: expected ASCII digits 0-9 separated by '.' or '_' "
            "(for example 3, 1.2 or 1_2)"
        )
    return candidate.replace("_", ".")


def version_key(version: str) -> Version:
    """Jetbase's version comparison (``packaging.version.parse``); accepts ``"1_2"`` and ``"1.2"``."""
    return Version(normalise_version(version))


def version_order(version: str) -> tuple[Version, str]:
    """The sort key of every version order in the engine (see the module docstring)."""
    return (version_key(version), version)


def latest_version(versions: Iterable[str | None]) -> str | None:
    present = [v for v in versions if v]
    return max(present, key=version_order) if present else None
