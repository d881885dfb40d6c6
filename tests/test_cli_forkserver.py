"""A forked ``jetbase`` call is the same as a fresh console-script process.

The suite's CLI calls run as forks of a preloaded interpreter (``tests/cli_forkserver.py``), so the
interoperability tests are only worth what this equivalence is worth: here the same calls run both
ways, on real SQLite databases, and must give the same exit codes, output and database.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from tests.cli_forkserver_client import ForkServerError, _server_for, forked_cli_call
from tests.jetbase_cli import (
    CliResult,
    JetbaseProject,
    clean_cli_env,
    database_state,
    jetbase_executable,
)

V1 = "-- upgrade\nCREATE TABLE items (id INTEGER PRIMARY KEY);\n-- rollback\nDROP TABLE items;\n"
V2 = "-- upgrade\nALTER TABLE items ADD COLUMN name TEXT;\n-- rollback\nALTER TABLE items DROP COLUMN name;\n"
BROKEN = "-- upgrade\nCREATE TABLE broken (id INTEGER PRIMARY KEY;\n-- rollback\nDROP TABLE broken;\n"


def _project(tmp_path: Path, name: str, fresh: bool) -> JetbaseProject:
    url = make_url(f"sqlite:///{tmp_path / (name + '.db')}")
    return JetbaseProject(tmp_path / name, url, fresh_process=fresh)


def _comparable(result: CliResult) -> dict[str, Any]:
    """What a call said, less what differs between any two runs (timestamps, traceback frames)."""
    records: list[dict[str, Any]] = []
    other: list[str] = []
    for line in result.stderr.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            other.append(line)
            continue
        records.append({k: v for k, v in record.items() if k != "timestamp"})
    return {
        "returncode": result.returncode,
        "stdout": result.stdout,
        "records": records,
        # A fork's traceback starts with the fork server's frames (indented lines); the rest is the
        # same: the exception lines, the SQL, the chained tracebacks' headers.
        "error": [line for line in other if line and not line[0].isspace()],
    }


def _state(project: JetbaseProject) -> Any:
    engine = create_engine(project.url)
    try:
        return database_state(engine)
    finally:
        engine.dispose()


STEPS: list[tuple[str, ...]] = [
    ("current",),
    ("upgrade", "--dry-run"),
    ("upgrade", "--count", "1"),
    ("status",),
    ("upgrade", "--to-version", "9"),
    ("upgrade",),
    ("current",),
    ("rollback", "--count", "1"),
    ("lock-status",),
    ("validate-checksums",),
    ("upgrade",),
]


def test_forked_and_fresh_calls_give_the_same_output_and_database(tmp_path: Path) -> None:
    runs: dict[bool, list[dict[str, Any]]] = {}
    states: dict[bool, list[Any]] = {}
    for fresh in (False, True):
        project = _project(tmp_path, f"fresh-{fresh}", fresh)
        project.write("V1__create_items.sql", V1)
        project.write("V2__add_name.sql", V2)
        project.write("V3__broken.sql", BROKEN)
        runs[fresh], states[fresh] = [], []
        for step in STEPS:
            runs[fresh].append(_comparable(project.run(*step)))
            states[fresh].append(_state(project))
    for index, step in enumerate(STEPS):
        assert runs[False][index] == runs[True][index], f"jetbase {' '.join(step)}"
        assert states[False][index] == states[True][index], f"the database after jetbase {' '.join(step)}"
    # The scenario did reach both outcomes: calls that succeeded and the broken migration's failure.
    codes = [run["returncode"] for run in runs[False]]
    assert 0 in codes and any(code != 0 for code in codes), codes
    assert any("incomplete input" in line for run in runs[False] for line in run["error"]), runs[False]


@pytest.mark.parametrize("fresh", [False, True], ids=["forked", "fresh"])
def test_a_jetbase_variable_of_one_call_does_not_reach_the_next(tmp_path: Path, fresh: bool) -> None:
    project = _project(tmp_path, "project", fresh)
    project.write("V1__create_items.sql", V1)
    project.upgrade().assert_ok()
    project.write("V1__create_items.sql", V1.replace("items", "things"))
    lenient = JetbaseProject(
        project.root, project.url, env_extra={"JETBASE_SKIP_CHECKSUM_VALIDATION": "true"}, fresh_process=fresh
    )
    # The CLI reads env.py first and JETBASE_* next: this variable is the only thing that differs.
    lenient.upgrade().assert_ok()
    project.upgrade().assert_failed_with("checksum")
    lenient.upgrade().assert_ok()
    project.upgrade().assert_failed_with("checksum")


@pytest.mark.parametrize("fresh", [False, True], ids=["forked", "fresh"])
def test_each_call_has_its_own_folder_and_leaves_the_tests_process_alone(tmp_path: Path, fresh: bool) -> None:
    cwd, environ = os.getcwd(), dict(os.environ)
    first = _project(tmp_path, "first", fresh)
    second = _project(tmp_path, "second", fresh)
    first.write("V1__create_items.sql", V1)
    second.write("V1__create_items.sql", V1)
    second.write("V2__add_name.sql", V2)
    for _ in range(2):
        first.upgrade().assert_ok()
        second.upgrade().assert_ok()
        assert "Latest migration version: 1" in first.current().assert_ok().messages
        assert "Latest migration version: 2" in second.current().assert_ok().messages
    assert (os.getcwd(), dict(os.environ)) == (cwd, environ)


def test_a_hung_forked_call_is_killed_at_its_guard(tmp_path: Path) -> None:
    database = tmp_path / "project.db"
    # SQLite waits up to 600 s for the write lock that ``blocking`` holds: the call hangs.
    project = JetbaseProject(
        tmp_path / "project", make_url(f"sqlite:///{database}?timeout=600"), fresh_process=False
    )
    project.write("V1__create_items.sql", V1)
    blocking = sqlite3.connect(database)
    try:
        blocking.execute("BEGIN EXCLUSIVE")
        with pytest.raises(ForkServerError, match="was killed"):
            forked_cli_call(
                [jetbase_executable(), "upgrade"], project.jetbase_dir, clean_cli_env(), "sqlite", timeout=2.0
            )
    finally:
        blocking.rollback()
        blocking.close()
    # The killed call wrote nothing, and the server serves the next call.
    assert _state(project) == _state(_project(tmp_path, "untouched", fresh=False))
    project.upgrade().assert_ok()
    assert "Latest migration version: 1" in project.current().assert_ok().messages


def test_calls_share_a_server_unless_their_environments_differ() -> None:
    env = clean_cli_env()
    server = _server_for({**env, "PYTEST_CURRENT_TEST": "a (call)"}, "sqlite")
    # pytest names the running test in the environment: every test would otherwise start a server.
    assert _server_for({**env, "PYTEST_CURRENT_TEST": "b (setup)"}, "sqlite") is server
    assert _server_for({**env, "JETBASE_SKIP_VALIDATION": "true"}, "sqlite") is server
    assert _server_for({**env, "TZ": "Asia/Tokyo"}, "sqlite") is not server
    assert _server_for(env, "postgresql+psycopg2") is not server
