"""The ``jetbase_lock`` row, shared with the jetbase CLI so that the CLI and Airflow exclude each other.

Acquire: Jetbase's own statement (``UPDATE jetbase_lock SET is_locked = TRUE, ..., process_id =
:process_id WHERE id = 1 AND is_locked = FALSE``), then the row is read back in the same transaction to
confirm ownership (Databricks connectors may report rowcount -1). Unlike the CLI, which fails at
once, a held lock is polled every ``poll_interval`` seconds up to ``timeout``, then
``LockTimeoutError`` says who holds it since when and how to unlock. The row stays exactly what
the CLI reads and writes; ``process_id`` carries our identity (see ``holder.py``).

Next to the row (``heartbeat.py``), on PostgreSQL and MySQL/MariaDB, every engine run holds a
session-level advisory lock from before it takes the row until after it releases it, and a thread
refreshes ``locked_at`` (SQLite: each migration's transaction refreshes it). So:

- a waiter that cannot get the advisory lock knows a live engine run holds (or is taking) the row,
  and never takes it over, nor re-creates a missing row under it;
- a waiter that gets it and finds the row held by an engine process_id has proof that holder's
  session is gone (it is dead, or cut off and will fail at its next commit check);
- elsewhere, an engine holder is dead when it ran in this PID namespace of this boot and its pid
  is gone or belongs to a later process; otherwise only its heartbeat's age speaks.

Stale-lock policy (``stale_after`` seconds, None = never take over), checked while waiting: take
over a holder proven dead as above, or a lock whose ``locked_at`` is older than ``stale_after``
(database clock) when nothing proves its holder alive: a CLI lock (uuid4), a NULL/empty/foreign
``process_id``, or an engine holder on a database without a session lock. The takeover is a
compare-and-swap on the ``process_id`` and ``locked_at`` read (NULL compared as NULL), with a
WARNING line.

An unknown outcome of committing the acquisition (the connection failed during COMMIT) is read
back on a fresh connection; a lock that turns out ours is released again and the error says so.

ClickHouse: Jetbase has no lock table there; no lock is taken and a WARNING says so.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from sqlalchemy import TextClause, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from airflow_provider_jetbase.migration import dialects
from airflow_provider_jetbase.migration.dialects import Dialect
from airflow_provider_jetbase.migration.errors import LockAcquireUnknownError, LockLostError, LockTimeoutError
from airflow_provider_jetbase.migration.heartbeat import DEFAULT_HEARTBEAT_INTERVAL, Heartbeat
from airflow_provider_jetbase.migration.holder import (
    ProcessIdentity,
    describe,
    make_process_id,
    parse_process_id,
    provably_dead,
)
from airflow_provider_jetbase.migration.results import LockInfo
from airflow_provider_jetbase.migration.state import is_missing_table_error, missing_or_raise, query_or_none
from airflow_provider_jetbase.migration.timestamps import parse_db_timestamp

__all__ = [
    "UNLOCK_HINT",
    "LockHolder",
    "MigrationLock",
    "ensure_lock_tables",
    "force_unlock",
    "make_process_id",
    "parse_process_id",
    "read_lock",
]

# A waiter's poll holds SQLite's write lock for milliseconds; this bounds a writer that never lets go.
RELEASE_BUSY_TIMEOUT_S = 30.0
RELEASE_BUSY_RETRY_S = 0.05
UNLOCK_HINT = (
    "If you are sure no migration is running, release it with `jetbase unlock` (in the Jetbase "
    "project) or Migrator(engine, migrations_dir).unlock()."
)



@dataclass(frozen=True)
class LockHolder:
    process_id: str | None
    locked_at: dt.datetime | None
    db_now: dt.datetime | None
    raw_locked_at: Any = None  # as read, for the compare-and-swap

    @property
    def age_seconds(self) -> float | None:
        if self.locked_at is None or self.db_now is None:
            return None
        return (self.db_now - self.locked_at).total_seconds()

    @property
    def origin(self) -> ProcessIdentity | None:
        return parse_process_id(self.process_id)

    def describe(self) -> str:
        shown = "NULL" if self.process_id is None else (self.process_id or "''")
        parts = [f"process_id {shown}", describe(self.origin)]
        since = f"since {self.locked_at.isoformat(sep=' ')}" if self.locked_at else "since an unknown time"
        age = self.age_seconds
        if age is not None:
            since += f" (last refreshed {age:.0f} s ago by the database clock)"
        return f"{'; '.join(parts)}; {since}"


def _naive(value: Any) -> dt.datetime | None:
    # locked_at and the database's "now" come from one server: compare them without time zones.
    parsed = parse_db_timestamp(value)
    return parsed.replace(tzinfo=None) if parsed is not None else None


def ensure_lock_tables(conn: Connection, dialect: Dialect) -> None:
    """Jetbase's lock table (not on ClickHouse, like Jetbase). Its row is seeded by the lock itself,
    under the session lock where there is one, so that a waiter never re-creates a deleted row
    under a live holder."""
    if not dialect.supports_lock:
        return
    with conn.begin():
        conn.execute(dialect.queries.create_lock_table_stmt())


def read_lock(conn: Connection, dialect: Dialect) -> tuple[LockInfo, LockHolder | None]:
    """The lock row and who holds it; an absent lock table reads as unlocked."""
    if not dialect.supports_lock:
        return LockInfo(False, None, None, supported=False), None
    row = query_or_none(conn, lambda: conn.execute(dialect.read_lock_stmt).first(), "jetbase_lock")
    if row is None or not row.is_locked:
        return LockInfo(False, None, None, supported=True), None
    locked_at = _naive(row.locked_at)
    holder = LockHolder(row.process_id, locked_at, _naive(row.db_now), row.locked_at)
    return LockInfo(True, locked_at, row.process_id, supported=True), holder


def force_unlock(conn: Connection, dialect: Dialect) -> bool:
    """Jetbase's ``unlock``; returns False when there is no lock table."""
    if not dialect.supports_lock:
        return False
    try:
        with conn.begin():
            conn.execute(dialect.queries.force_unlock_stmt())
    except DBAPIError as exc:
        missing_or_raise(conn, exc, "jetbase_lock", "UPDATE")
        return False
    return True


