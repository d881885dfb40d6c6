"""The operator path: `dag.test()` of JetbaseUpgradeOperator vs the raw driver vs the jetbase CLI.

    .venv/bin/python benchmarks/bench_operator.py --db sqlite,postgres,mysql --n 1000,10000

What a user runs is the operator inside an Airflow task, so that is what is timed, against the
lower bound and against the CLI, each in fresh processes, on a fresh database per method and run:
  operator  a child process imports a one-task DAG and times `dag.test()` applying N migrations,
            then a second child times the same run when up to date; work = applying - up to date
            (what both runs share: Airflow's task start-up, connection, lock, plan, XCom)
  raw       the lower bound (lower_bound.py) in a child process: a bare driver loop, one
            transaction per migration plus a version row
  cli       `jetbase upgrade` as a subprocess, applying minus up to date (start-up cancels out)
It prints per-run figures, then medians, ratios (operator/raw, cli/operator, cli/raw), the cost
per migration at each N and its growth from the smallest N to the largest, the peak RSS of every
child (os.wait4), the number of task-log lines, and the up-to-date runs' time and SQL statements
against the target database (counted with SQLAlchemy's `before_cursor_execute` in the child,
for the operator and for the CLI run in-process).

`--profile` also runs one applying `dag.test()` under cProfile (SQLite) and prints the top lines.
The same script is its own child (`--child ...`): every measured process starts cold.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from _common import (
    DB_LABELS,
    REPO_ROOT,
    Table,
    airflow_conn_json,
    check_kinds,
    fmt_ratio,
    fmt_s,
    fresh_db,
    machine_notes,
    median,
    parse_csv,
    parse_ints,
    url_with_password,
    write_migrations,
)
from cli_runner import jetbase_executable, write_env_py
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

CONN_ID = "jb_bench"
MARKER = "BENCH_RESULT "
METHODS = ("operator", "raw", "cli")
SECONDS = ("work", "task_work", "cpu", "task_cpu", "apply", "utd", "utd_task", "utd_inproc")
DAG_TEMPLATE = '''"""Benchmark DAG written by benchmarks/bench_operator.py."""
import datetime as dt

from airflow.sdk import DAG

from airflow_provider_jetbase.operators.jetbase import JetbaseUpgradeOperator

with DAG({dag_id!r}, schedule=None, start_date=dt.datetime(2024, 1, 1), catchup=False) as dag:
    JetbaseUpgradeOperator(
        task_id="upgrade",
        jetbase_conn_id={conn_id!r},
        migrations_dir={folder!r},
        emit_asset_event=False,
    )
'''


# ---------------------------------------------------------------------------------------- children
def _count_statements(target: URL) -> list[int]:
    """Count the SQL statements SQLAlchemy sends to `target` (not to Airflow's metadata DB)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    counter = [0]
    want = (target.get_backend_name(), target.database)

    @event.listens_for(Engine, "before_cursor_execute")
    def _count(conn: Any, *_args: Any) -> None:
        url = conn.engine.url
        if (url.get_backend_name(), url.database) == want:
            counter[0] += 1

    return counter


def _child_operator(dag_file: str, dag_id: str, target: str, profile: bool) -> dict[str, Any]:
    import importlib.util

    sys.path.insert(0, str(REPO_ROOT))
    from tests.airflow_harness import _write_dags_to_metadata_db

    spec = importlib.util.spec_from_file_location(f"bench_dag_{dag_id}", dag_file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _write_dags_to_metadata_db(dag_id)
    counter = _count_statements(make_url(target))
    task_seconds = _time_task_runner()
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        engine_profiler = _profile_engine_thread()
    start = time.perf_counter()
    dag_run = module.dag.test()
    seconds = time.perf_counter() - start
    if profiler is not None:
        import io
        import pstats

        profiler.disable()
        out = io.StringIO()
        profiles = (("dag.test(), main thread", profiler), ("Migrator.upgrade thread", engine_profiler))
        for label, prof in profiles:
            for sort in ("cumulative", "tottime"):
                out.write(f"\n### operator {label}, sorted by {sort}\n")
                pstats.Stats(prof, stream=out).strip_dirs().sort_stats(sort).print_stats(40)
        sys.stderr.write(out.getvalue())
    return {
        "seconds": seconds,
        "task": task_seconds[0],
        "task_cpu": task_seconds[1],
        "state": str(dag_run.state),
        "queries": counter[0],
    }


def _profile_engine_thread() -> Any:
    """cProfile of Migrator.upgrade, which the operator runs in a worker thread (run_cancellable):
    the main thread's profile only shows it waiting."""
    import cProfile

    from airflow_provider_jetbase.migration import migrator

    profiler = cProfile.Profile()
    upgrade = migrator.Migrator.upgrade

    def profiled(self: Any, *args: Any, **kwargs: Any) -> Any:
        return profiler.runcall(upgrade, self, *args, **kwargs)

    migrator.Migrator.upgrade = profiled  # type: ignore[method-assign]
    return profiler


def _time_task_runner() -> list[float]:
    """Time the task itself inside dag.test(): Airflow's task_runner.run (render, execute, XCom push)
    plus finalize, which the in-process supervisor looks up at call time. dag.test() as a whole also
    starts an in-process API server (~1-10 s on a loaded machine), shared by both runs but noisy."""
    from airflow.sdk.execution_time import task_runner

    spent = [0.0, 0.0]  # wall seconds, CPU seconds of the process (all threads: the migration's too)

    def timing(func: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start, cpu = time.perf_counter(), time.process_time()
            try:
                return func(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - start
                spent[1] += time.process_time() - cpu

        return wrapper

    task_runner.run = timing(task_runner.run)
    task_runner.finalize = timing(task_runner.finalize)
    return spent


def _child_raw(kind: str, target: str, folder: str) -> dict[str, Any]:
    from lower_bound import raw_upgrade

    url = make_url(target)
    start, cpu = time.perf_counter(), time.process_time()
    applied = raw_upgrade(kind, url, folder)
    return {"seconds": time.perf_counter() - start, "cpu": time.process_time() - cpu, "applied": applied}


def _child_cli_count(target: str) -> dict[str, Any]:
    """`jetbase upgrade` in this process (cwd = the project, set by the parent), statements counted."""
    counter = _count_statements(make_url(target))
    from jetbase.cli.main import main as jetbase_main

    sys.argv = ["jetbase", "upgrade"]
    start = time.perf_counter()
    try:
        jetbase_main()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    return {"seconds": time.perf_counter() - start, "queries": counter[0]}


# ------------------------------------------------------------------------------------------ parent
def _spawn(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> dict[str, Any]:
    """Run a child to the end: its wall time, peak RSS (MiB, os.wait4), output and result line."""
    with tempfile.TemporaryFile("w+") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        output = out.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:4])}... exited {proc.returncode}:\n{output[-4000:]}")
    result: dict[str, Any] = {
        "wall": wall,
        "process_cpu": usage.ru_utime + usage.ru_stime,
        "rss_mib": usage.ru_maxrss / 1024,
        "output": output,
    }
    for line in output.splitlines():
        if line.startswith(MARKER):
            result.update(json.loads(line[len(MARKER) :]))
    return result


def _task_log_lines(output: str) -> int:
    """Lines of the upgrade task's own log in a dag.test() run's output (the operator's and the
    engine's records; Airflow's own [DAG TEST] lines and the result line are not counted)."""
    return sum(1 for line in output.splitlines() if "airflow.task.operators" in line)


class Bench:
    def __init__(self, workdir: Path, home: Any, profile: bool) -> None:
        self.workdir = workdir
        self.home = home
        self.profile = profile
        self.script = str(Path(__file__).resolve())

    def child(self, *args: str) -> list[str]:
        return [sys.executable, self.script, "--child", *args]

    def operator_run(
        self, kind: str, url: URL, n: int, folder: Path, profile: bool = False
    ) -> dict[str, Any]:
        dag_id = f"bench_operator_n{n}"
        dags = self.workdir / "dags"
        dags.mkdir(exist_ok=True)
        dag_file = dags / f"{dag_id}.py"
        dag_file.write_text(DAG_TEMPLATE.format(dag_id=dag_id, conn_id=CONN_ID, folder=str(folder)))
        env = self.home.env(dags, {CONN_ID: airflow_conn_json(kind, url)})
        args = ["operator", str(dag_file), dag_id, url_with_password(url)]
        result = _spawn(self.child(*args, *(["--profile"] if profile else [])), env=env)
        if result.get("state") != "success":
            raise RuntimeError(f"dag.test() ended {result.get('state')}:\n{result['output'][-4000:]}")
        result["log_lines"] = _task_log_lines(result["output"])
        if profile:
            print(result["output"][result["output"].find("### operator") :])
        return result

    def raw_run(self, kind: str, url: URL, folder: Path) -> dict[str, Any]:
        return _spawn(self.child("raw", kind, url_with_password(url), str(folder)))

    def cli_run(self, project: Path) -> dict[str, Any]:
        return _spawn([jetbase_executable(), "upgrade"], cwd=project)

    def cli_count(self, project: Path, url: URL) -> dict[str, Any]:
        return _spawn(self.child("cli-count", url_with_password(url)), cwd=project)


def check_state(url: URL, expected: int) -> None:
    """The database holds exactly `expected` version rows (no method may look fast doing nothing)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT COUNT(*) FROM jetbase_migrations WHERE migration_type = 'VERSIONED'")
            ).scalar_one()
    finally:
        engine.dispose()
    if rows != expected:
        raise AssertionError(f"expected {expected} version rows, found {rows}")


def measure(
    bench: Bench, method: str, kind: str, n: int, project: Path, sqlite_dir: Path | None
) -> dict[str, float]:
    folder = project / "migrations"
    with fresh_db(kind, bench.workdir, sqlite_dir) as url:
        if method == "raw":
            run = bench.raw_run(kind, url, folder)
            check_state(url, n)
            return {"work": run["seconds"], "cpu": run["cpu"], "rss": run["rss_mib"]}
        if method == "operator":
            apply = bench.operator_run(kind, url, n, folder)
            check_state(url, n)
            same = bench.operator_run(kind, url, n, folder)
            return {
                "work": apply["seconds"] - same["seconds"],
                "task_work": apply["task"] - same["task"],
                "cpu": apply["process_cpu"] - same["process_cpu"],
                "task_cpu": apply["task_cpu"] - same["task_cpu"],
                "apply": apply["seconds"],
                "utd": same["seconds"],
                "utd_task": same["task"],
                "utd_queries": same["queries"],
                "rss": apply["rss_mib"],
                "rss_utd": same["rss_mib"],
                "log_lines": apply["log_lines"],
                "log_lines_utd": same["log_lines"],
            }
        write_env_py(project, url_with_password(url))
        apply = bench.cli_run(project)
        check_state(url, n)
        same = bench.cli_run(project)
        counted = bench.cli_count(project, url)
        return {
            "work": apply["wall"] - same["wall"],
            "cpu": apply["process_cpu"] - same["process_cpu"],
            "apply": apply["wall"],
            "utd": same["wall"],
            "utd_inproc": counted["seconds"],
            "utd_queries": counted["queries"],
            "rss": apply["rss_mib"],
        }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        return child_main(argv[1:])
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", default="sqlite,postgres,mysql", help="comma list of sqlite,postgres,mysql")
    parser.add_argument("--n", default="1000,10000", help="comma list of migration counts")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma list of operator,raw,cli")
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell; the median is reported")
    parser.add_argument(
        "--sqlite-dir", type=Path, default=None, help="where SQLite files go (default: real disk)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="also cProfile one applying dag.test() per db and N"
    )
    args = parser.parse_args(argv)
    kinds, ns, methods = parse_csv(args.db), parse_ints(args.n), parse_csv(args.methods)
    check_kinds(kinds)
    for method in methods:
        if method not in METHODS:
            raise SystemExit(f"unknown method {method!r}: choose from {', '.join(METHODS)}")
    print(machine_notes())
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}\n", flush=True)

    from tests.airflow_harness import AirflowHome
    from tests.airflow_metadata import metadata_template

    results: dict[tuple[str, int, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    with tempfile.TemporaryDirectory(prefix="jetbase_bench_op_") as tmp:
        workdir = Path(tmp)
        home = AirflowHome.create(workdir / "airflow_home", metadata_template(workdir))
        bench = Bench(workdir, home, args.profile)
        for n in ns:
            project = workdir / f"n{n}" / "jetbase"
            write_migrations(project / "migrations", n)
            for kind in kinds:
                for rep in range(args.repeat):
                    order = methods[rep % len(methods) :] + methods[: rep % len(methods)]
                    for method in order:
                        figures = measure(bench, method, kind, n, project, args.sqlite_dir)
                        for key, value in figures.items():
                            results[(kind, n, method)][key].append(value)
                        shown = ", ".join(
                            f"{k} {fmt_s(v) if k in SECONDS else f'{v:.0f}'}" for k, v in figures.items()
                        )
                        print(
                            f"  {DB_LABELS[kind]:<10} N={n:<6} {method:<8} rep {rep + 1}: {shown}", flush=True
                        )
                if args.profile and "operator" in methods:
                    with fresh_db(kind, workdir, args.sqlite_dir) as url:
                        bench.operator_run(kind, url, n, project / "migrations", profile=True)
    report(results, kinds, ns, methods, args.repeat)
    return 0


def _met(operator: float, raw: float, cli: float) -> str:
    ok = operator <= 1.3 * raw and (cli >= 3 * operator or cli < 3 * raw)
    return "met" if ok else "MISSED"


def report(results: Any, kinds: list[str], ns: list[int], methods: list[str], repeat: int) -> None:
    med = {key: {k: median(v) for k, v in cell.items()} for key, cell in results.items()}
    table = Table(
        [
            "database",
            "N",
            "method",
            "work",
            "ms/migr.",
            "task work",
            "work CPU",
            "task CPU",
            "applying run",
            "up-to-date run",
            "peak RSS",
        ],
        [],
    )
    for n in ns:
        for kind in kinds:
            for method in methods:
                m = med[(kind, n, method)]
                table.rows.append(
                    [
                        DB_LABELS[kind],
                        str(n),
                        method,
                        fmt_s(m["work"]),
                        f"{m['work'] / n * 1000:.3f}",
                        fmt_s(m["task_work"]) if "task_work" in m else "-",
                        fmt_s(m["cpu"]),
                        fmt_s(m["task_cpu"]) if "task_cpu" in m else "-",
                        fmt_s(m["apply"]) if "apply" in m else "-",
                        fmt_s(m["utd"]) if "utd" in m else "-",
                        f"{m['rss']:.0f} MiB",
                    ]
                )
    print(
        f"\nMedian of {repeat} run(s) per cell. work = applying run - up-to-date run (operator: of "
        "dag.test(); cli: of the process); raw: its loop. task work: the same difference of Airflow's "
        "task_runner.run + finalize inside dag.test() (without the in-process API server's start-up "
        "noise). work CPU: the same difference of the client process's CPU time (raw: of its loop), far "
        "less sensitive than wall time to a shared disk; task CPU: of task_runner.run + finalize (all "
        "threads). Peak RSS of the applying process.\n"
    )
    print(table.render_markdown())
    if {"operator", "raw", "cli"} <= set(methods):
        ratios = Table(
            [
                "database",
                "N",
                "operator/raw",
                "cli/operator",
                "cli/raw",
                "targets",
                "task: operator/raw",
                "task: cli/operator",
                "targets (task)",
                "CPU: operator/raw",
                "CPU: cli/operator",
            ],
            [],
        )
        for n in ns:
            for kind in kinds:
                o, r, c = (med[(kind, n, m)]["work"] for m in ("operator", "raw", "cli"))
                t = med[(kind, n, "operator")]["task_work"]
                ratios.rows.append(
                    [
                        DB_LABELS[kind],
                        str(n),
                        fmt_ratio(o / r),
                        fmt_ratio(c / o),
                        fmt_ratio(c / r),
                        _met(o, r, c),
                        fmt_ratio(t / r),
                        fmt_ratio(c / t),
                        _met(t, r, c),
                        fmt_ratio(med[(kind, n, "operator")]["cpu"] / med[(kind, n, "raw")]["cpu"]),
                        fmt_ratio(med[(kind, n, "cli")]["cpu"] / med[(kind, n, "operator")]["cpu"]),
                    ]
                )
        print("\nRatios (targets: operator/raw <= 1.3x; cli/operator >= 3x wherever cli/raw > 3x):\n")
        print(ratios.render_markdown())
    if len(ns) > 1:
        first, last = ns[0], ns[-1]
        growth = Table(
            ["database", "method", f"ms/migr. N={first}", f"ms/migr. N={last}", "growth", "target"], []
        )
        for kind in kinds:
            for method in methods:
                key = "task_work" if method == "operator" else "work"
                a = med[(kind, first, method)][key] / first * 1000
                b = med[(kind, last, method)][key] / last * 1000
                label = f"{method} (task work)" if method == "operator" else method
                growth.rows.append(
                    [
                        DB_LABELS[kind],
                        label,
                        f"{a:.3f}",
                        f"{b:.3f}",
                        fmt_ratio(b / a),
                        "met" if b <= 1.2 * a else "MISSED",
                    ]
                )
        print(f"\nPer-migration cost growth from N={first} to N={last} (target: flat within 20%):\n")
        print(growth.render_markdown())
    if "operator" in methods:
        utd = Table(
            [
                "database",
                "N applied",
                "operator: up-to-date dag.test() / task",
                "operator statements",
                "cli: up-to-date process / in-process",
                "cli statements",
                "task-log lines applying / up to date",
            ],
            [],
        )
        for n in ns:
            for kind in kinds:
                op = med[(kind, n, "operator")]
                cl = med.get((kind, n, "cli"), {})
                utd.rows.append(
                    [
                        DB_LABELS[kind],
                        str(n),
                        f"{fmt_s(op['utd'])} / {fmt_s(op['utd_task'])}",
                        f"{op['utd_queries']:.0f}",
                        f"{fmt_s(cl['utd'])} / {fmt_s(cl['utd_inproc'])}" if cl else "-",
                        f"{cl['utd_queries']:.0f}" if cl else "-",
                        f"{op['log_lines']:.0f} / {op['log_lines_utd']:.0f}",
                    ]
                )
        print(
            "\nUp-to-date runs (statements sent to the target database, SQLAlchemy before_cursor_execute):\n"
        )
        print(utd.render_markdown())


def child_main(argv: list[str]) -> int:
    mode, rest = argv[0], argv[1:]
    if mode == "operator":
        result = _child_operator(rest[0], rest[1], rest[2], profile="--profile" in rest)
    elif mode == "raw":
        result = _child_raw(rest[0], rest[1], rest[2])
    elif mode == "cli-count":
        result = _child_cli_count(rest[0])
    else:
        raise SystemExit(f"unknown child mode {mode!r}")
    print(MARKER + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
