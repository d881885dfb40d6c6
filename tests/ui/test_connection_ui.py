"""Connection management in the real Airflow UI, in headless Chromium.

A real ``airflow api-server`` (Airflow 3, SQLite metadata in a throwaway AIRFLOW_HOME, simple auth
manager, ``[core] test_connection = Enabled``) runs on 127.0.0.1; Debian's Chromium, driven by
Playwright, does what a platform engineer does: add a ``jetbase`` connection, press Test, read the
answer. The form is checked against ``get_provider_info()`` itself, so the test follows the
declaration. Each step leaves a screenshot in the folder printed at the end of the run
(``JETBASE_UI_SCREENSHOTS=docs/ui`` also copies them there for the docs).

Run alone with ``pytest -m ui``.
"""

from __future__ import annotations

import hashlib
import json
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from airflow_provider_jetbase import get_provider_info
from tests.ui.airflow_server import AirflowServer, running_api_server
from tests.ui.browser import Shots, chromium_context, recorded_shots, require_ui_tools

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page, Response

pytestmark = pytest.mark.ui

# Distinctive, so a leak anywhere on the page or in the API answer is unambiguous.
WRONG_PASSWORD = "Wr0ng-Pa55-7f3c9e2a-do-not-leak"
STANDARD_FIELDS = ("host", "port", "schema", "login", "password")
# Airflow 3.3.2's row "Test Connection" button posts ``port: Number(null)`` = 0 for a connection with
# no port; the API then rejects it as "a different endpoint" unless a real password is sent.
AIRFLOW_PORT_BUG = "The host or port to test differs from the stored connection"
JETBASE_DIALECTS = ("postgresql", "mysql", "sqlite", "snowflake", "databricks", "clickhouse")


def _jetbase_conn_type() -> dict[str, Any]:
    for conn_type in get_provider_info()["connection-types"]:
        if conn_type["connection-type"] == "jetbase":
            found: dict[str, Any] = conn_type
            return found
    raise AssertionError("get_provider_info() declares no 'jetbase' connection type")


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Shots]:
    with recorded_shots(tmp_path_factory.mktemp("ui-screenshots"), request.config) as recorder:
        yield recorder


@pytest.fixture(scope="module")
def airflow(
    tmp_path_factory: pytest.TempPathFactory, airflow_metadata_template: Path
) -> Iterator[AirflowServer]:
    require_ui_tools()
    home = tmp_path_factory.mktemp("airflow-home")
    with running_api_server(home, airflow_metadata_template) as server:
        yield server


