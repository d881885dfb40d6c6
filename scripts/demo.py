"""`make demo`: run example_jetbase_migrate_before_etl for real, twice, on an embedded SQLite database.

Airflow gets its own home and SQLite metadata database under ``.demo/airflow_home`` (created with
``airflow db migrate`` on the first run only). The DAG's connection ``jetbase_demo`` is given to the
Airflow subprocess as ``AIRFLOW_CONN_JETBASE_DEMO`` pointing at ``.demo/demo_target.db``, which is
recreated on every demo so that the first run applies the migrations and the second finds the
database up to date. Full Airflow logs are kept in ``.demo/run-<n>.log``.

Usage: ``python scripts/demo.py [--workdir DIR] [--keep-target]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DAGS_FOLDER = REPO_ROOT / "example_dags"
DAG_ID = "example_jetbase_migrate_before_etl"
DAG_FILE = DAGS_FOLDER / f"{DAG_ID}.py"
CONN_ID = "jetbase_demo"
RESULT_MARKER = "JETBASE_DEMO_RESULT "


def airflow_env(airflow_home: Path, target_db: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
    env.update(
        {
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            f"AIRFLOW_CONN_{CONN_ID.upper()}": json.dumps({"conn_type": "sqlite", "host": str(target_db)}),
        }
    )
    return env


def prepare_airflow(airflow_home: Path, env: dict[str, str]) -> None:
    marker = airflow_home / ".migrated"
    if marker.exists():
        return
    airflow_home.mkdir(parents=True, exist_ok=True)
    print(f"Creating Airflow's metadata database in {airflow_home} (first run only)...", flush=True)
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        sys.exit(f"airflow db migrate failed:\n{proc.stdout}\n{proc.stderr}")
    marker.touch()


def run_dag(env: dict[str, str], log_file: Path) -> dict[str, Any]:
    """One DagRun in a subprocess; returns its state and the tasks' return values."""
    proc = subprocess.run(
        [sys.executable, __file__, "--child"], env=env, capture_output=True, text=True, check=False
    )
    log_file.write_text(proc.stdout + proc.stderr)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_MARKER):
            result: dict[str, Any] = json.loads(line[len(RESULT_MARKER) :])
            return result
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
    sys.exit(f"The DAG run did not complete (exit code {proc.returncode}); end of {log_file}:\n{tail}")


def describe(run_number: int, result: dict[str, Any], log_file: Path) -> bool:
    tasks = result["tasks"]
    print(f"\nRun {run_number} of {DAG_ID}: {result['state']}  (tasks: {tasks}; log: {log_file})")
    migrate = result["xcom"].get("migrate")
    if migrate is None:
        print("  the migrate task returned nothing: see the log")
        return False
    applied = migrate["applied"]
    if applied:
        print(
            f"  applied {len(applied)} migration(s), "
            f"version {migrate['version_before']} -> {migrate['version_after']}:"
        )
        print(_table(applied))
    else:
        print(f"  up to date at version {migrate['version_after']}: nothing to apply")
    etl = result["xcom"].get("load_daily_sales")
    if etl:
        print(
            f"  load_daily_sales loaded {etl['orders']} orders ({etl['total_cents']} cents) for {etl['day']}"
        )
    return bool(result["state"] == "success")


def _table(applied: list[dict[str, Any]]) -> str:
    rows = [
        (r["version"] or r["migration_type"], r["filename"], str(r["statements"]), f"{r['duration_ms']:.1f}")
        for r in applied
    ]
    header = ("version", "file", "statements", "ms")
    widths = [max(len(header[i]), *(len(row[i]) for row in rows)) for i in range(4)]
    lines = [header, *rows]
    return "\n".join(
        f"    {c[0]:<{widths[0]}}  {c[1]:<{widths[1]}}  {c[2]:>{widths[2]}}  {c[3]:>{widths[3]}}"
        for c in lines
    )


def child() -> None:
    """In the Airflow subprocess: import the DAG file, dag.test() it, print the outcome as JSON."""
    import importlib.util

    from sqlalchemy import select

    spec = importlib.util.spec_from_file_location("jetbase_demo_dag", DAG_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # What `airflow dags test` does first: write the DAGs folder to the metadata database. Airflow
    # 3.1's dag.test() needs the DAG serialized there already; 3.2 and later do it themselves.
    from airflow.utils.cli import get_bagged_dag

    get_bagged_dag(bundle_names=None, dag_id=DAG_ID)
    dag_run = module.dag.test()

    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == DAG_ID, TaskInstance.run_id == dag_run.run_id)
        ).all()
        xcoms = session.scalars(
            select(XComModel).where(
                XComModel.dag_id == DAG_ID,
                XComModel.run_id == dag_run.run_id,
                XComModel.key == "return_value",
            )
        ).all()
        result = {
            "state": str(dag_run.state),
            "tasks": {ti.task_id: str(ti.state) for ti in tis},
            "xcom": {x.task_id: XComModel.deserialize_value(x) for x in xcoms},
        }
    print(RESULT_MARKER + json.dumps(result, default=str), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / ".demo", help="default: .demo/")
    parser.add_argument("--keep-target", action="store_true", help="do not recreate the target database")
    parser.add_argument("--runs", type=int, default=2, help="how many DAG runs (default 2)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child()
        return 0

    workdir: Path = args.workdir.resolve()
    airflow_home = workdir / "airflow_home"
    target_db = workdir / "demo_target.db"
    workdir.mkdir(parents=True, exist_ok=True)
    if not args.keep_target:
        target_db.unlink(missing_ok=True)
    env = airflow_env(airflow_home, target_db)
    prepare_airflow(airflow_home, env)
    print(f"Target database: {target_db} (Airflow connection '{CONN_ID}')")

    ok = True
    for number in range(1, args.runs + 1):
        log_file = workdir / f"run-{number}.log"
        ok = describe(number, run_dag(env, log_file), log_file) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
