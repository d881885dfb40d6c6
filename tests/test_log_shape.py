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


LONG_RUN, SHORT_RUN = 200, 3


def _dag_source(count: int) -> str:
    return textwrap.dedent(
        f"""
        import datetime as dt
        from airflow.sdk import DAG
        from airflow_provider_jetbase.operators.jetbase import JetbaseUpgradeOperator

        with DAG("jetbase_log_shape_{count}", schedule=None, start_date=dt.datetime(2024, 1, 1)) as dag:
            JetbaseUpgradeOperator(
                task_id="migrate", jetbase_conn_id="jb_log_{count}", migrations_dir="migrations_{count}"
            )
        """
    )


@pytest.fixture(scope="module")
def upgrade_logs(airflow_home: AirflowHome, tmp_path_factory: pytest.TempPathFactory) -> dict[int, list[str]]:
    """The upgrade task's own log lines (engine and operator records) of a dag.test() run of
    ``count`` files on a SQLite database of its own, for the long and the short run: two DAGs of one
    dags folder, run in one subprocess (each run's output is its own)."""
    root = tmp_path_factory.mktemp("log_shape")
    dags = root / "dags"
    urls = {
        count: URL.create("sqlite", database=str(root / f"target_{count}.db"))
        for count in (LONG_RUN, SHORT_RUN)
    }
    for count in urls:
        write_migrations(dags / f"migrations_{count}", _migrations(count))
        (dags / f"log_shape_{count}.py").write_text(_dag_source(count))
    connections = {f"jb_log_{count}": conn_env_value(url) for count, url in urls.items()}
    logs: dict[int, list[str]] = {}
    with airflow_home.session(dags, connections=connections) as session:
        for count, url in urls.items():
            outcome = session.run(dags / f"log_shape_{count}.py", f"jetbase_log_shape_{count}")
            assert outcome.tasks == {"migrate": "success"}, outcome.explain()
            assert applied_versions(url) == [str(n) for n in range(1, count + 1)]
            logs[count] = _own_lines(outcome.output)
    return logs


def _own_lines(output: str) -> list[str]:
    # A record starts with its timestamp; a multi-line one (the table) names its logger on its last line.
    records: list[list[str]] = []
    for line in output.splitlines():
        if RECORD_START.match(line) or not records:
            records.append([line])
        else:
            records[-1].append(line)
    return [line for record in records if OUR_LOGGER in record[-1] for line in record]


def test_long_run_logs_progress_and_one_table_not_two_lines_per_file(
    upgrade_logs: dict[int, list[str]],
) -> None:
    count = LONG_RUN
    assert count > SHORT_RUN_FILES
    lines = upgrade_logs[count]
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


def test_short_run_keeps_a_line_before_and_after_every_file(upgrade_logs: dict[int, list[str]]) -> None:
    assert SHORT_RUN <= SHORT_RUN_FILES
    lines = upgrade_logs[SHORT_RUN]
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
