"""The holder's side connection: a session-level advisory lock and the ``locked_at`` heartbeat.

While a run holds the ``jetbase_lock`` row, a thread of its own keeps a second connection that
- on PostgreSQL holds ``pg_advisory_lock(key)`` and on MySQL/MariaDB ``GET_LOCK(name)``, taken
  *before* the row and released *after* it. The database drops a session lock when its session
  ends (process killed, machine gone, connection cut), so a waiter that obtains it has proof that
  no engine run holding the row is alive: ``pg_try_advisory_lock`` / ``GET_LOCK(name, 0)``
  succeeding is that proof, and no guess about pids or clocks is involved. The key is derived
  from the database and schema (PostgreSQL) or the database (MySQL) where ``jetbase_lock`` lives.
- refreshes ``locked_at`` every ``interval`` seconds, so a lock's age means "no heartbeat for N
  seconds" (the age rule of databases without a session lock: Snowflake, Databricks).

SQLite has no side connection (a second writer to the file would only wait on the migration's
write lock): the run refreshes ``locked_at`` inside each migration's transaction instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from airflow_provider_jetbase.migration.dialects import LOCK_OWNER, AdvisoryLock, Dialect

DEFAULT_HEARTBEAT_INTERVAL = 10.0
# A lock is only presumed abandoned after this many heartbeats in a row failed to arrive.
MISSED_HEARTBEATS = 3


def min_stale_lock_after(heartbeat_interval: float) -> float:
    return MISSED_HEARTBEATS * heartbeat_interval


class SessionLock:
    """The advisory lock of one dialect on one connection (no-op where the database has none)."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.key: Any = None

    @property
    def supported(self) -> bool:
        return self.dialect.advisory_lock is not None

    def _key(self, conn: Connection, lock: AdvisoryLock) -> Any:
        where = "|".join(str(part) for part in conn.execute(text(lock.key_sql)).one())
        if lock.integer_key:
            digest = hashlib.sha256(f"jetbase_lock|{where}".encode()).digest()
            return int.from_bytes(digest[:8], "big", signed=True)
        return "jetbase_lock:" + hashlib.sha256(where.encode()).hexdigest()[:40]

    def try_acquire(self, conn: Connection) -> bool:
        lock = self.dialect.advisory_lock
        if lock is None:
            return True
        if self.key is None:
            self.key = self._key(conn, lock)
        got = conn.execute(text(lock.try_sql), {"k": self.key}).scalar_one()
        conn.commit()  # session-level: survives the commit; ends no transaction of ours
        return bool(got)

    def release(self, conn: Connection) -> None:
        lock = self.dialect.advisory_lock
        if lock is None or self.key is None:
            return
        conn.execute(text(lock.release_sql), {"k": self.key})
        conn.commit()


class Heartbeat:
    """The side connection and its thread; ``lost`` says why the row stopped being ours, if it did."""

    def __init__(
        self,
        engine: Engine,
        dialect: Dialect,
        *,
        interval: float,
        logger: logging.Logger,
    ) -> None:
        self.engine = engine
        self.dialect = dialect
        self.interval = interval
        self.logger = logger
        self.session_lock = SessionLock(dialect)
        self.conn: Connection | None = None
        self.process_id: str | None = None
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def needed(self) -> bool:
        return not self.dialect.single_writer

    def open(self) -> Connection:
        if self.conn is None:
            self.conn = self.engine.connect()
        return self.conn

    def try_session_lock(self) -> bool:
        """Take the advisory lock on the side connection (True where the database has none)."""
        if not self.session_lock.supported:
            return True
        return self.session_lock.try_acquire(self.open())

    def start(self, process_id: str) -> None:
        self.process_id = process_id
        if not self.needed:
            return
        self.open()
        self._thread = threading.Thread(target=self._run, name="jetbase-lock-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        assert self.conn is not None
        with self.conn.begin():
            self.conn.execute(self.dialect.refresh_lock_stmt, {"p": self.process_id})
            row = self.conn.execute(LOCK_OWNER).first()
        if row is None:
            self.lost = "the jetbase_lock row (id = 1) was deleted"
        elif not row.is_locked or row.process_id != self.process_id:
            self.lost = f"the lock is now {'held by ' + str(row.process_id) if row.is_locked else 'free'}"

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if self.conn is None:
                self._reconnect()
                if self.conn is None:
                    continue
            try:
                self._beat()
            except Exception as exc:  # noqa: BLE001 - a missed beat is logged; the commit check decides
                self.logger.warning("Jetbase lock heartbeat failed (%s); retrying.", exc)
                if self.conn is not None and self.conn.invalidated:
                    # The session lock went with the session: retake it on a new one, or report loss.
                    self._reconnect()
            if self.lost is not None:
                self.logger.error("This run lost the Jetbase migration lock: %s.", self.lost)
                return

    def _reconnect(self) -> None:
        with contextlib.suppress(Exception):
            if self.conn is not None:
                self.conn.close()
        self.conn = None
        try:
            if not self.try_session_lock():
                self.lost = "the heartbeat's session lock was lost and another run now holds it"
        except Exception as exc:  # noqa: BLE001 - next beat retries
            self.logger.warning("Jetbase lock heartbeat could not reconnect (%s).", exc)
            with contextlib.suppress(Exception):
                if self.conn is not None:
                    self.conn.close()
            self.conn = None

    def stop(self) -> None:
        """Stop the thread (the row is released by the caller before the session lock goes)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(30.0, 3 * self.interval))
            if not self._thread.is_alive():
                self._thread = None

    def close(self) -> None:
        """Release the session lock and the connection; a broken connection drops the lock anyway."""
        self.stop()
        conn, self.conn = self.conn, None
        if conn is None:
            return
        if self._thread is not None:  # stuck in a statement: closing the session frees the lock
            with contextlib.suppress(Exception):
                conn.invalidate()
            return
        try:
            if conn.in_transaction():
                conn.rollback()
            self.session_lock.release(conn)
        except Exception as exc:  # noqa: BLE001 - closing the session releases the lock server-side
            self.logger.debug("Releasing the session lock failed (%s); closing its session.", exc)
            with contextlib.suppress(Exception):
                conn.invalidate()
        finally:
            with contextlib.suppress(Exception):
                conn.close()
