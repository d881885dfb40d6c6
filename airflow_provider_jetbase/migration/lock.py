"""The ``jetbase_lock`` row, shared with the jetbase CLI so that the CLI and Airflow exclude each other.

Acquire: Jetbase's own statement (``UPDATE jetbase_lock SET is_locked = TRUE, ..., process_id =
:process_id WHERE id = 1 AND is_locked = FALSE``), then the row is read back in the same transaction to
confirm ownership (Databricks connectors may report rowcount -1). Unlike the CLI, which fails at
once, a held lock is polled every ``poll_interval`` seconds up to ``timeout``, then
``LockTimeoutError`` says who holds it since when and how to unlock.

Who holds the lock: Jetbase's ``process_id`` column is ``VARCHAR(36)`` and Jetbase only ever
compares it with the value it wrote, so ours is still a UUID in canonical form, but a version-8
(custom) UUID instead of Jetbase's random version 4, carrying who wrote it::

    bits 127..96  first 32 bits of sha256(hostname)  ("host fingerprint")
    bits  95..80  pid >> 12         bits 79..76  version 8        bits 75..64  pid & 0xFFF
    bits  63..62  RFC 4122 variant  bits 61..0   random

No table is added to the user's schema (the database stays exactly what the CLI would leave), a
lock written by the CLI (version 4) is recognised as "holder not recorded", and a waiter can tell
whether the holder ran on its own host and whether that pid is still alive. The free-text
``lock_owner`` (e.g. the Airflow task instance) is logged next to the process_id when the lock is
acquired, so the process_id in a waiter's message leads to the holder's log line.

Stale-lock policy (``stale_after`` seconds, None = never take over), checked while waiting:
- the holder's process_id says it ran on this host (same fingerprint) and its pid no longer exists, or
- the lock is older than ``stale_after`` seconds, measured with the database's clock against
  ``locked_at`` (PostgreSQL stores it without time zone in the holder's session time zone: a holder
  in another time zone skews this age; the dead-pid rule has no such caveat).
Then the lock is taken over with a compare-and-swap on the old ``process_id`` and a WARNING line.

ClickHouse: Jetbase has no lock table there; no lock is taken and a WARNING says so.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import secrets
import socket
import time
import uuid
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from airflow_provider_jetbase.migration import dialects
from airflow_provider_jetbase.migration.dialects import Dialect
from airflow_provider_jetbase.migration.errors import LockTimeoutError
from airflow_provider_jetbase.migration.results import LockInfo
from airflow_provider_jetbase.migration.state import missing_or_raise, query_or_none

UNLOCK_HINT = (
    "If you are sure no migration is running, release it with `jetbase unlock` (in the Jetbase "
    "project) or Migrator(engine, migrations_dir).unlock()."
)


def host_fingerprint(host: str | None = None) -> int:
    name = socket.gethostname() if host is None else host
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:4], "big")


def make_process_id(pid: int | None = None, host: str | None = None) -> str:
    """A canonical 36-character UUID (version 8) that carries the host fingerprint and the pid."""
    pid = (os.getpid() if pid is None else pid) & 0xFFFFFFF
    value = host_fingerprint(host) << 96
    value |= ((pid >> 12) & 0xFFFF) << 80 | 0x8 << 76 | (pid & 0xFFF) << 64  # version 8
    value |= 0b10 << 62 | secrets.randbits(62)  # RFC 4122 variant, then random bits
    return str(uuid.UUID(int=value))


def parse_process_id(process_id: str | None) -> tuple[int, int] | None:
    """(host fingerprint, pid) from one of our process_ids; None for the CLI's uuid4 or anything else."""
    try:
        parsed = uuid.UUID(str(process_id))
    except ValueError:
        return None
    if parsed.version != 8:
        return None
    value = parsed.int
    return value >> 96, ((value >> 80) & 0xFFFF) << 12 | (value >> 64) & 0xFFF


@dataclass(frozen=True)
class LockHolder:
    process_id: str | None
    locked_at: dt.datetime | None
    db_now: dt.datetime | None

    @property
    def age_seconds(self) -> float | None:
        if self.locked_at is None or self.db_now is None:
            return None
        return (self.db_now - self.locked_at).total_seconds()

    @property
    def origin(self) -> tuple[int, int] | None:
        return parse_process_id(self.process_id)

    @property
    def on_this_host(self) -> bool:
        origin = self.origin
        return origin is not None and origin[0] == host_fingerprint()

    def describe(self) -> str:
        parts = [f"process_id {self.process_id}"]
        origin = self.origin
        if origin is None:
            parts.append("holder not recorded (probably the jetbase CLI)")
        elif self.on_this_host:
            parts.append(f"pid {origin[1]} on this host ({socket.gethostname()})")
        else:
            parts.append(f"pid {origin[1]} on another host (host fingerprint {origin[0]:08x})")
        since = f"since {self.locked_at.isoformat(sep=' ')}" if self.locked_at else "since an unknown time"
        age = self.age_seconds
        if age is not None:
            since += f" ({age:.0f} s ago by the database clock)"
        return f"{'; '.join(parts)}; {since}"


def _as_datetime(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None)
    if value is None:
        return None
    try:
        return dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None


