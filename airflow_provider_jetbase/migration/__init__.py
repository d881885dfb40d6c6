"""The migration engine: Jetbase's upgrade, rollback, status and validation on an injected engine.

Plain Python over SQLAlchemy, no Airflow imports. See ``migrator.py`` for where it differs from the
``jetbase`` CLI and why.
"""

from airflow_provider_jetbase.migration.errors import (
    BaselineRefusedError,
    DuplicateVersionError,
    IncompatibleTableError,
    InvalidArgumentError,
    JetbaseError,
    LockAcquireUnknownError,
    LockLostError,
    LockTimeoutError,
    MigrationCancelledError,
    MigrationExecutionError,
    MigrationFileError,
    ParsingHazardError,
    TablePermissionError,
    ValidationFailedError,
    VersionNotFoundError,
)
from airflow_provider_jetbase.migration.migrator import Migrator
from airflow_provider_jetbase.migration.results import (
    AppliedMigration,
    BaselineResult,
    BaselineRow,
    LockInfo,
    MigrationRun,
    PendingMigration,
    RollbackResult,
    StatusReport,
    UpgradeResult,
    ValidationFinding,
    ValidationReport,
)
from airflow_provider_jetbase.migration.state import fetch_current_version
from airflow_provider_jetbase.migration.versions import version_key

__all__ = [
    "AppliedMigration",
    "BaselineRefusedError",
    "BaselineResult",
    "BaselineRow",
    "DuplicateVersionError",
    "IncompatibleTableError",
    "TablePermissionError",
    "InvalidArgumentError",
    "JetbaseError",
    "LockInfo",
    "LockAcquireUnknownError",
    "LockLostError",
    "LockTimeoutError",
    "MigrationCancelledError",
    "MigrationExecutionError",
    "MigrationFileError",
    "MigrationRun",
    "Migrator",
    "ParsingHazardError",
    "PendingMigration",
    "RollbackResult",
    "StatusReport",
    "UpgradeResult",
    "ValidationFailedError",
    "ValidationFinding",
    "ValidationReport",
    "VersionNotFoundError",
    "fetch_current_version",
    "version_key",
]
