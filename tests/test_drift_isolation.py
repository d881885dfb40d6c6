"""The drift check's replay is confined to its scratch target (real PostgreSQL, MariaDB, SQLite).

Each migration here was applied to the live database (its server-wide effect then undone by hand, as
an administrator would), so that a replay which escaped its scratch database would change the live
server again. After the check, the live rows, the roles/users the statements name, and the database
settings must be exactly as before, no throwaway role/user may be left, and the report must say
that the replay was refused and why. Roles and users are created and dropped by the tests.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import URL, Engine

from airflow_provider_jetbase.drift import run_drift_check, store_snapshot
from airflow_provider_jetbase.drift import scratch as scratch_module
from airflow_provider_jetbase.migration import Migrator
from airflow_provider_jetbase.migration.files import load_file
from tests.drift_helpers import disposing, dump_database, make_engine, run_sql

ACCOUNTS = """
CREATE TABLE accounts (id INT PRIMARY KEY, amount INT NOT NULL);
INSERT INTO accounts (id, amount) VALUES (1, 100);
INSERT INTO accounts (id, amount) VALUES (2, 250);
"""
SECRET_PASSWORD = "Jb1_NEVERLOGGEDreplaypassword0123"


def _token() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture(autouse=True)
def own_prefixes(monkeypatch: pytest.MonkeyPatch) -> None:
    """This test's own scratch and throwaway-login names, so that the leftovers it looks for are its
    own: other workers of the suite run drift checks on the same servers at the same time."""
    token = _token()[:6]
    monkeypatch.setattr(scratch_module, "REPLAY_ROLE_PREFIX", f"jb_replay_{token}_")
    monkeypatch.setattr(scratch_module, "SCRATCH_PREFIX", f"jetbase_drift_{token}_")


def _like(prefix: str) -> str:
    return prefix.replace("_", "\\_") + "%"


@pytest.fixture
def known_password(monkeypatch: pytest.MonkeyPatch) -> str:
    """The throwaway login's password, fixed so that the test can look for it in the output."""
    monkeypatch.setattr(scratch_module, "_password", lambda: SECRET_PASSWORD)
    return SECRET_PASSWORD


def _rows(engine: Engine, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    from sqlalchemy import text

    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(text(sql), params)]
        conn.rollback()
    return rows


def _leftover_logins(engine: Engine) -> list[tuple[Any, ...]]:
    pattern = _like(scratch_module.REPLAY_ROLE_PREFIX)
    if engine.dialect.name == "postgresql":
        return _rows(engine, "SELECT rolname FROM pg_roles WHERE rolname LIKE :p", p=pattern)
    return _rows(engine, "SELECT User, Host FROM mysql.user WHERE User LIKE :p", p=pattern)


def _assert_refused(report: Any, filename: str, secret: str, logs: str) -> None:
    assert report.status == "error", report.to_text()
    assert report.error is not None
    assert f"replay refused: statement 1 (line 1) in {filename} reaches outside the scratch database" in (
        report.error
    ), report.error
    assert "no schema snapshot is stored" in report.error
    # Not read as drift, and not as "no findings": the summary and the XCom form say it did not run.
    assert not report.errors and "COULD NOT RUN" in report.summary()
    data = report.to_dict()
    assert data["status"] == "error" and data["ok"] is False
    for text in (json.dumps(data), report.to_text(), logs):
        assert secret not in text


# ----------------------------------------------------------------------------- PostgreSQL
def _pg_admin(url: URL) -> Engine:
    return create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")


