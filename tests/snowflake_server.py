"""A Snowflake endpoint for the tests: ``fakesnow`` 0.12.1 in server mode, in its own process.

fakesnow answers the Snowflake connector's HTTP protocol and runs the SQL on DuckDB: no Snowflake
account is involved, and it does not check credentials. Because it is a separate server (not
``fakesnow.patch()`` inside the test process), the real ``jetbase`` CLI, run as a subprocess, and
the provider reach the same warehouse, as they would reach a real account.

How each side reaches it (facts checked with snowflake-connector-python 4.x, snowflake-sqlalchemy
1.11, SQLAlchemy 2.0):

- the CLI only takes a URL, so the endpoint goes in its query (``host``, ``port``,
  ``protocol=http``); snowflake-sqlalchemy accepts those only with
  ``SNOWFLAKE_SQLALCHEMY_LEGACY_URL_PARAMS=true``, set in the CLI subprocess's environment
  (``cli_env``), never in the test process;
- the provider gets an Airflow connection of the official Snowflake type whose ``host``, ``port``
  and ``protocol`` extras become connect arguments (``connection_fields``).

One server per test session, databases in memory; each test gets a database of its own (fakesnow
cannot drop a database, so its schema is dropped afterwards and the database goes with the server).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Engine

from airflow_provider_jetbase.connection_mapping import ConnectionFields, build_engine_spec
from tests import dbs

ACCOUNT = "fakesnow"
WAREHOUSE = "WH"
SCHEMA = "PUBLIC"
LOGIN, PASSWORD = "jb_user", "jb-password"
# snowflake-sqlalchemy 1.x refuses host/port/protocol in the URL query unless this is set.
CLI_ENV = {"SNOWFLAKE_SQLALCHEMY_LEGACY_URL_PARAMS": "true"}
# Bounds on waits, not speed assertions: a cold start imports DuckDB, pyarrow and sqlglot.
READY_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 20.0


class ServerFailed(RuntimeError):
    pass


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class SnowflakeServer:
    port: int
    pid: int
    log: Path

    def url(self, database: str) -> URL:
        """The URL the jetbase CLI uses (needs ``CLI_ENV``)."""
        return URL.create(
            "snowflake",
            username=LOGIN,
            password=PASSWORD,
            host="127.0.0.1",
            port=self.port,
            database=f"{database}/{SCHEMA}",
            query={"account": ACCOUNT, "protocol": "http", "warehouse": WAREHOUSE},
        )

    def connection_fields(self, database: str | None, **extra: Any) -> ConnectionFields:
        """An Airflow connection of the official Snowflake type pointing at this server."""
        fields: dict[str, Any] = {
            "account": ACCOUNT,
            "warehouse": WAREHOUSE,
            "host": "127.0.0.1",
            "port": self.port,
            "protocol": "http",
        }
        if database:
            fields["database"] = database
        return ConnectionFields(
            conn_id="jb_fakesnow",
            conn_type="snowflake",
            login=LOGIN,
            password=PASSWORD,
            schema=SCHEMA if database else None,
            extra={**fields, **extra},
        )

    def engine(self, database: str | None = None, **kwargs: Any) -> Engine:
        """An engine built by the provider's connection mapping, as the hook builds it."""
        spec = build_engine_spec(self.connection_fields(database))
        return create_engine(spec.url, connect_args=spec.connect_args, **kwargs)


def _wait_ready(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerFailed(f"fakesnow exited with {process.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.2)
    raise ServerFailed(f"fakesnow did not listen on port {port} within {READY_TIMEOUT_SECONDS:g} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_SECONDS)


@contextlib.contextmanager
def running_server(workdir: Path) -> Iterator[SnowflakeServer]:
    """Start ``python -m fakesnow -s`` on a free loopback port; stop it by its pid afterwards."""
    port = free_loopback_port()
    log = workdir / "fakesnow.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "fakesnow", "-s", "--host", "127.0.0.1", "--port", str(port)],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_ready(process, port, log)
        yield SnowflakeServer(port=port, pid=process.pid, log=log)
    finally:
        _stop(process)


@contextlib.contextmanager
def fresh_database(server: SnowflakeServer) -> Iterator[str]:
    """A uniquely named database with a PUBLIC schema; its schema is dropped afterwards."""
    name = dbs.new_name().upper()
    admin = server.engine()
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
            conn.execute(text(f"CREATE SCHEMA {name}.{SCHEMA}"))
        yield name
        with admin.connect() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {name}.{SCHEMA} CASCADE"))
    finally:
        admin.dispose()
