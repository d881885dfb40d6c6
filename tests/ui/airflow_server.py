"""A real Airflow 3 API server on 127.0.0.1, in a throwaway AIRFLOW_HOME, for the UI tests.

The server gets its own environment (a copy of ours with every inherited ``AIRFLOW*`` variable
dropped), a copy of the run's migrated SQLite metadata (``tests/airflow_metadata.py``), the simple
auth manager with every visitor an admin, and ``[core] test_connection = Enabled``. Every wait is
bounded and the whole process group is stopped on exit, whatever happened.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

AIRFLOW_BIN = Path(sys.executable).with_name("airflow")
MIGRATE_TIMEOUT_S = 300.0
START_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 30.0


class AirflowServerError(RuntimeError):
    """The server could not be prepared or did not come up; the message ends with its log tail."""


@dataclass(frozen=True)
class AirflowServer:
    base_url: str
    home: Path
    env: Mapping[str, str]
    log_path: Path

    def api(self, method: str, path: str, body: Any = None, timeout: float = 60.0) -> tuple[int, Any]:
        """Call the REST API (the all-admins middleware adds the token). Returns (status, JSON body)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with _direct().open(request, timeout=timeout) as response:
                return response.status, _json_or_text(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _json_or_text(exc.read())

    def run_airflow(self, args: list[str], timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run the ``airflow`` CLI with this server's environment (same metadata DB)."""
        return self._run([str(AIRFLOW_BIN), *args], timeout)

    def run_python(self, code: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run ``code`` in a new interpreter with this server's environment (same metadata DB)."""
        return self._run([sys.executable, "-c", code], timeout)

    def _run(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            env=dict(self.env),
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def _direct() -> urllib.request.OpenerDirector:
    """Loopback only: never route the test's own requests through a proxy from the environment."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _json_or_text(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def airflow_env(home: Path, port: int, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The server's environment: ours minus inherited Airflow settings, plus a hermetic config."""
    from cryptography.fernet import Fernet

    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            # Passwords are stored encrypted, as in a real deployment.
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
    )
    env.update(extra or {})
    return env


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def migrate(home: Path, env: Mapping[str, str]) -> None:
    log_path = home / "db-migrate.log"
    with log_path.open("w") as log:
        try:
            result = subprocess.run(
                [str(AIRFLOW_BIN), "db", "migrate"],
                env=dict(env),
                cwd=home,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=MIGRATE_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise AirflowServerError(
                f"`airflow db migrate` took over {MIGRATE_TIMEOUT_S:.0f} s:\n{_tail(log_path)}"
            ) from exc
    if result.returncode != 0:
        raise AirflowServerError(
            f"`airflow db migrate` exited {result.returncode}:\n{_tail(log_path)}"
        )


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the test process dies without reaching its ``finally``."""
    import ctypes

    pr_set_pdeathsig = 1
    # Not Linux/glibc: the finally clause still stops the server.
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's own process group (uvicorn workers included), then SIGKILL it."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _wait_until_up(base_url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AirflowServerError(
                f"the API server exited with {process.returncode} while starting:\n{_tail(log_path)}"
            )
        try:
            with _direct().open(base_url + "/api/v2/version", timeout=5) as response:
                if response.status == 200:
                    return
                last_error = f"HTTP {response.status}"
        except (urllib.error.URLError, OSError) as exc:
            last_error = str(exc)
        time.sleep(1.0)
    raise AirflowServerError(
        f"the API server did not answer {base_url}/api/v2/version within {START_TIMEOUT_S:.0f} s "
        f"(last: {last_error}):\n{_tail(log_path)}"
    )


@contextlib.contextmanager
def running_api_server(
    home: Path, metadata_template: Path, extra_env: Mapping[str, str] | None = None
) -> Iterator[AirflowServer]:
    """A fresh metadata DB in ``home`` (a copy of the run's migrated one, ``tests/airflow_metadata.py``),
    ``airflow api-server`` started on it, stopped on exit."""
    from tests.airflow_metadata import copy_metadata

    home.mkdir(parents=True, exist_ok=True)
    (home / "dags").mkdir(exist_ok=True)
    port = free_loopback_port()
    env = airflow_env(home, port, extra_env)
    copy_metadata(metadata_template, home / "airflow.db")
    base_url = f"http://127.0.0.1:{port}"
    process, log_path = spawn(home, env, "api-server", api_server_argv(port))
    try:
        _wait_until_up(base_url, process, log_path)
        yield AirflowServer(base_url=base_url, home=home, env=env, log_path=log_path)
    finally:
        _stop(process)


def api_server_argv(port: int) -> list[str]:
    return [str(AIRFLOW_BIN), "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]


def spawn(
    home: Path, env: Mapping[str, str], name: str, argv: list[str]
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start one Airflow component in its own process group, its output in ``home/<name>.log``."""
    log_path = home / f"{name}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            argv,
            env=dict(env),
            cwd=home,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so _stop reaches its children too
            preexec_fn=_die_with_parent,
        )
    return process, log_path
