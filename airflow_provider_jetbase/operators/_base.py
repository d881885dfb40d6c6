"""What every Jetbase operator shares: the migrations folder, the engine's logger, engine disposal.

Cheap to import (Airflow imports operator modules at every DAG parse): the hook, SQLAlchemy and the
engine are imported by the methods that need them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator

from airflow_provider_jetbase.errors import JetbaseProviderError
from airflow_provider_jetbase.operators import _params

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_jetbase.migration import Migrator


class JetbaseBaseOperator(BaseOperator):
    """Base of the Jetbase operators; subclasses set ``jetbase_conn_id`` and ``migrations_dir``."""

    jetbase_conn_id: str
    migrations_dir: str

    def _migrations_folder(self, context: Context) -> Path:
        """``migrations_dir``, a relative path resolved against the DAG file's folder (never the
        worker's current directory)."""
        return _params.resolve_migrations_dir(
            self.migrations_dir, _params.dag_fileloc(context, getattr(self, "dag", None))
        )

    def _engine_logger(self) -> logging.Logger:
        # The engine takes a stdlib Logger (it has no Airflow import); one under airflow.task reaches
        # the task log.
        return logging.getLogger(f"airflow.task.operators.{type(self).__module__}.{type(self).__name__}")


class TaskKilledError(JetbaseProviderError):
    """Raised in the task thread when Airflow kills the task, so the engine releases its lock."""


class CancellableMigrationOperator(JetbaseBaseOperator):
    """An operator whose Migrator call a kill or an ``execution_timeout`` cancels on the server."""

    # The TaskKilledError message: {conn} is the connection id, {done} what the cancel did.
    _kill_message = "Task killed while migrating '{conn}': {done}"
    _running: Migrator | None = None
    _kill_requested = False

    def _run_migration(self, migrator: Migrator, call: Callable[[], Any]) -> Any:
        """Run ``call`` in a worker thread while this (the task's) thread waits, so a kill or an
        ``execution_timeout`` reaches us at once even while the driver is blocked in C; either one
        cancels the running statement on the server (see on_kill and migration.cancel)."""
        from airflow_provider_jetbase.migration.cancel import run_cancellable

        self._running = migrator
        try:
            return run_cancellable(call, migrator.canceller, logger=self._engine_logger())
        finally:
            self._running = None
            dispose_engine_of(migrator)

    def on_kill(self) -> None:
        # What this relies on, in Airflow 3.3's airflow/sdk/execution_time/task_runner.py: `_on_term`
        # (the SIGTERM handler) calls ti.task.on_kill() in the task's main thread, which here waits
        # for the migration thread, and the supervisor SIGKILLs about 5 s later; `_execute_task` runs
        # execute() under `timeout()` (SIGALRM raising AirflowTaskTimeout there) and calls on_kill()
        # after it. So: cancel the running statement on the server now, then raise so this thread
        # stops waiting; run_cancellable gives the migration a moment to roll back and release the
        # jetbase_lock row, and notes on the exception what happened.
        migrator = self._running
        if migrator is None or self._kill_requested:
            return
        done = migrator.cancel("the task was killed")
        if threading.current_thread() is threading.main_thread():
            self._kill_requested = True
            raise TaskKilledError(self._kill_message.format(conn=self.jetbase_conn_id, done=done))


def dispose_engine_of(holder: Any) -> None:
    """Close the pool of the Engine the hook made for ``holder`` (a Migrator, or an Engine itself),
    so no connection outlives the task."""
    engine = getattr(holder, "engine", holder)
    dispose = getattr(engine, "dispose", None)
    if callable(dispose):
        dispose()
