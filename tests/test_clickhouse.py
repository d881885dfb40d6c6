"""ClickHouse: the engine, the real ``jetbase`` CLI and the operators on a real ClickHouse engine.

The engine is ClickHouse 26.x embedded by ``chdb``, served over ClickHouse's HTTP interface by
``tests/clickhouse_server.py`` (one process per test run, a fresh database per test); the
provider and the CLI both reach it through clickhouse-sqlalchemy's HTTP driver. The scenarios are
those of ``tests/test_interop_cli.py`` (the helpers are the same) with ClickHouse SQL in the files:
MergeTree tables need ``ORDER BY``, rollbacks of data use ``DELETE``/mutations, and an index is a
data-skipping index. Jetbase takes no lock on ClickHouse: what two concurrent upgrades do is shown
here, and so is the operators' guard against it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL

from tests.clickhouse_server import fresh_database
from tests.jetbase_cli import (
    JetbaseProject,
    StatementGate,
    UpgradeThread,
    applied_versions,
    database_state,
    user_table_counts,
    version_rows,
    write_migration,
)
from tests.operator_helpers import (
    CONN_ID,
    make_dag,
    render_and_execute,
    table_names,
    task_context,
    write_migrations,
)
from tests.operator_helpers import applied_versions as applied_by_url
from tests.test_interop_cli import (
    Pair,
    ReferenceLog,
    assert_run_checksums,
    make_engine,
    new_migrator,
    reference_logs,
)

__all__ = ["make_engine", "reference_logs"]  # fixtures, used by name


@pytest.fixture
def clickhouse_reference_url(clickhouse_port: int, clickhouse_url: URL) -> Iterator[URL]:
    """A second fresh database on the same server, driven by the CLI alone."""
    with fresh_database(clickhouse_port) as name:
        yield clickhouse_url.set(database=name)


@pytest.fixture
def pair(
    clickhouse_url: URL, clickhouse_reference_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> Pair:
    return Pair(tmp_path, clickhouse_url, clickhouse_reference_url, make_engine)


# ----------------------------------------------------------------------------- migrations

V1 = """
    -- upgrade
    CREATE TABLE customers (
        id Int32,
        -- the display name
        name String
    ) ENGINE = MergeTree ORDER BY id;

    CREATE TABLE run_log (note String) ENGINE = MergeTree ORDER BY tuple();
    -- rollback
    DROP TABLE run_log;
    DROP TABLE customers;
"""
V1_1 = """
    ALTER TABLE customers ADD COLUMN email Nullable(String);
    --   ROLLBACK
    ALTER TABLE customers DROP COLUMN email;
