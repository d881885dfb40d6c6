"""Scaling: the engine's upgrade time for 100, 1,000 and 5,000 migrations must grow linearly.

    .venv/bin/python benchmarks/bench_scaling.py --db sqlite,postgres --n 100,1000,5000

Per N (fresh database each run): the engine's full upgrade, then an up-to-date upgrade (nothing
pending: shows whether planning re-reads the folder or the version table per migration), and
the raw-driver lower bound on its own fresh database. Flat ms/migration = linear growth; the
"vs smallest N" column is the per-migration time divided by that of the smallest N.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from functools import partial
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
    write_migrations,
)
from bench_upgrade import check_state, engine_upgrade, warm_up
from lower_bound import raw_upgrade


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", default="sqlite", help="comma list of sqlite,postgres,mysql")
    parser.add_argument("--n", default="100,1000,5000", help="comma list of migration counts")
    parser.add_argument(
        "--sqlite-dir",
        type=Path,
        default=None,
        help="where the SQLite files go (default: a temporary directory; /dev/shm measures CPU only)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell; the median is reported")
    args = parser.parse_args(argv)
    kinds, ns = parse_csv(args.db), sorted(parse_ints(args.n))
    check_kinds(kinds)
    warm_up(kinds, ["engine"])
    print(machine_notes())
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}\n")

    table = Table(
        headers=[
            "database",
            "N",
            "engine upgrade",
            "ms/migr.",
            "vs smallest N",
            "up-to-date upgrade",
            "raw upgrade",
            "raw ms/migr.",
            "engine/raw",
        ],
        rows=[],
    )
    with tempfile.TemporaryDirectory(prefix="jetbase_scaling_") as tmp:
        workdir = Path(tmp)
        for kind in kinds:
            base_per: float | None = None
            for n in ns:
                folder = workdir / f"n{n}" / "migrations"
                if not folder.exists():
                    write_migrations(folder, n)
                ups, noops, raws = [], [], []
                for _ in range(args.repeat):
                    with fresh_db(kind, workdir, args.sqlite_dir) as url:
                        ups.append(timed(partial(engine_upgrade, url, folder)))
                        check_state(url, n)
                        noops.append(timed(partial(engine_upgrade, url, folder)))
                        check_state(url, n)
                    with fresh_db(kind, workdir, args.sqlite_dir) as url:
                        raws.append(timed(partial(raw_upgrade, kind, url, str(folder))))
                up, noop, raw = median(ups), median(noops), median(raws)
                per = up / n
                base_per = base_per or per
                print(
                    f"  {DB_LABELS[kind]:<10} N={n:<5} engine {fmt_s(up)}, up-to-date {fmt_s(noop)}, "
                    f"raw {fmt_s(raw)}",
                    flush=True,
                )
                table.rows.append(
                    [
                        DB_LABELS[kind],
                        str(n),
                        fmt_s(up),
                        f"{per * 1000:.2f}",
                        fmt_ratio(per / base_per),
                        fmt_s(noop),
                        fmt_s(raw),
                        f"{raw / n * 1000:.2f}",
                        fmt_ratio(up / raw),
                    ]
                )
    print(f"\nMedian of {args.repeat} run(s) per cell:\n")
    print(table.render_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