def ensure_lock_tables(conn: Connection, dialect: Dialect) -> None:
    """Jetbase's lock table and its single row (not on ClickHouse, like Jetbase)."""
    if not dialect.supports_lock:
        return
    with conn.begin():
        conn.execute(dialect.queries.create_lock_table_stmt())
        conn.execute(dialect.queries.initialize_lock_record_stmt())


def read_lock(conn: Connection, dialect: Dialect) -> tuple[LockInfo, LockHolder | None]:
    """The lock row and who holds it; an absent lock table reads as unlocked."""
    if not dialect.supports_lock:
        return LockInfo(False, None, None, supported=False), None
    row = query_or_none(conn, lambda: conn.execute(dialect.read_lock_stmt).first(), "jetbase_lock")
    if row is None or not row.is_locked:
        return LockInfo(False, None, None, supported=True), None
    locked_at = _as_datetime(row.locked_at)
    holder = LockHolder(row.process_id, locked_at, _as_datetime(row.db_now))
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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    return True


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
        self.held = False

    def __enter__(self) -> MigrationLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def _confirm(self) -> bool:
        # Read back rather than trust rowcount: Databricks connectors may report -1.
        row = self.conn.execute(dialects.LOCK_PROCESS_ID).first()
        return row is not None and row.process_id == self.process_id

    def _try_acquire(self) -> bool:
        try:
            with self.conn.begin():
                self.conn.execute(self.dialect.queries.acquire_lock_stmt(), {"process_id": self.process_id})
                return self._confirm()
        except OperationalError as exc:
            # SQLite: another writer's transaction holds the file ("database is locked"): keep waiting.
            if self.dialect.name == "sqlite" and "locked" in str(exc.orig).lower():
                return False
            raise

    def _stale_reason(self, holder: LockHolder) -> str | None:
        if self.stale_after is None:
            return None
        origin = holder.origin
        if (
            origin is not None
            and holder.on_this_host
            and origin[1] != os.getpid()
            and not _pid_alive(origin[1])
        ):
            return f"its holder (pid {origin[1]} on this host) is no longer running"
        age = holder.age_seconds
        if age is not None and age > self.stale_after:
            return f"it is {age:.0f} s old, more than stale_lock_after={self.stale_after:g} s"
        return None

    def _try_takeover(self, holder: LockHolder, reason: str) -> bool:
        with self.conn.begin():
            self.conn.execute(
                self.dialect.takeover_lock_stmt,
                {"new_process_id": self.process_id, "old_process_id": holder.process_id},
            )
            taken = self._confirm()
        if taken:
            self.logger.warning(
                "TAKING OVER A STALE JETBASE LOCK: %s. Previous holder: %s.", reason, holder.describe()
            )
        return taken

    def acquire(self) -> None:
        if not self.dialect.supports_lock:
            self.logger.warning(
                "No migration lock on %s: Jetbase has no lock table there, so concurrent migration runs "
                "against this database are NOT excluded.",
                self.dialect.name,
            )
            return
        deadline = time.monotonic() + self.timeout
        announced: str | None = None
        busy_unlocked = False
        while True:
            if self._try_acquire():
                self.held = True
                self.logger.info(
                    "Acquired the Jetbase migration lock as process_id %s (host %s, pid %d%s).",
                    self.process_id,
                    socket.gethostname(),
                    os.getpid(),
                    f", owner {self.owner}" if self.owner else "",
                )
                return
            _, holder = read_lock(self.conn, self.dialect)
            if holder is not None:
                reason = self._stale_reason(holder)
                if reason is not None and holder.process_id and self._try_takeover(holder, reason):
                    self.held = True
                    return
            elif not busy_unlocked:
                # Released between our attempt and the read (or the row is missing): retry at once, but
                # only once per poll so a missing lock row cannot spin.
                busy_unlocked = True
                continue
            busy_unlocked = False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                who = (
                    holder.describe()
                    if holder is not None
                    else "nobody visible (is the jetbase_lock row id=1 missing?)"
                )
                raise LockTimeoutError(
                    f"Timed out after {self.timeout:g} s waiting for the Jetbase migration lock, held by "
                    f"{who}. {UNLOCK_HINT}",
                    holder=holder,
                )
            if holder is not None and announced != holder.process_id:
                announced = holder.process_id
                self.logger.info(
                    "Waiting up to %.0f s for the Jetbase migration lock, held by %s.",
                    remaining,
                    holder.describe(),
                )
            time.sleep(min(self.poll_interval, remaining))

    def _release_on(self, conn: Connection) -> None:
        if conn.in_transaction():
            conn.rollback()
        with conn.begin():
            conn.execute(self.dialect.queries.release_lock_stmt(), {"process_id": self.process_id})

    def release(self) -> None:
        if not self.held:
            return
        try:
            self._release_on(self.conn)
        except BaseException as first:  # noqa: BLE001 - the run's connection may be broken
            try:
                with self.engine.connect() as fresh:
                    self._release_on(fresh)
            except BaseException:
                self.logger.error(
                    "Could not release the Jetbase migration lock (process_id %s): %s. %s",
                    self.process_id,
                    first,
                    UNLOCK_HINT,
                )
                raise
        self.held = False
        self.logger.info("Released the Jetbase migration lock.")
