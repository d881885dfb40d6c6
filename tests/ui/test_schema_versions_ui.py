"""The provider's "Schema versions" page on a real Airflow 3 API server, with real runs behind it.

A real ``airflow api-server`` (simple auth manager with a real user and password, NOT every visitor an
admin) serves the plugin. Two real DAG runs (``airflow dags test``, same metadata DB) of the
provider's operators migrate and check four fresh PostgreSQL databases: one up to date (with a drift
check), one with pending files (and a plan), one whose Jetbase lock is held by "another run", and one
that answered in the first run and is unreachable in the second. Then: an unauthenticated request is
refused, no password is in any answer, and headless Chromium opens Browse -> Schema versions and a
DAG run's "Jetbase migrations" tab (screenshots: ``JETBASE_UI_SCREENSHOTS=docs/ui``).

Run alone with ``pytest -m ui tests/ui/test_schema_versions_ui.py``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest

from tests import dbs
from tests.ui.airflow_server import AirflowServer, free_loopback_port, running_api_server
from tests.ui.browser import Shots, chromium_context, recorded_shots, require_ui_tools

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.ui

# Distinctive, so a leak anywhere is unambiguous (PostgreSQL here trusts loopback: it is never checked).
DB_PASSWORD = "Pg-Pa55-91c0ffee-do-not-leak"
USER, USER_PASSWORD = "admin", "ui-admin-Pa55-4b1d"
DBS = ("sv_current", "sv_pending", "sv_locked", "sv_down")

MIGRATIONS = {
    "V1__create_accounts.sql": "CREATE TABLE accounts (id integer PRIMARY KEY, note text);\n",
    "V2__create_invoices.sql": "CREATE TABLE invoices (id integer PRIMARY KEY, account_id integer);\n",
    "V3__drop_note.sql": "ALTER TABLE accounts DROP COLUMN note;\n",
}

FLEET_DAG = """
import pendulum
from airflow.sdk import dag, task

from airflow_provider_jetbase.operators.drift import JetbaseDriftCheckOperator
from airflow_provider_jetbase.operators.jetbase import JetbaseStatusOperator, JetbaseUpgradeOperator

M = "migrations"