def _pg_server_state(admin: Engine, live: str, roles: list[str]) -> dict[str, Any]:
    """Every catalogue row a stray statement could change: the named roles (attributes, settings,
    memberships) and the live database (its row, ACL and settings)."""
    return {
        "roles": _rows(
            admin,
            "SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, "
            "rolbypassrls, rolconnlimit, rolvaliduntil, rolconfig::text FROM pg_roles "
            "WHERE rolname = ANY(:roles) ORDER BY rolname",
            roles=roles,
        ),
        "members": _rows(
            admin,
            "SELECT r.rolname, m.rolname FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid "
            "JOIN pg_roles m ON m.oid = a.member WHERE r.rolname = ANY(:roles) OR m.rolname = ANY(:roles) "
            "ORDER BY 1, 2",
            roles=roles,
        ),
        "database": _rows(
            admin,
            "SELECT datname, datdba::regrole::text, datallowconn, datconnlimit, datacl::text "
            "FROM pg_database WHERE datname = :live",
            live=live,
        ),
        "settings": _rows(
            admin,
            "SELECT d.datname, s.setrole::regrole::text, s.setconfig::text FROM pg_db_role_setting s "
            "LEFT JOIN pg_database d ON d.oid = s.setdatabase "
            "WHERE d.datname = :live OR s.setrole::regrole::text = ANY(:roles) ORDER BY 1, 2",
            live=live,
            roles=roles,
        ),
    }


@pytest.fixture
def pg_victim(postgres_url: URL) -> Iterator[str]:
    """A role of the live server that the migrations alter; dropped after the test."""
    role = f"jbt_victim_{_token()}"
    with disposing(_pg_admin(postgres_url)) as admin:
        run_sql(admin, f"CREATE ROLE {role} NOLOGIN")
        try:
            yield role
        finally:
            with disposing(create_engine(postgres_url, isolation_level="AUTOCOMMIT")) as live:
                run_sql(live, f"DROP OWNED BY {role}")
            run_sql(admin, f"DROP ROLE IF EXISTS {role}")


# (the statement of V2, what an administrator undid by hand after the upgrade)
PG_STATEMENTS = {
    "create_role": ("CREATE ROLE {new} NOLOGIN;", "DROP ROLE {new}"),
    "alter_role": ("ALTER ROLE {victim} SET work_mem = '64MB';", "ALTER ROLE {victim} RESET work_mem"),
    "alter_role_attribute": ("ALTER ROLE {victim} CREATEDB;", "ALTER ROLE {victim} NOCREATEDB"),
    "grant_role": ("GRANT pg_read_all_data TO {victim};", "REVOKE pg_read_all_data FROM {victim}"),
    "alter_live_database": (
        "ALTER DATABASE {live} SET work_mem = '64MB';",
        "ALTER DATABASE {live} RESET work_mem",
    ),
    "dynamic_sql": (
        "DO $$ BEGIN EXECUTE 'ALTER ROLE ' || '{victim}' || ' SET work_mem = ''32MB'''; END $$;",
        "ALTER ROLE {victim} RESET work_mem",
    ),
}


@pytest.mark.parametrize("case", sorted(PG_STATEMENTS))
def test_replay_cannot_change_roles_or_database_settings_on_postgres(
    postgres_url: URL,
    pg_victim: str,
    tmp_path: Path,
    case: str,
    known_password: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    live = str(postgres_url.database)
    new_role = f"jbt_new_{_token()}"
    names = {"victim": pg_victim, "new": new_role, "live": live}
    statement, undo = (part.format(**names) for part in PG_STATEMENTS[case])
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "V1__accounts.sql").write_text(ACCOUNTS)
    (migrations / "V2__server_wide.sql").write_text(statement + "\n")
    roles = [pg_victim, new_role, "postgres"]
    with disposing(make_engine(postgres_url)) as engine, disposing(_pg_admin(postgres_url)) as admin:
        try:
            Migrator(engine, migrations).upgrade()
            run_sql(admin, undo)
            before = (dump_database(engine), _pg_server_state(admin, live, roles))
            with caplog.at_level(logging.DEBUG):
                report = run_drift_check(engine, migrations)
            after = (dump_database(engine), _pg_server_state(admin, live, roles))
            assert _leftover_logins(admin) == []
        finally:
            run_sql(admin, f"DROP ROLE IF EXISTS {new_role}")
    assert before == after
    _assert_refused(report, "V2__server_wide.sql", known_password, caplog.text)
    assert report.error is not None and "InsufficientPrivilege" in report.error


