"""JetbaseDriftCheckOperator in-process (real databases) and the example DAG with dag.test()."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import URL

from airflow_provider_jetbase.migration import Migrator
from tests.airflow_harness import EXAMPLE_DAGS, AirflowHome, DagSession, conn_env_value
from tests.drift_helpers import disposing, make_engine, run_sql, write_migrations

CONN_ID = "jb_drift"


class _FakeTI:
    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def _operator(dag_file: Path, migrations: str, **kwargs: Any):  # type: ignore[no-untyped-def]
    from airflow.sdk import DAG

    from airflow_provider_jetbase.operators.drift import JetbaseDriftCheckOperator

    dag = DAG("t_drift", schedule=None, start_date=dt.datetime(2024, 1, 1), params=kwargs.pop("params", {}))
    dag.fileloc = str(dag_file)
    with dag:
        return JetbaseDriftCheckOperator(
            task_id="check", jetbase_conn_id=CONN_ID, migrations_dir=migrations, **kwargs
        )


def _execute(task: Any) -> tuple[Any, _FakeTI]:
    ti = _FakeTI()
    context = {"dag": task.dag, "task": task, "ti": ti, "params": task.dag.params, "run_id": "manual__t"}
    task.render_template_fields(context)
    return task.execute(context), ti


@pytest.fixture
def migrated(db_url: URL, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[URL, Path]:
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", conn_env_value(db_url))
    dags = tmp_path / "dags"
    with disposing(make_engine(db_url)) as engine:
        write_migrations(dags / "migrations", engine.dialect.name)
        Migrator(engine, dags / "migrations").upgrade()
    return db_url, dags


def test_operator_clean_returns_report(migrated: tuple[URL, Path]) -> None:
    url, dags = migrated
    # A relative folder is resolved against the DAG file's folder.
    result, ti = _execute(_operator(dags / "dag.py", "migrations"))
    assert result["ok"] is True and result["method"] == "replay"
    assert result["findings"] == [] and result["tables_checked"] == 5
    assert ti.pushed["drift_report"] == result


def test_operator_fails_or_soft_fails_on_drift(migrated: tuple[URL, Path]) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException, AirflowSkipException

    url, dags = migrated
    with disposing(make_engine(url)) as engine:
        run_sql(engine, "ALTER TABLE users ADD COLUMN nickname VARCHAR(50)")
    with pytest.raises(AirflowFailException, match="column_added") as failed:
        _execute(_operator(dags / "dag.py", "migrations"))
    assert "drift found (1 failing finding(s)" in str(failed.value)
    with pytest.raises(AirflowSkipException, match="column_added"):
        _execute(_operator(dags / "dag.py", "migrations", soft_fail=True))
    # Only what fail_on names fails: schema drift left out, the same drift is a warning.
    result, ti = _execute(_operator(dags / "dag.py", "migrations", fail_on="checksum_mismatch, missing_file"))
    assert result["ok"] is True
    assert [(f["kind"], f["severity"]) for f in result["findings"]] == [("column_added", "warning")]


def test_operator_templated_params(migrated: tuple[URL, Path]) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    url, dags = migrated
    (dags / "migrations" / "V4__later.sql").write_text("CREATE TABLE later_table (id INT);\n")
    task = _operator(
        dags / "dag.py",
        "{{ params.folder }}",
        pending_is_drift="{{ params.pending_is_drift }}",
        params={"folder": "migrations", "pending_is_drift": True},
    )
    with pytest.raises(AirflowFailException, match="pending_migration"):
        _execute(task)
    task = _operator(
        dags / "dag.py",
        "{{ params.folder }}",
        pending_is_drift="{{ params.pending_is_drift }}",
        params={"folder": "migrations", "pending_is_drift": False},
    )
    result, _ = _execute(task)
    assert [(f["kind"], f["severity"]) for f in result["findings"]] == [("pending_migration", "info")]


def test_operator_module_import_is_cheap() -> None:
    import subprocess

    code = (
        "import sys; import airflow_provider_jetbase.operators.drift; "
        "heavy = [m for m in ('airflow_provider_jetbase.drift.check', 'airflow_provider_jetbase.migration', "
        "'airflow_provider_jetbase.hooks.jetbase', 'psycopg2', 'pymysql') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


# ----------------------------------------------------------------------------- example DAG
EXAMPLE = EXAMPLE_DAGS / "example_jetbase_drift_check.py"


@pytest.fixture(scope="module")
def examples(airflow_home: AirflowHome) -> Iterator[DagSession]:
    """One harness subprocess for the module's example runs; each run hands it its own connection."""
    with airflow_home.session(EXAMPLE_DAGS) as session:
        yield session


