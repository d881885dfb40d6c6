"""Queries per poke of JetbaseVersionSensor (target: 1), counted with SQLAlchemy events.

    .venv/bin/python benchmarks/bench_sensor.py --db sqlite,postgres,mysql --pokes 20

For each database: a fresh database, then the sensor poked `--pokes` times in three states
(no jetbase_migrations table yet; version 1 applied with target 3; version 3 applied with target 2).
Every statement sent to a DB-API cursor through SQLAlchemy is counted by a `before_cursor_execute`
listener on the Engine class (dialect start-up queries run without events and are not counted).

The connection reaches the sensor the way it does in Airflow: an `AIRFLOW_CONN_<ID>` variable,
set by this standalone script for its own process at start-up.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _common import (
    DB_LABELS,
    Table,
    airflow_conn_json,
    check_kinds,
    conn_env_name,
    fresh_db,
    machine_notes,
    median,
    parse_csv,
    write_migrations,
)
from lower_bound import raw_upgrade
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine


class StatementCounter:
    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.statements.append(" ".join(statement.split()))


def dbapi_statements(profile: cProfile.Profile) -> int:
    """Statements that reached the DB-API driver, dialect start-up included: the C `execute` of
    psycopg2/sqlite3 cursors, and PyMySQL's `_execute_command` (every COM_QUERY it sends)."""
    count = 0
    for (filename, _line, name), (_cc, ncalls, *_rest) in pstats.Stats(profile).stats.items():  # type: ignore[attr-defined]
        if (
            name
            in (
                "<method 'execute' of 'psycopg2.extensions.cursor' objects>",
                "<method 'execute' of 'sqlite3.Cursor' objects>",
                "<method 'execute' of 'sqlite3.Connection' objects>",
            )
            or name == "_execute_command"
            and "pymysql" in filename
        ):
            count += ncalls
    return count


def make_sensor(conn_id: str, target: str) -> Any:
    from airflow_provider_jetbase.sensors.jetbase import JetbaseVersionSensor

    return JetbaseVersionSensor(
        task_id=f"wait_{target.replace('.', '_')}", jetbase_conn_id=conn_id, target_version=target
    )


def poke_states(
    kind: str, url: URL, workdir: Path, conn_id: str, pokes: int, counter: StatementCounter, history: int
) -> Iterator[tuple[str, object, list[int], list[int], list[float], list[str]]]:
    """Yield (state, result, SQLAlchemy statements per poke, DB-API statements per poke,
    seconds per poke, sample SQL) for each database state."""
    folder = workdir / f"sensor_{kind}"
    write_migrations(folder / "a", 1, start=1)
    write_migrations(folder / "b", 2, start=2)

    def measure(state: str, target: str) -> tuple[str, object, list[int], list[int], list[float], list[str]]:
        sensor = make_sensor(conn_id, target)
        counts, raw_counts, times, result, sample = [], [], [], None, []
        for _ in range(pokes):
            counter.statements.clear()
            start = time.perf_counter()
            result = sensor.poke({})
            times.append(time.perf_counter() - start)
            # PokeReturnValue(is_done, xcom_value) or a bare bool, depending on the sensor.
            result = getattr(result, "is_done", result)
            counts.append(len(counter.statements))
            sample = list(counter.statements)
            # A second, profiled poke (not timed) counts what the driver really sent.
            profile = cProfile.Profile()
            profile.runcall(sensor.poke, {})
            raw_counts.append(dbapi_statements(profile))
        return state, result, counts, raw_counts, times, sample

    yield measure("no version table", "3")
    raw_upgrade(kind, url, str(folder / "a"))
    yield measure("at 1, target 3", "3")
    raw_upgrade(kind, url, str(folder / "b"))
    yield measure("at 3, target 2", "2")
    if history:
        add_history(url, history)
        yield measure(f"{history + 3} versions applied, target 2", "2")


def add_history(url: URL, count: int) -> None:
    """`count` more version rows (no tables): a long migration history for the sensor to read."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO jetbase_migrations "
                    "(version, description, filename, migration_type, checksum) "
                    "VALUES (:v, 'history', :f, 'VERSIONED', :c)"
                ),
                [{"v": str(n), "f": f"V{n}__history.sql", "c": "0" * 64} for n in range(4, 4 + count)],
            )
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", default="sqlite,postgres,mysql")
    parser.add_argument("--pokes", type=int, default=20)
    parser.add_argument("--history", type=int, default=5000, help="extra version rows for the last state")
    args = parser.parse_args(argv)
    kinds = parse_csv(args.db)
    check_kinds(kinds)
    print(machine_notes())
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}\n")

    counter = StatementCounter()
    event.listen(Engine, "before_cursor_execute", counter)
    table = Table(
        headers=[
            "database",
            "state",
            "poke result",
            "SQLAlchemy statements/poke",
            "DB-API statements/poke",
            "ms/poke (median)",
        ],
        rows=[],
    )
    samples: list[str] = []
    worst = 0
    with tempfile.TemporaryDirectory(prefix="jetbase_sensor_") as tmp:
        workdir = Path(tmp)
        for kind in kinds:
            with fresh_db(kind, workdir) as url:
                conn_id = f"jetbase_bench_{kind}"
                # Standalone benchmark process: it owns its environment, like Airflow's workers do.
                os.environ[conn_env_name(conn_id)] = airflow_conn_json(kind, url)
                for state, result, counts, raw_counts, times, sample in poke_states(
                    kind, url, workdir, conn_id, args.pokes, counter, args.history
                ):
                    worst = max(worst, max(counts))
                    table.rows.append(
                        [
                            DB_LABELS[kind],
                            state,
                            str(result),
                            f"{min(counts)}-{max(counts)}",
                            f"{min(raw_counts)}-{max(raw_counts)}",
                            f"{median(times) * 1000:.1f}",
                        ]
                    )
                    samples.append(f"{DB_LABELS[kind]}, {state}: " + " ;; ".join(sample))
    print(table.render_markdown())
    print(
        f"\ntarget 1 query per poke (SQLAlchemy before_cursor_execute): {'met' if worst <= 1 else 'MISSED'} "
        f"(worst {worst}). DB-API statements add what SQLAlchemy's dialect runs on each new connection "
        "without events (server version, hstore OIDs...): a new Engine per poke pays it every time."
    )
    print("\nstatements of the last poke in each state:")
    for line in samples:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
