"""Routing the ``jetbase`` package's log records to the caller's logger.

Importing ``jetbase.logging`` (the CLI's modules do) gives the ``jetbase`` logger its own stderr
handler and ``propagate=False``, so its records would bypass Airflow's task log. While a run is in
progress, a handler on that one logger passes the records emitted by the running thread to the
handlers of the engine's logger and its ancestors (as if the record had been logged there), skipping
any handler the ``jetbase`` logger already has, so a handler attached to both sees a record once.
Jetbase's own stderr handler is left alone (it may still print the line). The handler is removed
afterwards; nothing outside the ``jetbase`` logger is changed. The engine itself imports only
Jetbase modules that do not import ``jetbase.logging``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

JETBASE_LOGGER = "jetbase"


class _ForwardHandler(logging.Handler):
    def __init__(self, target: logging.Logger, already: set[logging.Handler]) -> None:
        super().__init__(logging.NOTSET)
        self.target = target
        self.already = already
        self.thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread or not self.target.isEnabledFor(record.levelno):
            return
        current: logging.Logger | None = self.target
        while current is not None:
            for handler in current.handlers:
                if handler not in self.already and record.levelno >= handler.level:
                    handler.handle(record)
            if not current.propagate:
                break
            current = current.parent


@contextmanager
def forward_jetbase_logs(target: logging.Logger) -> Iterator[None]:
    source = logging.getLogger(JETBASE_LOGGER)
    if source.propagate:
        # Records already reach the root handlers (and Airflow's task log): forwarding would duplicate.
        yield
        return
    handler = _ForwardHandler(target, set(source.handlers))
    source.addHandler(handler)
    try:
        yield
    finally:
        source.removeHandler(handler)
