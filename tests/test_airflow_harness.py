"""The dag.test() harness itself (tests/airflow_harness.py): a session's runs share one subprocess
but not their connections or their output."""

from __future__ import annotations

import os
from pathlib import Path

from tests.airflow_harness import AirflowHome, conn_env_value

ENV_DAG = """
import datetime as dt
import os

from airflow.sdk import DAG, task

with DAG("harness_env", schedule=None, start_date=dt.datetime(2024, 1, 1)) as dag:

    @task
    def connections():
        names = sorted(k for k in os.environ if k.startswith("AIRFLOW_CONN_JB_HARNESS"))
        print("HARNESS CONNECTIONS", names)
        return names

    connections()
"""


def test_a_session_run_sees_only_its_own_connections_and_output(
    airflow_home: AirflowHome, tmp_path: Path
) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "harness_env.py").write_text(ENV_DAG)
    value = conn_env_value(str(tmp_path / "unused.db"))
    with airflow_home.session(dags, connections={"jb_harness_all": value}) as session:
        one = session.run(dags / "harness_env.py", "harness_env", connections={"jb_harness_one": value})
        two = session.run(dags / "harness_env.py", "harness_env")
        assert session.proc.poll() is None  # both runs in the one subprocess, still running
    assert one.xcom["connections"] == ["AIRFLOW_CONN_JB_HARNESS_ALL", "AIRFLOW_CONN_JB_HARNESS_ONE"], (
        one.explain()
    )
    assert two.xcom["connections"] == ["AIRFLOW_CONN_JB_HARNESS_ALL"], two.explain()
    assert "AIRFLOW_CONN_JB_HARNESS_ONE" in one.output and "AIRFLOW_CONN_JB_HARNESS_ONE" not in two.output
    assert session.proc.returncode == 0  # stopped when the block ended
    assert not any(k.startswith("AIRFLOW_CONN_JB_HARNESS") for k in os.environ)
