"""A real Airflow 3 deployment on this machine, started from the project's files, for the tests of
tests/deployment/.

One PostgreSQL metadata database of its own; ``airflow db migrate``; then separate processes as a
user runs them: ``api-server`` (simple auth, every visitor an admin) on a free loopback port,
``scheduler``, ``dag-processor``, ``triggerer`` and two ``celery worker`` processes of the
CeleryExecutor, on a Redis database number of its own (result backend: the metadata database).
Every component has its own process group, its log in the deployment's home, and is stopped by its
own pid. The DAGs are tests/deployment/dags/ copied into the deployment's dags folder; the target
databases ("slots") are created before the start, as their connections are ``AIRFLOW_CONN_*``
variables of the components' environment (never of the test process).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL

from tests import dbs
from tests.ui.airflow_server import (
    AIRFLOW_BIN,
    STOP_TIMEOUT_S,
    AirflowServer,
    AirflowServerError,
    _stop,
    _tail,
    _wait_until_up,
    airflow_env,
    api_server_argv,
    free_loopback_port,
    migrate,
    spawn,
)

HERE = Path(__file__).resolve().parent
DAGS_SOURCE = HERE / "dags"
# The project's example DAGs, deployed unchanged next to the tier's own DAGs (dags/examples/).
EXAMPLES_SOURCE = HERE.parents[1] / "example_dags"
REDIS_HOST = os.environ.get("JETBASE_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("JETBASE_TEST_REDIS_PORT", "6379"))
REDIS_CLAIM_KEY = "jbtest:deployment"
READY_TIMEOUT_S = 240.0
# The password of every PostgreSQL connection of the deployment: the server trusts 127.0.0.1, so
# libpq never sends it, and nothing may ever write it anywhere (test_secrets_scan.py).
SECRET_PASSWORD = "jbd-" + secrets.token_hex(12)
# The long migrations sleep this long when their connection says so (jbtest.sleep / @jbtest_sleep).
LONG_SLEEP_S = 600
SHORT_SLEEP_S = 8
EXAMPLE_DAG_IDS = (
    "example_jetbase_migrate_before_etl",
    "example_jetbase_rollback",
    "example_jetbase_wait_for_version",
    "example_jetbase_drift_check",
    "example_jetbase_reviewed_release",
)
DAG_IDS = (
    "jbdeploy_upgrade",
    "jbdeploy_timeout",
    "jbdeploy_wait",
    "jbdeploy_wait_short",
    "jbdeploy_after_schema_change",
    *EXAMPLE_DAG_IDS,
)
# The one DAG of the deployment with a time schedule.
SCHEDULED_EXAMPLE = "example_jetbase_drift_check"
COMPONENTS_READY = ("scheduler", "triggerer", "dag_processor")


class DeploymentUnavailable(RuntimeError):
    """A server the deployment needs (PostgreSQL, Redis) is not reachable."""


@dataclass(frozen=True)
class Slot:
    """A target database and its connections: ``conn_id`` runs the long migration at once,
    ``sleep_conn_id`` makes it sleep LONG_SLEEP_S, ``short_sleep_conn_id`` SHORT_SLEEP_S (same
    files, same checksums)."""

    name: str
    kind: str  # "postgres" | "mysql"
    driver: str  # psycopg2 | psycopg | pymysql
    url: URL

    @property
    def conn_id(self) -> str:
        return f"jbd_{self.name}"

    @property
    def sleep_conn_id(self) -> str:
        return f"jbd_{self.name}_sleep"

    @property
    def short_sleep_conn_id(self) -> str:
        return f"jbd_{self.name}_short_sleep"

    @property
    def long_migrations(self) -> str:
        return "long_pg" if self.kind == "postgres" else "long_mysql"

    def connections(self) -> dict[str, str]:
        return {
            self.conn_id: self.connection(),
            self.sleep_conn_id: self.connection(LONG_SLEEP_S),
            self.short_sleep_conn_id: self.connection(SHORT_SLEEP_S),
        }

    def connection(self, sleep: int = 0) -> str:
        """The Airflow connection (JSON form of ``AIRFLOW_CONN_*``) to this slot's database."""
        extra: dict[str, Any] = {}
        if self.kind == "postgres":
            if self.driver != "psycopg2":
                extra["driver"] = self.driver
            if sleep:
                # No client_connection_check_interval: a statement left running by a killed task
                # would go on sleeping on the server, as with a default server configuration.
                extra["options"] = f"-c jbtest.sleep={sleep}"
            return json.dumps(
                {
                    "conn_type": "postgres",
                    "host": self.url.host,
                    "port": self.url.port,
                    "login": self.url.username,
                    "password": SECRET_PASSWORD,
                    "schema": self.url.database,
                    "extra": extra,
                }
            )
        if sleep:
            extra["init_command"] = f"SET @jbtest_sleep = {sleep}"
        return json.dumps(
            {
                "conn_type": "mysql",
                "host": self.url.host,
                "port": self.url.port,
                "login": self.url.username,
                "schema": self.url.database,
                "extra": extra,
            }
        )


