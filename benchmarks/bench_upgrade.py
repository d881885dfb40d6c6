"""Upgrade and rollback throughput: this provider's engine vs the jetbase CLI vs the raw driver.

    .venv/bin/python benchmarks/bench_upgrade.py --db sqlite,postgres,mysql --n 200,1000

For each database kind and each N, the same folder of N one-table migrations (each with a
`-- rollback` DROP) is applied and then fully rolled back, on a fresh database per method:
  engine  Migrator(create_engine(url), folder).upgrade() / .rollback(count=N)
  cli     `jetbase upgrade` / `jetbase rollback --count N` (0.18.1) as a subprocess
  raw     the lower bound: the same parsed statements via sqlite3/psycopg2/pymysql, one
          transaction per migration plus one version-row INSERT/DELETE
Methods run interleaved (rotating order each repeat), so the ratios compare like with like on a
noisy machine. `--profile` also runs the engine once under cProfile and prints where time goes.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import resource
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from _common import (
    DB_LABELS,
    Table,
    check_kinds,
    fmt_ratio,
    fmt_s,
    fresh_db,
    machine_notes,
    median,
    parse_csv,
    parse_ints,
    timed,
    url_with_password,
    write_migrations,
)
from cli_runner import cli_startup, run_cli, write_env_py
from lower_bound import raw_rollback, raw_upgrade
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

METHODS = ("engine", "cli", "raw")


def engine_upgrade(url: URL, folder: Path) -> None:
    from airflow_provider_jetbase.migration import Migrator

    engine = create_engine(url)
    try:
        Migrator(engine, folder).upgrade()
    finally:
        engine.dispose()


def engine_rollback(url: URL, folder: Path, count: int) -> None:
    from airflow_provider_jetbase.migration import Migrator

    engine = create_engine(url)
    try:
        Migrator(engine, folder).rollback(count=count)
    finally:
        engine.dispose()


def no_fsync_wait(url: URL) -> URL:
    """The same database, with commits that do not wait for the WAL fsync (session setting)."""
    return url.update_query_dict({"options": "-c synchronous_commit=off"})


def check_state(url: URL, expected: int) -> None:
    """The database holds exactly `expected` version rows and `expected` bench tables."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT COUNT(*) FROM jetbase_migrations WHERE migration_type = 'VERSIONED'")
            ).scalar_one()
            tables = sum(1 for name in engine.dialect.get_table_names(conn) if name.startswith("bench_t"))
    finally:
        engine.dispose()
    if rows != expected or tables != expected:
        raise AssertionError(
            f"expected {expected} version rows and tables, found {rows} rows and {tables} tables"
        )


