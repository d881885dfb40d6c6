"""The deployment tier: one real Airflow deployment for all its tests (tests/deployment/deployment.py).

Without the PostgreSQL or Redis server, CI (CI=true) fails; elsewhere the tier is skipped loudly.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import run_summary
from tests.conftest import unavailable
from tests.deployment.deployment import (
    Deployment,
    DeploymentUnavailable,
    check_servers,
    running_deployment,
)

LAST_MODULE = "test_secrets_scan.py"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The secrets scan goes last: it scans what every other test of the tier left behind."""
    last = [item for item in items if item.path.name == LAST_MODULE]
    if last:
        items[:] = [item for item in items if item.path.name != LAST_MODULE] + last


# Package scope: the deployment stops right after the tier's last test. The tier runs whole on one
# xdist worker (tests/conftest.py), which then takes other modules; a session-scoped deployment would
# sit idle until that worker's very end, its six processes polling on the CPU the rest needs.
@pytest.fixture(scope="package")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Deployment]:
    try:
        check_servers()
    except DeploymentUnavailable as exc:
        unavailable(f"CI needs {exc}", f"SKIPPING the deployment tier outside CI: {exc}")
    with running_deployment(tmp_path_factory.mktemp("deployment")) as running:
        run_summary.add_line(
            request.config, f"deployment tier: the Airflow deployment started in {running.started_in_s:.1f} s"
        )
        yield running
