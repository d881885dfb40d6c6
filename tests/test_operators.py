"""JetbaseUpgradeOperator / JetbaseRollbackOperator / JetbaseStatusOperator on real databases.

execute() runs in-process with a real Airflow task context (templates rendered by Airflow, a real
outlet-events accessor); the connection comes from an ``AIRFLOW_CONN_*`` variable set with
monkeypatch. Task-state behaviour (a failing migration fails the task) is checked with dag.test().
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from tests.airflow_harness import REPO_ROOT, AirflowHome, conn_env_value
from tests.operator_helpers import (
    CONN_ID,
    UseConn,
    alias_events,
    applied_versions,
    make_dag,
    render_and_execute,
    table_names,
    write_migrations,
)


@pytest.fixture
def use_conn(monkeypatch: pytest.MonkeyPatch) -> UseConn:
    def _use(url: URL) -> None:
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", conn_env_value(url))

    return _use


def _upgrade(dag_file: Path, migrations: str | Path, **kwargs: Any) -> Any:
    from airflow_provider_jetbase.operators.jetbase import JetbaseUpgradeOperator

    dag = make_dag("t_upgrade", fileloc=dag_file, params=kwargs.pop("params", None))
    with dag:
        return JetbaseUpgradeOperator(
            task_id="upgrade", jetbase_conn_id=CONN_ID, migrations_dir=str(migrations), **kwargs
        )


def _rollback(dag_file: Path, migrations: str | Path, **kwargs: Any) -> Any:
    from airflow_provider_jetbase.operators.jetbase import JetbaseRollbackOperator

    dag = make_dag("t_rollback", fileloc=dag_file)
    with dag:
        return JetbaseRollbackOperator(
            task_id="rollback", jetbase_conn_id=CONN_ID, migrations_dir=str(migrations), **kwargs
        )


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_upgrade_xcom_matches_version_table_and_emits_asset_event(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, use_conn: UseConn
) -> None:
    url: URL = request.getfixturevalue(f"{kind}_url")
    use_conn(url)
    migrations = write_migrations(tmp_path / "dags" / "migrations")
    op = _upgrade(tmp_path / "dags" / "dag.py", migrations)

    result, context = render_and_execute(op)

    assert applied_versions(url) == ["1", "2", "3"]
    assert result["versions_applied"] == ["1", "2", "3"]
    assert (result["version_before"], result["version_after"], result["dry_run"]) == (None, "3", False)
    assert [r["filename"] for r in result["applied"]] == sorted(
        name for name in os.listdir(migrations) if name.endswith(".sql")
    )
    assert all(r["statements"] == 1 and r["duration_ms"] >= 0 for r in result["applied"])
    json.dumps(result)  # XCom must be JSON
    events = alias_events(context)
    assert len(events) == 1
    assert events[0].dest_asset_key.name == f"jetbase://{CONN_ID}"
    assert events[0].extra == {"versions": ["1", "2", "3"], "version_before": None, "version_after": "3"}

    # Second run: up to date, nothing applied, no asset event.
    again = _upgrade(tmp_path / "dags" / "dag.py", migrations)
    result2, context2 = render_and_execute(again)
    assert result2["versions_applied"] == [] and result2["version_after"] == "3"
    assert alias_events(context2) == []


def test_outlet_is_an_alias_so_nothing_is_recorded_unless_added(tmp_path: Path) -> None:
    from airflow.sdk import Asset, AssetAlias

    op = _upgrade(tmp_path / "dag.py", tmp_path)
    assert [o for o in op.outlets if isinstance(o, Asset)] == []
    assert [o.name for o in op.outlets if isinstance(o, AssetAlias)] == [f"jetbase-schema-change:{CONN_ID}"]
    assert _upgrade(tmp_path / "dag.py", tmp_path, emit_asset_event=False).outlets == []


def test_templated_count_and_to_version_from_params(
    sqlite_url: URL, tmp_path: Path, use_conn: UseConn
) -> None:
    use_conn(sqlite_url)
    migrations = write_migrations(tmp_path / "migrations")
    op = _upgrade(tmp_path / "dag.py", migrations, count="{{ params.count }}")
    result, _ = render_and_execute(op, params={"count": 2})
    assert op.count == "2"  # Jinja rendered a string; the operator converted it
    assert result["versions_applied"] == ["1", "2"]
    assert applied_versions(sqlite_url) == ["1", "2"]

    op = _upgrade(tmp_path / "dag.py", migrations, count="{{ params.count }}", to_version="{{ params.to }}")
    result, _ = render_and_execute(op, params={"count": None, "to": "3"})
    assert result["versions_applied"] == ["3"]


@pytest.mark.parametrize("bad", ["0", "-1", "abc", "1.5", "2 rows", True])
def test_bad_count_is_rejected_naming_the_parameter(
    bad: object, sqlite_url: URL, tmp_path: Path, use_conn: UseConn
) -> None:
    use_conn(sqlite_url)
    migrations = write_migrations(tmp_path / "migrations")
    op = _upgrade(tmp_path / "dag.py", migrations, count="{{ params.count }}")
    with pytest.raises(ValueError, match="Parameter 'count' must be a positive integer"):
        render_and_execute(op, params={"count": bad})
    assert applied_versions(sqlite_url) == []


def test_bad_dry_run_is_rejected(sqlite_url: URL, tmp_path: Path, use_conn: UseConn) -> None:
    use_conn(sqlite_url)
    op = _upgrade(tmp_path / "dag.py", write_migrations(tmp_path / "m"), dry_run="{{ params.dry }}")
    with pytest.raises(ValueError, match="Parameter 'dry_run' must be a boolean"):
        render_and_execute(op, params={"dry": "perhaps"})
    assert applied_versions(sqlite_url) == []


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_templated_dry_run_changes_nothing(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, use_conn: UseConn
) -> None:
    url: URL = request.getfixturevalue(f"{kind}_url")
    use_conn(url)
    migrations = write_migrations(tmp_path / "migrations")
    op = _upgrade(tmp_path / "dag.py", migrations, dry_run="{{ params.dry }}")
    result, context = render_and_execute(op, params={"dry": True})  # renders to the string "True"
    assert result["dry_run"] is True
    assert result["versions_applied"] == ["1", "2", "3"]
    assert applied_versions(url) == []
    assert not {"table_a", "table_b", "table_c"} & table_names(url)
    assert alias_events(context) == []  # a dry run is not a schema change


def test_relative_migrations_dir_resolves_against_dag_file_not_cwd(
    sqlite_url: URL, tmp_path: Path, use_conn: UseConn
) -> None:
    use_conn(sqlite_url)
    dags = tmp_path / "deployed" / "dags"
    write_migrations(dags / "migrations" / "warehouse")
    assert Path.cwd() != dags  # the worker's cwd has no such folder
    op = _upgrade(dags / "etl_dag.py", "migrations/warehouse")
    result, _ = render_and_execute(op)
    assert result["versions_applied"] == ["1", "2", "3"]

    missing = _upgrade(dags / "etl_dag.py", "migrations/nope")
    with pytest.raises(ValueError, match=r"'migrations_dir'.*deployed/dags/migrations/nope.*does not exist"):
        render_and_execute(missing)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_rollback_by_count_and_to_version(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, use_conn: UseConn
) -> None:
    url: URL = request.getfixturevalue(f"{kind}_url")
    use_conn(url)
    migrations = write_migrations(tmp_path / "migrations")
    render_and_execute(_upgrade(tmp_path / "dag.py", migrations))

    dry, _ = render_and_execute(_rollback(tmp_path / "dag.py", migrations, count=2, dry_run="true"))
    assert dry["dry_run"] is True and dry["versions_rolled_back"] == ["3", "2"]
    assert applied_versions(url) == ["1", "2", "3"]

    by_count, _ = render_and_execute(
        _rollback(tmp_path / "dag.py", migrations, count="{{ params.n }}"), {"n": 1}
    )
    assert by_count["versions_rolled_back"] == ["3"]
    assert (by_count["version_before"], by_count["version_after"]) == ("3", "2")
    assert applied_versions(url) == ["1", "2"]
    assert "table_c" not in table_names(url)

    render_and_execute(_upgrade(tmp_path / "dag.py", migrations))
    to_version, _ = render_and_execute(_rollback(tmp_path / "dag.py", migrations, to_version="1"))
    assert to_version["versions_rolled_back"] == ["3", "2"]
    assert to_version["version_after"] == "1"
    assert applied_versions(url) == ["1"]
    assert {"table_b", "table_c"}.isdisjoint(table_names(url)) and "table_a" in table_names(url)


def test_engine_error_propagates_with_its_message(sqlite_url: URL, tmp_path: Path, use_conn: UseConn) -> None:
    from airflow_provider_jetbase.migration.errors import MigrationExecutionError

    use_conn(sqlite_url)
    migrations = write_migrations(
        tmp_path / "migrations",
        {
            "V1__ok.sql": "CREATE TABLE ok_table (id INTEGER);\n",
            "V2__broken.sql": "CREATE TABLE broken (id INTEGER);\nINSERT INTO no_such_table VALUES (1);\n",
        },
    )
    with pytest.raises(MigrationExecutionError, match="V2__broken.sql") as info:
        render_and_execute(_upgrade(tmp_path / "dag.py", migrations))
    assert "no_such_table" in str(info.value)
    assert applied_versions(sqlite_url) == ["1"]


def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped (what a SIGKILLed worker leaves)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _hold_lock(url: URL, process_id: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE jetbase_lock SET is_locked = TRUE, locked_at = CURRENT_TIMESTAMP, "
                    "process_id = :p WHERE id = 1"
                ),
                {"p": process_id},
            )
    finally:
        engine.dispose()


def _lock_holder(url: URL) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(text("SELECT is_locked, process_id FROM jetbase_lock WHERE id = 1")).one()
            return str(row[1]) if row[0] else None
    finally:
        engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mysql"])
def test_stale_lock_after_takes_over_a_dead_holders_lock_only_when_given(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, use_conn: UseConn
) -> None:
    from airflow_provider_jetbase.migration.errors import LockTimeoutError
    from airflow_provider_jetbase.migration.lock import make_process_id

    url: URL = request.getfixturevalue(f"{kind}_url")
    use_conn(url)
    migrations = write_migrations(tmp_path / "migrations")
    render_and_execute(_upgrade(tmp_path / "dag.py", migrations, count=1))
    # What a SIGKILLed upgrade on this worker leaves: the lock row held by a pid that is gone.
    dead_holder = make_process_id(pid=_dead_pid())
    _hold_lock(url, dead_holder)

    # Default (None): the dead holder's lock is never taken over; the retry times out naming it.
    with pytest.raises(LockTimeoutError, match=dead_holder):
        op = _upgrade(tmp_path / "dag.py", migrations, lock_timeout="{{ params.wait }}")
        render_and_execute(op, params={"wait": 0})
    with pytest.raises(LockTimeoutError, match=dead_holder):
        render_and_execute(_rollback(tmp_path / "dag.py", migrations, lock_timeout=0))
    assert applied_versions(url) == ["1"] and _lock_holder(url) == dead_holder

    # Given (templated, rendered to a string): taken over at once, though far younger than an hour.
    op = _upgrade(tmp_path / "dag.py", migrations, lock_timeout=0, stale_lock_after="{{ params.stale }}")
    result, _ = render_and_execute(op, params={"stale": 3600})
    assert op.stale_lock_after == "3600"
    assert result["versions_applied"] == ["2", "3"]
    assert applied_versions(url) == ["1", "2", "3"] and _lock_holder(url) is None

    _hold_lock(url, dead_holder)
    rolled, _ = render_and_execute(
        _rollback(tmp_path / "dag.py", migrations, lock_timeout=0, stale_lock_after=3600.0)
    )
    assert rolled["versions_rolled_back"] == ["3"] and _lock_holder(url) is None


@pytest.mark.parametrize("field", ["stale_lock_after", "lock_timeout"])
@pytest.mark.parametrize("bad", ["soon", "-5", "nan", True])
def test_bad_lock_seconds_are_rejected_naming_the_parameter(
    field: str, bad: object, sqlite_url: URL, tmp_path: Path, use_conn: UseConn
) -> None:
    use_conn(sqlite_url)
    op = _upgrade(tmp_path / "dag.py", write_migrations(tmp_path / "m"), **{field: "{{ params.v }}"})
    with pytest.raises(ValueError, match=f"Parameter '{field}' must be a"):
        render_and_execute(op, params={"v": bad})
    assert applied_versions(sqlite_url) == []


def _drift_check(dag_file: Path, migrations: Path, **kwargs: Any) -> Any:
    from airflow_provider_jetbase.operators.drift import JetbaseDriftCheckOperator

    with make_dag("t_drift", fileloc=dag_file):
        return JetbaseDriftCheckOperator(
            task_id="drift", jetbase_conn_id=CONN_ID, migrations_dir=str(migrations), **kwargs
        )


def _snapshot_rows(url: URL) -> list[tuple[str | None, str]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT jetbase_version, fingerprint FROM jetbase_schema_snapshot ORDER BY captured_at")
            )
            return [(row[0], row[1]) for row in rows]
    finally:
        engine.dispose()


def test_upgrade_stores_a_schema_snapshot_the_drift_check_compares_against(
    sqlite_url: URL, tmp_path: Path, use_conn: UseConn
) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    use_conn(sqlite_url)
    migrations = write_migrations(tmp_path / "migrations")
    # Dry runs and "up to date" runs change no schema: no snapshot.
    render_and_execute(_upgrade(tmp_path / "dag.py", migrations, dry_run=True, store_schema_snapshot=True))
    assert "jetbase_schema_snapshot" not in table_names(sqlite_url)

    render_and_execute(_upgrade(tmp_path / "dag.py", migrations, count=2, store_schema_snapshot=True))
    render_and_execute(_upgrade(tmp_path / "dag.py", migrations, store_schema_snapshot=True))
    render_and_execute(_upgrade(tmp_path / "dag.py", migrations, store_schema_snapshot=True))  # up to date
    assert [version for version, _ in _snapshot_rows(sqlite_url)] == ["2", "3"]

    clean, _ = render_and_execute(_drift_check(tmp_path / "dag.py", migrations, method="snapshot"))
    assert clean["ok"] is True and clean["findings"] == []
    assert "snapshot" in json.dumps(clean["method"])

    engine = create_engine(sqlite_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE table_b ADD COLUMN nickname VARCHAR(50)"))
    finally:
        engine.dispose()
    with pytest.raises(AirflowFailException, match="column_added"):
        render_and_execute(_drift_check(tmp_path / "dag.py", migrations, method="snapshot"))


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_upgrade_stores_no_snapshot_where_the_drift_check_replays(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, use_conn: UseConn
) -> None:
    url: URL = request.getfixturevalue(f"{kind}_url")
    use_conn(url)
    render_and_execute(_upgrade(tmp_path / "dag.py", write_migrations(tmp_path / "migrations")))
    assert applied_versions(url) == ["1", "2", "3"]
    assert "jetbase_schema_snapshot" not in table_names(url)


def test_failed_snapshot_is_a_warning_not_a_failed_migration(
    sqlite_url: URL, tmp_path: Path, use_conn: UseConn, capsys: pytest.CaptureFixture[str]
) -> None:
    use_conn(sqlite_url)
    engine = create_engine(sqlite_url)
    try:
        with engine.begin() as conn:  # a table of that name the snapshot cannot insert into
            conn.execute(text("CREATE TABLE jetbase_schema_snapshot (unrelated INTEGER)"))
    finally:
        engine.dispose()
    migrations = write_migrations(tmp_path / "migrations")
    # Airflow 3's self.log is structlog, which writes to the captured stdout, not to caplog.
    result, context = render_and_execute(
        _upgrade(tmp_path / "dag.py", migrations, store_schema_snapshot=True)
    )
    assert result["versions_applied"] == ["1", "2", "3"]
    assert applied_versions(sqlite_url) == ["1", "2", "3"]
    assert len(alias_events(context)) == 1  # the schema did change: consumers still hear of it
    captured = capsys.readouterr()
    warning = next(
        line for line in (captured.out + captured.err).splitlines() if "storing the schema snapshot" in line
    )
    assert "warning" in warning.lower() and "captured_at" in warning


def test_status_operator_reports_applied_pending_and_lock(
    sqlite_url: URL, tmp_path: Path, use_conn: UseConn
) -> None:
    from airflow_provider_jetbase.operators.jetbase import JetbaseStatusOperator

    use_conn(sqlite_url)
    migrations = write_migrations(tmp_path / "migrations")
    render_and_execute(_upgrade(tmp_path / "dag.py", migrations, count=1))
    with make_dag("t_status", fileloc=tmp_path / "dag.py"):
        op = JetbaseStatusOperator(
            task_id="status", jetbase_conn_id=CONN_ID, migrations_dir="migrations", include_validation=True
        )
    report, _ = render_and_execute(op)
    json.dumps(report)
    assert report["current"] == "1"
    assert [row["version"] for row in report["applied"]] == ["1"]
    assert [p["filename"] for p in report["pending"]] == ["V2__create_b.sql", "V3__create_c.sql"]
    assert report["lock"]["is_locked"] is False
    assert report["validation"]["ok"] is True


def test_failing_migration_fails_the_task_with_the_engine_message(
    airflow_home: AirflowHome, tmp_path: Path, sqlite_url: URL
) -> None:
    dags = tmp_path / "dags"
    write_migrations(
        dags / "migrations",
        {
            "V1__ok.sql": "CREATE TABLE ok_table (id INTEGER);\n",
            "V2__broken.sql": "INSERT INTO no_such_table VALUES (1);\n",
        },
    )
    (dags / "failing_dag.py").write_text(
        textwrap.dedent(
            """
            import datetime as dt
            from airflow.sdk import DAG
            from airflow_provider_jetbase.operators.jetbase import JetbaseUpgradeOperator

            with DAG("jetbase_failing", schedule=None, start_date=dt.datetime(2024, 1, 1)) as dag:
                JetbaseUpgradeOperator(
                    task_id="migrate", jetbase_conn_id="jb_fail", migrations_dir="migrations"
                )
            """
        )
    )
    outcome = airflow_home.run_dag(
        dags / "failing_dag.py", "jetbase_failing", connections={"jb_fail": conn_env_value(sqlite_url)}
    )
    assert outcome.tasks == {"migrate": "failed"}, outcome.explain()
    assert outcome.state == "failed"
    assert "MigrationExecutionError" in outcome.output and "V2__broken.sql" in outcome.output
    assert "no_such_table" in outcome.output
    assert outcome.asset_events == []
    assert applied_versions(sqlite_url) == ["1"]


HEAVY_MODULES = (
    "sqlalchemy.dialects.postgresql",
    "psycopg2",
    "pymysql",
    "snowflake",
    "databricks",
    "cryptography",
    "jetbase.cli",
    "jetbase.commands",
)


def _heavy_modules_after(imports: str) -> set[str]:
    code = textwrap.dedent(
        f"""
        import json, sys
        {imports}
        heavy = {HEAVY_MODULES!r}
        loaded = [h for h in heavy if any(m == h or m.startswith(h + ".") for m in sys.modules)]
        print(json.dumps(sorted(loaded)))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_importing_operator_sensor_trigger_modules_stays_cheap() -> None:
    # `import airflow` itself loads cryptography and sqlalchemy.dialects.postgresql (its ORM and
    # Fernet), and on Airflow 3.1 psycopg2 too (through SQLAlchemy-Utils), so what counts is what the
    # provider's modules add to that baseline: no driver, no jetbase CLI, nothing of HEAVY_MODULES.
    baseline = _heavy_modules_after("import airflow, airflow.sdk, airflow.triggers.base")
    ours = _heavy_modules_after(
        "import airflow_provider_jetbase.operators.jetbase, airflow_provider_jetbase.sensors.jetbase, "
        "airflow_provider_jetbase.triggers.jetbase"
    )
    assert ours - baseline == set(), f"the provider's task modules load {ours - baseline}"
