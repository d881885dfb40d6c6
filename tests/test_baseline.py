"""Baseline: adopting a database whose schema exists, interchangeable with the real ``jetbase`` CLI.

The interop tests build the "existing" schema by hand (as a database made before Jetbase), baseline
it with the engine, and let the real CLI continue; a reference database driven by the CLI alone
(``jetbase upgrade --to-version``) shows the rows the CLI itself writes. Refusals must leave the
database exactly as it was.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from airflow_provider_jetbase.migration.baseline import (
    STAMP_STEP,
    applied_at_stamps,
    baseline_target,
    needs_ordered_stamps,
    plan_baseline,
)
from airflow_provider_jetbase.migration.dialects import _DIALECTS
from airflow_provider_jetbase.migration.errors import (
    BaselineRefusedError,
    InvalidArgumentError,
    LockTimeoutError,
    VersionNotFoundError,
)
from airflow_provider_jetbase.migration.files import discover
from airflow_provider_jetbase.migration.results import AppliedMigration
from airflow_provider_jetbase.migration.timestamps import parse_db_timestamp
from tests.jetbase_cli import (
    CliResult,
    JetbaseProject,
    assert_same_state,
    database_state,
    jetbase_checksum,
    lock_row,
    run_sql,
    table_exists,
    user_table_counts,
    version_rows,
    write_migration,
)
from tests.operator_helpers import CONN_ID, UseConn, make_dag, render_and_execute
from tests.test_interop_cli import make_engine, new_migrator, reference_url  # noqa: F401 - fixtures

# ----------------------------------------------------------------------------- files

FILES = {
    "V1__create_customers.sql": """
        CREATE TABLE customers (
            id INTEGER PRIMARY KEY,
            name VARCHAR(100) NOT NULL
        );
        CREATE TABLE run_log (note VARCHAR(40));
        -- rollback
        DROP TABLE run_log;
        DROP TABLE customers;
    """,
    "V1_1__add_email.sql": """
        ALTER TABLE customers ADD COLUMN email VARCHAR(200);
        -- rollback
        ALTER TABLE customers DROP COLUMN email;
    """,
    "V2__orders.sql": """
        CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER);
        -- rollback
        DROP TABLE orders;
    """,
    # After V2 in version order, before it as text: the baseline must use Jetbase's order.
    "V10__audit_trail.sql": """
        CREATE TABLE audit_trail (id INTEGER PRIMARY KEY);
        -- rollback
        DROP TABLE audit_trail;
    """,
    "RA__log_run.sql": "INSERT INTO run_log (note) VALUES ('upgrade ran');",
    "ROC__customer_names.sql": """
        DROP VIEW IF EXISTS customer_names;
        CREATE VIEW customer_names AS SELECT name FROM customers;
    """,
}
LATER = ["V2__orders.sql", "V10__audit_trail.sql", "RA__log_run.sql", "ROC__customer_names.sql"]

# The schema of V1 and V1_1, made by hand before Jetbase was used, with data in it.
EXISTING_SCHEMA = [
    "CREATE TABLE customers (id INTEGER PRIMARY KEY, name VARCHAR(100) NOT NULL, email VARCHAR(200))",
    "CREATE TABLE run_log (note VARCHAR(40))",
    "INSERT INTO customers (id, name, email) VALUES (1, 'Ada', 'ada@example.com')",
]


def write_files(folder: Path) -> Path:
    for name, body in FILES.items():
        write_migration(folder, name, body)
    return folder


def applied_by_cli(result: CliResult) -> list[str]:
    prefix = "Migration applied successfully: "
    return [m[len(prefix) :] for m in result.messages if m.startswith(prefix)]


def versioned_rows(engine: Engine, include_order: bool = True) -> list[tuple[Any, ...]]:
    return [r for r in version_rows(engine, include_order) if r[-2] == "VERSIONED"]


def applied_at_in_version_order(engine: Engine) -> list[dt.datetime]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT version, applied_at FROM jetbase_migrations WHERE migration_type = 'VERSIONED'")
        ).all()
    from airflow_provider_jetbase.migration.versions import version_order

    stamps = [parse_db_timestamp(r[1]) for r in sorted(rows, key=lambda r: version_order(r[0]))]
    assert all(s is not None for s in stamps), rows
    return [s for s in stamps if s is not None]


def assert_audits_clean(project: JetbaseProject) -> None:
    # Both audits exit 0 even when they find problems: read what they say.
    checksums = project.run("validate-checksums").assert_ok()
    assert "All migration checksums are valid" in " ".join(checksums.messages), checksums.describe()
    files = project.run("validate-files").assert_ok()
    assert "All migrations have corresponding files" in " ".join(files.messages), files.describe()


# ----------------------------------------------------------------------------- pure planning


def _applied(version: str | None, filename: str, kind: str = "VERSIONED") -> AppliedMigration:
    return AppliedMigration(1, version, "d", filename, kind, None, "c")


def test_plan_records_versioned_files_up_to_the_target_in_version_order(tmp_path: Path) -> None:
    files = discover(write_files(tmp_path), logging.getLogger("t"))
    plan = plan_baseline(files, [], baseline_target(files, "1_1"))
    assert [f.filename for f in plan.files] == ["V1__create_customers.sql", "V1_1__add_email.sql"]
    assert [f.filename for f in plan.pending] == ["V2__orders.sql", "V10__audit_trail.sql"]
    assert sorted(f.filename for f in plan.not_recorded) == ["RA__log_run.sql", "ROC__customer_names.sql"]
    whole = plan_baseline(files, [], baseline_target(files, "V10"))
    assert [f.version for f in whole.files] == ["1", "1.1", "2", "10"] and whole.pending == ()


def test_target_must_be_a_versioned_file(tmp_path: Path) -> None:
    files = discover(write_files(tmp_path), logging.getLogger("t"))
    with pytest.raises(VersionNotFoundError, match=r"version 3: no versioned migration file.*1, 1.1, 2, 10"):
        baseline_target(files, "3")
    with pytest.raises(InvalidArgumentError, match="'to_version'"):
        baseline_target(files, "customer_names")
    with pytest.raises(InvalidArgumentError, match="needs 'to_version'"):
        baseline_target(files, None)
    assert baseline_target(files, " 1_1 ") == "1.1"


def test_plan_refuses_any_history_naming_it(tmp_path: Path) -> None:
    files = discover(write_files(tmp_path), logging.getLogger("t"))
    history = [
        _applied("1.1", "V1_1__a.sql"),
        _applied("1", "V1__a.sql"),
        _applied(None, "RA__x.sql", "RUNS_ALWAYS"),
    ]
    with pytest.raises(BaselineRefusedError) as refused:
        plan_baseline(files, history, "2")
    message = str(refused.value)
    assert "already has 3 row(s) (versions 1, 1.1; repeatable files RA__x.sql)" in message
    assert "Nothing was written" in message and refused.value.applied == tuple(history)
    # A repeatable row alone is history too: the database is managed by Jetbase already.
    with pytest.raises(BaselineRefusedError, match="repeatable files ROC__y.sql"):
        plan_baseline(files, [_applied(None, "ROC__y.sql", "RUNS_ON_CHANGE")], "2")


def test_applied_at_stamps_are_one_millisecond_apart_ending_now() -> None:
    now = dt.datetime(2026, 1, 2, 3, 4, 5, 6000)
    stamps = applied_at_stamps(_DIALECTS["postgresql"], now, 3)
    assert stamps == [now - 2 * STAMP_STEP, now - STAMP_STEP, now]
    # SQLite's column holds the text Jetbase's default writes, which must sort as text.
    text_stamps = applied_at_stamps(_DIALECTS["sqlite"], "2026-01-02 03:04:05.006", 3)
    assert text_stamps == ["2026-01-02 03:04:05.004", "2026-01-02 03:04:05.005", "2026-01-02 03:04:05.006"]
    # ClickHouse's Jetbase query picks the latest version by order_executed, not applied_at.
    assert not needs_ordered_stamps(_DIALECTS["clickhouse"])
    assert all(needs_ordered_stamps(_DIALECTS[n]) for n in ("postgresql", "mysql", "sqlite", "snowflake"))


# ----------------------------------------------------------------------------- with the CLI


@pytest.mark.parametrize("continue_with", ["cli", "engine"])
def test_after_a_baseline_the_next_upgrade_applies_only_the_later_files(
    continue_with: str,
    db_url: URL,
    reference_url: URL,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    make_engine: Callable[..., Engine],  # noqa: F811
) -> None:
    adopted = JetbaseProject(tmp_path / "adopted", db_url)
    write_files(adopted.migrations_dir)
    engine = make_engine(db_url)
    run_sql(engine, EXISTING_SCHEMA)
    # The reference: the CLI alone applies the same files up to 1.1 on an empty database.
    reference = JetbaseProject(tmp_path / "reference", reference_url)
    reference.copy_migrations_from(adopted.migrations_dir)
    reference.upgrade(to_version="1_1").assert_ok()
    ref_engine = make_engine(reference_url)
    migrator = new_migrator(engine, adopted.migrations_dir, lock_timeout=30.0)

    before = database_state(engine)
    preview = migrator.baseline("1_1", dry_run=True)
    assert_same_state(database_state(engine), before, "dry run")
    assert not table_exists(engine, "jetbase_migrations") and not table_exists(engine, "jetbase_lock")

    result = migrator.baseline("1_1")
    assert result.recorded == preview.recorded and (preview.dry_run, result.dry_run) == (True, False)
    assert [r.filename for r in result.recorded] == ["V1__create_customers.sql", "V1_1__add_email.sql"]
    # Exactly the CLI's rows (order_executed included), and the checksums Jetbase computes.
    assert versioned_rows(engine) == versioned_rows(ref_engine)
    for row in result.recorded:
        assert row.checksum == jetbase_checksum(adopted.migrations_dir / row.filename)
    # Repeatables are not recorded; nothing ran (the hand-made data is as it was); the lock is free.
    assert [r[3] for r in version_rows(engine)] == ["V1__create_customers.sql", "V1_1__add_email.sql"]
    assert user_table_counts(engine) == {"customers": 1, "run_log": 0}
    assert lock_row(engine) == lock_row(ref_engine) == (False, False, None)
    # applied_at rises in version order, so the CLI's "ORDER BY applied_at DESC" finds 1.1 latest.
    stamps = applied_at_in_version_order(engine)
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps), stamps
    if continue_with == "cli":
        # What the CLI reads from the baseline's rows: the same rows in both variants, so read once.
        assert "Latest migration version: 1.1" in adopted.current().messages
        assert_audits_clean(adopted)

    if continue_with == "cli":
        assert applied_by_cli(adopted.upgrade().assert_ok()) == LATER
    else:
        assert [run.filename for run in migrator.upgrade().applied] == LATER
    assert applied_by_cli(reference.upgrade().assert_ok()) == LATER[:3]  # its ROC is unchanged

    # The same rows as the CLI-only database, the same schema, and the adopted data kept.
    assert sorted(version_rows(engine, False), key=str) == sorted(version_rows(ref_engine, False), key=str)
    assert database_state(engine).schema == database_state(ref_engine).schema
    assert user_table_counts(engine) == {"audit_trail": 0, "customers": 1, "orders": 0, "run_log": 1}
    assert "Latest migration version: 10" in adopted.current().messages
    assert_audits_clean(adopted)
    assert migrator.validate().ok
    assert [p.filename for p in migrator.status().pending] == ["RA__log_run.sql"]


def test_a_database_with_history_is_refused_and_left_unchanged(
    db_url: URL,
    tmp_path: Path,
    make_engine: Callable[..., Engine],  # noqa: F811
) -> None:
    project = JetbaseProject(tmp_path, db_url)
    write_files(project.migrations_dir)
    project.upgrade(to_version="1").assert_ok()
    engine = make_engine(db_url)
    migrator = new_migrator(engine, project.migrations_dir, lock_timeout=30.0)
    before = database_state(engine)
    for dry_run in (True, False):
        with pytest.raises(BaselineRefusedError) as refused:
            migrator.baseline("1_1", dry_run=dry_run)
        message = str(refused.value)
        assert "already has 3 row(s) (versions 1; repeatable files " in message, message
        assert_same_state(database_state(engine), before, f"refused baseline (dry_run={dry_run})")
    # The CLI still sees its own history, untouched.
    assert "Latest migration version: 1" in project.current().messages
    assert_audits_clean(project)


def test_a_target_without_a_file_is_refused_before_anything_is_created(
    db_url: URL,
    tmp_path: Path,
    make_engine: Callable[..., Engine],  # noqa: F811
) -> None:
    project = JetbaseProject(tmp_path, db_url)
    write_files(project.migrations_dir)
    engine = make_engine(db_url)
    run_sql(engine, EXISTING_SCHEMA)
    migrator = new_migrator(engine, project.migrations_dir)
    before = database_state(engine)
    with pytest.raises(VersionNotFoundError, match="Cannot baseline to version 3"):
        migrator.baseline("3")
    with pytest.raises(InvalidArgumentError, match="'to_version'"):
        migrator.baseline("ROC__customer_names")
    assert_same_state(database_state(engine), before, "refused to_version")
    assert not table_exists(engine, "jetbase_migrations") and not table_exists(engine, "jetbase_lock")


def test_baseline_waits_for_the_lock_and_writes_nothing_without_it(
    db_url: URL,
    tmp_path: Path,
    make_engine: Callable[..., Engine],  # noqa: F811
) -> None:
    project = JetbaseProject(tmp_path, db_url)
    write_files(project.migrations_dir)
    project.upgrade(dry_run=True).assert_ok()  # the CLI's dry run creates both (empty) tables
    engine = make_engine(db_url)
    # Held as the CLI holds it (a bare uuid4 process_id).
    run_sql(
        engine,
        [
            "UPDATE jetbase_lock SET is_locked = TRUE, locked_at = CURRENT_TIMESTAMP, "
            "process_id = '0b6e3b8e-1f1a-4c59-9a57-6f0f8b5d2c11' WHERE id = 1"
        ],
    )
    migrator = new_migrator(engine, project.migrations_dir, lock_timeout=0.5, lock_poll_interval=0.1)
    with pytest.raises(LockTimeoutError):
        migrator.baseline("1_1")
    assert version_rows(engine) == []
    project.run("unlock").assert_ok()
    assert [r.version for r in migrator.baseline("1_1").recorded] == ["1", "1.1"]
    assert [r[1] for r in version_rows(engine)] == ["1", "1.1"]


# ----------------------------------------------------------------------------- the operator


@pytest.fixture
def use_conn(monkeypatch: pytest.MonkeyPatch) -> UseConn:
    from tests.airflow_harness import conn_env_value

    def _use(url: URL) -> None:
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", conn_env_value(url))

    return _use


def _baseline_task(dag_file: Path, migrations: Path, **kwargs: Any) -> Any:
    from airflow_provider_jetbase.operators.baseline import JetbaseBaselineOperator

    with make_dag("t_baseline", fileloc=dag_file):
        return JetbaseBaselineOperator(
            task_id="baseline", jetbase_conn_id=CONN_ID, migrations_dir=str(migrations), **kwargs
        )


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_operator_dry_run_then_baseline_from_templated_params(
    kind: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    use_conn: UseConn,
    make_engine: Callable[..., Engine],  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    url: URL = request.getfixturevalue(f"{kind}_url")
    use_conn(url)
    write_files(tmp_path / "dags" / "migrations")
    engine = make_engine(url)
    run_sql(engine, EXISTING_SCHEMA)
    before = database_state(engine)
    templated = {"to_version": "{{ params.version }}", "dry_run": "{{ params.preview }}"}

    preview, _ = render_and_execute(
        _baseline_task(tmp_path / "dags" / "dag.py", Path("migrations"), **templated),
        params={"version": "1_1", "preview": True},
    )
    assert_same_state(database_state(engine), before, "operator dry run")
    # The task log (Airflow 3's structlog writes to stdout) has the rows as a table.
    log = capsys.readouterr()
    lines = (log.out + log.err).splitlines()
    assert any(
        "Dry run: would have recorded 2 version(s) as applied on 'jb_test' WITHOUT" in ln for ln in lines
    )
    header = next(i for i, ln in enumerate(lines) if ln.startswith("version | file"))
    assert [ln.split(" | ")[1].strip() for ln in lines[header + 2 : header + 4]] == [
        "V1__create_customers.sql",
        "V1_1__add_email.sql",
    ]
    assert any(
        "Not recorded (repeatable files; the next upgrade runs them): RA__log_run.sql" in ln for ln in lines
    )
    done, _ = render_and_execute(
        _baseline_task(tmp_path / "dags" / "dag.py", Path("migrations"), **templated),
        params={"version": "1_1", "preview": False},
    )

    for xcom, dry_run in ((preview, True), (done, False)):
        json.dumps(xcom)  # XCom must be JSON
        assert xcom["dry_run"] is dry_run and xcom["version_after"] == "1.1"
        assert xcom["versions_recorded"] == ["1", "1.1"]
        assert [r["filename"] for r in xcom["recorded"]] == [
            "V1__create_customers.sql",
            "V1_1__add_email.sql",
        ]
        assert xcom["not_recorded"] == ["RA__log_run.sql", "ROC__customer_names.sql"]
        assert xcom["pending"] == ["V2__orders.sql", "V10__audit_trail.sql"]
    assert [(r[1], r[5]) for r in version_rows(engine)] == [
        (r["version"], r["checksum"]) for r in done["recorded"]
    ]


def test_operator_refusal_names_the_connection_and_what_is_applied(
    sqlite_url: URL, tmp_path: Path, use_conn: UseConn
) -> None:
    from airflow_provider_jetbase.errors import ParameterError

    use_conn(sqlite_url)
    project = JetbaseProject(tmp_path, sqlite_url)
    write_files(project.migrations_dir)
    project.upgrade(to_version="1_1").assert_ok()
    with pytest.raises(BaselineRefusedError) as refused:
        render_and_execute(_baseline_task(tmp_path / "dag.py", project.migrations_dir, to_version="2"))
    assert str(refused.value).startswith(f"Connection '{CONN_ID}': Cannot baseline:"), refused.value
    assert "(versions 1, 1.1; repeatable files RA__log_run.sql, ROC__customer_names.sql)" in str(
        refused.value
    )
    with pytest.raises(ParameterError, match="'to_version' is required"):
        render_and_execute(_baseline_task(tmp_path / "dag.py", project.migrations_dir, to_version="None"))


def test_documented_baseline_xcom_matches_the_code() -> None:
    from airflow_provider_jetbase.migration.results import BaselineRow
    from airflow_provider_jetbase.operators.baseline import JetbaseBaselineOperator
    from tests.test_docs import _execute_return_keys, _json_blocks

    (documented,) = [b for b in _json_blocks("operators.md") if "versions_recorded" in b]
    assert set(documented) == _execute_return_keys(JetbaseBaselineOperator)
    row = BaselineRow("1", "a", "V1__a.sql", "VERSIONED", "abc").to_dict()
    assert all(set(entry) == set(row) for entry in documented["recorded"])


def test_the_drift_check_compares_an_adopted_schema_with_the_files(
    sqlite_url: URL,
    tmp_path: Path,
    make_engine: Callable[..., Engine],  # noqa: F811
) -> None:
    from airflow_provider_jetbase.drift import run_drift_check

    folder = write_files(tmp_path / "migrations")
    engine = make_engine(sqlite_url)
    run_sql(engine, EXISTING_SCHEMA)
    new_migrator(engine, folder).baseline("1_1")

    def schema_findings() -> list[tuple[str, str | None]]:
        report = run_drift_check(engine, folder, method="replay")
        assert report.method == "replay" and report.current_version == "1.1", report
        return [(f.kind, f.object) for f in report.findings if f.category == "schema"]

    assert schema_findings() == []
    # A hand-made difference the baseline took on trust is what the drift check then reports.
    run_sql(engine, ["ALTER TABLE customers ADD COLUMN phone VARCHAR(20)"])
    assert [kind for kind, _ in schema_findings()] == ["column_added"]


def test_importing_the_baseline_operator_stays_cheap() -> None:
    from tests.test_operators import _heavy_modules_after

    baseline = _heavy_modules_after("import airflow, airflow.sdk, airflow.triggers.base")
    ours = _heavy_modules_after("import airflow_provider_jetbase.operators.baseline")
    assert ours - baseline == set(), f"the baseline operator's module loads {ours - baseline}"


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
@pytest.mark.parametrize("deliver", [True, False], ids=["committed", "not_committed"])
def test_a_lost_commit_reply_is_reported_as_what_the_database_holds(
    kind: str, deliver: bool, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    from sqlalchemy import create_engine

    from airflow_provider_jetbase.migration.errors import MigrationExecutionError
    from tests import dbs
    from tests.faults import FaultProxy

    url: URL = request.getfixturevalue(f"{kind}_url")
    upstream = (dbs.PG_HOST, dbs.PG_PORT) if kind == "postgres" else (dbs.MYSQL_HOST, dbs.MYSQL_PORT)
    folder = write_files(tmp_path / "migrations")
    direct = create_engine(url)
    try:
        with FaultProxy("postgres" if kind == "postgres" else "mysql", *upstream) as proxy:
            through_proxy = create_engine(proxy.url(url))
            try:
                # The last statement of the baseline's transaction before the lock check and COMMIT.
                proxy.arm(after="SET applied_at", deliver=deliver)
                with pytest.raises(MigrationExecutionError) as caught:
                    new_migrator(through_proxy, folder, lock_timeout=30.0).baseline("1_1")
            finally:
                through_proxy.dispose()
        assert proxy.fired.is_set()
        error = caught.value
        expected = "committed" if deliver else "not committed"
        assert error.commit_outcome == expected, error
        assert "re-read on a fresh connection" in str(error)
        assert [r[1] for r in version_rows(direct)] == (["1", "1.1"] if deliver else [])
        assert lock_row(direct) == (False, False, None)  # released on a fresh connection
        if not deliver:  # nothing was recorded: the baseline can simply run again
            assert [r.version for r in new_migrator(direct, folder).baseline("1_1").recorded] == ["1", "1.1"]
    finally:
        direct.dispose()