def timed_cpu(func: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, client CPU seconds): this process's CPU plus that of children waited for
    (the CLI subprocess). Client CPU is what a tool itself costs; it is far less sensitive than
    wall time to the disk and the database server being shared with other work."""

    def cpu() -> float:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + children.ru_utime + children.ru_stime

    wall0, cpu0 = time.perf_counter(), cpu()
    func()
    return time.perf_counter() - wall0, cpu() - cpu0


def run_method(method: str, kind: str, url: URL, project: Path, n: int) -> tuple[float, float, float, float]:
    """(upgrade wall, rollback wall, upgrade CPU, rollback CPU)."""
    folder = project / "migrations"
    up: Callable[[], object]
    down: Callable[[], object]
    if method == "engine":
        up = lambda: engine_upgrade(url, folder)  # noqa: E731
        down = lambda: engine_rollback(url, folder, n)  # noqa: E731
    elif method == "cli":
        write_env_py(project, url_with_password(url))
        up = lambda: run_cli(project, "upgrade")  # noqa: E731
        down = lambda: run_cli(project, "rollback", "--count", str(n))  # noqa: E731
    else:
        up = lambda: raw_upgrade(kind, url, str(folder))  # noqa: E731
        down = lambda: raw_rollback(kind, url, str(folder), n)  # noqa: E731
    t_up, c_up = timed_cpu(up)
    check_state(url, n)
    t_down, c_down = timed_cpu(down)
    check_state(url, 0)
    return t_up, t_down, c_up, c_down


def profile_engine(kind: str, project: Path, workdir: Path, n: int, top: int, sqlite_dir: Path | None) -> str:
    folder = project / "migrations"
    out = io.StringIO()
    with fresh_db(kind, workdir, sqlite_dir) as url:
        for label, call in (
            ("upgrade", lambda: engine_upgrade(url, folder)),
            ("rollback", lambda: engine_rollback(url, folder, n)),
        ):
            profiler = cProfile.Profile()
            profiler.enable()
            call()
            profiler.disable()
            for sort in ("cumulative", "tottime"):
                out.write(f"\n### engine {label}, {DB_LABELS[kind]}, sorted by {sort}\n")
                pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(sort).print_stats(top)
    return out.getvalue()


def warm_up(kinds: list[str], methods: list[str]) -> None:
    """Import the engine and the drivers before timing: an import is paid once per process, and
    the first timed run must not carry it (the CLI's own start-up is printed separately)."""
    import importlib

    drivers = {"sqlite": "sqlite3", "postgres": "psycopg2", "mysql": "pymysql"}
    dialects = {"sqlite": "sqlite://", "postgres": "postgresql+psycopg2://", "mysql": "mysql+pymysql://"}
    for kind in kinds:
        importlib.import_module(drivers[kind])
        create_engine(dialects[kind]).dispose()  # loads SQLAlchemy's dialect modules; connects to nothing
    if "engine" in methods:
        importlib.import_module("airflow_provider_jetbase.migration")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", default="sqlite,postgres,mysql", help="comma list of sqlite,postgres,mysql")
    parser.add_argument("--n", default="200,1000", help="comma list of migration counts")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma list of engine,cli,raw")
    parser.add_argument("--repeat", type=int, default=3, help="runs per method; the median is reported")
    parser.add_argument(
        "--sqlite-dir",
        type=Path,
        default=None,
        help="where the SQLite files go (default: a temporary directory; /dev/shm measures CPU only)",
    )
    parser.add_argument(
        "--pg-async-commit",
        action="store_true",
        help="PostgreSQL sessions of all three methods use synchronous_commit=off (no WAL fsync wait)",
    )
    parser.add_argument("--profile", action="store_true", help="also cProfile the engine once per db and N")
    parser.add_argument("--profile-top", type=int, default=25)
    args = parser.parse_args(argv)

    kinds, ns, methods = parse_csv(args.db), parse_ints(args.n), parse_csv(args.methods)
    check_kinds(kinds)
    for method in methods:
        if method not in METHODS:
            raise SystemExit(f"unknown method {method!r}: choose from {', '.join(METHODS)}")
    warm_up(kinds, methods)
    print(machine_notes())
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    if "cli" in methods:
        startup = median([timed(lambda: cli_startup()) for _ in range(3)])
        print(f"jetbase CLI start-up alone (`jetbase --help`, median of 3): {fmt_s(startup)}")
    print()

    results: dict[tuple[str, int, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    profiles: list[str] = []
    with tempfile.TemporaryDirectory(prefix="jetbase_bench_") as tmp:
        workdir = Path(tmp)
        for n in ns:
            # The CLI needs the folder at <dir>/jetbase/migrations; every method uses that folder.
            project = workdir / f"n{n}" / "jetbase"
            write_migrations(project / "migrations", n)
            for kind in kinds:
                for rep in range(args.repeat):
                    order = methods[rep % len(methods) :] + methods[: rep % len(methods)]
                    for method in order:
                        with fresh_db(kind, workdir, args.sqlite_dir) as url:
                            url = no_fsync_wait(url) if args.pg_async_commit and kind == "postgres" else url
                            t_up, t_down, c_up, c_down = run_method(method, kind, url, project, n)
                        cell = results[(kind, n, method)]
                        cell["up"].append(t_up)
                        cell["down"].append(t_down)
                        cell["cpu_up"].append(c_up)
                        cell["cpu_down"].append(c_down)
                        print(
                            f"  {DB_LABELS[kind]:<10} N={n:<5} {method:<6} rep {rep + 1}: "
                            f"upgrade {fmt_s(t_up)} (CPU {fmt_s(c_up)}), "
                            f"rollback {fmt_s(t_down)} (CPU {fmt_s(c_down)})",
                            flush=True,
                        )
                if args.profile and "engine" in methods:
                    profiles.append(
                        profile_engine(kind, project, workdir, n, args.profile_top, args.sqlite_dir)
                    )

    table = Table(
        headers=[
            "database",
            "N",
            "method",
            "upgrade",
            "ms/migr.",
            "rollback",
            "ms/migr.",
            "upgrade CPU",
            "rollback CPU",
        ],
        rows=[],
    )
    ratios = Table(
        headers=[
            "database",
            "N",
            "engine/raw up",
            "engine/raw down",
            "cli/engine up",
            "cli/engine down",
            "CPU engine/raw up",
            "CPU cli/engine up",
            "cli/raw up (best reachable cli/engine)",
            "targets (wall)",
        ],
        rows=[],
    )
    for n in ns:
        for kind in kinds:
            med: dict[str, dict[str, float]] = {}
            for method in methods:
                med[method] = {key: median(values) for key, values in results[(kind, n, method)].items()}
                m = med[method]
                table.rows.append(
                    [
                        DB_LABELS[kind],
                        str(n),
                        method,
                        fmt_s(m["up"]),
                        f"{m['up'] / n * 1000:.2f}",
                        fmt_s(m["down"]),
                        f"{m['down'] / n * 1000:.2f}",
                        fmt_s(m["cpu_up"]),
                        fmt_s(m["cpu_down"]),
                    ]
                )
            if {"engine", "raw", "cli"} <= set(methods):
                e, r, c = med["engine"], med["raw"], med["cli"]
                ok = (
                    e["up"] <= 1.5 * r["up"]
                    and e["down"] <= 1.5 * r["down"]
                    and c["up"] >= 3 * e["up"]
                    and c["down"] >= 3 * e["down"]
                )
                ratios.rows.append(
                    [
                        DB_LABELS[kind],
                        str(n),
                        fmt_ratio(e["up"] / r["up"]),
                        fmt_ratio(e["down"] / r["down"]),
                        fmt_ratio(c["up"] / e["up"]),
                        fmt_ratio(c["down"] / e["down"]),
                        fmt_ratio(e["cpu_up"] / r["cpu_up"]),
                        fmt_ratio(c["cpu_up"] / e["cpu_up"]),
                        fmt_ratio(c["up"] / r["up"]),
                        "met" if ok else "MISSED",
                    ]
                )
    print(f"\nMedian of {args.repeat} runs per cell (fresh database each run; CPU = client process CPU):\n")
    print(table.render_markdown())
    if ratios.rows:
        print("\nRatios of medians (targets on wall time: engine/raw <= 1.5x, cli/engine >= 3x):\n")
        print(ratios.render_markdown())
    for report in profiles:
        print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
