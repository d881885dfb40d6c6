"""Drift-check defaults that the operator module needs at DAG-parse time, kept apart from the drift
package so that importing the operator does not import SQLAlchemy and the engine."""

from __future__ import annotations

# Finding kinds that fail a drift check by default; every other finding is a warning.
DEFAULT_FAIL_ON: tuple[str, ...] = ("schema", "checksum_mismatch", "missing_file")
