"""A fork server for the real ``jetbase`` CLI: each call is a fresh process, without the imports.

A ``jetbase`` call on the fakesnow server costs about 2.2 CPU-seconds, nearly all of it importing
(``snowflake.connector.options`` imports pandas, pyarrow and boto3 whenever they are installed), and
about 0.6 s on the other databases; the suite makes hundreds of calls on a 2-core machine. So this
process imports the CLI and a database's driver once, and forks a child per call. The child is the
CLI's own process: it takes the call's working directory, environment (replaced, not merged),
``sys.argv`` and ``sys.path[0]`` as the console script would have them, stdin from /dev/null and
stdout/stderr into the caller's files, then runs the console script's ``sys.exit(main())`` and exits
the way any interpreter does (atexit, finalizers, flushed streams). Jetbase reads its configuration,
environment and folder at call time, never at import, so the fork sees exactly what a fresh process
sees; the server is started with the call's environment less its ``JETBASE_*`` variables and
``PYTEST_CURRENT_TEST`` (the client keeps one server per distinct environment), so whatever a driver
reads at import is the same too.

Standard library only: it runs as a script (``sys.path[0]`` is then this folder, not the project).

Protocol, one connection per call over a Unix socket: the client sends a length-prefixed JSON request
(``argv``, ``cwd``, ``env``, ``path0``) with three file descriptors (stdin, stdout, stderr); a waiter
process forked for the call forks the CLI child and answers ``pid <n>`` and then ``exit <code>``
(negative for a signal, as ``Popen.returncode``).
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import select
import socket
import struct
import sys
import threading

HEADER = struct.Struct("!Q")


def _recv_request(conn: socket.socket) -> tuple[dict[str, object], list[int]]:
    """A length-prefixed JSON request; the descriptors come with its first bytes."""
    data, fds, _flags, _addr = socket.recv_fds(conn, 65536, 3)
    while len(data) < HEADER.size or len(data) < HEADER.size + HEADER.unpack_from(data)[0]:
        more = conn.recv(65536)
        if not more:
            raise EOFError("the request was cut short")
        data += more
    if len(fds) != 3:
        raise ValueError(f"expected 3 descriptors, got {len(fds)}")
    return json.loads(data[HEADER.size :].decode()), fds


def _run_cli(request: dict[str, object], fds: list[int]) -> None:
    """In the CLI child: become the console script's process, then run it. Never returns."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(str(request["cwd"]))
    env = request["env"]
    assert isinstance(env, dict)
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in env.items()})
    argv = request["argv"]
    assert isinstance(argv, list)
    sys.argv = [str(a) for a in argv]
    sys.path[0] = str(request["path0"])
    # sys.stdin/stdout/stderr are kept: the interpreter made them for descriptors 0-2 (now the
    # call's) under the same environment, as it would for the console script.
    from jetbase.cli.main import main

    sys.exit(main())


def _serve_call(conn: socket.socket, listener: socket.socket) -> None:
    """In the waiter: fork the CLI child, report its pid and its exit status. Never returns.

    The CLI child leaves through here with its ``SystemExit`` (or its uncaught error), which must
    reach the top of the interpreter as in the console script: only the waiter stops here.
    """
    waiter = os.getpid()
    try:
        request, fds = _recv_request(conn)
        pid = os.fork()
        if pid == 0:
            listener.close()
            conn.close()
            _run_cli(request, fds)
        for fd in fds:
            os.close(fd)
        conn.sendall(f"pid {pid}\n".encode())
        _, status = os.waitpid(pid, 0)
        conn.sendall(f"exit {os.waitstatus_to_exitcode(status)}\n".encode())
    except BaseException:
        if os.getpid() != waiter:
            raise
        os._exit(255)
    os._exit(0)


def preload(drivername: str) -> None:
    """Import the CLI and one database's SQLAlchemy dialect and driver, as a call would.

    Only that database's: every preloaded module is torn down again at each child's exit, so a
    server that also held the Snowflake stack (2,000 modules) would cost a SQLite call 0.15 s.
    What fails to import here is left to the child, which imports it itself as the CLI would.
    """
    importlib.import_module("jetbase.cli.main")
    try:
        from sqlalchemy.engine import make_url

        make_url(f"{drivername}://").get_dialect().import_dbapi()
    except Exception:  # noqa: BLE001 - the child will meet (and report) the same error
        pass


def serve(socket_path: str, drivername: str) -> None:
    preload(drivername)
    # Without this, each child's exit walks every object of the ~2,000 preloaded modules and copies
    # the pages it touches: 0.8 s a call, more than the imports it saves. Frozen objects are left
    # to the permanent generation; the child still exits as an interpreter does.
    gc.collect()
    gc.freeze()
    if threading.active_count() != 1:
        # fork() copies only the calling thread: a child could inherit a lock held by another one.
        threads = threading.enumerate()
        raise SystemExit(f"cli_forkserver: an import started a thread ({threads}); cannot fork safely")
    parent = os.getppid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(64)
    print("ready", flush=True)
    while os.getppid() == parent:
        readable, _, _ = select.select([listener], [], [], 1.0)
        if readable:
            conn, _ = listener.accept()
            if os.fork() == 0:
                _serve_call(conn, listener)
            conn.close()
        # Reap the waiters that are done (each one has already answered its caller).
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2])