def _takeover_stmt(dialect: Dialect, holder: LockHolder) -> Any:
    # NULL never equals NULL in SQL: the compare-and-swap spells out IS NULL for what was NULL.
    where = ["id = 1", "is_locked = TRUE"]
    where.append("process_id IS NULL" if holder.process_id is None else "process_id = :old_process_id")
    where.append("locked_at IS NULL" if holder.raw_locked_at is None else "locked_at = :old_locked_at")
    return text(
        f"UPDATE jetbase_lock SET process_id = :new_process_id, locked_at = {dialect.now_sql} "  # noqa: S608 - constant SQL; values are bound
        f"WHERE {' AND '.join(where)}"
    )


_INSERT_RE = re.compile(
    r"^\s*INSERT\s+INTO\s+jetbase_migrations\s*\(([^()]*)\)\s*VALUES\s*\(([^()]*)\)\s*;?\s*$",
    re.IGNORECASE,
)


def owned_insert_stmt(dialect: Dialect) -> TextClause | None:
    """Jetbase's version-row INSERT, made conditional on the lock row being ours, as one statement:
    ``WITH owned AS (<the ownership UPDATE> RETURNING id) INSERT INTO jetbase_migrations (<Jetbase's
    columns>) SELECT <Jetbase's values> FROM owned``. One row inserted proves both: the row is ours
    and row-locked until the commit, and the version row is written, exactly as Jetbase writes it.
    None where the dialect has no data-modifying CTE, or Jetbase's INSERT is not of the expected
    shape (then the two statements are sent separately, as before)."""
    if not dialect.data_modifying_cte or not dialect.supports_lock:
        return None
    match = _INSERT_RE.match(str(dialect.queries.insert_version_stmt()))
    if match is None:
        return None
    columns, values = (" ".join(part.split()) for part in match.groups())
    refresh = dialect.refresh_lock_stmt.text
    return text(
        f"WITH jetbase_lock_owned AS ({refresh} RETURNING id) "  # noqa: S608 - constant SQL; values are bound
        f"INSERT INTO jetbase_migrations ({columns}) SELECT {values} FROM jetbase_lock_owned"
    )


