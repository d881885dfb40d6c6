"""Exceptions raised by the migration engine.

Every message names the file, version or argument at fault and never contains a connection URL or
any other secret: operators put these messages in task logs as they are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_jetbase.errors import JetbaseProviderError

if TYPE_CHECKING:
    from airflow_provider_jetbase.migration.results import MigrationRun, ValidationReport


class JetbaseError(JetbaseProviderError):
    """Base class of every error raised by the engine."""


class InvalidArgumentError(JetbaseError, ValueError):
    """A caller passed an invalid argument (count, to_version, both count and to_version...)."""


class MigrationFileError(JetbaseError):
    """A migration file is malformed, unreadable, missing, or lacks a needed section."""

    def __init__(self, message: str, *, filename: str | None = None) -> None:
        super().__init__(message)
        self.filename = filename


class DuplicateVersionError(MigrationFileError):
    """Two files share one normalised version (``V2.0`` and ``V2_0``)."""


class ParsingHazardError(MigrationFileError):
    """``strict=True``: a file contains a construct Jetbase's parser mishandles."""

    def __init__(self, message: str, *, hazards: tuple[str, ...]) -> None:
        super().__init__(message)
        self.hazards = hazards


class ValidationFailedError(JetbaseError):
    """Jetbase's pre-upgrade validation found problems (checksums, missing files, order)."""

    def __init__(self, message: str, *, report: ValidationReport) -> None:
        super().__init__(message)
        self.report = report


class VersionNotFoundError(JetbaseError):
    """A requested version has no migration file, or has not been applied."""


class IncompatibleTableError(JetbaseError):
    """A ``jetbase_migrations`` or ``jetbase_lock`` table exists but is not Jetbase's (another tool's)."""


class TablePermissionError(JetbaseError):
    """The database user lacks a privilege on ``jetbase_migrations`` or ``jetbase_lock``: the state
    cannot be read (or the lock changed), so nothing is assumed and nothing is run."""

    def __init__(self, message: str, *, table: str, privilege: str) -> None:
        super().__init__(message)
        self.table = table
        self.privilege = privilege


class LockTimeoutError(JetbaseError):
    """The ``jetbase_lock`` row stayed held by someone else for longer than ``lock_timeout``."""

    def __init__(self, message: str, *, holder: Any = None) -> None:
        super().__init__(message)
        self.holder = holder


class LockLostError(JetbaseError):
    """This run no longer holds the ``jetbase_lock`` row it took (deleted, table dropped, unlocked by
    force or taken over): the file named was not committed, and the run stopped."""

    def __init__(
        self, message: str, *, filename: str | None = None, applied: tuple[MigrationRun, ...] = ()
    ) -> None:
        super().__init__(message)
        self.filename = filename
        self.applied = applied


class LockAcquireUnknownError(JetbaseError):
    """The connection failed while the lock acquisition was committing. ``held_after`` is what a fresh
    connection found: ``False`` (not held by us, or ours and released again) or ``None`` (could not
    be checked: the lock may still be held by this run's process_id)."""

    def __init__(self, message: str, *, process_id: str, held_after: bool | None) -> None:
        super().__init__(message)
        self.process_id = process_id
        self.held_after = held_after


class MigrationExecutionError(JetbaseError):
    """A statement of a migration failed; the message has the file, statement number and DB error.

    ``applied`` holds the migrations that completed (and stay committed) before the failure.
    ``commit_outcome`` is set when the COMMIT itself failed, so its outcome was unknown and the
    version table was re-read on a fresh connection: ``"committed"`` (the file IS applied),
    ``"not committed"`` or ``"unknown"`` (the re-read failed too); ``None`` for any other failure.
    """

    def __init__(
        self,
        message: str,
        *,
        filename: str,
        statement_number: int | None,
        db_message: str,
        applied: tuple[MigrationRun, ...] = (),
        partial: bool = False,
        commit_outcome: str | None = None,
    ) -> None:
        super().__init__(message)
        self.filename = filename
        self.statement_number = statement_number
        self.db_message = db_message
        self.applied = applied
        self.partial = partial
        self.commit_outcome = commit_outcome


class MigrationCancelledError(MigrationExecutionError):
    """The run was cancelled from another thread (a task kill or timeout): the running statement was
    cancelled on the server and the file rolled back (``partial`` where the database cannot)."""


class BaselineRefusedError(JetbaseError):
    """A baseline was asked of a database that already has rows in ``jetbase_migrations``: it is
    already managed by Jetbase, and a baseline never rewrites history. ``applied`` holds those rows."""

    def __init__(self, message: str, *, applied: tuple[Any, ...] = ()) -> None:
        super().__init__(message)
        self.applied = applied


class PlanMismatchError(JetbaseError):
    """The plan recomputed under the lock is not the approved one (``plan_hash``): nothing was run.
    The message says what changed."""

    def __init__(self, message: str, *, expected: str, actual: str) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class LintFailedError(JetbaseError):
    """``lint="fail"``: the statements about to run have destructive or risky findings that no
    ``-- jetbase-lint: allow <rule>`` comment accepts: nothing was run."""

    def __init__(self, message: str, *, findings: tuple[Any, ...]) -> None:
        super().__init__(message)
        self.findings = findings
