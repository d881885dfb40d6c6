"""Run real DAG files with ``dag.test()`` in a subprocess against a throw-away Airflow home.

``AirflowHome.create(folder, template)`` copies the run's migrated SQLite metadata database;
``home.run_dag(dag_file, dag_id, connections={...}, run_conf={...})`` runs one DagRun of a DAG that
sits in a dags folder (``dag.test()`` refuses DAGs from files outside the configured dags folder)
and returns the run's state, each task's state and return value, and the asset events it emitted.

``with home.session(dags_folder) as session:`` runs several DagRuns one after another in ONE
subprocess (``session.run(dag_file, dag_id, run_conf=..., connections=...)``): a run in a fresh
subprocess costs ~6 s before its first task (importing Airflow, building the in-process execution API
and its first request); the next run of a session that paid for them costs well under a second more
than its tasks (0.2 s for a one-task DAG). A test module shares one session across its tests; each run
hands over its own connections, which the subprocess sets for that run only, and each run's outcome
holds only the output it wrote. The test may act on its databases between runs.

Connections reach the subprocess as ``AIRFLOW_CONN_<ID>`` variables of ITS environment only; the
test process's own ``os.environ`` is never written.

This file is also the subprocess's entry point: ``python airflow_harness.py DAG_FILE DAG_ID CONF``
runs one DagRun; ``python airflow_harness.py --serve FD`` runs one per JSON line of its stdin and
writes each result as a line to file descriptor FD.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sqlalchemy.engine import URL

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_DAGS = REPO_ROOT / "example_dags"
RESULT_MARKER = "HARNESS_RESULT "
# A bound on one DagRun of a session (the DAGs' own timeouts end theirs much sooner): past it the
# session's subprocess is killed and the run reported as not finished.
SESSION_RUN_TIMEOUT = 600.0


def example_conn_id(dag_id: str) -> str:
    """The connection id an example DAG uses: the ``CONN_ID = "..."`` line of its file.

    Each example has its own connection id (and migrations folder), so tests hand every example the
    connection it names rather than one id shared by all.
    """
    source = (EXAMPLE_DAGS / f"{dag_id}.py").read_text()
    match = re.search(r'^CONN_ID = "([^"]+)"', source, re.MULTILINE)
    if match is None:
        raise ValueError(f'{dag_id}.py has no CONN_ID = "..." line')
    return match[1]


def conn_env_value(url: URL | str) -> str:
    """An ``AIRFLOW_CONN_*`` value (JSON) for a SQLAlchemy URL or a SQLite file path.

    The ``jetbase`` connection type carries any SQLAlchemy URL verbatim, which keeps the exact
    driver (``postgresql+psycopg2``...) and needs no URI-encoding rules of Airflow's own.
    """
    if isinstance(url, URL):
        rendered = url.render_as_string(hide_password=False)
        return json.dumps({"conn_type": "jetbase", "extra": {"sqlalchemy_url": rendered}})
    return json.dumps({"conn_type": "sqlite", "host": str(url)})


def conn_env(connections: Mapping[str, str] | None) -> dict[str, str]:
    """The ``AIRFLOW_CONN_<ID>`` variables of ``{conn_id: value}``."""
    return {f"AIRFLOW_CONN_{conn_id.upper()}": value for conn_id, value in (connections or {}).items()}


@dataclass
class DagRunOutcome:
    returncode: int
    output: str
    state: str | None = None
    tasks: dict[str, str | None] = field(default_factory=dict)
    xcom: dict[str, Any] = field(default_factory=dict)
    asset_events: list[dict[str, Any]] = field(default_factory=list)

    def explain(self) -> str:
        summary = f"returncode={self.returncode} state={self.state} tasks={self.tasks}"
        return f"{summary}\n--- output ---\n{self.output}"

    def read_result(self, data: Mapping[str, Any]) -> None:
        self.state = data["state"]
        self.tasks = data["tasks"]
        self.xcom = data["xcom"]
        self.asset_events = data["asset_events"]


@dataclass(frozen=True)
class AirflowHome:
    path: Path

    @classmethod
    def create(cls, path: Path, metadata_template: Path) -> AirflowHome:
        """A home whose metadata database is a copy of ``metadata_template``: the run's one migrated
        database (``tests/airflow_metadata.py``, fixture ``airflow_metadata_template``)."""
        from tests.airflow_metadata import copy_metadata

        path.mkdir(parents=True, exist_ok=True)
        copy_metadata(metadata_template, path / "airflow.db")
        return cls(path)

    def env(
        self,
        dags_folder: Path,
        connections: Mapping[str, str] | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """The subprocess's environment; ``extra``: more variables of that run only (an
        ``AIRFLOW__SECTION__KEY`` configuration, say)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
        env.update(
            {
                "AIRFLOW_HOME": str(self.path),
                "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
                # A test may watch the run's output while it runs (RunningDag.wait_for_output).
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
            }
        )
        env.update(conn_env(connections))
        env.update(extra or {})
        return env

    def run_dag(
        self,
        dag_file: Path,
        dag_id: str,
        *,
        connections: Mapping[str, str] | None = None,
        run_conf: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> DagRunOutcome:
        return self.start_dag(dag_file, dag_id, connections=connections, run_conf=run_conf, env=env).wait()

    @contextlib.contextmanager
    def session(
        self,
        dags_folder: Path,
        *,
        connections: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Iterator[DagSession]:
        """One subprocess for several DagRuns of DAGs in ``dags_folder``, all with these
        connections; stopped (by its pid) when the block ends."""
        stdout, stderr = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed below
        results_read, results_write = os.pipe()
        try:
            proc = subprocess.Popen(
                [sys.executable, __file__, "--serve", str(results_write)],
                env=self.env(dags_folder, connections, env),
                stdin=subprocess.PIPE,
                stdout=stdout,
                stderr=stderr,
                text=True,
                pass_fds=(results_write,),
            )
        except BaseException:
            os.close(results_read)
            stdout.close()
            stderr.close()
            raise
        finally:
            os.close(results_write)
        session = DagSession(dags_folder, proc, stdout, stderr, os.fdopen(results_read, "r"))
        try:
            yield session
        finally:
            session.stop()

    def start_dag(
        self,
        dag_file: Path,
        dag_id: str,
        *,
        connections: Mapping[str, str] | None = None,
        run_conf: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> RunningDag:
        """Start the DagRun and return at once (to act on a database while a sensor waits)."""
        # Files, not pipes: nobody reads while the run goes on, and a full pipe would block Airflow.
        stdout, stderr = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed in wait()
        proc = subprocess.Popen(
            [sys.executable, __file__, str(dag_file), dag_id, json.dumps(dict(run_conf or {}))],
            env=self.env(dag_file.parent, connections, env),
            stdout=stdout,
            stderr=stderr,
            text=True,
        )
        return RunningDag(self, dag_id, proc, stdout, stderr, runs_before=self._run_ids(dag_id))

    def _run_ids(self, dag_id: str) -> set[str]:
        import sqlite3

        with contextlib.closing(sqlite3.connect(self.path / "airflow.db", timeout=30)) as db:
            rows = db.execute("SELECT run_id FROM dag_run WHERE dag_id = ?", (dag_id,)).fetchall()
        return {row[0] for row in rows}

    def deferred_runs(self, dag_id: str, task_id: str) -> set[str]:
        """Run ids in which ``task_id`` deferred (``next_method`` set). dag.test() runs the trigger
        inline with the task instance back in ``queued``, so ``deferred`` itself is never seen."""
        import sqlite3

        with contextlib.closing(sqlite3.connect(self.path / "airflow.db", timeout=30)) as db:
            rows = db.execute(
                "SELECT run_id FROM task_instance "
                "WHERE dag_id = ? AND task_id = ? AND next_method IS NOT NULL",
                (dag_id, task_id),
            ).fetchall()
        return {row[0] for row in rows}


@dataclass
class RunningDag:
    home: AirflowHome
    dag_id: str
    proc: subprocess.Popen[str]
    stdout_file: IO[str]
    stderr_file: IO[str]
    runs_before: set[str] = field(default_factory=set)

    def wait_for_deferral(self, task_id: str) -> bool:
        """Poll (no time limit: the DAG's own timeouts end it) until ``task_id`` defers in a run
        that did not exist before this one started; False if the run ended first."""
        while self.proc.poll() is None:
            if self.home.deferred_runs(self.dag_id, task_id) - self.runs_before:
                return True
            time.sleep(0.2)
        return False

    def output_so_far(self) -> str:
        # pread: the child shares these files' offsets, so seeking here would move its writes.
        parts = []
        for f in (self.stdout_file, self.stderr_file):
            fd = f.fileno()
            parts.append(os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace"))
        return "".join(parts)

    def wait_for_output(self, text: str) -> bool:
        """Poll (no time limit: the DAG's own timeouts end it) until ``text`` appears in the run's
        output; False if the run ended without it."""
        while self.proc.poll() is None:
            if text in self.output_so_far():
                return True
            time.sleep(0.2)
        return text in self.output_so_far()

    def wait(self) -> DagRunOutcome:
        self.proc.wait()
        with self.stdout_file, self.stderr_file:
            self.stdout_file.seek(0)
            self.stderr_file.seek(0)
            stdout, stderr = self.stdout_file.read(), self.stderr_file.read()
        outcome = DagRunOutcome(returncode=self.proc.returncode, output=stdout + stderr)
        for line in stdout.splitlines():
            if line.startswith(RESULT_MARKER):
                outcome.read_result(json.loads(line[len(RESULT_MARKER) :]))
        return outcome


@dataclass
class DagSession:
    """The DagRuns of one subprocess (``AirflowHome.session``); each run's outcome holds only the
    output that run wrote."""

    dags_folder: Path
    proc: subprocess.Popen[str]
    stdout_file: IO[str]
    stderr_file: IO[str]
    results: IO[str]

    def run(
        self,
        dag_file: Path,
        dag_id: str,
        *,
        run_conf: Mapping[str, Any] | None = None,
        connections: Mapping[str, str] | None = None,
    ) -> DagRunOutcome:
        """One DagRun; ``connections``: more of this run only (the subprocess sets them in its own
        environment for the run and removes them after it)."""
        if dag_file.parent != self.dags_folder:
            raise ValueError(f"{dag_file} is not in the session's dags folder {self.dags_folder}")
        assert self.proc.stdin is not None
        offsets = [os.fstat(f.fileno()).st_size for f in (self.stdout_file, self.stderr_file)]
        line = ""
        if self.proc.poll() is None:
            request = {
                "dag_file": str(dag_file),
                "dag_id": dag_id,
                "conf": dict(run_conf or {}),
                "env": conn_env(connections),
            }
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.write(json.dumps(request) + "\n")
                self.proc.stdin.flush()
            # Bounded: past the limit the subprocess is killed, which ends the line with EOF.
            ready, _, _ = select.select([self.results], [], [], SESSION_RUN_TIMEOUT)
            if not ready:
                self.proc.kill()
            line = self.results.readline()
        returncode = self.proc.poll()
        outcome = DagRunOutcome(
            returncode=0 if returncode is None else returncode, output=self._output(offsets)
        )
        if line:
            outcome.read_result(json.loads(line))
        return outcome

    def _output(self, offsets: list[int]) -> str:
        # pread: the child shares these files' offsets, so seeking here would move its writes.
        parts = []
        for f, start in zip((self.stdout_file, self.stderr_file), offsets, strict=True):
            fd = f.fileno()
            parts.append(os.pread(fd, max(os.fstat(fd).st_size - start, 0), start).decode(errors="replace"))
        return "".join(parts)

    def stop(self) -> None:
        with contextlib.suppress(BrokenPipeError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()  # end of requests: the subprocess returns
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=60)
        finally:
            self.results.close()
            self.stdout_file.close()
            self.stderr_file.close()


def _write_dags_to_metadata_db(dag_id: str) -> None:
    """What ``airflow dags test`` does before ``dag.test()``: parse the dags folder and write its DAGs
    to the metadata database. Airflow 3.1's ``dag.test()`` refuses a DAG that is not serialized there
    yet ("the dag is not serialized"); from 3.2 on it does this itself, and doing it twice is a no-op."""
    from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_2_PLUS

    if AIRFLOW_V_3_2_PLUS:
        return  # dag.test() parses the dags folder itself: a second parse costs a second or more
    from airflow.utils.cli import get_bagged_dag

    get_bagged_dag(bundle_names=None, dag_id=dag_id)


def _run_in_subprocess(dag_file: str, dag_id: str, conf_json: str) -> None:
    print(
        RESULT_MARKER + json.dumps(_run_one(dag_file, dag_id, json.loads(conf_json)), default=str), flush=True
    )


def _serve(results_fd: int) -> None:
    """Run one DagRun per JSON request line of stdin, in turn; each result is a line on results_fd.
    A request's ``env`` (its own connections) is in this process's environment for its run only."""
    import traceback

    with os.fdopen(results_fd, "w") as results:
        for n, line in enumerate(sys.stdin):
            request = json.loads(line)
            run_env: dict[str, str] = request["env"]
            saved = {key: os.environ.get(key) for key in run_env}
            os.environ.update(run_env)
            try:
                result = _run_one(
                    request["dag_file"], request["dag_id"], request["conf"], module_suffix=f"_{n}"
                )
            except Exception:  # noqa: BLE001 - reported as a run that did not finish; the next may run
                traceback.print_exc()
                result = {"state": None, "tasks": {}, "xcom": {}, "asset_events": []}
            finally:
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
            sys.stdout.flush()
            sys.stderr.flush()
            results.write(json.dumps(result, default=str) + "\n")
            results.flush()


def _run_one(dag_file: str, dag_id: str, conf: dict[str, Any], module_suffix: str = "") -> dict[str, Any]:
    """Import the DAG file afresh (not as __main__, so its own dag.test() guard stays off) and test it."""
    import importlib.util

    from sqlalchemy import select

    spec = importlib.util.spec_from_file_location(f"harness_dag_{dag_id}{module_suffix}", dag_file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = next(
        value
        for value in vars(module).values()
        if getattr(value, "dag_id", None) == dag_id and hasattr(value, "test")
    )
    _write_dags_to_metadata_db(dag_id)
    dag_run = dag.test(run_conf=conf or None)

    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == dag_run.run_id)
        ).all()
        xcoms = session.scalars(
            select(XComModel).where(
                XComModel.dag_id == dag_id,
                XComModel.run_id == dag_run.run_id,
                XComModel.key == "return_value",
            )
        ).all()
        events = session.execute(
            select(AssetEvent, AssetModel.uri)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetEvent.source_dag_id == dag_id, AssetEvent.source_run_id == dag_run.run_id)
        ).all()
        return {
            "state": str(dag_run.state),
            "tasks": {ti.task_id: (str(ti.state) if ti.state else None) for ti in tis},
            "xcom": {x.task_id: XComModel.deserialize_value(x) for x in xcoms},
            "asset_events": [
                {"uri": uri, "task_id": event.source_task_id, "extra": event.extra} for event, uri in events
            ],
        }


if __name__ == "__main__":
    if sys.argv[1] == "--serve":
        _serve(int(sys.argv[2]))
    else:
        _run_in_subprocess(sys.argv[1], sys.argv[2], sys.argv[3])