@dag(dag_id="jetbase_sv_fleet", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def jetbase_sv_fleet():
    up = JetbaseUpgradeOperator(task_id="upgrade_current", jetbase_conn_id="sv_current", migrations_dir=M)
    up >> JetbaseStatusOperator(task_id="status_current", jetbase_conn_id="sv_current", migrations_dir=M)
    up >> JetbaseDriftCheckOperator(task_id="drift_current", jetbase_conn_id="sv_current", migrations_dir=M)

    first = JetbaseUpgradeOperator(
        task_id="upgrade_pending_first", jetbase_conn_id="sv_pending", migrations_dir=M, count=1
    )
    plan = JetbaseUpgradeOperator(
        task_id="plan_pending", jetbase_conn_id="sv_pending", migrations_dir=M, dry_run=True
    )
    first >> plan >> JetbaseStatusOperator(
        task_id="status_pending", jetbase_conn_id="sv_pending", migrations_dir=M
    )

    @task
    def another_run_holds_the_lock():
        from sqlalchemy import text

        from airflow_provider_jetbase.hooks.jetbase import JetbaseHook

        engine = JetbaseHook(jetbase_conn_id="sv_locked").get_sqlalchemy_engine()
        try:
            with engine.begin() as conn:
                conn.execute(text(
                    "UPDATE jetbase_lock SET is_locked = TRUE, locked_at = now(), "
                    "process_id = 'other-host:4242' WHERE id = 1"
                ))
        finally:
            engine.dispose()

    (
        JetbaseUpgradeOperator(task_id="upgrade_locked", jetbase_conn_id="sv_locked", migrations_dir=M)
        >> another_run_holds_the_lock()
        >> JetbaseStatusOperator(task_id="status_locked", jetbase_conn_id="sv_locked", migrations_dir=M)
    )

    JetbaseUpgradeOperator(
        task_id="upgrade_down", jetbase_conn_id="sv_down", migrations_dir=M
    ) >> JetbaseStatusOperator(task_id="status_down", jetbase_conn_id="sv_down", migrations_dir=M)


jetbase_sv_fleet()
"""

DOWN_DAG = """
import pendulum
from airflow.sdk import dag

from airflow_provider_jetbase.operators.jetbase import JetbaseStatusOperator, JetbaseUpgradeOperator


@dag(dag_id="jetbase_sv_down", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def jetbase_sv_down():
    JetbaseStatusOperator(task_id="status_down", jetbase_conn_id="sv_down", migrations_dir="migrations")
    JetbaseUpgradeOperator(task_id="upgrade_down", jetbase_conn_id="sv_down", migrations_dir="migrations")


jetbase_sv_down()
"""


def _call(
    server: AirflowServer, method: str, path: str, token: str | None, body: Any = None
) -> tuple[int, str]:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        server.base_url + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers=headers,
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


class Setup:
    def __init__(self, server: AirflowServer, token: str, shots: Shots) -> None:
        self.server = server
        self.token = token
        self.shots = shots

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, str]:
        return _call(self.server, method, path, self.token, body)

    def take(self, page: Page, name: str) -> None:
        self.shots.take(page, name)


def _dags_test(server: AirflowServer, dag_id: str) -> None:
    run = server.run_airflow(["dags", "test", dag_id], timeout=600)
    # A failed task fails the run (the unreachable database): what matters is that it ran.
    assert "DagRun Finished" in run.stdout + run.stderr or run.returncode in (0, 1), (
        run.stdout[-3000:] + run.stderr[-3000:]
    )


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest, airflow_metadata_template: Path
) -> Iterator[Setup]:
    require_ui_tools()
    dbs.check_server("postgres")
    home = tmp_path_factory.mktemp("airflow-home-sv")
    passwords = home / "simple-auth-passwords.json"
    passwords.write_text(json.dumps({USER: USER_PASSWORD}))
    extra = {
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
    }
    with ExitStack() as stack:
        folder = tmp_path_factory.mktemp("ui-screenshots-sv")
        shots = stack.enter_context(recorded_shots(folder, request.config))
        urls = {name: stack.enter_context(dbs.fresh_database("postgres")) for name in DBS}
        server = stack.enter_context(running_api_server(home, airflow_metadata_template, extra))
        status, body = _call(
            server, "POST", "/auth/token", None, {"username": USER, "password": USER_PASSWORD}
        )
        assert status in (200, 201), body
        setup = Setup(server, json.loads(body)["access_token"], shots)
        for name, url in urls.items():
            status, body = setup.api(
                "POST",
                "/api/v2/connections",
                {
                    "connection_id": name,
                    "conn_type": "postgres",
                    "host": url.host,
                    "port": url.port,
                    "login": url.username,
                    "password": DB_PASSWORD,
                    "schema": url.database,
                },
            )
            assert status == 201, body
        dags = Path(server.env["AIRFLOW__CORE__DAGS_FOLDER"])
        (dags / "migrations").mkdir()
        for filename, sql in MIGRATIONS.items():
            (dags / "migrations" / filename).write_text(sql)
        (dags / "jetbase_sv_fleet.py").write_text(FLEET_DAG)
        (dags / "jetbase_sv_down.py").write_text(DOWN_DAG)
        _dags_test(server, "jetbase_sv_fleet")
        # The database goes away: its connection now points at a port nobody listens on.
        status, body = setup.api(
            "PATCH",
            "/api/v2/connections/sv_down",
            {
                "connection_id": "sv_down",
                "conn_type": "postgres",
                "host": "127.0.0.1",
                "port": free_loopback_port(),
                "login": "postgres",
                "password": DB_PASSWORD,
                "schema": urls["sv_down"].database,
            },
        )
        assert status == 200, body
        _dags_test(server, "jetbase_sv_down")
        yield setup


def test_endpoints_refuse_unauthenticated_requests_and_never_return_credentials(fleet: Setup) -> None:
    for path in ("/jetbase/schema-versions", "/jetbase/schema-versions.json", "/jetbase/runs/x/y"):
        status, _ = _call(fleet.server, "GET", path, None)
        assert status == 401, (path, status)
        status, _ = _call(fleet.server, "GET", path, "not-a-valid-token")
        assert status in (401, 403), (path, status)

    status, body = fleet.api("GET", "/jetbase/schema-versions.json")
    assert status == 200, body
    assert DB_PASSWORD not in body
    rows = {row["conn_id"]: row for row in json.loads(body)["databases"]}
    assert set(rows) == set(DBS), rows
    _check_rows(rows)
    status, body = fleet.api("GET", "/jetbase/schema-versions")
    assert status == 200 and DB_PASSWORD not in body


def _check_rows(rows: dict[str, Any]) -> None:
    """What the runs did, database by database (the whole row in every message)."""
    current = rows["sv_current"]
    assert (current["dialect"], current["current_version"], current["pending"]) == ("postgresql", "3", 0), (
        current
    )
    assert current["locked"] is False and current["reachable"] is True, current
    assert current["drift"] == "ok", current
    assert current["last_change"] == ["1", "2", "3"] and current["last_change_at"], current

    pending = rows["sv_pending"]
    assert (pending["current_version"], pending["pending"], pending["locked"]) == ("1", 2, False), pending

    locked = rows["sv_locked"]
    assert locked["locked"] is True and "other-host:4242" in locked["lock_detail"], locked
    assert locked["current_version"] == "3", locked

    down = rows["sv_down"]
    assert down["reachable"] is False, down
    assert down["current_version"] == "3"  # what it was when it last answered, down
    assert down["last_seen"] and down["last_error_at"] > down["last_seen"], down
    assert "OperationalError" in down["last_error"], down
    assert {r["dag_id"] for r in down["runs"]} == {"jetbase_sv_fleet", "jetbase_sv_down"}, down


def test_browse_schema_versions_page_in_chromium(fleet: Setup, tmp_path: Path) -> None:
    with chromium_context(tmp_path / "profile") as context:
        context.add_cookies([{"name": "_token", "value": fleet.token, "url": fleet.server.base_url}])
        page = context.new_page()
        page.goto(fleet.server.base_url + "/")
        page.get_by_role("button", name="Browse").click()
        page.get_by_role("menuitem", name="Schema versions").click()
        frame = page.frame_locator("iframe")
        table = frame.locator("#schema-versions")
        table.wait_for()
        for name in DBS:
            frame.locator(f"tr[data-conn-id={name}]").wait_for()
        assert "postgresql" in frame.locator("tr[data-conn-id=sv_current]").inner_text()
        assert "locked" in frame.locator("tr[data-conn-id=sv_locked]").inner_text()
        down = frame.locator("tr[data-conn-id=sv_down]").inner_text()
        assert "unreachable" in down and "last seen 20" in down, down
        fleet.take(page, "11-browse-schema-versions")
        assert DB_PASSWORD not in page.content() + frame.locator("body").inner_html()

        status, body = fleet.api("GET", "/api/v2/dags/jetbase_sv_fleet/dagRuns")
        assert status == 200, body
        run_id = json.loads(body)["dag_runs"][0]["dag_run_id"]
        page.goto(f"{fleet.server.base_url}/dags/jetbase_sv_fleet/runs/{quote(run_id, safe='')}")
        page.get_by_text("Jetbase migrations", exact=True).click()
        run_frame = page.frame_locator("iframe")
        run_frame.locator("h2[data-task-id=upgrade_current]").wait_for()
        text = run_frame.locator("body").inner_text()
        assert "V3__drop_note.sql" in text and "plan (dry run)" in text
        assert "destructive" in text.lower() or "drop" in text.lower()
        fleet.take(page, "12-dag-run-jetbase-migrations")
