"""Lines for the run's closing summary (where the screenshots went, how long the deployment took to
start), from whichever process ran the test.

With pytest-xdist a test runs in a worker process, whose ``config.stash`` the controller never sees,
so each process appends its lines to a file of its own in one folder made by the controller (handed
to the workers in ``workerinput``), and the controller prints them all at the end.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

_FOLDER = pytest.StashKey[Path]()
_WORKER_KEY = "jetbase_summary_dir"


def start(config: pytest.Config) -> None:
    """In the controller (or a run without workers): the folder the lines go to."""
    if not hasattr(config, "workerinput"):
        config.stash[_FOLDER] = Path(tempfile.mkdtemp(prefix="jetbase-test-summary-"))


def hand_to_worker(config: pytest.Config, workerinput: dict[str, Any]) -> None:
    workerinput[_WORKER_KEY] = str(config.stash[_FOLDER])


def _folder(config: pytest.Config) -> Path:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        return Path(workerinput[_WORKER_KEY])
    return config.stash[_FOLDER]


def add_line(config: pytest.Config, line: str) -> None:
    with open(_folder(config) / f"{os.getpid()}.txt", "a", encoding="utf-8") as out:
        out.write(line.replace("\n", " ") + "\n")


def write_lines(config: pytest.Config, reporter: pytest.TerminalReporter) -> None:
    """In the controller: every process's lines, then the folder is removed."""
    if hasattr(config, "workerinput") or _FOLDER not in config.stash:
        return
    folder = config.stash[_FOLDER]
    for path in sorted(folder.glob("*.txt")):
        for line in path.read_text(encoding="utf-8").splitlines():
            reporter.write_line(line)
    shutil.rmtree(folder, ignore_errors=True)
