"""A live lock holder in another PID namespace (another container with the same host name) is never
taken over by the dead-pid rule: its pid means nothing in the waiter's namespace.

Both processes run under ``unshare --pid --fork --mount-proc`` (root only), each in a PID namespace
of its own with its own /proc, as two containers of one host would. SQLite is the database because
there the pid rule is the only liveness proof (PostgreSQL and MariaDB also have the holder's
session-level advisory lock). The holder's pid is chosen to be one that does not exist in the
waiter's namespace, so a rule that judged liveness by ``kill(pid, 0)`` would take the lock over.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from airflow_provider_jetbase.migration import Migrator
from airflow_provider_jetbase.migration.lock import parse_process_id
from tests.conftest import unavailable
from tests.jetbase_cli import applied_versions, write_migration

REPO_ROOT = Path(__file__).resolve().parents[2]
GUARD_SECONDS = 120.0  # hang guards, not speed assertions

HOLDER = """
import logging, select, sys
from sqlalchemy import create_engine
from airflow_provider_jetbase.migration.dialects import dialect_for
from airflow_provider_jetbase.migration.lock import MigrationLock
engine = create_engine(sys.argv[1])
with engine.connect() as conn:
    lock = MigrationLock(conn, engine, dialect_for(engine), timeout=30, poll_interval=0.1,
                         owner="ns-holder", stale_after=None, logger=logging.getLogger("holder"))
    lock.acquire()
    print("HELD", lock.process_id, flush=True)
    select.select([sys.stdin], [], [], 120)  # until the test writes a line (bounded)
    lock.release()
    print("RELEASED", flush=True)
engine.dispose()
"""

WAITER = """
import json, sys
from sqlalchemy import create_engine
from airflow_provider_jetbase.migration import Migrator
from airflow_provider_jetbase.migration.errors import LockTimeoutError
from airflow_provider_jetbase.migration.holder import namespace_fingerprint
engine = create_engine(sys.argv[1])
outcome = {"namespace": namespace_fingerprint()}
try:
    result = Migrator(engine, sys.argv[2], lock_timeout=1.5, lock_poll_interval=0.1,
                      stale_lock_after=3600).upgrade()
    outcome.update(outcome="applied", applied=[r.version for r in result.applied])
except LockTimeoutError as exc:
    outcome.update(outcome="timeout", message=str(exc))
engine.dispose()
print("RESULT " + json.dumps(outcome), flush=True)
"""


def _require_unshare() -> None:
    reason = None
    if shutil.which("unshare") is None:
        reason = "no unshare command"
    elif os.geteuid() != 0:
        reason = "not running as root"
    else:
        probe = subprocess.run(
            ["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, text=True, timeout=30
        )
        if probe.returncode != 0:
            reason = f"unshare --pid failed: {probe.stderr.strip()}"
    if reason is None:
        return
    unavailable(
        f"CI needs PID namespaces for this test: {reason}",
        f"SKIPPING the PID-namespace lock test outside CI: {reason}",
    )


def _in_new_pid_namespace(script: str, *args: str, pad_pids: int = 0) -> list[str]:
    """argv running ``python -c script args`` in a new PID namespace; ``pad_pids`` short-lived
    processes first, so the script's pid there is above ``pad_pids``."""
    python = " ".join([sys.executable, "-c", _sh_quote(script), *map(_sh_quote, args)])
    padding = f"for i in $(seq {pad_pids}); do /bin/true; done; " if pad_pids else ""
    # '& wait' keeps the shell as pid 1, so the script gets a fresh pid instead of the shell's; an
    # asynchronous command's stdin is /dev/null unless redirected, hence '<&3'.
    return [
        "unshare",
        "--pid",
        "--fork",
        "--mount-proc",
        "sh",
        "-c",
        f"exec 3<&0; {padding}{python} <&3 & wait",
    ]


def _sh_quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


def test_live_holder_in_another_pid_namespace_is_not_taken_over(sqlite_url: URL, tmp_path: Path) -> None:
    _require_unshare()
    folder = tmp_path / "migrations"
    write_migration(folder, "V1__first.sql", "CREATE TABLE first_t (id INT);")
    engine = create_engine(sqlite_url)
    url = sqlite_url.render_as_string(hide_password=False)
    Migrator(engine, folder).upgrade()
    write_migration(folder, "V2__second.sql", "CREATE TABLE second_t (id INT);")

    holder = subprocess.Popen(
        _in_new_pid_namespace(HOLDER, url, pad_pids=40),
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None and holder.stderr is not None
        held = holder.stdout.readline().split()
        assert held[:1] == ["HELD"], f"holder did not take the lock: {held} {holder.stderr.read()}"
        identity = parse_process_id(held[1])
        assert identity is not None and identity.namespace != 0 and identity.pid > 40, identity

        waiter = subprocess.run(
            _in_new_pid_namespace(WAITER, url, str(folder)),
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=GUARD_SECONDS,
        )
        lines = [line for line in waiter.stdout.splitlines() if line.startswith("RESULT ")]
        assert lines, f"waiter gave no result\n{waiter.stdout}\n{waiter.stderr}"
        outcome = json.loads(lines[-1][len("RESULT ") :])
        # The namespaces are told apart (neither "unknown"): the waiter knows the pid is not its own.
        assert outcome["namespace"] not in (0, identity.namespace), (outcome, identity)
        assert outcome["outcome"] == "timeout", (outcome, waiter.stderr)
        assert "another host or in another PID namespace" in outcome["message"], outcome["message"]
        with engine.connect() as conn:
            row = conn.execute(text("SELECT is_locked, process_id FROM jetbase_lock WHERE id = 1")).one()
        assert bool(row[0]) and row[1] == held[1]
        assert applied_versions(engine) == ["1"]

        holder.stdin.write("release\n")
        holder.stdin.flush()
        stdout, stderr = holder.communicate(timeout=GUARD_SECONDS)
        assert "RELEASED" in stdout, f"the holder's own release failed:\n{stdout}\n{stderr}"
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.communicate(timeout=GUARD_SECONDS)
        engine.dispose()
