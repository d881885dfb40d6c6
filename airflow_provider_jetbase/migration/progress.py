"""How a run reports its files as they go: a line per file for short runs, progress for long ones.

A task log of 10,000 "Applying..." / "Applied..." pairs is unreadable, and each record costs a trip
through the task runner's log pipeline. Up to ``SHORT_RUN_FILES`` files, every file is logged at
INFO before and after it runs (as always). Above that, those lines go to DEBUG, and an INFO
progress line is written every ``PROGRESS_FRACTION`` of the files or every
``PROGRESS_INTERVAL`` seconds, whichever comes first; the caller's summary (the operators' table)
says what each file did. An error is always logged in full by the engine, whatever the length.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

SHORT_RUN_FILES = 50
PROGRESS_FRACTION = 0.05
PROGRESS_INTERVAL = 10.0


class Progress:
    """One run's reporter: ``before(relpath, statements)`` and ``after(relpath, ms)`` per file."""

    def __init__(
        self,
        logger: logging.Logger,
        total: int,
        direction: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.total = total
        self.direction = direction
        self.long = total > SHORT_RUN_FILES
        # Per-file lines of a long run are DEBUG: decide once, so a disabled level costs nothing.
        self.per_file = logger.isEnabledFor(logging.DEBUG if self.long else logging.INFO)
        self.per_file_level = logging.DEBUG if self.long else logging.INFO
        self.clock = clock
        self.started = clock()
        self.last_report = self.started
        self.step = max(1, int(total * PROGRESS_FRACTION))
        self.next_count = self.step
        self.done = 0

    def before(self, relpath: str, statements: int) -> None:
        if self.per_file:
            verb = "Applying" if self.direction == "upgrade" else "Rolling back"
            plural = "" if statements == 1 else "s"
            level = self.per_file_level
            self.logger.log(level, "%s %s (%d statement%s)...", verb, relpath, statements, plural)

    def after(self, relpath: str, duration_ms: float) -> None:
        self.done += 1
        if self.per_file:
            verb = "Applied" if self.direction == "upgrade" else "Rolled back"
            self.logger.log(self.per_file_level, "%s %s in %.1f ms.", verb, relpath, duration_ms)
        if not self.long or self.done == self.total:
            return
        now = self.clock()
        if self.done >= self.next_count or now - self.last_report >= PROGRESS_INTERVAL:
            self.last_report = now
            self.next_count = (self.done // self.step + 1) * self.step
            verb = "applied" if self.direction == "upgrade" else "rolled back"
            self.logger.info(
                "Progress: %d of %d files %s (%.0f%%) in %.1f s, last %s.",
                self.done,
                self.total,
                verb,
                100.0 * self.done / self.total,
                now - self.started,
                relpath,
            )
