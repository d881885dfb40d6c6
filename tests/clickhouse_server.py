"""A test fixture, never shipped: a ClickHouse HTTP interface over one embedded chdb session.

No registry ships a ClickHouse server binary that installs here, and Debian's ``clickhouse-server``
(18.16) is too old for Jetbase's ``DateTime64(6)``. ``chdb`` embeds a current ClickHouse engine
(26.x) in-process; this module serves it on a loopback port with as much of ClickHouse's HTTP
interface as ``clickhouse-sqlalchemy``'s HTTP driver (which the provider and the ``jetbase`` CLI
both use) needs:

- the query in the POST body, or in ``?query=`` (GET or POST; a POST body is appended to it);
- ``database``, ``default_format`` and any other URL parameter as a setting of that one query;
- an error as HTTP 500 whose body is ClickHouse's own text (``Code: 60. DB::Exception: ...``) and
  the ``X-ClickHouse-Exception-Code`` header;
- ``GET /ping`` answers ``Ok.``.

- one user, ``default`` with an empty password, as a fresh ClickHouse server has: HTTP Basic auth,
  ``X-ClickHouse-User``/``X-ClickHouse-Key`` or ``user``/``password`` parameters; none means
  ``default``; any other user or password is ClickHouse's error 516 (HTTP 403).

Not served: other users and grants, sessions (``session_id``), compression, HTTPS, the native
protocol (port 9000).

chdb allows one session per process and one process per data directory, so this runs as its own
process (``python -m tests.clickhouse_server --data DIR``), which prints its port on the first line
of stdout; the ``jetbase`` CLI in a subprocess and the tests' engines reach it over TCP alike.
Requests are served by threads and queries run one at a time on the one session: two clients'
statements interleave, as they would on a server, but never overlap.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import re
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

# Parameters of the HTTP interface itself, not settings of the query.
_NOT_SETTINGS = frozenset(
    {"query", "database", "default_format", "user", "password", "query_id", "session_id", "compress"}
)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CODE = re.compile(r"^Code:\s*(\d+)")


class ChdbBackend:
    """The one chdb session of this process; queries run one at a time."""

    def __init__(self, data_dir: str) -> None:
        from chdb import session

        self._session = session.Session(data_dir)
        self._lock = threading.Lock()
        self.version = self.run("SELECT version()", {}, "TabSeparated").strip()

    def run(self, sql: str, params: dict[str, str], default_format: str) -> str:
        settings = {k: v for k, v in params.items() if k not in _NOT_SETTINGS}
        for name in settings:
            if not _NAME.match(name):
                raise ValueError(f"Code: 115. DB::Exception: Unknown setting '{name}'. (UNKNOWN_SETTING)")
        with self._lock:
            # The session keeps USE and SET between queries: each request sets its own and undoes
            # its settings afterwards, so no request sees another's.
            self._session.query(f"USE `{params.get('database') or 'default'}`")
            for name, value in settings.items():
                self._session.query(f"SET {name} = {_literal(value)}")
            try:
                result = self._session.query(sql, default_format)
                return "" if result is None else result.bytes().decode()
            finally:
                for name in settings:
                    self._session.query(f"SET {name} = DEFAULT")

    def close(self) -> None:
        self._session.close()


def _literal(value: str) -> str:
    if re.fullmatch(r"-?\d+(\.\d+)?", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class _Handler(BaseHTTPRequestHandler):
    backend: ChdbBackend  # set on the subclass made by serve()
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes: with Nagle's algorithm on, the client's delayed ACK
    # made every keep-alive request wait about 40 ms.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # stdout carries the port; stderr stays for real problems

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path in ("/ping", "/ping/"):
            self._reply(200, "Ok.\n")
            return
        self._query(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._query(self.rfile.read(length))

    def _credentials(self, params: dict[str, str]) -> tuple[str, str]:
        header = self.headers.get("Authorization") or ""
        if header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            return user, password
        user = self.headers.get("X-ClickHouse-User") or params.get("user") or "default"
        return user, self.headers.get("X-ClickHouse-Key") or params.get("password") or ""

    def _query(self, body: bytes) -> None:
        params = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
        user, password = self._credentials(params)
        if (user, password) != ("default", ""):
            self._reply(
                403,
                f"Code: 516. DB::Exception: {user}: Authentication failed: password is incorrect, or "
                "there is no user with such name. (AUTHENTICATION_FAILED)\n",
                {"X-ClickHouse-Exception-Code": "516"},
            )
            return
        sql = "\n".join(part for part in (params.get("query", ""), body.decode()) if part)
        if not sql.strip():
            self._reply(400, "Code: 62. DB::Exception: Empty query. (SYNTAX_ERROR)\n")
            return
        try:
            output = self.backend.run(sql, params, params.get("default_format") or "TabSeparated")
        except Exception as exc:  # noqa: BLE001 - every engine error goes back to the client as ClickHouse's text
            message = str(exc).strip()
            match = _CODE.match(message)
            self._reply(
                500,
                f"{message} (version {self.backend.version})\n",
                {"X-ClickHouse-Exception-Code": match.group(1) if match else "1000"},
            )
            return
        self._reply(200, output)

    def _reply(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/tab-separated-values; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def serve(data_dir: str, host: str = "127.0.0.1", port: int = 0) -> None:
    backend = ChdbBackend(data_dir)
    handler = type("Handler", (_Handler,), {"backend": backend})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        backend.close()


# --------------------------------------------------------------------------- used by the fixtures

# Bounds on waits for a broken server (startup reads a port line), not speed assertions.
START_GUARD_SECONDS = 120.0
STOP_GUARD_SECONDS = 30.0


@contextlib.contextmanager
def running_server(data_dir: str) -> Iterator[int]:
    """Start the server in its own process on a free loopback port; stop that process afterwards.

    Its stderr goes to ``<data_dir>.log`` (a pipe nobody reads could fill and stall the server)."""
    log_path = Path(data_dir + ".log")
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.clickhouse_server", "--data", data_dir],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    try:
        port_line: list[str] = []
        reader = threading.Thread(target=lambda: port_line.append(process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(START_GUARD_SECONDS)
        if not port_line or not port_line[0].strip().isdigit():
            process.kill()
            process.wait(timeout=STOP_GUARD_SECONDS)
            raise RuntimeError(f"the chdb test server did not start: {log_path.read_text()[-2000:]}")
        yield int(port_line[0])
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_GUARD_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_GUARD_SECONDS)
        if process.stdout is not None:
            process.stdout.close()


def statement(port: int, sql: str) -> str:
    """Run one statement on the server (the fixtures' admin path, without SQLAlchemy)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/", data=sql.encode(), method="POST")
    with urllib.request.urlopen(request, timeout=STOP_GUARD_SECONDS) as response:  # noqa: S310 - loopback
        return str(response.read().decode())


@contextlib.contextmanager
def fresh_database(port: int) -> Iterator[str]:
    """A uniquely named database on the server, dropped afterwards."""
    name = f"jbtest_{uuid.uuid4().hex[:12]}"
    statement(port, f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        statement(port, f"DROP DATABASE IF EXISTS {name} SYNC")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", required=True, help="chdb data directory (one process per directory)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port, printed on stdout")
    args = parser.parse_args(argv)
    serve(args.data, args.host, args.port)


if __name__ == "__main__":
    main()