@pytest.fixture(scope="module")
def browser(airflow: AirflowServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    with chromium_context(tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context


@pytest.fixture
def page(browser: BrowserContext) -> Iterator[Page]:
    new_page = browser.new_page()
    try:
        yield new_page
    finally:
        new_page.close()


# --------------------------------------------------------------------------- UI steps
def open_add_connection_form(page: Page, airflow: AirflowServer, conn_id: str) -> None:
    page.goto(f"{airflow.base_url}/connections")
    page.get_by_role("button", name="Add Connection").click()
    dialog = page.get_by_role("dialog")
    dialog.locator("input[name=connection_id]").fill(conn_id)
    hook_name = _jetbase_conn_type()["hook-name"]
    dialog.locator("input[role=combobox]").fill(hook_name)
    page.get_by_role("option", name=hook_name, exact=True).click()
    # The standard fields appear once the type's metadata is applied.
    dialog.get_by_role("button", name="Extra Fields", exact=True).wait_for()


def open_extra_fields(page: Page) -> None:
    page.get_by_role("dialog").get_by_role("button", name="Extra Fields", exact=True).click()
    page.locator("#element_sqlalchemy_url").wait_for()


def open_standard_fields(page: Page) -> None:
    page.get_by_role("dialog").get_by_role("button", name="Standard Fields", exact=True).click()
    page.locator("input[name=login]").wait_for()


def save_connection(page: Page, airflow: AirflowServer, conn_id: str) -> None:
    with page.expect_response(
        lambda r: r.url.endswith("/api/v2/connections") and r.request.method == "POST"
    ) as created:
        page.get_by_role("dialog").get_by_role("button", name="Save").click()
    assert created.value.status == 201, created.value.text()
    page.get_by_role("dialog").wait_for(state="hidden")
    page.locator("tr", has_text=conn_id).wait_for()


def press_test(page: Page, conn_id: str) -> Response:
    """Press the row's Test button and return the API answer the UI got."""
    button = page.locator("tr", has_text=conn_id).get_by_role("button", name="Test Connection")
    with page.expect_response(lambda r: r.url.endswith("/api/v2/connections/test")) as answer:
        button.click()
    return answer.value


def press_test_working_around_port_bug(
    page: Page, conn_id: str, shots: Shots, bug_screenshot: bool = False
) -> dict[str, Any]:
    """Press Test as a user does; on Airflow 3.3's port bug, reload and press again with port null.

    The shim changes one value of the request the UI builds (port 0 -> null, which is what the
    stored connection holds); the button, the server-side test and how the UI shows the answer are
    the real thing. Once Airflow fixes the bug the first press succeeds and no shim runs.
    """
    first = press_test(page, conn_id)
    if first.status == 200:
        body: dict[str, Any] = first.json()
        return body
    assert first.status == 400 and AIRFLOW_PORT_BUG in first.text(), (first.status, first.text())
    shots.notes.append(f"{conn_id}: Airflow UI port bug hit ({first.text()}); pressed again with port null")
    if bug_screenshot:
        page.get_by_text("Bad Request").first.wait_for()
        shots.take(page, "04-airflow-3.3-test-button-bad-request")
    page.reload()  # clears the toast, so the next screenshot shows only the real answer

    def fix_port(route: Any) -> None:
        payload = json.loads(route.request.post_data or "{}")
        if payload.get("port") == 0:
            payload["port"] = None
        route.continue_(post_data=json.dumps(payload))

    page.route("**/api/v2/connections/test", fix_port)
    try:
        second = press_test(page, conn_id)
    finally:
        page.unroute("**/api/v2/connections/test", fix_port)
    assert second.status == 200, (second.status, second.text())
    body = second.json()
    return body


EXISTING_PG_DAG = '''
import pendulum
from airflow.sdk import dag, task


@dag(dag_id="jetbase_ui_existing_pg", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def jetbase_ui_existing_pg():
    @task
    def use_official_postgres_connection():
        from sqlalchemy import text

        from airflow_provider_jetbase.hooks.jetbase import JetbaseHook

        hook = JetbaseHook(jetbase_conn_id="warehouse_pg")
        ok, message = hook.test_connection()
        if not ok:
            raise RuntimeError(message)
        engine = hook.get_sqlalchemy_engine()
        try:
            with engine.begin() as conn:
                conn.execute(
                    text("CREATE TABLE made_by_dag_run (database_name text, dialect text, test_message text)")
                )
                conn.execute(
                    text("INSERT INTO made_by_dag_run SELECT current_database(), :dialect, :message"),
                    {"dialect": hook.get_dialect_name(), "message": message},
                )
        finally:
            engine.dispose()

    use_official_postgres_connection()


jetbase_ui_existing_pg()
'''


# --------------------------------------------------------------------------- tests
def test_jetbase_form_shows_declared_fields(page: Page, airflow: AirflowServer, shots: Shots) -> None:
    conn_type = _jetbase_conn_type()
    conn_fields: dict[str, dict[str, Any]] = conn_type.get("conn-fields", {})
    behaviour: dict[str, Any] = conn_type.get("ui-field-behaviour", {})
    hidden = set(behaviour.get("hidden-fields", []))
    relabeling: dict[str, str] = behaviour.get("relabeling", {})
    placeholders: dict[str, str] = behaviour.get("placeholders", {})
    assert conn_fields, "the jetbase type declares no conn-fields"

    open_add_connection_form(page, airflow, "jetbase_form_check")
    shots.take(page, "01-add-connection-jetbase-standard-fields")

    dialog = page.get_by_role("dialog")
    for field in STANDARD_FIELDS:
        inputs = dialog.locator(f"input[name={field}]")
        if field in hidden:
            assert inputs.count() == 0, f"standard field {field!r} is declared hidden but is shown"
            continue
        assert inputs.count() == 1, f"standard field {field!r} is not shown"
        if field in relabeling:
            std_label = dialog.locator(f"label[for='{inputs.get_attribute('id')}']")
            assert std_label.inner_text().strip() == relabeling[field]
        if field in placeholders:
            assert inputs.get_attribute("placeholder") == placeholders[field]
        if field == "password":
            assert inputs.get_attribute("type") == "password"

    open_extra_fields(page)
    shots.take(page, "02-add-connection-jetbase-extra-fields")
    for name, declared in conn_fields.items():
        element = dialog.locator(f"#element_{name}")
        assert element.count() == 1, f"extra field {name!r} is not shown"
        group = dialog.locator("[role=group]", has=page.locator(f"#element_{name}"))
        label = group.locator("label").inner_text().strip()
        assert label == declared["label"], (name, label)
        if declared.get("description"):
            assert group.locator("[data-part=helper-text]").inner_text().strip() == declared["description"]
        schema = declared.get("schema", {})
        tag = element.evaluate("e => e.tagName.toLowerCase()")
        if schema.get("format") == "multiline":
            assert tag == "textarea", f"{name!r} is declared multi-line but rendered as <{tag}>"
        else:
            assert tag == "input", (name, tag)
            masked = element.get_attribute("type") == "password"
            assert masked == (schema.get("format") == "password"), f"{name!r}: masked={masked}"
        # Airflow 3.3 shows an extra field's hints through schema examples (a suggestion list);
        # ui-field-behaviour placeholders only reach the standard fields.
        if schema.get("examples"):
            options = element.evaluate(
                "e => e.list ? Array.from(e.list.options).map(o => o.value) : []"
            )
            assert options == list(schema["examples"]), (name, options)

    # The URL field must show Jetbase's URL form for each database, whichever way Airflow renders it
    # (an input placeholder, the suggestion list, or the help text).
    url_input = dialog.locator("#element_sqlalchemy_url")
    url_group = dialog.locator("[role=group]", has=page.locator("#element_sqlalchemy_url"))
    shown = " ".join(
        [
            url_input.get_attribute("placeholder") or "",
            *url_input.evaluate("e => e.list ? Array.from(e.list.options).map(o => o.value) : []"),
            url_group.inner_text(),
        ]
    )
    missing = [d for d in JETBASE_DIALECTS if not re.search(rf"\b{d}(\+\w+)?://", shown)]
    assert not missing, f"the SQLAlchemy URL field shows no URL form for {missing}; it shows: {shown!r}"


def test_sqlite_connection_saved_and_tested(
    page: Page, airflow: AirflowServer, shots: Shots, tmp_path: Path
) -> None:
    db_file = tmp_path / "ui.db"
    url = f"sqlite:///{db_file}"
    open_add_connection_form(page, airflow, "jetbase_ui_sqlite")
    open_extra_fields(page)
    page.locator("#element_sqlalchemy_url").fill(url)
    shots.take(page, "03-sqlite-filled")
    save_connection(page, airflow, "jetbase_ui_sqlite")

    status, stored = airflow.api("GET", "/api/v2/connections/jetbase_ui_sqlite")
    assert status == 200
    assert stored["conn_type"] == "jetbase"
    assert json.loads(stored["extra"])["sqlalchemy_url"] == url

    result = press_test_working_around_port_bug(page, "jetbase_ui_sqlite", shots, bug_screenshot=True)
    assert result["status"] is True, result
    assert "sqlite" in result["message"] and "works" in result["message"], result
    page.get_by_text("Test Connection Successful").wait_for()
    page.get_by_text(result["message"]).wait_for()
    shots.take(page, "05-sqlite-test-succeeded")
    # The test really opened the database the form names.
    assert db_file.exists()


def test_wrong_mariadb_password_fails_without_leaking(
    page: Page, airflow: AirflowServer, shots: Shots, mysql_url: URL
) -> None:
    url = URL.create(
        "mysql+pymysql",
        username="root",
        host=mysql_url.host,
        port=mysql_url.port,
        database=mysql_url.database,
    ).render_as_string(hide_password=False)
    open_add_connection_form(page, airflow, "jetbase_ui_mariadb")
    open_extra_fields(page)
    page.locator("#element_sqlalchemy_url").fill(url)
    open_standard_fields(page)
    page.locator("input[name=password]").fill(WRONG_PASSWORD)
    shots.take(page, "06-mariadb-wrong-password-filled")
    save_connection(page, airflow, "jetbase_ui_mariadb")

    result = press_test_working_around_port_bug(page, "jetbase_ui_mariadb", shots)
    assert result["status"] is False, result
    message = result["message"]
    assert "jetbase_ui_mariadb" in message or "mysql" in message, message
    assert "Access denied" in message, message
    assert WRONG_PASSWORD not in message
    page.get_by_text("Test Connection Failed").wait_for()
    page.get_by_text("Access denied", exact=False).first.wait_for()
    shots.take(page, "07-mariadb-test-failed")
    assert WRONG_PASSWORD not in page.content()
    # Nor in what the API hands back for the stored connection.
    _, stored = airflow.api("GET", "/api/v2/connections/jetbase_ui_mariadb")
    assert WRONG_PASSWORD not in json.dumps(stored)


def test_snowflake_key_pasted_into_the_form_is_usable(
    page: Page, airflow: AirflowServer, shots: Shots
) -> None:
    """A multi-line PEM pasted into the masked key field survives the browser and maps to the key.

    Browsers strip line breaks from a single-line input; the hook must still read the key.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key_body_line = pem.splitlines()[5]
    conn_id = "jetbase_ui_snowflake_key"

    open_add_connection_form(page, airflow, conn_id)
    open_extra_fields(page)
    page.locator("#element_sqlalchemy_url").fill(
        "snowflake://svc_migrations@myorg-account1/ANALYTICS/PUBLIC?warehouse=TRANSFORMING&role=MIGRATOR"
    )
    page.locator("#element_private_key_content").fill(pem)
    assert page.locator("#element_private_key_content").get_attribute("type") == "password"
    shots.take(page, "08-snowflake-key-pasted-masked")
    save_connection(page, airflow, conn_id)
    assert key_body_line not in page.content()
    _, stored = airflow.api("GET", f"/api/v2/connections/{conn_id}")
    assert key_body_line not in json.dumps(stored), "the API handed the private key back"

    # Read the stored connection where Airflow keeps it and map it as the hook does.
    code = textwrap.dedent(
        f"""
        import hashlib
        from airflow.models.connection import Connection
        from airflow.utils.session import create_session
        from airflow_provider_jetbase.connection_mapping import ConnectionFields, build_engine_spec

        with create_session() as session:
            conn = session.query(Connection).filter_by(conn_id={conn_id!r}).one()
            fields = ConnectionFields(
                conn_id=conn.conn_id, conn_type=conn.conn_type, host=conn.host, login=conn.login,
                password=conn.password, schema=conn.schema, port=conn.port, extra=conn.extra_dejson,
            )
        spec = build_engine_spec(fields, environ={{}})
        print(spec.dialect, hashlib.sha256(spec.connect_args["private_key"]).hexdigest())
        """
    )
    result = airflow.run_python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    dialect, digest = result.stdout.split()[-2:]
    assert dialect == "snowflake"
    assert digest == hashlib.sha256(der).hexdigest()


def test_existing_postgres_connection_is_usable_by_the_hook(
    page: Page, airflow: AirflowServer, shots: Shots, postgres_url: URL
) -> None:
    # Made as the official postgres provider's users make it (the REST API / UI, its own fields).
    status, created = airflow.api(
        "POST",
        "/api/v2/connections",
        {
            "connection_id": "warehouse_pg",
            "conn_type": "postgres",
            "host": postgres_url.host,
            "port": postgres_url.port,
            "login": postgres_url.username,
            "schema": postgres_url.database,
            "extra": json.dumps({"sslmode": "disable"}),
        },
    )
    assert status == 201, created

    page.goto(f"{airflow.base_url}/connections")
    row = page.locator("tr", has_text="warehouse_pg")
    row.wait_for()
    row.get_by_role("button", name="Edit Connection").click()
    dialog = page.get_by_role("dialog")
    # Shown with the official provider's own form: its type and fields, as the user saved them.
    dialog.locator("input[name=host]").wait_for()
    assert dialog.locator("input[name=host]").input_value() == postgres_url.host
    assert dialog.locator("input[name=login]").input_value() == postgres_url.username
    shots.take(page, "09-existing-postgres-connection")
    page.keyboard.press("Escape")

    # A real DAG run (``airflow dags test``, same AIRFLOW_HOME and metadata DB) whose task uses the
    # connection through JetbaseHook, exactly as a team's DAG would.
    dag_file = Path(airflow.env["AIRFLOW__CORE__DAGS_FOLDER"]) / "jetbase_ui_existing_pg.py"
    dag_file.write_text(EXISTING_PG_DAG)
    run = airflow.run_airflow(["dags", "test", "jetbase_ui_existing_pg"], timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    status, runs = airflow.api("GET", "/api/v2/dags/jetbase_ui_existing_pg/dagRuns")
    assert status == 200, runs
    assert [r["state"] for r in runs["dag_runs"]] == ["success"], runs

    page.goto(f"{airflow.base_url}/dags/jetbase_ui_existing_pg/runs")
    page.get_by_text("success").first.wait_for()
    shots.take(page, "10-dag-run-using-postgres-connection")

    engine = create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            seen = conn.execute(
                text("SELECT database_name, dialect, test_message FROM made_by_dag_run")
            ).one()
        assert seen.database_name == postgres_url.database
        assert seen.dialect == "postgresql"
        assert "works" in seen.test_message
    finally:
        engine.dispose()