"""
V1_2 = """
    -- jetbase: delimiter=@@
    CREATE TABLE orders (id Int32, note String) ENGINE = MergeTree ORDER BY id@@
    INSERT INTO orders (id, note) VALUES (1, 'first;
    second')@@
    -- rollback
    DROP TABLE orders@@
"""
V2 = """
    INSERT INTO customers (id, name, email)
    VALUES (1, 'Ada', 'ada@example.com');
    INSERT INTO customers (id, name, email) VALUES (2, 'Grace', NULL);
    -- rollback
    DELETE FROM customers WHERE id IN (1, 2);
"""
V2_1 = """
    CREATE TABLE shipments (id Int32, order_id Int32) ENGINE = MergeTree ORDER BY id;
    -- rollback
    DROP TABLE shipments;
"""
V10 = """
    CREATE TABLE audit_trail (id Int32, happened String) ENGINE = MergeTree ORDER BY id;
    ALTER TABLE audit_trail ADD INDEX ix_audit_trail_happened happened TYPE bloom_filter GRANULARITY 1;
    -- rollback
    DROP TABLE audit_trail;
"""
RA = """
    -- runs on every upgrade
    INSERT INTO run_log (note) VALUES ('upgrade ran');
"""
ROC = """
    DROP VIEW IF EXISTS customer_names;
    CREATE VIEW customer_names AS
        SELECT name FROM customers;
"""
ROC_CHANGED = """
    DROP VIEW IF EXISTS customer_names;
    CREATE VIEW customer_names AS
        SELECT name, email FROM customers;
"""


def write_scenario_files(folder: Path) -> None:
    write_migration(folder, "V1__create_customers.sql", V1)
    write_migration(folder, "V1_1__add_email.sql", V1_1)
    write_migration(folder, "V1.2__orders.sql", V1_2)
    write_migration(folder, "V2__seed_customers.sql", V2)
    write_migration(folder, "V2_1__shipments.sql", V2_1, subdir="later")
    write_migration(folder, "V10__audit_trail.sql", V10)
    write_migration(folder, "RA__log_run.sql", RA)
    write_migration(folder, "ROC__customer_names.sql", ROC)


ALL_VERSIONS = ["1", "1.1", "1.2", "2", "2.1", "10"]


# ----------------------------------------------------------------------------- interop


@pytest.mark.parametrize("first", ["cli_first", "engine_first"])
def test_cli_and_engine_take_turns_on_clickhouse(
    first: str,
    clickhouse_url: URL,
    tmp_path: Path,
    make_engine: Callable[..., Engine],
    reference_logs: dict[str, ReferenceLog],
    request: pytest.FixtureRequest,
) -> None:
    """Both directions: after every step database A (CLI and engine in turn) equals database B (CLI
    alone): jetbase_migrations rows (order_executed included), schema, DDL and row counts. B runs the
    same CLI steps in both directions: the first direction records them, the other replays them."""
    replay = reference_logs.get("clickhouse")
    reference_url = None if replay is not None else request.getfixturevalue("clickhouse_reference_url")
    pair = Pair(tmp_path, clickhouse_url, reference_url, make_engine, replay=replay)
    pair.write(write_scenario_files)
    cli_turn = first == "cli_first"

    def by_other(
        engine_action: Callable[[Any], Any], cli_action: Callable[[JetbaseProject], Any], step: str
    ) -> Any:
        """Step run by the tool whose turn it is not: the engine when the CLI went first."""
        if cli_turn:
            return pair.engine_vs_cli(engine_action, cli_action, f"{step} (engine)")
        pair.cli_both(cli_action, f"{step} (CLI)")
        return None

    def by_first(
        engine_action: Callable[[Any], Any], cli_action: Callable[[JetbaseProject], Any], step: str
    ) -> Any:
        if not cli_turn:
            return pair.engine_vs_cli(engine_action, cli_action, f"{step} (engine)")
        pair.cli_both(cli_action, f"{step} (CLI)")
        return None

    # 1. up to 1.2 (given as "1_2"), 2. the rest by the other tool.
    result = by_first(lambda m: m.upgrade(to_version="1_2"), lambda p: p.upgrade(to_version="1_2"), "1")
    if result is not None:
        assert [r.filename for r in result.applied] == [
            "V1__create_customers.sql",
            "V1_1__add_email.sql",
            "V1.2__orders.sql",
            "RA__log_run.sql",
            "ROC__customer_names.sql",
        ]
        assert_run_checksums(result, pair.a.migrations_dir, "applied")
    assert applied_versions(pair.engine_a) == ["1", "1.1", "1.2"]
    result = by_other(lambda m: m.upgrade(), lambda p: p.upgrade(), "2")
    if result is not None:
        assert [r.filename for r in result.applied] == [
            "V2__seed_customers.sql",
            "V2_1__shipments.sql",
            "V10__audit_trail.sql",
            "RA__log_run.sql",
        ]
    assert applied_versions(pair.engine_a) == ALL_VERSIONS
    assert user_table_counts(pair.engine_a)["run_log"] == 2  # the RA file ran on both upgrades

    # 3. roll back one, 4. two more by count with the other tool.
    by_first(lambda m: m.rollback(), lambda p: p.rollback(), "3")
    assert applied_versions(pair.engine_a) == ALL_VERSIONS[:-1]
    result = by_other(lambda m: m.rollback(count=2), lambda p: p.rollback(count=2), "4")
    if result is not None:
        assert [r.filename for r in result.rolled_back] == ["V2_1__shipments.sql", "V2__seed_customers.sql"]
    assert applied_versions(pair.engine_a) == ["1", "1.1", "1.2"]
    assert user_table_counts(pair.engine_a)["customers"] == 0  # V2's DELETE ran

    # 5. a changed runs-on-change file re-runs (its row updated by a mutation), 6. then is left alone.
    pair.write(lambda folder: write_migration(folder, "ROC__customer_names.sql", ROC_CHANGED))
    result = by_first(lambda m: m.upgrade(count=1), lambda p: p.upgrade(count=1), "5")
    if result is not None:
        assert [r.filename for r in result.applied] == [
            "V2__seed_customers.sql",
            "RA__log_run.sql",
            "ROC__customer_names.sql",
        ]
    result = by_other(lambda m: m.upgrade(), lambda p: p.upgrade(), "6")
    if result is not None:
        assert [r.filename for r in result.applied] == [
            "V2_1__shipments.sql",
            "V10__audit_trail.sql",
            "RA__log_run.sql",
        ]
    roc = [r for r in version_rows(pair.engine_a) if r[3] == "ROC__customer_names.sql"]
    assert len(roc) == 1, roc

    history = [
        (h.order_executed, h.version, h.description, h.filename, h.migration_type, h.checksum)
        for h in pair.migrator.history()
    ]
    assert history == version_rows(pair.engine_a)
    assert pair.migrator.current() == "10"
    assert "Latest migration version: 10" in pair.a.current().messages
    assert [p.filename for p in pair.migrator.status().pending] == ["RA__log_run.sql"]
    assert pair.migrator.validate().ok

    # 7. roll back to a version (given as "1_1"), 8. re-apply with the other tool.
    result = by_first(lambda m: m.rollback(to_version="1_1"), lambda p: p.rollback(to_version="1_1"), "7")
    if result is not None:
        assert [r.filename for r in result.rolled_back] == [
            "V10__audit_trail.sql",
            "V2_1__shipments.sql",
            "V2__seed_customers.sql",
            "V1.2__orders.sql",
        ]
    assert applied_versions(pair.engine_a) == ["1", "1.1"]
    by_other(lambda m: m.upgrade(), lambda p: p.upgrade(), "8")
    assert applied_versions(pair.engine_a) == ALL_VERSIONS
    pair.assert_replayed()
    if replay is None:
        reference_logs["clickhouse"] = pair.log


def test_dry_runs_change_nothing(pair: Pair) -> None:
    """The engine's dry run writes nothing, not even the version table (the CLI's creates it: see
    docs/differences.md); on a migrated database both leave it as it was, and they plan the same."""
    pair.write(write_scenario_files)
    result = pair.migrator.upgrade(dry_run=True)
    assert result.dry_run and [r.version for r in result.applied][:6] == ALL_VERSIONS
    assert database_state(pair.engine_a).schema == {"<views>": []}
    pair.cli_both(lambda p: p.upgrade(to_version="1_2"), "upgrade to 1.2")
    result = pair.migrator.upgrade(dry_run=True)
    pair.b.upgrade(dry_run=True).assert_ok()
    pair.check("dry upgrade")
    assert [r.filename for r in result.applied] == [
        "V2__seed_customers.sql",
        "V2_1__shipments.sql",
        "V10__audit_trail.sql",
        "RA__log_run.sql",
    ]
    result = pair.migrator.rollback(count=2, dry_run=True)
    pair.b.rollback(count=2, dry_run=True).assert_ok()
    pair.check("dry rollback")
    assert [r.filename for r in result.rolled_back] == ["V1.2__orders.sql", "V1_1__add_email.sql"]
    assert result.rolled_back[0].statements == ("DROP TABLE orders",)
    assert applied_versions(pair.engine_a) == ["1", "1.1", "1.2"]


def test_failing_file_is_reported_with_its_name(
    clickhouse_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    """The driver's error reaches the engine as a database error: the failure names the file and
    ClickHouse's message, and the version table is created, not mistaken for another tool's."""
    from airflow_provider_jetbase.migration.errors import MigrationExecutionError

    folder = tmp_path / "m"
    write_migration(folder, "V1__ok.sql", "CREATE TABLE ok_t (id Int32) ENGINE = MergeTree ORDER BY id;")
    write_migration(folder, "V2__broken.sql", "INSERT INTO no_such_table VALUES (1);")
    engine = make_engine(clickhouse_url)
    with pytest.raises(MigrationExecutionError) as caught:
        new_migrator(engine, folder).upgrade()
    message = str(caught.value)
    assert "V2__broken.sql" in message and "UNKNOWN_TABLE" in message, message
    assert applied_versions(engine) == ["1"]


# ----------------------------------------------------------------------------- no lock


def _ledger_files(folder: Path) -> None:
    write_migration(
        folder, "V1__ledger.sql", "CREATE TABLE ledger (entry Int32) ENGINE = MergeTree ORDER BY tuple();"
    )
    write_migration(
        folder,
        "V2__credit.sql",
        """
        SELECT 'jb_gate_marker' AS gate;
        INSERT INTO ledger (entry) VALUES (100);
        -- rollback
        DELETE FROM ledger WHERE entry = 100;
        """,
    )


def test_two_concurrent_upgrades_both_apply_the_same_migration(
    clickhouse_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    """What "no lock on ClickHouse" means: an upgrade that has planned V2 is still running it when a
    second upgrade (the real CLI) starts; nothing stops the second one, so V2 runs twice: its data is
    written twice and jetbase_migrations holds two rows for version 2."""
    project = JetbaseProject(tmp_path, clickhouse_url)
    _ledger_files(project.migrations_dir)
    project.upgrade(count=1).assert_ok()
    engine = make_engine(clickhouse_url)
    gate = StatementGate(engine, "jb_gate_marker")
    first = UpgradeThread(new_migrator(engine, project.migrations_dir))
    first.start()
    try:
        assert gate.reached.wait(timeout=300), f"the first upgrade never reached V2: {first.error}"
        project.upgrade().assert_ok()  # the second upgrade: nothing makes it wait
        assert applied_versions(engine) == ["1", "2"]
    finally:
        gate.released.set()
        first.join(timeout=300)
    assert first.error is None, first.error
    assert [r.filename for r in first.result.applied] == ["V2__credit.sql"]
    assert applied_versions(engine) == ["1", "2", "2"]
    assert user_table_counts(engine) == {"ledger": 2}
    # The provider's lock report says there is no lock to be had.
    assert not new_migrator(engine, project.migrations_dir).lock_status().supported


# ----------------------------------------------------------------------------- Airflow layer


@pytest.fixture
def clickhouse_conn(clickhouse_url: URL, monkeypatch: pytest.MonkeyPatch) -> URL:
    """``CONN_ID`` is a connection of the ``clickhouse`` type (the provider's mapping builds the URL)."""
    fields = {
        "conn_type": "clickhouse",
        "host": clickhouse_url.host,
        "port": clickhouse_url.port,
        "login": "default",
        "schema": clickhouse_url.database,
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(fields))
    return clickhouse_url


def _operator(kind: str, folder: Path, **kwargs: Any) -> Any:
    from airflow_provider_jetbase.operators.jetbase import (
        JetbaseRollbackOperator,
        JetbaseStatusOperator,
        JetbaseUpgradeOperator,
    )

    cls = {
        "upgrade": JetbaseUpgradeOperator,
        "rollback": JetbaseRollbackOperator,
        "status": JetbaseStatusOperator,
    }[kind]
    with make_dag(f"t_ch_{kind}", fileloc=folder.parent / "dag.py"):
        return cls(task_id=kind, jetbase_conn_id=CONN_ID, migrations_dir=str(folder), **kwargs)


def test_operators_refuse_to_migrate_clickhouse_outside_a_pool(clickhouse_conn: URL, tmp_path: Path) -> None:
    """No lock on ClickHouse, so the operators want a mutual exclusion: a pool, or an explicit opt-out."""
    from airflow_provider_jetbase.errors import ParameterError

    folder = write_migrations(tmp_path / "migrations", CLICKHOUSE_MIGRATIONS)
    for kind in ("upgrade", "rollback"):
        with pytest.raises(ParameterError, match="no lock on clickhouse.*pool.*skip_pool_check"):
            render_and_execute(_operator(kind, folder))
    assert table_names(clickhouse_conn) == set()  # refused before touching the database

    # A dry run changes nothing: it runs in any pool.
    dry, _ = render_and_execute(_operator("upgrade", folder, dry_run=True))
    assert dry["dry_run"] and len(dry["applied"]) == 3
    assert applied_by_url(clickhouse_conn) == []

    # In a pool of its own (one slot per target database, see docs/connections/clickhouse.md).
    xcom, _ = render_and_execute(_operator("upgrade", folder, pool="clickhouse_dw", count=2))
    assert xcom["versions_applied"] == ["1", "2"]
    # Or with the user's explicit opt-out.
    xcom, _ = render_and_execute(_operator("upgrade", folder, skip_pool_check=True))
    assert xcom["versions_applied"] == ["3"]
    xcom, _ = render_and_execute(_operator("rollback", folder, pool="clickhouse_dw", to_version="1"))
    assert xcom["versions_rolled_back"] == ["3", "2"]
    assert applied_by_url(clickhouse_conn) == ["1"]


CLICKHOUSE_MIGRATIONS = {
    f"V{n}__create_{t}.sql": (
        f"CREATE TABLE table_{t} (id Int32) ENGINE = MergeTree ORDER BY id;\n"
        f"-- rollback\nDROP TABLE table_{t};\n"
    )
    for n, t in ((1, "a"), (2, "b"), (3, "c"))
}


def test_status_operator_sensor_poke_and_trigger(clickhouse_conn: URL, tmp_path: Path) -> None:
    from airflow_provider_jetbase.sensors.jetbase import JetbaseVersionSensor

    folder = write_migrations(tmp_path / "migrations", CLICKHOUSE_MIGRATIONS)
    with make_dag("t_ch_sensor"):
        sensor = JetbaseVersionSensor(
            task_id="wait", jetbase_conn_id=CONN_ID, target_version="2", deferrable=False
        )
    context: Any = task_context(sensor)
    assert not sensor.poke(context)  # no jetbase_migrations table yet
    status, _ = render_and_execute(_operator("status", folder))
    assert status["current"] is None and [p["version"] for p in status["pending"]] == ["1", "2", "3"]
    assert status["lock"]["supported"] is False

    render_and_execute(_operator("upgrade", folder, count=1, pool="clickhouse_dw"))
    assert not sensor.poke(context)
    render_and_execute(_operator("upgrade", folder, count=1, pool="clickhouse_dw"))
    done = sensor.poke(context)
    assert done and done.xcom_value == {"current_version": "2", "target_version": "2"}
    status, _ = render_and_execute(_operator("status", folder))
    assert status["current"] == "2"
    assert [a["version"] for a in status["applied"]] == ["1", "2"]
    assert [p["version"] for p in status["pending"]] == ["3"]

    # The deferrable path: the trigger's own check, on the triggerer's event loop.
    from airflow_provider_jetbase.triggers.jetbase import JetbaseVersionTrigger

    async def first_event() -> Any:
        async for event in JetbaseVersionTrigger(CONN_ID, "2", poke_interval=0.01).run():
            return event
        raise AssertionError("run() ended without an event")

    event = asyncio.run(first_event())
    assert event.payload == {"status": "success", "current_version": "2", "target_version": "2"}


def test_drift_snapshot_finds_a_change_made_by_hand(clickhouse_conn: URL, tmp_path: Path) -> None:
    """The upgrade operator stores the snapshot by itself on ClickHouse (no replay there); the drift
    check's default method reads it and finds a column added outside the migrations."""
    from airflow_provider_jetbase.drift import SNAPSHOT_TABLE, run_drift_check

    folder = write_migrations(tmp_path / "migrations", CLICKHOUSE_MIGRATIONS)
    render_and_execute(_operator("upgrade", folder, pool="clickhouse_dw"))
    assert SNAPSHOT_TABLE in table_names(clickhouse_conn)
    engine = create_engine(clickhouse_conn)
    try:
        clean = run_drift_check(engine, folder)
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE table_b ADD COLUMN nickname Nullable(String)"))
        drift = run_drift_check(engine, folder)
    finally:
        engine.dispose()
    assert clean.method == "snapshot" and not clean.failed and clean.findings == (), clean.to_text()
    assert drift.method == "snapshot" and drift.failed
    assert [(f.kind, f.object) for f in drift.findings] == [("column_added", "table_b.nickname")]


def test_version_table_of_another_tool_is_refused(
    clickhouse_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    """The bad-input corpus case that depends on ClickHouse's error codes: a foreign
    jetbase_migrations is named as such by every entry point that reads it, and left alone."""
    from airflow_provider_jetbase.migration.errors import IncompatibleTableError

    engine = make_engine(clickhouse_url)
    with engine.begin() as conn:
        conn.execute(
            text("CREATE TABLE jetbase_migrations (id Int32, name String) ENGINE = MergeTree ORDER BY id")
        )
        conn.execute(text("INSERT INTO jetbase_migrations VALUES (1, 'theirs')"))
    folder = tmp_path / "m"
    write_migration(folder, "V1__first.sql", "CREATE TABLE first_t (id Int32) ENGINE = Memory;")
    migrator = new_migrator(engine, folder)
    for name in ["upgrade", "rollback", "status", "history", "validate", "current"]:
        with pytest.raises(IncompatibleTableError, match="jetbase_migrations.*Jetbase's columns"):
            getattr(migrator, name)()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id, name FROM jetbase_migrations")).all() == [(1, "theirs")]
    assert table_names(clickhouse_url) == {"jetbase_migrations"}


@pytest.mark.parametrize(
    "fields",
    [{}, {"login": "default"}],
    ids=["no login", "login without password"],
)
def test_connection_without_login_or_password_signs_in_as_default(
    clickhouse_url: URL, monkeypatch: pytest.MonkeyPatch, fields: dict[str, str]
) -> None:
    """clickhouse-sqlalchemy sends HTTP Basic auth of its URL's username and password even when they
    are None, as the text "None"; the server then sees a user named None. The mapping fills in
    ClickHouse's own defaults (user ``default``, empty password) so such a connection signs in."""
    from airflow_provider_jetbase.hooks.jetbase import JetbaseHook

    conn = {"conn_type": "clickhouse", "host": "127.0.0.1", "port": clickhouse_url.port, **fields}
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({**conn, "schema": clickhouse_url.database})
    )
    ok, message = JetbaseHook(jetbase_conn_id=CONN_ID).test_connection()
    assert ok, message
