"""The task log of a long run stays readable: progress instead of two lines per file, a summary.

A short run keeps a line before and after every file; above ``SHORT_RUN_FILES`` files those lines go
to DEBUG and an INFO progress line is written every 5% of the files (or every 10 s), then the
operator logs its table (one line per file) and a summary line. Line counts only, no timings.
"""

from __future__ import annotations

import logging
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from airflow_provider_jetbase.migration.progress import PROGRESS_INTERVAL, SHORT_RUN_FILES, Progress
from tests.airflow_harness import AirflowHome, conn_env_value
from tests.operator_helpers import applied_versions, write_migrations

RECORD_START = re.compile(r"^\d{4}-\d\d-\d\dT")
OUR_LOGGER = "airflow.task.operators.airflow_provider_jetbase.operators.jetbase.JetbaseUpgradeOperator"


def _migrations(count: int) -> dict[str, str]:
    return {
        f"V{n}__create_t{n}.sql": (
            f"CREATE TABLE t{n} (id INTEGER PRIMARY KEY);\n\n-- rollback\nDROP TABLE t{n};\n"
        )
        for n in range(1, count + 1)
    }


def _run_upgrade_dag(airflow_home: AirflowHome, tmp_path: Path, url: URL, count: int) -> list[str]:
    """The upgrade task's own log lines (engine and operator records) of a dag.test() run."""
    dags = tmp_path / "dags"
    write_migrations(dags / "migrations", _migrations(count))
    (dags / "log_shape_dag.py").write_text(
        textwrap.dedent(
            """
            import datetime as dt
            from airflow.sdk import DAG
            from airflow_provider_jetbase.operators.jetbase import JetbaseUpgradeOperator

            with DAG("jetbase_log_shape", schedule=None, start_date=dt.datetime(2024, 1, 1)) as dag:
                JetbaseUpgradeOperator(
                    task_id="migrate", jetbase_conn_id="jb_log", migrations_dir="migrations"
                )
            """
        )
    )
    outcome = airflow_home.run_dag(
        dags / "log_shape_dag.py", "jetbase_log_shape", connections={"jb_log": conn_env_value(url)}
    )
    assert outcome.tasks == {"migrate": "success"}, outcome.explain()
    assert applied_versions(url) == [str(n) for n in range(1, count + 1)]
    # A record starts with its timestamp; a multi-line one (the table) names its logger on its last line.
    records: list[list[str]] = []
    for line in outcome.output.splitlines():
        if RECORD_START.match(line) or not records:
            records.append([line])
        else:
            records[-1].append(line)
    return [line for record in records if OUR_LOGGER in record[-1] for line in record]


def test_long_run_logs_progress_and_one_table_not_two_lines_per_file(
    airflow_home: AirflowHome, tmp_path: Path, sqlite_url: URL
) -> None:
    count = 200
    assert count > SHORT_RUN_FILES
    lines = _run_upgrade_dag(airflow_home, tmp_path, sqlite_url, count)
    per_file = [line for line in lines if "Applying V" in line or "Applied V" in line]
    progress = [line for line in lines if "Progress: " in line]
    table_rows = [line for line in lines if "| V" in line and ".sql" in line]
    # Every 5% (19 lines before the end) plus at most a few 10-second ones on a slow machine.
    assert 19 <= len(progress) <= 40, progress
    assert "Progress: 10 of 200 files applied (5%)" in "\n".join(progress)
    assert per_file == [], per_file[:5]
    assert len(table_rows) == count  # the summary table: one line per file, once
    assert sum("Summary: 200 file(s) in" in line for line in lines) == 1
    assert len(lines) <= count + 60, len(lines)  # at most one line per migration, plus a bounded rest


def test_short_run_keeps_a_line_before_and_after_every_file(
    airflow_home: AirflowHome, tmp_path: Path, sqlite_url: URL
) -> None:
    lines = _run_upgrade_dag(airflow_home, tmp_path, sqlite_url, 3)
    for n in (1, 2, 3):
        assert sum(f"Applying V{n}__create_t{n}.sql (1 statement)..." in line for line in lines) == 1
        assert sum(f"Applied V{n}__create_t{n}.sql in " in line for line in lines) == 1
    assert not any("Progress: " in line or "Summary: " in line for line in lines)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[_Records]:
    handler = _Records()
    logger = logging.getLogger("test.jetbase.progress")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def test_progress_every_five_percent_and_every_ten_seconds(records: _Records) -> None:
    now = [0.0]
    progress = Progress(logging.getLogger("test.jetbase.progress"), 1000, "upgrade", clock=lambda: now[0])
    for n in range(1, 1001):
        if n == 75:
            now[0] += PROGRESS_INTERVAL  # a slow file: a progress line although 5% is not reached
        progress.before(f"V{n}.sql", 1)
        progress.after(f"V{n}.sql", 1.0)
    done = [int(r.getMessage().split()[1]) for r in records.records]
    assert all(r.levelno == logging.INFO for r in records.records)
    assert done == [50, 75, 100, *range(150, 1000, 50)]  # not at the end: the caller's summary says it


def test_progress_per_file_lines_of_a_long_run_are_debug(records: _Records) -> None:
    logger = logging.getLogger("test.jetbase.progress")
    logger.setLevel(logging.DEBUG)
    progress = Progress(logger, SHORT_RUN_FILES + 1, "rollback")
    progress.before("V1.sql", 2)
    progress.after("V1.sql", 1.0)
    assert [(r.levelno, r.getMessage()) for r in records.records] == [
        (logging.DEBUG, "Rolling back V1.sql (2 statements)..."),
        (logging.DEBUG, "Rolled back V1.sql in 1.0 ms."),
    ]
