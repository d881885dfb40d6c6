"""The reviewed-release example answered in Airflow's own UI, on the real deployment, in headless Chromium.

A reviewer opens the *Required Actions* page, follows the approval request to the task instance's
*Required Action* tab, reads the plan (the Markdown of the dry run: the files, the lint findings, the
SQL) and clicks *Approve* or *Reject*; the database then is at the planned version, or untouched.
Each step leaves a screenshot (``reviewed-release-*.png``) in the folder printed at the end of the
run; ``JETBASE_UI_SCREENSHOTS=docs/ui`` also copies them there, for docs/recipes.md.

Run alone with ``pytest tests/deployment/test_reviewed_release_ui.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.deployment.deployment import Deployment, Slot
from tests.deployment.test_example_dags import versions
from tests.deployment.test_reviewed_release import DAG_ID, PLANNED, empty_slot, review, states, tables
from tests.ui.browser import VIEWPORT, Shots, chromium_context, fit_panel, recorded_shots, require_ui_tools

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page

pytestmark = [pytest.mark.deployment, pytest.mark.ui]

SUBJECT = "Apply the Jetbase plan to jetbase_reviewed_demo?"
APPROVED_STATES = {
    "plan": "success",
    "approve": "success",
    "apply": "success",
    "rollback_target": "skipped",
    "rollback": "skipped",
    "outcome": "success",
}


@pytest.fixture
def slot(deployment: Deployment) -> Slot:
    return empty_slot(deployment)


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Shots]:
    with recorded_shots(tmp_path_factory.mktemp("reviewed-release-screenshots"), request.config) as recorder:
        yield recorder


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    require_ui_tools()
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
def open_required_actions(page: Page, deployment: Deployment, run_id: str) -> None:
    """The reviewer's inbox, pending requests only: the run's approval is listed, waiting."""
    page.goto(f"{deployment.server.base_url}/required_actions?response_received=false")
    row = page.locator("tr", has_text=run_id)
    row.get_by_text("Approval Required").wait_for()
    row.get_by_role("link", name=SUBJECT).wait_for()


def click_subject(page: Page, run_id: str) -> None:
    """From the inbox to the task instance's Required Action tab (the plan and the buttons)."""
    page.locator("tr", has_text=run_id).get_by_role("link", name=SUBJECT).click()
    page.get_by_role("button", name="Approve", exact=True).wait_for()
    assert page.url.endswith("/tasks/approve/required_actions"), page.url


def assert_plan_shown(page: Page, plan: dict[str, Any]) -> None:
    """The body is the plan's Markdown, rendered: the files table, the lint findings table, the SQL
    (highlighted code blocks)."""
    page.get_by_text(SUBJECT, exact=True).wait_for()
    page.get_by_role("heading", name="Jetbase upgrade plan: jetbase_reviewed_demo").wait_for()
    body = page.locator("body")
    files_table = page.locator("table", has=page.locator("th", has_text="checksum"))
    findings_table = page.locator("table", has=page.locator("th", has_text="explanation"))
    for step in plan["plan"]["steps"]:
        files_table.locator("tr", has_text=step["filename"]).wait_for()
        # One heading per file, above its SQL.
        page.get_by_role("heading", name=step["filename"]).wait_for()
    finding = findings_table.locator("tr", has_text="update-without-where")
    finding.wait_for()
    assert "V3__add_customer_tier.sql" in finding.inner_text()
    assert "destructive (accepted)" in finding.inner_text()
    update = page.locator("code.language-sql", has_text="UPDATE customers SET tier = 'standard';")
    update.wait_for()
    assert "ALTER TABLE customers ADD COLUMN tier VARCHAR(20);" in update.inner_text()
    page.locator("code.language-sql", has_text="CREATE TABLE orders").wait_for()
    assert plan["plan_hash"] in body.inner_text()
    # Rendered, not shown as Markdown source.
    text = body.inner_text()
    assert "```" not in text and "| severity" not in text, text


def take_whole_plan(page: Page, shots: Shots, name: str) -> None:
    """A screenshot of the whole Required Action tab (it scrolls on its own), buttons included."""
    fit_panel(page, page.get_by_role("button", name="Approve", exact=True))
    try:
        shots.take(page, name)
    finally:
        page.set_viewport_size(VIEWPORT)  # type: ignore[arg-type]


def click_answer(page: Page, option: str) -> dict[str, Any]:
    """Click the option's button; returns the answer the API gave the UI."""
    with page.expect_response(
        lambda r: r.url.endswith("/taskInstances/approve/-1/hitlDetails") and r.request.method == "PATCH"
    ) as answered:
        page.get_by_role("button", name=option, exact=True).click()
    assert answered.value.status == 200, (answered.value.status, answered.value.text())
    page.get_by_text("approve response successful").wait_for()
    response: dict[str, Any] = answered.value.json()
    return response


def show_run(page: Page, deployment: Deployment, run_id: str) -> None:
    """The run's page, once it finished: its task instances and their states."""
    page.goto(f"{deployment.server.base_url}/dags/{DAG_ID}/runs/{run_id}")
    page.get_by_role("link", name="outcome", exact=True).first.wait_for()
    page.get_by_text("6 Task Instances").wait_for()


# --------------------------------------------------------------------------- tests
def test_approve_clicked_in_the_ui_applies_the_plan_shown(
    deployment: Deployment, slot: Slot, page: Page, shots: Shots
) -> None:
    run_id = deployment.trigger(DAG_ID, {})
    plan = review(deployment, run_id)  # waits until the approval task is parked on its request
    assert versions(slot) == []

    open_required_actions(page, deployment, run_id)
    shots.take(page, "reviewed-release-01-required-actions")
    click_subject(page, run_id)
    assert_plan_shown(page, plan)
    take_whole_plan(page, shots, "reviewed-release-02-approval-plan")

    response = click_answer(page, "Approve")
    assert response["chosen_options"] == ["Approve"], response
    run = deployment.wait_run(DAG_ID, run_id)
    assert run["state"] == "success", states(deployment, run_id)
    assert states(deployment, run_id) == APPROVED_STATES
    applied = deployment.xcom(DAG_ID, run_id, "apply")
    assert applied["plan_hash"] == plan["plan_hash"]
    assert applied["versions_applied"] == PLANNED
    assert versions(slot) == PLANNED
    assert tables(slot) == ["customers", "orders"]
    show_run(page, deployment, run_id)
    shots.take(page, "reviewed-release-03-approved-run")


def test_reject_clicked_in_the_ui_applies_nothing(
    deployment: Deployment, slot: Slot, page: Page, shots: Shots
) -> None:
    run_id = deployment.trigger(DAG_ID, {})
    plan = review(deployment, run_id)
    open_required_actions(page, deployment, run_id)
    click_subject(page, run_id)
    assert_plan_shown(page, plan)

    response = click_answer(page, "Reject")
    assert response["chosen_options"] == ["Reject"], response
    run = deployment.wait_run(DAG_ID, run_id)
    assert run["state"] == "success", states(deployment, run_id)
    got = states(deployment, run_id)
    assert (got["approve"], got["apply"], got["rollback"]) == ("success", "skipped", "skipped"), got
    assert deployment.xcom(DAG_ID, run_id, "outcome") == {"applied": False}
    assert versions(slot) == []
    assert tables(slot) == []
    show_run(page, deployment, run_id)
    shots.take(page, "reviewed-release-04-rejected-run")