def test_replay_cannot_reach_another_database_on_postgres(postgres_url: URL, tmp_path: Path) -> None:
    """PostgreSQL has no cross-database writes: the qualified UPDATE is refused, the rows unchanged."""
    live = str(postgres_url.database)
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "V1__accounts.sql").write_text(ACCOUNTS)
    with disposing(make_engine(postgres_url)) as engine:
        Migrator(engine, migrations).upgrade()
        # PostgreSQL accepts the name of the current database in a qualified name.
        (migrations / "V2__double.sql").write_text(
            f"UPDATE {live}.public.accounts SET amount = amount * 2;\n"
        )
        Migrator(engine, migrations).upgrade()
        before = dump_database(engine)
        report = run_drift_check(engine, migrations)
        after = dump_database(engine)
    assert before == after and before["rows"]["accounts"] == [(1, 200), (2, 500)]
    assert report.status == "error"
    assert "replay refused: statement 1 (line 1) in V2__double.sql" in str(report.error)


# ----------------------------------------------------------------------------- MariaDB
def _mysql_admin(url: URL) -> Engine:
    return create_engine(url.set(database=""), isolation_level="AUTOCOMMIT")


def _mysql_server_state(admin: Engine, users: list[str]) -> dict[str, Any]:
    """The accounts the statements name: their global privileges and their database grants."""
    from sqlalchemy import bindparam, text

    def read(sql: str) -> list[tuple[Any, ...]]:
        with admin.connect() as conn:
            query = text(sql).bindparams(bindparam("users", expanding=True))
            return [tuple(r) for r in conn.execute(query, {"users": users})]

    return {
        "users": read(
            "SELECT User, Host, Priv FROM mysql.global_priv WHERE User IN :users ORDER BY User, Host"
        ),
        "db_grants": read("SELECT * FROM mysql.db WHERE User IN :users ORDER BY User, Host, Db"),
    }


MYSQL_STATEMENTS = {
    "qualified_update": ("UPDATE {live}.accounts SET amount = amount * 2;", None),
    "qualified_insert": (
        "INSERT INTO {live}.accounts (id, amount) VALUES (3, 1);",
        "DELETE FROM accounts WHERE id = 3",
    ),
    "create_user": ("CREATE USER '{new}'@'localhost';", "DROP USER '{new}'@'localhost'"),
    "grant": (
        "GRANT SELECT ON {live}.* TO '{victim}'@'localhost';",
        "REVOKE SELECT ON {live}.* FROM '{victim}'@'localhost'",
    ),
}


@pytest.mark.parametrize("case", sorted(MYSQL_STATEMENTS))
def test_replay_cannot_write_live_rows_or_users_on_mariadb(
    mysql_url: URL, tmp_path: Path, case: str, known_password: str, caplog: pytest.LogCaptureFixture
) -> None:
    live = str(mysql_url.database)
    victim, new_user = f"jbt_victim_{_token()}", f"jbt_new_{_token()}"
    statement, undo = MYSQL_STATEMENTS[case]
    statement = statement.format(live=live, victim=victim, new=new_user)
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "V1__accounts.sql").write_text(ACCOUNTS)
    (migrations / "V2__reach_out.sql").write_text(statement + "\n")
    users = [victim, new_user, "root"]
    with disposing(make_engine(mysql_url)) as engine, disposing(_mysql_admin(mysql_url)) as admin:
        run_sql(admin, f"CREATE USER '{victim}'@'localhost'")
        try:
            Migrator(engine, migrations).upgrade()
            if undo:
                run_sql(engine, undo.format(live=live, victim=victim, new=new_user))
            before = (dump_database(engine), _mysql_server_state(admin, users))
            with caplog.at_level(logging.DEBUG):
                report = run_drift_check(engine, migrations)
            after = (dump_database(engine), _mysql_server_state(admin, users))
            assert _leftover_logins(admin) == []
        finally:
            run_sql(
                admin,
                f"DROP USER IF EXISTS '{victim}'@'localhost'; DROP USER IF EXISTS '{new_user}'@'localhost'",
            )
    assert before == after
    if case == "qualified_update":
        # Doubled once, by the upgrade; a check that escaped would double it again every night.
        assert before[0]["rows"]["accounts"] == [(1, 200), (2, 500)]
    _assert_refused(report, "V2__reach_out.sql", known_password, caplog.text)
    assert "denied" in str(report.error)


