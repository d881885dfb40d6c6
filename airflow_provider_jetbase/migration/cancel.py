"""Stopping a migration from another thread: cancel the statement on the server, then stop between
statements.

A kill or a timeout reaches a Python process as a signal, whose handler runs in the main thread only
between bytecodes. A driver blocked in C (psycopg2 waiting on libpq, PyMySQL in a socket read
loop that retries on EINTR, SQLite stepping a query) would hold it off until the statement ends,
and Airflow SIGKILLs the task about 5 s after SIGTERM: the lock would stay held and the statement
keep running on the server. So :func:`run_cancellable` runs the migration in a worker thread while
the calling thread waits in an interruptible ``join``; a signal's exception (or ``on_kill``) there
calls :meth:`Canceller.cancel`, which cancels the running statement with the driver's own
thread-safe means. The migration then fails its normal way: the file's transaction is rolled back,
the lock released, and the error says what happened.

No Airflow import here: the operators pass their kill and timeout exceptions through unchanged.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection

T = TypeVar("T")

# Airflow 3.3's supervisor sends SIGKILL about 5 s after SIGTERM: leave the rollback and the lock
# release this long, and still report before the SIGKILL.
DEFAULT_GRACE_SECONDS = 3.0


class Canceller:
    """Cancels the statement running on the migration connection, once; then ``requested`` is set
    and the engine stops before its next statement, file or commit."""

    def __init__(self, engine: Engine, logger: logging.Logger) -> None:
        self.engine = engine
        self.logger = logger
        self.requested = threading.Event()
        self.reason: str | None = None
        self._conn: Connection | None = None
        # Re-entrant: a signal handler may call cancel() while this thread is inside it already.
        self._guard = threading.RLock()

    @contextmanager
    def running(self, conn: Connection) -> Iterator[None]:
        """Migration statements run on ``conn`` meanwhile. Only then is a statement cancelled on the
        server: a cancel landing on the lock's release or the version-row insert instead would leave
        the lock held or turn a clean stop into a confusing error."""
        self._conn = conn
        try:
            yield
        finally:
            self._conn = None

    def cancel(self, reason: str) -> str:
        """Ask the run to stop, cancelling its running statement; returns what was done. Safe to call
        from a signal handler and from any thread, and more than once (only the first call acts)."""
        with self._guard:
            if self.requested.is_set():
                return f"cancellation already requested ({self.reason})"
            self.reason = reason
            self.requested.set()
        conn = self._conn
        if conn is None:
            return "no migration statement was running; the run stops before its next step"
        try:
            done = self._cancel_statement(conn)
        except Exception as exc:  # noqa: BLE001 - the run still stops at its next statement
            done = f"cancelling the running statement failed ({type(exc).__name__}: {exc})"
        self.logger.warning("Cancelling the migration (%s): %s.", reason, done)
        return done

    def resend(self) -> None:
        """Cancel again if a statement still runs: a cancel that reached the server just before the
        statement did (PostgreSQL, MySQL and SQLite all ignore a cancel with nothing running) would
        otherwise let it run to its end."""
        conn = self._conn
        if conn is None or not self.requested.is_set():
            return
        try:
            self._cancel_statement(conn)
        except Exception as exc:  # noqa: BLE001 - the first attempt's outcome was logged already
            self.logger.debug("Cancelling the running statement again failed: %s", exc)

    def _cancel_statement(self, conn: Connection) -> str:
        fairy = conn.connection  # the pooled connection; reading it does not touch the driver
        dbapi: Any = fairy.dbapi_connection
        module = type(dbapi).__module__.split(".", 1)[0]
        if module == "psycopg2":
            dbapi.cancel()  # libpq's PQcancel, meant to be called from another thread
            return "sent PostgreSQL a cancel request for the running statement"
        if module == "psycopg":
            cancel = getattr(dbapi, "cancel_safe", None) or dbapi.cancel
            cancel()
            return "sent PostgreSQL a cancel request for the running statement"
        if module == "sqlite3":
            dbapi.interrupt()
            return "interrupted the running SQLite statement"
        if module in ("pymysql", "MySQLdb"):
            thread_id = int(dbapi.thread_id())
            # KILL QUERY needs a second connection; a fresh one, as the run's own is busy.
            with self.engine.connect() as other:
                other.execute(text(f"KILL QUERY {thread_id}"))
            return f"killed the running query of MySQL/MariaDB connection {thread_id}"
        return f"the {module} driver has no way to cancel a running statement; the run stops after it"


def run_cancellable(
    call: Callable[[], T],
    canceller: Canceller,
    *,
    grace: float = DEFAULT_GRACE_SECONDS,
    logger: logging.Logger,
) -> T:
    """``call()`` in a worker thread; any exception raised in this thread while waiting (a signal
    handler's kill or timeout, KeyboardInterrupt) cancels the run, waits up to ``grace`` seconds for
    it to roll back and release its lock, notes what happened on that exception, and re-raises it."""
    outcome: dict[str, Any] = {}
    context = contextvars.copy_context()  # Airflow keeps the task's context in contextvars
    # An Event, not Thread.join(): on Python < 3.13 a join interrupted by a signal's exception can
    # leave the thread reported as stopped while it still runs.
    finished = threading.Event()

    def target() -> None:
        try:
            outcome["result"] = context.run(call)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            outcome["error"] = exc
        finally:
            finished.set()

    worker = threading.Thread(target=target, name="jetbase-migration", daemon=True)
    worker.start()
    try:
        while not finished.wait(0.5):
            pass
    except BaseException as interrupt:
        canceller.cancel(type(interrupt).__name__)
        deadline = time.monotonic() + grace
        while not finished.wait(min(0.5, max(0.0, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                break
            canceller.resend()
        note = _what_happened(finished.is_set(), outcome, grace)
        logger.error("%s: %s", type(interrupt).__name__, note)
        interrupt.add_note(note)
        raise
    if "error" in outcome:
        raise outcome["error"]
    result: T = outcome["result"]
    return result


def _what_happened(finished: bool, outcome: dict[str, Any], grace: float) -> str:
    if not finished:
        return (
            f"the migration was asked to stop, but had not finished {grace:g} s later: its rollback and "
            "the Jetbase lock release may not have happened. Check the lock and the database (jetbase "
            "status) before retrying"
        )
    if "error" in outcome:
        return f"the migration stopped: {outcome['error']}"
    return "the migration had already finished before it could be cancelled: its files are committed"
