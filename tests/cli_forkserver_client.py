"""The tests' side of ``cli_forkserver``: one server per distinct CLI environment, per process.

``forked_cli_call`` is what ``JetbaseProject.run`` uses; set ``TESTS_JETBASE_CLI_FRESH_PROCESS=1``
to run every call as a fresh ``jetbase`` process instead (``tests/test_cli_forkserver.py`` runs the
same calls both ways and compares them).
"""

from __future__ import annotations

import atexit
import json
import locale
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from tests.cli_forkserver import HEADER

FRESH_PROCESS_VARIABLE = "TESTS_JETBASE_CLI_FRESH_PROCESS"
SERVER_SCRIPT = Path(__file__).with_name("cli_forkserver.py")
# Bounds on waits, not speed assertions: the server imports the Snowflake stack (pandas, pyarrow).
READY_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 10.0
KILLED_EXIT_TIMEOUT_SECONDS = 30.0


class ForkServerError(RuntimeError):
    pass


class _Server:
    def __init__(self, env: Mapping[str, str], drivername: str) -> None:
        self.folder = tempfile.mkdtemp(prefix="jbcli-")
        self.socket_path = os.path.join(self.folder, "socket")
        self.stderr_path = os.path.join(self.folder, "stderr")
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, str(SERVER_SCRIPT), self.socket_path, drivername],
                cwd=self.folder,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], READY_TIMEOUT_SECONDS)
        line = self.process.stdout.readline() if ready else b""
        if line.strip() != b"ready":
            self.stop()
            raise ForkServerError(f"the jetbase CLI fork server did not start: {self.describe()}")

    def describe(self) -> str:
        try:
            with open(self.stderr_path, errors="replace") as f:
                stderr = f.read()[-4000:]
        except OSError:
            stderr = "(no stderr file)"
        return f"pid {self.process.pid}, exit code {self.process.poll()}, stderr:\n{stderr}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT_SECONDS)
        if self.process.stdout is not None:
            self.process.stdout.close()
        shutil.rmtree(self.folder, ignore_errors=True)


_servers: dict[tuple[str, tuple[tuple[str, str], ...]], _Server] = {}
_servers_lock = threading.Lock()


# Variables that differ from call to call and that no import reads: left out of a server's
# environment (each call still gets its own), or every test would start a server of its own.
PER_CALL_VARIABLES = frozenset({"PYTEST_CURRENT_TEST"})


def _server_for(env: Mapping[str, str], drivername: str) -> _Server:
    # Jetbase reads JETBASE_* at call time; everything else is the server's own environment, so an
    # import-time read in a driver sees what it would see in a fresh process.
    server_env = {
        k: v for k, v in env.items() if not k.upper().startswith("JETBASE_") and k not in PER_CALL_VARIABLES
    }
    key = (drivername, tuple(sorted(server_env.items())))
    with _servers_lock:
        server = _servers.get(key)
        if server is None or server.process.poll() is not None:
            if not _servers:
                atexit.register(stop_servers)
            server = _servers[key] = _Server(server_env, drivername)
        return server


def stop_servers() -> None:
    with _servers_lock:
        for server in _servers.values():
            server.stop()
        _servers.clear()


class _Answers:
    """The server's answer lines, read from the socket itself: a ``makefile()`` reader cannot be
    read again after a timeout, and the exit status must still be read after the guard's kill."""

    def __init__(self, conn: socket.socket, server: _Server) -> None:
        self.conn, self.server, self.buffer = conn, server, b""

    def line(self, what: str) -> str:
        while b"\n" not in self.buffer:
            data = self.conn.recv(4096)
            if not data:
                raise ForkServerError(f"the jetbase CLI fork server sent no {what}: {self.server.describe()}")
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()


def _decoded(f: IO[bytes]) -> str:
    # As subprocess.run(text=True) decodes a pipe.
    f.seek(0)
    data = f.read().decode(locale.getpreferredencoding(False))
    return data.replace("\r\n", "\n").replace("\r", "\n")


def forked_cli_call(
    argv: Sequence[str], cwd: Path, env: Mapping[str, str], drivername: str, timeout: float = 300.0
) -> tuple[int, str, str]:
    """Run ``argv`` (the console script first) as a forked CLI process: (exit code, stdout, stderr).

    ``drivername`` (``postgresql+psycopg2``...): the database whose driver the server preloads.
    ``timeout`` is a guard against a hung CLI: the child is killed and the call fails.
    """
    server = _server_for(env, drivername)
    request = json.dumps(
        {
            "argv": list(argv),
            "cwd": str(cwd),
            "env": dict(env),
            "path0": os.path.dirname(os.path.realpath(argv[0])),
        }
    ).encode()
    with (
        tempfile.TemporaryFile() as stdout,
        tempfile.TemporaryFile() as stderr,
        open(os.devnull, "rb") as stdin,
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn,
    ):
        conn.settimeout(READY_TIMEOUT_SECONDS)
        try:
            conn.connect(server.socket_path)
        except OSError as exc:
            reason = f"cannot reach the jetbase CLI fork server ({exc}): {server.describe()}"
            raise ForkServerError(reason) from exc
        message = HEADER.pack(len(request)) + request
        sent = socket.send_fds(conn, [message], [stdin.fileno(), stdout.fileno(), stderr.fileno()])
        conn.sendall(message[sent:])
        answers = _Answers(conn, server)
        pid = int(answers.line("pid").split()[1])
        conn.settimeout(timeout)
        try:
            exit_line = answers.line("exit status")
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)
            conn.settimeout(KILLED_EXIT_TIMEOUT_SECONDS)
            answers.line("exit status")
            command = " ".join(argv[1:])
            raise ForkServerError(f"jetbase {command} ran over {timeout} s and was killed") from None
        return int(exit_line.split()[1]), _decoded(stdout), _decoded(stderr)
