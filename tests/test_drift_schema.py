"""Schema drift on the real SQLite, PostgreSQL and MariaDB: no false positives, each out-of-band
change found and named, the target unchanged, scratch databases removed even on failure."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from airflow_provider_jetbase.drift import run_drift_check
from airflow_provider_jetbase.drift import scratch as scratch_module
from airflow_provider_jetbase.drift.report import SCHEMA_KINDS
from airflow_provider_jetbase.migration import Migrator
from tests.drift_helpers import (
    CHANGES,
    SIDE_EFFECTS,
    disposing,
    dump_database,
    list_databases,
    make_engine,
    run_sql,
    write_migrations,
)


def _dialect(url: URL) -> str:
    return make_engine(url).dialect.name


def _migrated(url: URL, tmp_path: Path) -> Path:
    dialect = _dialect(url)
    migrations = write_migrations(tmp_path / "migrations", dialect)
    with disposing(make_engine(url)) as engine:
        Migrator(engine, migrations).upgrade()
    return migrations


def _schema_findings(report):  # type: ignore[no-untyped-def]
    return {(f.kind, f.object) for f in report.findings if f.kind in SCHEMA_KINDS}


def test_matching_database_has_no_drift(db_url: URL, tmp_path: Path) -> None:
    migrations = _migrated(db_url, tmp_path)
    with disposing(make_engine(db_url)) as engine:
        report = run_drift_check(engine, migrations)
    assert report.method == "replay" and report.status == "ok", report.to_text()
    assert report.tables_checked == 5  # users, legacy, orders, events, notes: Jetbase's are ignored
    assert _schema_findings(report) == set(), report.to_text()
    assert [f.kind for f in report.findings] == [], report.to_text()
    assert not report.failed
    assert report.applied_count == 4 and report.pending_count == 0


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_out_of_band_change_is_found_and_named(db_url: URL, tmp_path: Path, change: str) -> None:
    migrations = _migrated(db_url, tmp_path)
    kind, obj, sql = CHANGES[change]
    with disposing(make_engine(db_url)) as engine:
        dialect = engine.dialect.name
        run_sql(engine, sql[dialect])
        report = run_drift_check(engine, migrations)
    expected = {(kind, obj)} | SIDE_EFFECTS.get((change, dialect), set())
    assert _schema_findings(report) == expected, report.to_text()
    assert report.failed  # schema drift fails by default
    assert all(f.severity == "error" for f in report.findings if f.kind in SCHEMA_KINDS)


def test_views_and_repeatables_replayed(db_url: URL, tmp_path: Path) -> None:
    migrations = _migrated(db_url, tmp_path)
    with disposing(make_engine(db_url)) as engine:
        run_sql(engine, "DROP VIEW v_order_totals")
        report = run_drift_check(engine, migrations)
    assert _schema_findings(report) == {("view_dropped", "v_order_totals")}, report.to_text()


def test_check_leaves_target_byte_for_byte_unchanged(db_url: URL, tmp_path: Path) -> None:
    migrations = _migrated(db_url, tmp_path)
    with disposing(make_engine(db_url)) as engine:
        dialect = engine.dialect.name
        # Drift of both kinds, and a held lock, so that every code path runs.
        run_sql(engine, CHANGES["added_column"][2][dialect])
        v2 = migrations / "V2__orders.sql"
        v2.write_text(v2.read_text().replace("-- rollback", "CREATE TABLE edited (id INT);\n-- rollback"))
        (migrations / "V9__pending.sql").write_text("CREATE TABLE later (id INT);\n")
        run_sql(
            engine,
            "UPDATE jetbase_lock SET is_locked = TRUE, locked_at = '2020-01-01 00:00:00', process_id = 'x'",
        )
        before = dump_database(engine)
        file_before = Path(str(db_url.database)).read_bytes() if dialect == "sqlite" else None
        report = run_drift_check(engine, migrations, pending_is_drift=True)
        after = dump_database(engine)
        file_after = Path(str(db_url.database)).read_bytes() if dialect == "sqlite" else None
    kinds = {f.kind for f in report.findings}
    assert {"column_added", "table_dropped", "checksum_mismatch", "pending_migration", "stale_lock"} <= kinds
    assert before == after
    assert file_before == file_after


def test_scratch_database_removed_when_replay_fails_midway(
    db_url: URL, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrations = _migrated(db_url, tmp_path)
    # The first file replays, the second fails: the scratch database exists when it fails.
    (migrations / "V2__orders.sql").write_text("CREATE TABLE half (id INT);\nSELECT * FROM no_such_table;\n")
    prefix = f"jetbase_drift_t{tmp_path.name[-6:].lower()}_"
    monkeypatch.setattr(scratch_module, "SCRATCH_PREFIX", prefix)
    with disposing(make_engine(db_url)) as engine:
        before = dump_database(engine)
        report = run_drift_check(engine, migrations)
        after = dump_database(engine)
        if engine.dialect.name != "sqlite":
            assert list_databases(engine, prefix) == []
    assert before == after
    failed = [f for f in report.findings if f.kind == "replay_failed"]
    assert len(failed) == 1 and failed[0].filename == "V2__orders.sql"
    assert "statement 2" in failed[0].message and "no_such_table" in failed[0].message
    assert report.failed and "checksum_mismatch" in {f.kind for f in report.findings}


def test_scratch_database_removed_after_success(
    db_url: URL, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if "sqlite" in db_url.drivername:
        pytest.skip("SQLite replays into memory: no database to leave behind")
    migrations = _migrated(db_url, tmp_path)
    prefix = f"jetbase_drift_s{tmp_path.name[-6:].lower()}_"
    monkeypatch.setattr(scratch_module, "SCRATCH_PREFIX", prefix)
    with disposing(make_engine(db_url)) as engine:
        report = run_drift_check(engine, migrations)
        assert prefix in report.method_detail
        assert list_databases(engine, prefix) == []


def test_postgres_schema_other_than_public(postgres_url: URL, tmp_path: Path) -> None:
    """A target whose tables live in schema ``app`` (search_path set by the connection)."""
    with disposing(make_engine(postgres_url)) as admin:
        run_sql(admin, "CREATE SCHEMA app")
    url = postgres_url.update_query_dict({"options": "-csearch_path=app"})
    migrations = write_migrations(tmp_path / "migrations", "postgresql")
    with disposing(make_engine(url)) as engine:
        Migrator(engine, migrations).upgrade()
        clean = run_drift_check(engine, migrations)
        run_sql(engine, "ALTER TABLE events ALTER COLUMN id SET DEFAULT 7")
        drift = run_drift_check(engine, migrations)
        with engine.connect() as conn:
            public_tables = conn.exec_driver_sql(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
            ).scalar()
    assert public_tables == 0  # the migrations really ran in "app"
    assert _schema_findings(clean) == set(), clean.to_text()
    assert _schema_findings(drift) == {("default_changed", "events.id")}, drift.to_text()


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_reference_server_hosts_the_scratch_database(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests import dbs

    url: URL = request.getfixturevalue(f"{kind}_url")
    migrations = _migrated(url, tmp_path)
    prefix = f"jetbase_drift_r{tmp_path.name[-6:].lower()}_"
    monkeypatch.setattr(scratch_module, "SCRATCH_PREFIX", prefix)
    # The reference is reached through its own database: the scratch one is created from there.
    with dbs.fresh_database(kind) as reference_url, disposing(make_engine(reference_url)) as reference:
        with disposing(make_engine(url)) as engine:
            run_sql(engine, "CREATE INDEX ix_users_name ON users (name)")
            report = run_drift_check(engine, migrations, reference_engine=reference)
        assert list_databases(reference, prefix) == []
    assert _schema_findings(report) == {("index_added", "users.ix_users_name")}, report.to_text()


def test_user_without_createdb_gets_a_clear_error_and_reference_fixes_it(
    postgres_url: URL, tmp_path: Path
) -> None:
    migrations = _migrated(postgres_url, tmp_path)
    role = f"jbdrift_{tmp_path.name[-6:].lower()}"
    with disposing(make_engine(postgres_url)) as admin:
        run_sql(
            admin,
            f"CREATE ROLE {role} LOGIN NOCREATEDB; GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}",
        )
        try:
            with disposing(make_engine(postgres_url.set(username=role))) as limited:
                refused = run_drift_check(limited, migrations)
                assert refused.status == "error" and "right to create and drop databases" in str(
                    refused.error
                )
                report = run_drift_check(limited, migrations, reference_engine=admin)
            assert not report.failed, report.to_text()
        finally:
            run_sql(admin, f"DROP OWNED BY {role}")
            with disposing(make_engine(postgres_url.set(database="postgres"))) as root:
                run_sql(root, f"DROP ROLE {role}")