# ----------------------------------------------------------------------------- SQLite
def test_replay_cannot_attach_files_on_sqlite(sqlite_url: URL, tmp_path: Path) -> None:
    """ATTACH (and VACUUM INTO) is the only way an SQLite statement reaches a file: refused."""
    shared = tmp_path / "shared.db"
    with disposing(make_engine(URL.create("sqlite", database=str(shared)))) as other:
        run_sql(
            other,
            "CREATE TABLE accounts (id INT PRIMARY KEY, amount INT); INSERT INTO accounts VALUES (1, 100)",
        )
    shared_before = shared.read_bytes()
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "V1__accounts.sql").write_text(ACCOUNTS)
    (migrations / "V2__attach.sql").write_text(
        f"ATTACH DATABASE '{shared}' AS shared;\nUPDATE shared.accounts SET amount = amount * 2;\n"
        "DETACH DATABASE shared;\n"
    )
    (migrations / "V3__vacuum_into.sql").write_text(f"VACUUM INTO '{tmp_path / 'copy.db'}';\n")
    with disposing(make_engine(sqlite_url)) as engine:
        Migrator(engine, migrations).upgrade(count=1)
        # V2 and V3 cannot run inside the engine's transaction; record them as another tool would have.
        with engine.begin() as conn:
            for name, version in (("V2__attach.sql", "2"), ("V3__vacuum_into.sql", "3")):
                checksum = load_file(migrations / name, name).checksum
                conn.exec_driver_sql(
                    "INSERT INTO jetbase_migrations "
                    "(version, description, filename, migration_type, checksum) "
                    "VALUES (?, ?, ?, 'VERSIONED', ?)",
                    (version, name[4:-4], name, checksum),
                )
        live_before = dump_database(engine)
        report = run_drift_check(engine, migrations)
        assert dump_database(engine) == live_before
    assert shared.read_bytes() == shared_before
    assert not (tmp_path / "copy.db").exists()
    assert report.status == "error", report.to_text()
    assert (
        "replay refused: statement 1 (line 1) in V2__attach.sql reaches outside the scratch database"
        in str(report.error)
    )
    assert "ATTACH of" in str(report.error)
    # The VACUUM INTO file alone is refused the same way.
    (migrations / "V2__attach.sql").write_text("SELECT 1;\n")
    with disposing(make_engine(sqlite_url)) as engine:
        report = run_drift_check(engine, migrations)
    assert not (tmp_path / "copy.db").exists()
    assert "replay refused: statement 1 (line 1) in V3__vacuum_into.sql" in str(report.error), (
        report.to_text()
    )


# ----------------------------------------------------------------------------- set-up refused
def _migrated_accounts(url: URL, tmp_path: Path) -> Path:
    migrations = tmp_path / "migrations"
    migrations.mkdir(exist_ok=True)
    (migrations / "V1__accounts.sql").write_text(ACCOUNTS)
    with disposing(make_engine(url)) as engine:
        Migrator(engine, migrations).upgrade()
    return migrations


def test_user_without_createdb_gets_a_could_not_run_report_naming_the_cause(
    postgres_url: URL, tmp_path: Path, pg_login: Any, caplog: pytest.LogCaptureFixture
) -> None:
    migrations = _migrated_accounts(postgres_url, tmp_path)
    limited_url = pg_login("NOCREATEDB CREATEROLE")
    with disposing(make_engine(limited_url)) as limited, caplog.at_level(logging.DEBUG):
        report = run_drift_check(limited, migrations)
    assert report.status == "error" and report.findings == ()
    assert f"the user {limited_url.username} may not create databases (no CREATEDB)" in str(report.error)
    assert "COULD NOT RUN" in report.summary()
    # The log names the cause, not a side effect of it.
    assert "locale" not in caplog.text
    assert "may not create databases" in caplog.text


