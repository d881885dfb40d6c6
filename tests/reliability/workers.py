"""Code that runs in the separate processes of the reliability tests.

- :func:`pool_worker`: a long-lived ``multiprocessing`` (spawn) worker. Each round it receives a
  database URL, waits on a barrier with the other workers so they all start together, runs one
  ``Migrator.upgrade()`` on its own new engine, and reports what happened. Long-lived so that 20
  rounds do not pay 8 interpreter start-ups each.
- ``python -m tests.reliability.workers upgrade URL FOLDER [options]``: one upgrade in a fresh
  process, for the crash tests (SIGKILL, SIGTERM) and the memory measurements. It prints one JSON
  line prefixed with ``RESULT`` (applied versions, error type and message, peak RSS).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import signal
import sys
import time
from typing import Any

RESULT = "RESULT "


class TerminatedError(Exception):
    """What the SIGTERM handler raises, as Airflow's task runner does when it kills a task."""


def _upgrade(url: str, folder: str, lock_timeout: float, poll: float, **engine_kwargs: Any) -> dict[str, Any]:
    from sqlalchemy import create_engine

    from airflow_provider_jetbase.migration import Migrator
    from airflow_provider_jetbase.migration.errors import JetbaseError

    engine = create_engine(url, **engine_kwargs)
    try:
        migrator = Migrator(engine, folder, lock_timeout=lock_timeout, lock_poll_interval=poll)
        try:
            result = migrator.upgrade()
        except JetbaseError as exc:
            return {"ok": False, "error": type(exc).__name__, "message": str(exc), "applied": []}
        return {"ok": True, "applied": [r.version for r in result.applied], "error": None, "message": ""}
    finally:
        engine.dispose()


def pool_worker(tasks: Any, results: Any, barrier: Any, index: int) -> None:
    while True:
        task = tasks.get()
        if task is None:
            return
        url, folder, lock_timeout, poll = task
        barrier.wait()
        started = time.monotonic()
        try:
            outcome = _upgrade(url, folder, lock_timeout, poll)
        except BaseException as exc:  # noqa: BLE001 - reported to the test, which fails on it
            outcome = {"ok": False, "error": type(exc).__name__, "message": str(exc), "applied": []}
        outcome["worker"] = index
        outcome["seconds"] = time.monotonic() - started
        results.put(outcome)


def _vm_hwm_kb() -> int:
    """Peak RSS of this process image. Linux keeps ru_maxrss across fork+exec, so a child started by a
    big parent (pytest with Airflow loaded) reports at least the parent's size there; VmHWM belongs to
    the address space that exec created, so it measures this program alone."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _on_sigterm(signum: int, frame: Any) -> None:
    raise TerminatedError("SIGTERM received: task killed")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["upgrade"])
    parser.add_argument("url")
    parser.add_argument("folder")
    parser.add_argument("--lock-timeout", type=float, default=30.0)
    parser.add_argument("--poll", type=float, default=0.2)
    parser.add_argument("--pg-options", default=None, help="libpq options (e.g. -c jbtest.sleep=30)")
    parser.add_argument("--mysql-init", default=None, help="PyMySQL init_command (e.g. SET @jbtest_sleep=30)")
    parser.add_argument("--sigterm-raises", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    if args.sigterm_raises:
        signal.signal(signal.SIGTERM, _on_sigterm)
    engine_kwargs: dict[str, Any] = {}
    if args.pg_options:
        engine_kwargs["connect_args"] = {"options": args.pg_options}
    if args.mysql_init:
        engine_kwargs["connect_args"] = {"init_command": args.mysql_init}
    print("STARTED", flush=True)
    try:
        outcome = _upgrade(args.url, args.folder, args.lock_timeout, args.poll, **engine_kwargs)
    except TerminatedError as exc:
        outcome = {"ok": False, "error": type(exc).__name__, "message": str(exc), "applied": []}
    outcome["max_rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outcome["vm_hwm_kb"] = _vm_hwm_kb()
    print(RESULT + json.dumps(outcome), flush=True)
    return 0 if outcome["ok"] else 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
