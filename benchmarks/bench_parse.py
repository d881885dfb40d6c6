"""DAG-parse cost: importing the operator and sensor modules on top of Airflow's BaseOperator.

    .venv/bin/python benchmarks/bench_parse.py --runs 21

Each sample is a fresh interpreter. "base" runs only `from airflow.sdk import BaseOperator`;
"ours" runs that and then imports the provider's operator and sensor modules. The two kinds
alternate (base, ours, base, ours...) so load changes hit both alike. Reported: the median
import time of each and their difference, the median in-process marginal cost (time spent in
our imports after BaseOperator was already loaded), and max RSS (getrusage in the child).
Target: <= 50 ms extra, and none of the heavy modules below imported by our modules.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import REPO_ROOT, Table, machine_notes, median

DEFAULT_MODULES = ("airflow_provider_jetbase.operators.jetbase", "airflow_provider_jetbase.sensors.jetbase")
# Top-level names (or dotted prefixes) that must not be imported when a DAG file is parsed.
HEAVY = (
    "psycopg2",
    "psycopg",
    "pymysql",
    "MySQLdb",
    "asyncpg",
    "aiosqlite",
    "sqlite3",
    "_sqlite3",
    "snowflake",
    "databricks",
    "clickhouse_sqlalchemy",
    "clickhouse_driver",
    "clickhouse_connect",
    "cryptography",
    "jetbase.cli",
    "jetbase.commands",
    "typer",
    "airflow_provider_jetbase.migration",
    "airflow_provider_jetbase.drift",
)

CHILD = r"""
import json, resource, sys, time
mods = sys.argv[1].split(",") if len(sys.argv) > 1 and sys.argv[1] else []
t0 = time.perf_counter()
from airflow.sdk import BaseOperator  # noqa: F401
t1 = time.perf_counter()
import importlib
for name in mods:
    importlib.import_module(name)
t2 = time.perf_counter()
rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"base": t1 - t0, "total": t2 - t0, "ours": t2 - t1, "rss_kib": rss_kib,
                  "modules": sorted(sys.modules)}))
"""


def sample(modules: str, env: dict[str, str], cwd: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, modules], capture_output=True, text=True, env=env, cwd=cwd, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"the import child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def heavy_in(modules: list[str]) -> list[str]:
    found = set()
    for name in modules:
        for heavy in HEAVY:
            if name == heavy or name.startswith(heavy + "."):
                found.add(heavy)
    return sorted(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=21, help="fresh processes per kind (alternating)")
    parser.add_argument(
        "--modules", default=",".join(DEFAULT_MODULES), help="comma list of modules to import"
    )
    args = parser.parse_args(argv)
    print(machine_notes())
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}\n")

    with tempfile.TemporaryDirectory(prefix="jetbase_parse_") as home:
        # A throw-away AIRFLOW_HOME so importing Airflow never writes into the user's ~/airflow;
        # PYTHONPATH makes the checkout importable even without `pip install -e`.
        env = {
            **os.environ,
            "AIRFLOW_HOME": home,
            "PYTHONPATH": str(REPO_ROOT),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        }
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        sample("", env, home)  # warm the bytecode caches; not counted
        sample(args.modules, env, home)
        base_runs, our_runs = [], []
        for _ in range(args.runs):
            base_runs.append(sample("", env, home))
            our_runs.append(sample(args.modules, env, home))

    base_total = median([r["total"] for r in base_runs])
    our_total = median([r["total"] for r in our_runs])
    marginal = median([r["ours"] for r in our_runs])
    base_rss = median([r["rss_kib"] for r in base_runs]) / 1024
    our_rss = median([r["rss_kib"] for r in our_runs]) / 1024
    table = Table(
        headers=["process", "import time (median)", "max RSS (median)"],
        rows=[
            [
                "base: from airflow.sdk import BaseOperator",
                f"{base_total * 1000:.1f} ms",
                f"{base_rss:.1f} MiB",
            ],
            ["ours: base + operators + sensor", f"{our_total * 1000:.1f} ms", f"{our_rss:.1f} MiB"],
            [
                "extra (ours - base)",
                f"{(our_total - base_total) * 1000:+.1f} ms",
                f"{our_rss - base_rss:+.1f} MiB",
            ],
            ["extra, in-process (after BaseOperator)", f"{marginal * 1000:.1f} ms", ""],
        ],
    )
    print(f"{args.runs} alternating fresh-process runs of each; modules: {args.modules}\n")
    print(table.render_markdown())
    extra = max(marginal, our_total - base_total)
    print(
        f"\nratio ours/base import time: {our_total / base_total:.3f}x; "
        f"target <= 50 ms extra: {'met' if extra <= 0.050 else 'MISSED'} ({extra * 1000:.1f} ms)"
    )

    base_mods, our_mods = set(base_runs[-1]["modules"]), set(our_runs[-1]["modules"])
    new = sorted(our_mods - base_mods)
    new_top = sorted({m.split(".")[0] for m in new})
    print(f"\nmodules imported by ours and not by base: {len(new)}; top-level packages: {', '.join(new_top)}")
    print(f"  {', '.join(new)}")
    heavy_base, heavy_ours = heavy_in(sorted(base_mods)), heavy_in(new)
    print(f"heavy modules already imported by base (Airflow itself): {', '.join(heavy_base) or 'none'}")
    print(f"heavy modules added by ours: {', '.join(heavy_ours) or 'none'}")
    return 1 if heavy_ours else 0


if __name__ == "__main__":
    sys.exit(main())
