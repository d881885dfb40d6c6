"""Drift checks: migration drift (checksums, missing/out-of-order files, pending, stale lock) and
live-schema drift (replay of the applied migrations into a scratch database, or a stored snapshot).

Plain Python over SQLAlchemy, no Airflow imports; SQLAlchemy and the engine are imported lazily.
"""

from airflow_provider_jetbase.drift.check import DriftCheckError, run_drift_check
from airflow_provider_jetbase.drift.compare import compare_schemas
from airflow_provider_jetbase.drift.report import DriftReport, Finding, resolve_fail_on
from airflow_provider_jetbase.drift.schema import SchemaModel, snapshot_schema
from airflow_provider_jetbase.drift.snapshot import SNAPSHOT_TABLE, load_latest_snapshot, store_snapshot
from airflow_provider_jetbase.drift_defaults import DEFAULT_FAIL_ON

__all__ = [
    "DEFAULT_FAIL_ON",
    "SNAPSHOT_TABLE",
    "DriftCheckError",
    "DriftReport",
    "Finding",
    "SchemaModel",
    "compare_schemas",
    "load_latest_snapshot",
    "resolve_fail_on",
    "run_drift_check",
    "snapshot_schema",
    "store_snapshot",
]