FLEET_SIZE = 12
FLEET_MYSQL = frozenset({1, 4, 5, 8, 10})

# name -> (kind, driver): every slot is a fresh database of its own.
SLOTS: dict[str, tuple[str, str]] = {
    "upgrade": ("postgres", "psycopg2"),
    "concurrent": ("postgres", "psycopg2"),
    "kill_psycopg2": ("postgres", "psycopg2"),
    "kill_psycopg": ("postgres", "psycopg"),
    "kill_mysql": ("mysql", "pymysql"),
    "timeout_psycopg2": ("postgres", "psycopg2"),
    "secrets": ("postgres", "psycopg2"),
    "sensor": ("postgres", "psycopg2"),
    "sensor_timeout": ("postgres", "psycopg2"),
    "timeout_psycopg": ("postgres", "psycopg"),
    "timeout_mysql": ("mysql", "pymysql"),
    "ex_demo": ("postgres", "psycopg2"),
    "ex_rollback": ("mysql", "pymysql"),
    "ex_wait": ("postgres", "psycopg2"),
    "ex_drift": ("postgres", "psycopg2"),
    "ex_reviewed": ("postgres", "psycopg2"),
    # test_fleet.py: one mapped upgrade over jbd_fleet_00 .. jbd_fleet_11 (MariaDB where listed).
    **{
        f"fleet_{n:02d}": (("mysql", "pymysql") if n in FLEET_MYSQL else ("postgres", "psycopg2"))
        for n in range(FLEET_SIZE)
    },
    # test_version_watcher.py: the version-change trigger watches it; the jetbase CLI changes it.
    "watch": ("postgres", "psycopg2"),
}
# The connection ids the example DAGs use, each to a slot of its own (no extra: the examples run as
# a user copies them).
EXAMPLE_CONNECTIONS: dict[str, str] = {
    "jetbase_demo": "ex_demo",
    "jetbase_rollback_demo": "ex_rollback",
    "jetbase_wait_demo": "ex_wait",
    "jetbase_drift_demo": "ex_drift",
    "jetbase_reviewed_demo": "ex_reviewed",
}


@dataclass
class Component:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path