def test_example_dag_passes_then_alerts_on_drift(examples: DagSession, tmp_path: Path) -> None:
    target = tmp_path / "drift_demo.db"
    url = URL.create("sqlite", database=str(target))
    with disposing(make_engine(url)) as engine:
        Migrator(engine, EXAMPLE_DAGS / "migrations" / "drift_check").upgrade()
    connections = {"jetbase_drift_demo": conn_env_value(str(target))}

    clean = examples.run(EXAMPLE, "example_jetbase_drift_check", connections=connections)
    assert clean.tasks == {"check_drift": "success"}, clean.explain()
    report = clean.xcom["check_drift"]
    assert report["ok"] is True and report["method"] == "replay" and report["tables_checked"] == 2
    assert "Jetbase drift check: OK" in clean.output

    with disposing(make_engine(url)) as engine:
        run_sql(
            engine,
            "ALTER TABLE accounts ADD COLUMN nickname VARCHAR(40); DROP INDEX ix_invoices_issued_on",
        )
    drift = examples.run(EXAMPLE, "example_jetbase_drift_check", connections=connections)
    assert drift.tasks == {"check_drift": "failed"}, drift.explain()
    assert drift.state is not None and "failed" in drift.state
    # The readable table in the task log, and the on_failure_callback's alert.
    assert "column_added" in drift.output and "accounts.nickname" in drift.output
    assert "JETBASE DRIFT ALERT for jetbase_drift_demo" in drift.output, drift.explain()
    assert "- index_dropped: invoices.ix_invoices_issued_on" in drift.output
    assert "Jetbase drift check: OK" not in drift.output  # the session's runs keep their own output


def test_operator_fails_with_could_not_run_when_the_check_cannot_run(
    postgres_url: URL, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_login: Any
) -> None:
    """A check that could not run (no CREATEDB for the scratch database) is its own outcome: the task
    fails saying so, even with soft_fail, and never reads as drift or as "0 failing findings"."""
    from airflow.providers.common.compat.sdk import AirflowFailException

    dags = tmp_path / "dags"
    with disposing(make_engine(postgres_url)) as engine:
        write_migrations(dags / "migrations", engine.dialect.name)
        Migrator(engine, dags / "migrations").upgrade()
    limited = pg_login("NOCREATEDB CREATEROLE")
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", conn_env_value(limited))
    for soft_fail in (False, True):
        task = _operator(dags / "dag.py", "migrations", soft_fail=soft_fail)
        ti = _FakeTI()
        context = {"dag": task.dag, "task": task, "ti": ti, "params": {}, "run_id": "manual__t"}
        with pytest.raises(AirflowFailException) as failed:
            task.execute(context)
        message = str(failed.value)
        assert message.startswith(f"Jetbase drift check COULD NOT RUN on connection '{CONN_ID}'"), message
        assert "may not create databases (no CREATEDB)" in message
        assert "drift found" not in message and "failing finding" not in message
        report = ti.pushed["drift_report"]
        assert report["status"] == "error" and report["ok"] is False and report["findings"] == []


def test_example_dag_alerts_could_not_run_when_the_database_is_missing(
    examples: DagSession, tmp_path: Path
) -> None:
    missing = tmp_path / "never_created.db"
    connections = {"jetbase_drift_demo": conn_env_value(str(missing))}
    run = examples.run(EXAMPLE, "example_jetbase_drift_check", connections=connections)
    assert run.tasks == {"check_drift": "failed"}, run.explain()
    assert "JETBASE DRIFT CHECK COULD NOT RUN for jetbase_drift_demo" in run.output, run.explain()
    assert "JETBASE DRIFT ALERT" not in run.output and "failing finding" not in run.output
    assert not missing.exists()  # a check never creates the database it checks