class MigrationLock:
    """Context manager holding the ``jetbase_lock`` row for the duration of a run."""

    def __init__(
        self,
        conn: Connection,
        engine: Engine,
        dialect: Dialect,
        *,
        timeout: float,
        poll_interval: float,
        owner: str | None,
        stale_after: float | None,
        logger: logging.Logger,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
    ) -> None:
        self.conn = conn
        self.engine = engine
        self.dialect = dialect
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.owner = owner
        self.stale_after = stale_after
        self.logger = logger
        self.process_id = make_process_id()
        self.heartbeat = Heartbeat(engine, dialect, interval=heartbeat_interval, logger=logger)
        self.held = False
        # Built once: check_owned runs it before every file's commit.
        self._refresh = dialect.refresh_lock_stmt
        self._owned_insert = owned_insert_stmt(dialect)
        self.lost: str | None = None
        # The runs committed under this lock, for the error of a release that finds the lock lost.
        self.committed: list[Any] = []

    def __enter__(self) -> MigrationLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release(quiet=exc is not None)

    # ------------------------------------------------------------------ acquiring
    def _confirm(self) -> bool:
        # Read back rather than trust rowcount: Databricks connectors may report -1.
        row = self.conn.execute(dialects.LOCK_PROCESS_ID).first()
        return row is not None and row.process_id == self.process_id

    def _claim(self, statement: Any, params: dict[str, Any]) -> bool:
        """Run a claiming UPDATE and commit it; an unknown commit outcome is resolved, then raised."""
        transaction = self.conn.begin()
        try:
            self.conn.execute(statement, params)
            mine = self._confirm()
        except OperationalError as exc:
            transaction.rollback()
            # Another writer's transaction holds the database (SQLite's file lock): keep waiting.
            if self.dialect.errors.busy(exc):
                return False
            raise
        if not mine:
            transaction.rollback()
            return False
        try:
            transaction.commit()
        except DBAPIError as exc:
            if self.dialect.errors.busy(exc):
                transaction.rollback()  # SQLite reports a busy COMMIT and keeps the transaction open
                return False
            self._resolve_unknown_claim(exc)
        return True

    def _resolve_unknown_claim(self, exc: DBAPIError) -> None:
        first = str(getattr(exc, "orig", exc)).strip()
        try:
            with self.engine.connect() as fresh:
                row = fresh.execute(dialects.LOCK_PROCESS_ID).first()
                ours = row is not None and row.process_id == self.process_id
                if ours:
                    fresh.execute(self.dialect.queries.release_lock_stmt(), {"process_id": self.process_id})
                fresh.commit()
        except Exception as second:  # noqa: BLE001 - reported in the error below
            message = (
                f"The connection failed while committing the Jetbase lock acquisition ({first}), so "
                f"whether this run took the lock is unknown, and re-reading it on a fresh connection "
                f"failed too ({second}). If jetbase_lock.process_id is {self.process_id}, the lock is "
                f"this run's and nothing holds it: {UNLOCK_HINT}"
            )
            raise LockAcquireUnknownError(message, process_id=self.process_id, held_after=None) from exc
        if ours:
            message = (
                f"The connection failed while committing the Jetbase lock acquisition ({first}). A fresh "
                f"connection showed the commit had gone through (process_id {self.process_id}): the lock "
                "was released again, nothing was migrated. Retry the run."
            )
        else:
            message = (
                f"The connection failed while committing the Jetbase lock acquisition ({first}). A fresh "
                "connection showed the lock was not taken by this run; nothing was migrated. Retry the run."
            )
        raise LockAcquireUnknownError(message, process_id=self.process_id, held_after=False) from exc

    def _seed_row(self) -> None:
        try:
            with self.conn.begin():
                self.conn.execute(self.dialect.queries.initialize_lock_record_stmt())
        except IntegrityError:
            # Jetbase's seed is INSERT ... WHERE NOT EXISTS, which on PostgreSQL cannot see a row that
            # another process (the jetbase CLI takes no session lock) inserted but had not committed:
            # the insert then waits and fails on the primary key. The row exists, which is all we need.
            return
        except OperationalError as exc:
            if self.dialect.errors.busy(exc):
                return
            raise

    def _stale_reason(self, holder: LockHolder, session_locked: bool) -> str | None:
        if self.stale_after is None:
            return None
        origin = holder.origin
        if origin is not None and self.heartbeat.session_lock.supported:
            if session_locked:
                return (
                    "its holder's database session is gone (this run obtained the advisory lock every "
                    "engine run holds while it holds the row)"
                )
            return None  # unreachable in practice: without the session lock we do not decide
        if origin is not None:
            dead = provably_dead(origin)
            if dead is not None:
                return dead
        age = holder.age_seconds
        if age is not None and age > self.stale_after:
            kind = "last heartbeat" if origin is not None else "locked_at"
            return f"its {kind} is {age:.0f} s old, more than stale_lock_after={self.stale_after:g} s"
        return None

    def _try_takeover(self, holder: LockHolder, reason: str) -> bool:
        params = {
            "new_process_id": self.process_id,
            "old_process_id": holder.process_id,
            "old_locked_at": holder.raw_locked_at,
        }
        taken = self._claim(_takeover_stmt(self.dialect, holder), params)
        if taken:
            self.logger.warning(
                "TAKING OVER A STALE JETBASE LOCK: %s. Previous holder: %s.", reason, holder.describe()
            )
        return taken

    def _acquired(self) -> None:
        self.held = True
        self.heartbeat.start(self.process_id)
        self.logger.info(
            "Acquired the Jetbase migration lock as process_id %s (host %s, pid %d%s).",
            self.process_id,
            socket.gethostname(),
            os.getpid(),
            f", owner {self.owner}" if self.owner else "",
        )

    def acquire(self) -> None:
        if not self.dialect.supports_lock:
            self.logger.warning(
                "No migration lock on %s: Jetbase has no lock table there, so concurrent migration runs "
                "against this database are NOT excluded.",
                self.dialect.name,
            )
            return
        try:
            self._acquire()
        except BaseException:
            if not self.held:
                self.heartbeat.close()
            raise

    def _acquire(self) -> None:
        deadline = time.monotonic() + self.timeout
        announced: str | None = None
        retried = False
        session_locked = False
        while True:
            holder: LockHolder | None = None
            if not session_locked:
                session_locked = self.heartbeat.try_session_lock()
            if session_locked:
                self._seed_row()
                if self._claim(self.dialect.queries.acquire_lock_stmt(), {"process_id": self.process_id}):
                    self._acquired()
                    return
            _, holder = read_lock(self.conn, self.dialect)
            if holder is not None and session_locked:
                reason = self._stale_reason(holder, session_locked)
                if reason is not None and self._try_takeover(holder, reason):
                    self._acquired()
                    return
            elif session_locked and not retried:
                # Released between our attempt and the read: retry at once, once per poll.
                retried = True
                continue
            retried = False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if holder is not None:
                    who = holder.describe()
                elif not session_locked:
                    who = "another engine run (it holds the lock's session lock; the row may be missing)"
                else:
                    who = "nobody visible (is the jetbase_lock row id=1 missing?)"
                raise LockTimeoutError(
                    f"Timed out after {self.timeout:g} s waiting for the Jetbase migration lock, held by "
                    f"{who}. {UNLOCK_HINT}",
                    holder=holder,
                )
            key = holder.process_id if holder is not None else None
            if announced != key or announced is None:
                announced = key
                self.logger.info(
                    "Waiting up to %.0f s for the Jetbase migration lock, held by %s.",
                    remaining,
                    holder.describe() if holder is not None else "another engine run",
                )
            time.sleep(min(self.poll_interval, remaining))

    # ------------------------------------------------------------------ holding
    def _lost(self, what: str, filename: str | None, applied: tuple[Any, ...]) -> LockLostError:
        self.lost = what
        where = f"before committing {filename}" if filename else "while this run held it"
        message = (
            f"This run lost the Jetbase migration lock {where}: {what}. "
            + (self._not_recorded(filename) if filename else "")
            + "the run stopped. "
            + self._committed(applied)
            + "Another run may be migrating this database: check its status and jetbase_lock before "
            "retrying."
        )
        self.logger.error("%s", message)
        return LockLostError(message, filename=filename, applied=applied)

    @staticmethod
    def _committed(applied: tuple[Any, ...]) -> str:
        # What the caller must not re-apply or must check: the files this run did commit.
        if not applied:
            return "This run had committed no file. "
        names = ", ".join(getattr(run, "filename", str(run)) for run in applied)
        return f"This run had committed {len(applied)} file(s), which stay applied: {names}. "

    def _not_recorded(self, filename: str) -> str:
        if self.dialect.transactional_ddl:
            return f"{filename} was rolled back and not recorded; "
        return (
            f"{filename}'s version row was not recorded, but {self.dialect.name} commits DDL implicitly, "
            f"so the database may hold part of {filename}; "
        )

    def check_owned(
        self, conn: Connection, filename: str | None = None, applied: Sequence[Any] = ()
    ) -> None:
        """Inside the caller's transaction: refresh ``locked_at`` and prove the row is still ours (the
        UPDATE row-locks it on PostgreSQL and MySQL until the commit). Raises LockLostError.
        ``applied`` (the run's files so far) is copied only for an error: copying it before every
        commit would make a run quadratic in its number of files."""
        if not self.dialect.supports_lock or not self.held:
            return
        if self.heartbeat.lost is not None:
            raise self._lost(self.heartbeat.lost, filename, tuple(applied))
        try:
            refreshed = conn.execute(self._refresh, {"p": self.process_id})
            # The UPDATE matched our row: it is ours, and row-locked until the commit. This check runs
            # before every commit, so the proof costs one statement where the driver counts matched
            # rows reliably; only a miss (or an unreliable count) needs the read that says why.
            if refreshed.rowcount == 1 and conn.dialect.supports_sane_rowcount:
                return
            row = conn.execute(dialects.LOCK_OWNER).first()
        except DBAPIError as exc:
            if is_missing_table_error(conn, exc, "jetbase_lock"):
                raise self._lost("the jetbase_lock table was dropped", filename, tuple(applied)) from exc
            raise
        if row is None:
            raise self._lost("the jetbase_lock row (id = 1) was deleted", filename, tuple(applied))
        if not row.is_locked or row.process_id != self.process_id:
            now = f"held by process_id {row.process_id}" if row.is_locked else "free (unlocked by force?)"
            raise self._lost(f"the lock is now {now}", filename, tuple(applied))

    def record_owned(
        self,
        conn: Connection,
        params: dict[str, Any],
        filename: str | None = None,
        applied: Sequence[Any] = (),
    ) -> bool:
        """Inside the caller's transaction: insert the version row (Jetbase's INSERT, ``params``) and
        prove the lock ours, in one statement where the dialect allows it (``owned_insert_stmt``);
        the same guarantee as the INSERT followed by :meth:`check_owned`, one round trip fewer.
        Returns False where there is no such statement: the caller then runs both itself. Raises
        LockLostError when the row is not ours (the version row is then not inserted)."""
        if self._owned_insert is None or not self.held or not conn.dialect.supports_sane_rowcount:
            return False
        if self.heartbeat.lost is not None:
            raise self._lost(self.heartbeat.lost, filename, tuple(applied))
        try:
            inserted = conn.execute(self._owned_insert, {**params, "p": self.process_id})
        except DBAPIError as exc:
            if is_missing_table_error(conn, exc, "jetbase_lock"):
                raise self._lost("the jetbase_lock table was dropped", filename, tuple(applied)) from exc
            raise
        if inserted.rowcount == 1:
            return True
        # No row: the ownership UPDATE matched nothing, so nothing was inserted. check_owned says why
        # and raises; should it find the row ours after all, the INSERT runs on its own.
        self.check_owned(conn, filename, applied)
        conn.execute(self.dialect.queries.insert_version_stmt(), params)
        return True

    # ------------------------------------------------------------------ releasing
    def _release_on(self, conn: Connection) -> int:
        """Rows released: 1, or 0 when the row was no longer this run's."""
        if conn.in_transaction():
            conn.rollback()
        with conn.begin():
            # Read first: a driver that reports rowcount -1 (Databricks connectors before
            # databricks-sql-python PR #847) cannot say whether the UPDATE matched our row.
            before = conn.execute(dialects.LOCK_PROCESS_ID).first()
            result = conn.execute(self.dialect.queries.release_lock_stmt(), {"process_id": self.process_id})
            count = int(result.rowcount)
        if count >= 0:
            return count
        return int(before is not None and before.process_id == self.process_id)

    def _release_waiting_out_busy(self, conn: Connection) -> int:
        """SQLite answers "database is locked" at once, without its busy timeout, when a transaction
        that has read (the release reads first) wants to write while another connection writes (a
        waiter's lock poll): waiting could deadlock, so the reader must roll back and retry."""
        deadline = time.monotonic() + RELEASE_BUSY_TIMEOUT_S
        while True:
            try:
                return self._release_on(conn)
            except OperationalError as exc:
                if not self.dialect.errors.busy(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(RELEASE_BUSY_RETRY_S)

    def release(self, *, quiet: bool = False) -> None:
        """Release the row, then the session lock. A release that finds the row no longer ours raises
        LockLostError (logged only when the run already failed: ``quiet``, or the loss was reported)."""
        if not self.held:
            return
        self.heartbeat.stop()
        try:
            try:
                released = self._release_waiting_out_busy(self.conn)
            except BaseException as first:  # noqa: BLE001 - the run's connection may be broken/cancelled
                try:
                    with self.engine.connect() as fresh:
                        released = self._release_waiting_out_busy(fresh)
                except DBAPIError as exc:
                    if is_missing_table_error(self.conn, exc, "jetbase_lock"):
                        released = 0
                    else:
                        self._release_failed(first)
                        raise
                except BaseException:
                    self._release_failed(first)
                    raise
        finally:
            self.heartbeat.close()
        self.held = False
        # 0: the row was no longer ours.
        if released == 0:
            if self.lost is not None:
                return  # already raised and logged by the ownership check; there was nothing to release
            what = self.heartbeat.lost or "the jetbase_lock row was no longer this run's at release"
            error = self._lost(
                what + " (deleted, its table dropped, unlocked by force or taken over)",
                None,
                tuple(self.committed),
            )
            if not quiet:
                raise error
            return
        self.logger.info("Released the Jetbase migration lock.")

    def _release_failed(self, first: BaseException) -> None:
        self.logger.error(
            "Could not release the Jetbase migration lock (process_id %s): %s. %s",
            self.process_id,
            first,
            UNLOCK_HINT,
        )