@dataclass
class Deployment:
    server: AirflowServer
    home: Path
    metadata_url: URL
    redis_db: int
    slots: dict[str, Slot]
    components: dict[str, Component] = field(default_factory=dict)
    started_in_s: float = 0.0

    # ------------------------------------------------------------------------------------- REST API
    def api(self, method: str, path: str, body: Any = None) -> Any:
        """Call /api/v2; any answer but 2xx fails with the body and the component that died, if any."""
        status, payload = self.server.api(method, "/api/v2" + path, body)
        if not 200 <= status < 300:
            raise AssertionError(f"{method} /api/v2{path} -> {status}: {payload}\n{self.health()}")
        return payload

    def trigger(self, dag_id: str, conf: Mapping[str, Any]) -> str:
        run = self.api("POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": dict(conf)})
        run_id: str = run["dag_run_id"]
        return run_id

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        run: dict[str, Any] = self.api("GET", f"/dags/{dag_id}/dagRuns/{_q(run_id)}")
        return run

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        ti: dict[str, Any] = self.api("GET", f"/dags/{dag_id}/dagRuns/{_q(run_id)}/taskInstances/{task_id}")
        return ti

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 300.0) -> dict[str, Any]:
        """Wait (bounded) until the run is finished; returns it."""
        return self.wait_for(
            lambda: run if (run := self.dag_run(dag_id, run_id))["state"] in ("success", "failed") else None,
            timeout,
            f"DAG run {dag_id}/{run_id} to finish",
        )

    def wait_ti(
        self, dag_id: str, run_id: str, task_id: str, states: tuple[str, ...], timeout: float = 300.0
    ) -> dict[str, Any]:
        return self.wait_for(
            lambda: ti if (ti := self.task_instance(dag_id, run_id, task_id))["state"] in states else None,
            timeout,
            f"task {dag_id}/{run_id}/{task_id} to be in {states}",
        )

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        entry = self.api(
            "GET", f"/dags/{dag_id}/dagRuns/{_q(run_id)}/taskInstances/{task_id}/xcomEntries/{key}"
        )
        value = entry["value"]
        return json.loads(value) if isinstance(value, str) else value

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1) -> str:
        """The task's log as the UI shows it (the API's log endpoint), one line per event;
        ``map_index`` for a mapped task instance."""
        payload = self.api(
            "GET",
            f"/dags/{dag_id}/dagRuns/{_q(run_id)}/taskInstances/{task_id}/logs/{try_number}"
            f"?full_content=true&map_index={map_index}",
        )
        content = payload["content"]
        if isinstance(content, str):
            return content
        return "\n".join(json.dumps(item) if not isinstance(item, str) else item for item in content)

    def set_variable(self, key: str, value: str) -> None:
        status, _ = self.server.api("GET", f"/api/v2/variables/{key}")
        if status == 200:
            self.api("PATCH", f"/variables/{key}", {"key": key, "value": value})
        else:
            self.api("POST", "/variables", {"key": key, "value": value})

    # ------------------------------------------------------------------------------------- waiting
    def wait_for(self, probe: Callable[[], Any], timeout: float, what: str, every: float = 0.5) -> Any:
        """Poll ``probe`` until it returns something truthy; bounded, and fails at once if a
        component of the deployment died (with its log tail)."""
        deadline = time.monotonic() + timeout
        while True:
            self.assert_alive()
            value = probe()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.health()}")
            time.sleep(every)

    def assert_alive(self) -> None:
        for component in self.components.values():
            if component.process.poll() is not None:
                raise AssertionError(
                    f"the {component.name} exited with {component.process.returncode}:\n"
                    f"{_tail(component.log_path)}"
                )

    def health(self) -> str:
        try:
            status, payload = self.server.api("GET", "/api/v2/monitor/health", timeout=10)
        except OSError as exc:  # the api-server itself is down: say so, not mask the first error
            return f"(health: the api-server does not answer: {exc})"
        return f"(health: {status} {payload})"


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def check_servers() -> None:
    """Raise DeploymentUnavailable naming what is missing and how to start it."""
    import redis

    try:
        dbs.check_server("postgres")
    except dbs.ServerUnavailable as exc:
        raise DeploymentUnavailable(str(exc)) from exc
    try:
        redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_timeout=5, socket_connect_timeout=5).ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        raise DeploymentUnavailable(
            f"the real Redis server at {REDIS_HOST}:{REDIS_PORT} is not reachable "
            f"({type(exc).__name__}: {exc}). Start it with: redis-server --daemonize yes"
        ) from exc


