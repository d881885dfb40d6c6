"""The example DAGs' dag.test() runs on PostgreSQL that the main suite leaves to the deployment tier.

tests/deployment/test_example_dags.py runs the migrate-before-ETL and wait-for-version examples on
PostgreSQL on a real deployment, so tests/test_example_dags.py runs them on SQLite only. The
Makefile's AIRFLOW_TESTS (the older Airflow versions, which have no deployment tier) name this file
to run them on PostgreSQL there. Its name does not start with ``test_``: pytest collects it only when
a command line names it, never in the main suite.
"""

from __future__ import annotations

import pytest

from tests import test_example_dags as example_tests
from tests.airflow_harness import AirflowHome, DagSession
from tests.test_example_dags import examples  # noqa: F401 - the module's harness session, a fixture


@example_tests.NO_ALIAS_EVENT_ON_3_1
def test_migrate_before_etl_on_postgres(request: pytest.FixtureRequest, examples: DagSession) -> None:  # noqa: F811
    example_tests.test_migrate_before_etl("postgres", request, examples)


def test_wait_for_version_defers_then_resumes_on_postgres(
    request: pytest.FixtureRequest, airflow_home: AirflowHome
) -> None:
    example_tests.test_wait_for_version_defers_then_resumes_when_the_version_lands(
        "postgres", request, airflow_home
    )
