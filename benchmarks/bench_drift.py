"""Drift check of a 1,000-table schema (target < 10 s), through the drift module's entry point.

    .venv/bin/python benchmarks/bench_drift.py --db sqlite,postgres --tables 1000

Per database: a fresh database brought up to date by the engine with N migrations, each creating
a table (5 columns, a primary key, a NOT NULL, a default and an index). Then, timed:
  live snapshot   snapshot_schema(engine): reflecting the live schema alone
  clean check     run_drift_check(engine, folder): migration drift + replay of the N files into a
                  scratch database + compare (expects no error finding)
  drifted check   the same after one hand-made change (a column added outside the migrations);
                  it must report that change
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

from _common import (
    DB_LABELS,
    Table,
    check_kinds,
    fmt_s,
    fresh_db,
    machine_notes,
    median,
    parse_csv,
    timed,
    timed_result,
)
from sqlalchemy import create_engine, text


def write_schema_migrations(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(1, count + 1):
        (folder / f"V{number}__create_drift_table_{number}.sql").write_text(
            "-- upgrade\n"
            f"CREATE TABLE drift_t{number} (\n"
            "    id INTEGER PRIMARY KEY,\n"
            "    code VARCHAR(40) NOT NULL,\n"
            "    amount NUMERIC(12, 2) DEFAULT 0,\n"
            "    note VARCHAR(200),\n"
            "    created_on DATE\n"
            ");\n"
            f"CREATE INDEX ix_drift_t{number}_code ON drift_t{number} (code);\n"
            "-- rollback\n"
            f"DROP TABLE drift_t{number};\n"
        )


def _upgrade(engine: Any, folder: Path) -> None:
    from airflow_provider_jetbase.migration import Migrator

    Migrator(engine, folder).upgrade()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", default="sqlite,postgres", help="comma list of sqlite,postgres,mysql")
    parser.add_argument("--tables", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=1, help="clean checks per database (median)")
    args = parser.parse_args(argv)
    kinds = parse_csv(args.db)
    check_kinds(kinds)
    print(machine_notes())
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}\n")

    from airflow_provider_jetbase.drift import run_drift_check, snapshot_schema

    table = Table(
        headers=[
            "database",
            "tables",
            "upgrade (setup)",
            "live snapshot",
            "clean check",
            "errors (clean)",
            "drifted check",
            "drift found",
            "target < 10 s",
        ],
        rows=[],
    )
    with tempfile.TemporaryDirectory(prefix="jetbase_drift_") as tmp:
        workdir = Path(tmp)
        folder = workdir / "migrations"
        write_schema_migrations(folder, args.tables)
        for kind in kinds:
            with fresh_db(kind, workdir) as url:
                engine = create_engine(url)
                try:
                    t_up = timed(partial(_upgrade, engine, folder))
                    t_snap = timed(partial(snapshot_schema, engine))
                    clean_times = []
                    for _ in range(args.repeat):
                        t_clean, clean = timed_result(partial(run_drift_check, engine, folder))
                        clean_times.append(t_clean)
                    target_table = f"drift_t{max(1, args.tables // 2)}"
                    with engine.begin() as conn:
                        conn.execute(text(f"ALTER TABLE {target_table} ADD COLUMN added_by_hand INTEGER"))
                    t_drift, drifted = timed_result(partial(run_drift_check, engine, folder))
                finally:
                    engine.dispose()
            found = [f for f in drifted.findings if target_table in f"{f.object} {f.message}"]
            t_clean = median(clean_times)
            print(f"  {DB_LABELS[kind]}: clean: {clean.summary()}")
            print(f"  {DB_LABELS[kind]}: drifted: {drifted.summary()}")
            for finding in found[:3]:
                print(f"    found: {finding.kind}: {finding.message}")
            table.rows.append(
                [
                    DB_LABELS[kind],
                    str(clean.tables_checked),
                    fmt_s(t_up),
                    fmt_s(t_snap),
                    fmt_s(t_clean),
                    str(len(clean.errors)),
                    fmt_s(t_drift),
                    "yes" if found else "NO",
                    "met" if max(t_clean, t_drift) < 10 else "MISSED",
                ]
            )
            print(f"  {DB_LABELS[kind]}: method {clean.method} ({clean.method_detail})", flush=True)
    print()
    print(table.render_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