@contextlib.contextmanager
def redis_database() -> Iterator[int]:
    """Claim an empty Redis database number (SET NX of a marker key, so two sessions never share
    one), yield it, and flush only that database afterwards."""
    import redis

    token = secrets.token_hex(8)
    for number in range(15, 0, -1):
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=number, socket_timeout=5)
        try:
            if client.dbsize() == 0 and client.set(REDIS_CLAIM_KEY, token, nx=True, ex=6 * 3600):
                try:
                    yield number
                finally:
                    client.flushdb()
                return
        finally:
            client.close()
    raise DeploymentUnavailable(f"no empty Redis database on {REDIS_HOST}:{REDIS_PORT} (1-15 all in use)")


def _deployment_env(
    home: Path, port: int, metadata_url: URL, redis_db: int, slots: Mapping[str, Slot]
) -> dict[str, str]:
    metadata = metadata_url.render_as_string(hide_password=False)
    extra = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata,
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__CELERY__BROKER_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db}",
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + metadata.replace("postgresql+psycopg2", "postgresql"),
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
        # New DAG files and re-parses are seen within seconds, not minutes.
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
        # A deferred task past its timeout is failed within seconds, not the default 15 s.
        "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "2",
        # A task set to failed through the API is noticed at the next heartbeat of its supervisor.
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "2",
        # Other sessions may run a deployment at once: no fixed port anywhere.
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_loopback_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_loopback_port()),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
    }
    for slot in slots.values():
        for conn_id, value in slot.connections().items():
            extra[f"AIRFLOW_CONN_{conn_id.upper()}"] = value
    for conn_id, slot_name in EXAMPLE_CONNECTIONS.items():
        extra[f"AIRFLOW_CONN_{conn_id.upper()}"] = slots[slot_name].connection()
    return airflow_env(home, port, extra)


@contextlib.contextmanager
def running_deployment(home: Path) -> Iterator[Deployment]:
    """Create the databases, migrate, start every component, wait until all are up and the DAGs
    parsed; on exit stop every component by its own process group and drop the databases."""
    started = time.monotonic()
    home.mkdir(parents=True, exist_ok=True)
    shutil.copytree(DAGS_SOURCE, home / "dags", ignore=shutil.ignore_patterns("__pycache__"))
    # The fleet example is left out: its targets and its version watcher need connections of their
    # own; test_fleet.py runs the same machinery (mapped upgrade, summary, watcher) with its own DAGs.
    shutil.copytree(
        EXAMPLES_SOURCE,
        home / "dags" / "examples",
        ignore=shutil.ignore_patterns("__pycache__", "example_jetbase_fleet.py"),
    )
    with contextlib.ExitStack() as stack:
        metadata_url = stack.enter_context(dbs.fresh_database("postgres"))
        redis_db = stack.enter_context(redis_database())
        slots: dict[str, Slot] = {}
        for name, (kind, driver) in SLOTS.items():
            url = stack.enter_context(dbs.fresh_database(kind, driver=driver))
            slots[name] = Slot(name=name, kind=kind, driver=driver, url=url)
        port = free_loopback_port()
        env = _deployment_env(home, port, metadata_url, redis_db, slots)
        migrate(home, env)
        base_url = f"http://127.0.0.1:{port}"
        components: dict[str, Component] = {}
        stack.callback(stop_components, components)
        argvs = {
            "api-server": api_server_argv(port),
            "scheduler": [str(AIRFLOW_BIN), "scheduler"],
            "dag-processor": [str(AIRFLOW_BIN), "dag-processor"],
            "triggerer": [str(AIRFLOW_BIN), "triggerer", "--skip-serve-logs"],
        }
        for number in (1, 2):
            # Same machine, one shared log folder: the API reads the task logs from it, so the
            # workers serve none (two would want the same port).
            argvs[f"celery-worker-{number}"] = [
                str(AIRFLOW_BIN),
                "celery",
                "worker",
                "--concurrency",
                "1",
                "--skip-serve-logs",
                "--celery-hostname",
                f"jbdeploy{number}@%h",
                "--without-gossip",
                "--without-mingle",
            ]
        for name, argv in argvs.items():
            process, log_path = spawn(home, env, name, argv)
            components[name] = Component(name, process, log_path)
        api = components["api-server"]
        _wait_until_up(base_url, api.process, api.log_path)
        server = AirflowServer(base_url=base_url, home=home, env=env, log_path=api.log_path)
        deployment = Deployment(
            server=server, home=home, metadata_url=metadata_url, redis_db=redis_db, slots=slots
        )
        deployment.components = components
        try:
            _wait_ready(deployment)
        except AssertionError as exc:
            raise AirflowServerError(
                f"the deployment did not come up: {exc}\n{_all_tails(components)}"
            ) from exc
        deployment.started_in_s = time.monotonic() - started
        yield deployment


