"""Memory stays bounded for a 50 MB migration file and for a folder of 5,000 migrations.

Each upgrade runs in a fresh process (tests/reliability/workers.py) on the real PostgreSQL server and
reports its peak RSS: ``VmHWM`` of /proc/self/status, because ``getrusage(RUSAGE_SELF).ru_maxrss``
survives fork+exec and so reports at least the size of the pytest process that started the worker
(both are printed). The bound is loose on purpose (the
figures are printed for the reliability note); there is no time limit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from tests.jetbase_cli import write_migration
from tests.reliability.workers import RESULT

pytestmark = pytest.mark.postgres

REPO_ROOT = Path(__file__).resolve().parents[2]
MB = 1024 * 1024


def run_upgrade(url: URL, folder: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.reliability.workers",
            "upgrade",
            url.render_as_string(hide_password=False),
            str(folder),
            "--lock-timeout",
            "5",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)]
    assert lines, f"no result\n{proc.stdout}\n{proc.stderr[-3000:]}"
    outcome: dict[str, Any] = json.loads(lines[-1][len(RESULT) :])
    assert outcome["ok"], outcome
    return outcome


def baseline_rss_kb(tmp_path: Path) -> int:
    """Peak RSS of the same worker applying one tiny migration (on a database of its own)."""
    from tests import dbs

    folder = tmp_path / "tiny"
    write_migration(folder, "V1__tiny.sql", "CREATE TABLE tiny (id INT);")
    with dbs.fresh_database("postgres") as url:
        return int(run_upgrade(url, folder)["vm_hwm_kb"])


def test_fifty_megabyte_file(postgres_url: URL, tmp_path: Path) -> None:
    folder = tmp_path / "big"
    folder.mkdir()
    path = folder / "V1__big.sql"
    row = "'" + "x" * 88 + "')"
    with path.open("w") as out:
        out.write(
            "CREATE TABLE big (id INT, payload VARCHAR(100));\n-- jetbase test: 50 MB of comments and rows\n"
        )
        written = 0
        n = 0
        # Half comments (dropped by the parser), half one INSERT spread over many lines.
        while written < 25 * MB:
            line = f"-- padding comment line {n:08d} " + "c" * 60 + "\n"
            out.write(line)
            written += len(line)
            n += 1
        out.write("INSERT INTO big (id, payload) VALUES\n")
        rows = 0
        while written < 50 * MB:
            line = f"({rows}, {row},\n"
            out.write(line)
            written += len(line)
            rows += 1
        out.write(f"({rows}, {row};\n")
        rows += 1
    size = path.stat().st_size
    assert size >= 50 * MB
    base = baseline_rss_kb(tmp_path)
    outcome = run_upgrade(postgres_url, folder)
    assert outcome["applied"] == ["1"]
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM big")).scalar_one() == rows
    finally:
        engine.dispose()
    peak = outcome["vm_hwm_kb"] * 1024
    print(
        f"\n(ru_maxrss {outcome['max_rss_kb'] / 1024:.0f} MB) "
        f"50 MB file ({size / MB:.1f} MB, {rows} rows in one INSERT): peak RSS {peak / MB:.0f} MB, "
        f"baseline process {base / 1024:.0f} MB, delta {(peak - base * 1024) / MB:.0f} MB "
        f"({(peak - base * 1024) / size:.1f}x the file)"
    )
    assert peak < 10 * size, f"peak RSS {peak / MB:.0f} MB for a {size / MB:.0f} MB file"


def test_five_thousand_migrations(postgres_url: URL, tmp_path: Path) -> None:
    folder = tmp_path / "many"
    write_migration(
        folder, "V1__counter.sql", "CREATE TABLE counter (n INT NOT NULL);\nINSERT INTO counter VALUES (1);"
    )
    for n in range(2, 5001):
        sub = f"batch_{n // 1000}"  # subfolders count, as in Jetbase
        write_migration(
            folder,
            f"V{n}__step_{n}.sql",
            f"INSERT INTO counter VALUES ({n});\n-- rollback\nSELECT 1;",
            subdir=sub,
        )
    total = sum(p.stat().st_size for p in folder.rglob("*.sql"))
    base = baseline_rss_kb(tmp_path)
    outcome = run_upgrade(postgres_url, folder)
    assert len(outcome["applied"]) == 5000
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(DISTINCT n), count(*) FROM counter")).one() == (5000, 5000)
            assert conn.execute(text("SELECT count(*) FROM jetbase_migrations")).scalar_one() == 5000
    finally:
        engine.dispose()
    peak = outcome["vm_hwm_kb"] * 1024
    print(
        f"\n(ru_maxrss {outcome['max_rss_kb'] / 1024:.0f} MB) "
        f"5,000 migrations ({total / MB:.2f} MB of files): peak RSS {peak / MB:.0f} MB, "
        f"baseline process {base / 1024:.0f} MB, delta {(peak - base * 1024) / MB:.1f} MB"
    )
    # A loose bound: what the files and 5,000 result rows need, plus the interpreter.
    assert peak - base * 1024 < 200 * MB
