"""Shared helpers for the benchmark scripts: databases, generated migration folders, tables.

The scripts are standalone programs run on demand (never by pytest). They reuse `tests/dbs.py`
for throw-away PostgreSQL/MariaDB databases, so the repository root goes on sys.path here.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from sqlalchemy.engine import URL, make_url  # noqa: E402

from tests import dbs  # noqa: E402

T = TypeVar("T")
DB_KINDS = ("sqlite", "postgres", "mysql")
# The user-facing name of the MySQL-family server on this machine.
DB_LABELS = {"sqlite": "SQLite", "postgres": "PostgreSQL", "mysql": "MariaDB"}


def parse_csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def parse_ints(value: str) -> list[int]:
    return [int(part) for part in parse_csv(value)]


def check_kinds(kinds: Sequence[str]) -> None:
    for kind in kinds:
        if kind not in DB_KINDS:
            raise SystemExit(f"unknown --db {kind!r}: choose from {', '.join(DB_KINDS)}")
        if kind != "sqlite":
            try:
                dbs.check_server(kind)
            except dbs.ServerUnavailable as exc:
                raise SystemExit(str(exc)) from exc


@contextlib.contextmanager
def fresh_db(kind: str, workdir: Path, sqlite_dir: Path | None = None) -> Iterator[URL]:
    """A fresh database of `kind`, removed afterwards (for SQLite: a new file in `sqlite_dir`,
    default `workdir`; a tmpfs such as /dev/shm takes the disk's fsync out of the measurement)."""
    if kind == "sqlite":
        folder = Path(tempfile.mkdtemp(prefix="jetbase_bench_sqlite_", dir=sqlite_dir or workdir))
        path = folder / "bench.db"
        try:
            yield make_url(f"sqlite:///{path}")
        finally:
            for suffix in ("", "-journal", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{path}{suffix}")
            folder.rmdir()
        return
    with dbs.fresh_database(kind) as url:
        yield url


def url_with_password(url: URL) -> str:
    """The URL as a string a child process can use (the local servers have no passwords)."""
    return url.render_as_string(hide_password=False)


def write_migrations(folder: Path, count: int, start: int = 1) -> None:
    """`count` one-table migrations, each with a rollback section that drops the table."""
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(start, start + count):
        (folder / f"V{number}__create_table_{number}.sql").write_text(
            "-- upgrade\n"
            f"CREATE TABLE bench_t{number} (\n"
            "    id INTEGER PRIMARY KEY,\n"
            "    name VARCHAR(50) NOT NULL,\n"
            "    amount INTEGER\n"
            ");\n"
            "\n"
            "-- rollback\n"
            f"DROP TABLE bench_t{number};\n"
        )


def timed(func: Callable[[], object]) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def timed_result(func: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    result = func()
    return time.perf_counter() - start, result


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]

    def render_markdown(self) -> str:
        widths = [len(h) for h in self.headers]
        for row in self.rows:
            widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

        def line(cells: Sequence[str]) -> str:
            return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

        sep = "| " + " | ".join("-" * w for w in widths) + " |"
        return "\n".join([line(self.headers), sep, *(line(r) for r in self.rows)])


def machine_notes() -> str:
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as handle:
        for row in handle:
            if row.startswith("model name"):
                cpu = row.split(":", 1)[1].strip()
                break
    mem = "unknown"
    with contextlib.suppress(OSError), open("/proc/meminfo") as handle:
        for row in handle:
            if row.startswith("MemTotal"):
                mem = f"{int(row.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"machine: nproc={os.cpu_count()}, CPU {cpu}, RAM {mem}, load avg {load}, "
        f"Python {platform.python_version()}, {platform.platform()}"
    )


def fmt_s(seconds: float) -> str:
    return f"{seconds:.3f} s"


def fmt_ratio(value: float) -> str:
    return f"{value:.2f}x"


def airflow_conn_json(kind: str, url: URL) -> str:
    """An Airflow connection (JSON form for AIRFLOW_CONN_<ID>) of the provider's native types."""
    import json

    if kind == "sqlite":
        fields: dict[str, object] = {"conn_type": "sqlite", "host": str(url.database)}
    else:
        fields = {
            "conn_type": "postgres" if kind == "postgres" else "mysql",
            "host": url.host,
            "port": url.port,
            "login": url.username,
            "schema": url.database,
        }
    return json.dumps(fields)


def conn_env_name(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"
