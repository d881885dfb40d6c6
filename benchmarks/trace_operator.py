"""Where the operator path's time goes, per migration: counts first, then seconds.

    .venv/bin/python benchmarks/trace_operator.py --db postgres --n 1000 [--pyinstrument]

One applying `dag.test()` of JetbaseUpgradeOperator (as in bench_operator.py), in a fresh child
process on a fresh database, with, in the child:
- every statement sent to the target database counted and timed by kind (SQLAlchemy
  `before_cursor_execute` / `after_cursor_execute`), and every COMMIT / ROLLBACK (the dialect's
  `do_commit` / `do_rollback`) counted and timed;
- the migration thread's wall time and its own CPU time (`time.thread_time`) in `Migrator.upgrade`;
  wall - CPU - time in the driver is time the thread waited for something else (the GIL, a lock);
- with `--pyinstrument`, a wall-clock profile of that thread (pyinstrument, if installed).
The raw lower bound runs in a child on a fresh database too, for the same counts (it sends one
statement per migration statement plus one INSERT, and one COMMIT).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from _common import (
    DB_LABELS,
    REPO_ROOT,
    airflow_conn_json,
    check_kinds,
    fresh_db,
    machine_notes,
    parse_csv,
    write_migrations,
)
from bench_operator import CONN_ID, DAG_TEMPLATE, MARKER, Bench, _spawn, check_state
from sqlalchemy.engine import URL, make_url


def _kind_of(statement: str) -> str:
    words = statement.split()
    head = " ".join(words[:2]).upper() if words else ""
    for table in ("jetbase_lock", "jetbase_migrations"):
        if table in statement:
            return f"{head} .. {table}"
    return head


def _install_tracing(target: URL) -> dict[str, Any]:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine, default

    stats: dict[str, Any] = {"statements": defaultdict(lambda: [0, 0.0]), "upgrade": {}}
    want = (target.get_backend_name(), target.database)
    local = threading.local()

    def ours(conn: Any) -> bool:
        url = conn.engine.url
        return bool((url.get_backend_name(), url.database) == want)

    @event.listens_for(Engine, "before_cursor_execute")
    def _before(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if ours(conn):
            local.start = time.perf_counter()

    @event.listens_for(Engine, "after_cursor_execute")
    def _after(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if ours(conn) and getattr(local, "start", None) is not None:
            cell = stats["statements"][_kind_of(statement)]
            cell[0] += 1
            cell[1] += time.perf_counter() - local.start
            local.start = None

    dialect_class = type(make_url(target).get_dialect()())
    for name in ("do_commit", "do_rollback"):
        original = getattr(dialect_class, name, getattr(default.DefaultDialect, name))

        def timed(self: Any, dbapi_connection: Any, _original: Any = original, _name: str = name) -> Any:
            start = time.perf_counter()
            try:
                return _original(self, dbapi_connection)
            finally:
                cell = stats["statements"][_name.upper()]
                cell[0] += 1
                cell[1] += time.perf_counter() - start

        setattr(dialect_class, name, timed)
    return stats


def _wrap_upgrade(stats: dict[str, Any], pyinstrument: bool) -> None:
    from airflow_provider_jetbase.migration import migrator

    upgrade = migrator.Migrator.upgrade

    def traced(self: Any, *args: Any, **kwargs: Any) -> Any:
        profiler = None
        if pyinstrument:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0005)
            profiler.start()
        start, cpu = time.perf_counter(), time.thread_time()
        try:
            return upgrade(self, *args, **kwargs)
        finally:
            stats["upgrade"] = {"wall": time.perf_counter() - start, "thread_cpu": time.thread_time() - cpu}
            if profiler is not None:
                profiler.stop()
                sys.stderr.write(profiler.output_text(unicode=False, color=False, show_all=False))

    migrator.Migrator.upgrade = traced  # type: ignore[method-assign]


def _child(dag_file: str, dag_id: str, target: str, pyinstrument: bool) -> dict[str, Any]:
    from bench_operator import _child_operator

    stats = _install_tracing(make_url(target))
    _wrap_upgrade(stats, pyinstrument)
    result = _child_operator(dag_file, dag_id, target, profile=False)
    result["statements"] = {k: v for k, v in stats["statements"].items()}
    result["upgrade"] = stats["upgrade"]
    return result


def _child_raw(kind: str, target: str, folder: str) -> dict[str, Any]:
    from lower_bound import raw_upgrade

    start, cpu = time.perf_counter(), time.process_time()
    applied = raw_upgrade(kind, make_url(target), folder)
    return {"seconds": time.perf_counter() - start, "cpu": time.process_time() - cpu, "applied": applied}


class TraceBench(Bench):
    def child(self, *args: str) -> list[str]:
        return [sys.executable, str(Path(__file__).resolve()), "--child", *args]


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        mode, rest = sys.argv[2], sys.argv[3:]
        if mode == "operator":
            result = _child(rest[0], rest[1], rest[2], "--pyinstrument" in rest)
        else:
            result = _child_raw(rest[0], rest[1], rest[2])
        print(MARKER + json.dumps(result), flush=True)
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", default="postgres")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--pyinstrument", action="store_true")
    args = parser.parse_args()
    kinds = parse_csv(args.db)
    check_kinds(kinds)
    print(machine_notes(), flush=True)
    sys.path.insert(0, str(REPO_ROOT))
    from tests.airflow_harness import AirflowHome
    from tests.airflow_metadata import metadata_template

    with tempfile.TemporaryDirectory(prefix="jetbase_trace_op_") as tmp:
        workdir = Path(tmp)
        home = AirflowHome.create(workdir / "airflow_home", metadata_template(workdir))
        bench = TraceBench(workdir, home, False)
        folder = workdir / "jetbase" / "migrations"
        write_migrations(folder, args.n)
        for kind in kinds:
            with fresh_db(kind, workdir) as url:
                raw = _spawn(bench.child("raw", kind, url.render_as_string(hide_password=False), str(folder)))
                check_state(url, args.n)
            with fresh_db(kind, workdir) as url:
                extra = ["--pyinstrument"] if args.pyinstrument else []
                dag_id = f"trace_operator_n{args.n}"
                dags = workdir / "dags"
                dags.mkdir(exist_ok=True)
                dag_file = dags / f"{dag_id}.py"
                dag_file.write_text(DAG_TEMPLATE.format(dag_id=dag_id, conn_id=CONN_ID, folder=str(folder)))
                env = home.env(dags, {CONN_ID: airflow_conn_json(kind, url)})
                target = url.render_as_string(hide_password=False)
                op = _spawn(bench.child("operator", str(dag_file), dag_id, target, *extra), env=env)
                check_state(url, args.n)
            n = args.n
            up = op["upgrade"]
            print(f"\n## {DB_LABELS[kind]}, N={n}")
            print(
                f"raw loop: {raw['seconds']:.3f} s wall, {raw['cpu']:.3f} s CPU "
                f"({raw['seconds'] / n * 1000:.2f} / {raw['cpu'] / n * 1000:.2f} ms per migration)"
            )
            print(
                f"operator task {op['task']:.3f} s wall, {op['task_cpu']:.3f} s CPU; "
                "Migrator.upgrade thread: "
                f"{up['wall']:.3f} s wall ({up['wall'] / n * 1000:.2f} ms/migr.), {up['thread_cpu']:.3f} s "
                f"thread CPU ({up['thread_cpu'] / n * 1000:.2f} ms/migr.)"
            )
            in_driver = 0.0
            print("| statement kind | count | per migration | seconds | ms each |")
            print("| --- | --- | --- | --- | --- |")
            for key, (count, seconds) in sorted(op["statements"].items(), key=lambda kv: -kv[1][0]):
                in_driver += seconds
                print(f"| {key} | {count} | {count / n:.2f} | {seconds:.3f} | {seconds / count * 1000:.2f} |")
            rest = up["wall"] - in_driver
            print(
                f"driver calls (statements + commits/rollbacks, all threads): {in_driver:.3f} s; "
                f"upgrade wall outside them {rest:.3f} s ({rest / n * 1000:.2f} ms/migr.)"
            )
            if args.pyinstrument:
                out = op["output"]
                start = out.find("  _     ._   __/__")
                print(out[start : start + 20000] if start >= 0 else out[-20000:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