def test_user_without_createrole_is_refused_replay_and_falls_back_to_a_stored_snapshot(
    postgres_url: URL, tmp_path: Path, pg_login: Any
) -> None:
    migrations = _migrated_accounts(postgres_url, tmp_path)
    limited_url = pg_login("CREATEDB NOCREATEROLE")
    with disposing(make_engine(limited_url)) as limited:
        without_snapshot = run_drift_check(limited, migrations)
        explicit = run_drift_check(limited, migrations, method="replay")
    assert without_snapshot.status == "error"
    assert "may not create roles (no CREATEROLE)" in str(without_snapshot.error)
    assert "no schema snapshot is stored" in str(without_snapshot.error)
    assert explicit.status == "error" and "method='replay' was asked for" in str(explicit.error)

    with disposing(make_engine(postgres_url)) as engine:
        store_snapshot(engine)
        run_sql(engine, f"GRANT SELECT ON jetbase_schema_snapshot TO {limited_url.username}")
        run_sql(engine, "ALTER TABLE accounts ADD COLUMN note TEXT")
    with disposing(make_engine(limited_url)) as limited:
        fallback = run_drift_check(limited, migrations)
    assert fallback.status == "drift" and fallback.method == "snapshot", fallback.to_text()
    kinds = {(f.kind, f.severity) for f in fallback.findings}
    assert ("replay_unavailable", "warning") in kinds and ("column_added", "error") in kinds
    assert "replay not possible" in fallback.method_detail


def test_non_superuser_with_createdb_and_createrole_replays_as_a_throwaway_role(
    postgres_url: URL, tmp_path: Path, pg_login: Any
) -> None:
    """A managed-service admin (RDS and the like: CREATEDB and CREATEROLE, not superuser)."""
    migrations = _migrated_accounts(postgres_url, tmp_path)
    limited_url = pg_login("CREATEDB CREATEROLE")
    with disposing(make_engine(limited_url)) as limited:
        report = run_drift_check(limited, migrations)
        assert _leftover_logins(limited) == []
    assert report.status == "ok", report.to_text()
    assert "as the throwaway role jb_replay_" in report.method_detail


def test_mariadb_user_without_create_user_is_refused_replay(mysql_url: URL, tmp_path: Path) -> None:
    migrations = _migrated_accounts(mysql_url, tmp_path)
    user, password = f"jbt_app_{_token()}", "Jb1_app-password"
    with disposing(_mysql_admin(mysql_url)) as admin:
        run_sql(
            admin,
            f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{password}'; "
            f"CREATE USER '{user}'@'localhost' IDENTIFIED BY '{password}'; "
            f"GRANT ALL PRIVILEGES ON *.* TO '{user}'@'127.0.0.1'; "
            f"GRANT ALL PRIVILEGES ON *.* TO '{user}'@'localhost'; "
            f"REVOKE CREATE USER ON *.* FROM '{user}'@'127.0.0.1'; "
            f"REVOKE CREATE USER ON *.* FROM '{user}'@'localhost'",
        )
        try:
            with disposing(make_engine(mysql_url.set(username=user, password=password))) as limited:
                report = run_drift_check(limited, migrations)
                leftovers = _leftover_logins(admin)
                scratch = _rows(admin, "SHOW DATABASES LIKE :p", p=_like(scratch_module.SCRATCH_PREFIX))
        finally:
            run_sql(
                admin, f"DROP USER IF EXISTS '{user}'@'127.0.0.1'; DROP USER IF EXISTS '{user}'@'localhost'"
            )
    assert report.status == "error", report.to_text()
    assert "cannot be confined to its scratch database" in str(report.error)
    assert leftovers == [] and scratch == []
