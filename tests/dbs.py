"""Fresh, throw-away databases on the machine's real servers, for tests and benchmarks.

Every caller gets its own uniquely named database and drops it afterwards, so runs that
overlap (helpers, CI, a killed session) never see each other's leftovers.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

PG_HOST = os.environ.get("JETBASE_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("JETBASE_TEST_PG_PORT", "5432"))
MYSQL_HOST = os.environ.get("JETBASE_TEST_MYSQL_HOST", "127.0.0.1")
MYSQL_PORT = int(os.environ.get("JETBASE_TEST_MYSQL_PORT", "3306"))

START_HINTS = {
    "postgres": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "mysql": "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd",
}


class ServerUnavailable(RuntimeError):
    pass


def pg_url(database: str = "test", driver: str = "psycopg2") -> URL:
    return URL.create(
        f"postgresql+{driver}", username="postgres", host=PG_HOST, port=PG_PORT, database=database
    )


def mysql_url(database: str = "test") -> URL:
    return URL.create(
        "mysql+pymysql", username="root", password="", host=MYSQL_HOST, port=MYSQL_PORT, database=database
    )


def new_name(prefix: str = "jbtest") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def _admin_engine(kind: str):  # type: ignore[no-untyped-def]
    if kind == "postgres":
        url = pg_url("postgres")
        args = {"connect_timeout": 5}
    else:
        url = mysql_url("")
        args = {"connect_timeout": 5}
    return create_engine(url, isolation_level="AUTOCOMMIT", connect_args=args, poolclass=None)


def check_server(kind: str) -> None:
    """Raise ServerUnavailable with the command that starts the server."""
    engine = _admin_engine(kind)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        host, port = (PG_HOST, PG_PORT) if kind == "postgres" else (MYSQL_HOST, MYSQL_PORT)
        raise ServerUnavailable(
            f"the real {kind} server at {host}:{port} is not reachable ({type(exc).__name__}: {exc}). "
            f"Start it with: {START_HINTS[kind]}"
        ) from exc
    finally:
        engine.dispose()


@contextlib.contextmanager
def fresh_database(kind: str, driver: str = "psycopg2") -> Iterator[URL]:
    """Create a uniquely named database on the real server, yield its URL, drop it afterwards."""
    name = new_name()
    admin = _admin_engine(kind)
    try:
        with admin.connect() as conn:
            if kind == "postgres":
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            else:
                conn.execute(text(f"CREATE DATABASE `{name}`"))
        try:
            yield pg_url(name, driver) if kind == "postgres" else mysql_url(name)
        finally:
            with admin.connect() as conn:
                if kind == "postgres":
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                else:
                    conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
    finally:
        admin.dispose()
