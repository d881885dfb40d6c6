"""What every Jetbase operator shares: the migrations folder, the engine's logger, engine disposal.

Cheap to import (Airflow imports operator modules at every DAG parse): the hook, SQLAlchemy and the
engine are imported by the methods that need them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator

from airflow_provider_jetbase.operators import _params

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


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
        # The engine forwards the jetbase package's records with Logger.handle(), which Airflow 3's
        # structlog-based self.log lacks; a stdlib logger under airflow.task reaches the task log.
        return logging.getLogger(f"airflow.task.operators.{type(self).__module__}.{type(self).__name__}")


def dispose_engine_of(holder: Any) -> None:
    """Close the pool of the Engine the hook made for ``holder`` (a Migrator, or an Engine itself),
    so no connection outlives the task."""
    engine = getattr(holder, "engine", holder)
    dispose = getattr(engine, "dispose", None)
    if callable(dispose):
        dispose()