def _wait_ready(deployment: Deployment) -> None:
    def healthy() -> bool:
        status, payload = deployment.server.api("GET", "/api/v2/monitor/health", timeout=10)
        if status != 200:
            return False
        return all((payload.get(c) or {}).get("status") == "healthy" for c in COMPONENTS_READY)

    deployment.wait_for(healthy, READY_TIMEOUT_S, "the scheduler, triggerer and dag-processor to be healthy")

    def workers_ready() -> bool:
        return all(
            " ready." in c.log_path.read_text(errors="replace")
            for name, c in deployment.components.items()
            if name.startswith("celery-worker")
        )

    deployment.wait_for(workers_ready, READY_TIMEOUT_S, "both Celery workers to be ready")

    def dags_parsed() -> bool:
        errors = deployment.api("GET", "/importErrors")
        if errors["total_entries"]:
            raise AssertionError(f"the DAG files do not import: {errors['import_errors']}")
        return all(deployment.server.api("GET", f"/api/v2/dags/{d}")[0] == 200 for d in DAG_IDS)

    deployment.wait_for(dags_parsed, READY_TIMEOUT_S, f"the DAGs {DAG_IDS} to be parsed", every=1.0)

    # The nightly drift-check example, unpaused at creation, starts its latest 03:00 run at once: it
    # would take a Celery worker away from the first tests (two runs meant to overlap ran one after
    # the other on the other worker), so the deployment is ready when that run is over.
    def scheduled_drift_check_over() -> bool:
        runs = deployment.api("GET", f"/dags/{SCHEDULED_EXAMPLE}/dagRuns?run_type=scheduled")["dag_runs"]
        return bool(runs) and all(run["state"] in ("success", "failed") for run in runs)

    what = f"the scheduled run of {SCHEDULED_EXAMPLE} to end"
    deployment.wait_for(scheduled_drift_check_over, READY_TIMEOUT_S, what, every=1.0)


def _all_tails(components: Mapping[str, Component]) -> str:
    return "\n".join(f"--- {c.name} ({c.log_path}) ---\n{_tail(c.log_path, 25)}" for c in components.values())


def stop_components(components: Mapping[str, Component]) -> None:
    """SIGTERM every component's process group at once (each stops in parallel), wait for them
    together, then ``_stop`` each one (SIGKILL for whoever is still there)."""
    running = [c for c in components.values() if c.process.poll() is None]
    for component in running:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(component.process.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for component in running:
        with contextlib.suppress(subprocess.TimeoutExpired):
            component.process.wait(timeout=max(0.1, deadline - time.monotonic()))
    for component in running:
        _stop(component.process)
        # The group may outlive its leader (a task process): SIGKILL whatever is left of it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(component.process.pid, signal.SIGKILL)
