"""JetbaseHook on the real PostgreSQL and MariaDB servers and on SQLite.

Connections are defined the way Airflow users do: ``AIRFLOW_CONN_<ID>`` environment variables,
in both URI and JSON form.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from airflow_provider_jetbase.connection_mapping import ConnectionConfigError
from airflow_provider_jetbase.hooks.jetbase import JetbaseHook


def define_connection(monkeypatch: pytest.MonkeyPatch, value: str | dict[str, Any]) -> str:
    """Register an Airflow connection as an environment variable; return its (unique) id."""
    conn_id = f"jb_test_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}", value if isinstance(value, str) else json.dumps(value)
    )
    return conn_id


def run_scalar(hook: JetbaseHook, sql: str) -> Any:
    engine = hook.get_sqlalchemy_engine()
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql)).scalar()
    finally:
        engine.dispose()


def pg_conn_json(url: URL, **extra: Any) -> dict[str, Any]:
    return {
        "conn_type": "postgres",
        "host": url.host,
        "port": url.port,
        "login": url.username,
        "schema": url.database,
        "extra": extra,
    }


# ------------------------------------------------------------------------------- real servers
@pytest.mark.postgres
@pytest.mark.parametrize("form", ["uri", "json", "jetbase"])
def test_postgres_connection_forms_run_a_query(
    monkeypatch: pytest.MonkeyPatch, postgres_url: URL, form: str
) -> None:
    if form == "uri":
        value: str | dict[str, Any] = (
            f"postgres://{postgres_url.username}@{postgres_url.host}:{postgres_url.port}/{postgres_url.database}"
            "?application_name=jetbase-test&connect_timeout=5"
        )
    elif form == "json":
        value = pg_conn_json(postgres_url, application_name="jetbase-test", connect_timeout=5)
    else:
        value = {
            "conn_type": "jetbase",
            "extra": {"sqlalchemy_url": postgres_url.render_as_string(hide_password=False)},
        }
    hook = JetbaseHook(define_connection(monkeypatch, value))
    assert hook.get_dialect_name() == "postgresql"
    assert run_scalar(hook, "SELECT current_database()") == postgres_url.database
    if form != "jetbase":
        assert run_scalar(hook, "SELECT current_setting('application_name')") == "jetbase-test"


@pytest.mark.mysql
@pytest.mark.parametrize("form", ["uri", "json", "jetbase"])
def test_mysql_connection_forms_run_a_query(
    monkeypatch: pytest.MonkeyPatch, mysql_url: URL, form: str
) -> None:
    if form == "uri":
        value: str | dict[str, Any] = (
            f"mysql://{mysql_url.username}@{mysql_url.host}:{mysql_url.port}/{mysql_url.database}?charset=utf8mb4"
        )
    elif form == "json":
        value = {
            "conn_type": "mysql",
            "host": mysql_url.host,
            "port": mysql_url.port,
            "login": mysql_url.username,
            "schema": mysql_url.database,
            "extra": {"charset": "utf8mb4"},
        }
    else:
        value = {"conn_type": "jetbase", "extra": {"sqlalchemy_url": mysql_url.render_as_string(False)}}
    hook = JetbaseHook(define_connection(monkeypatch, value))
    assert hook.get_dialect_name() == "mysql"
    assert run_scalar(hook, "SELECT DATABASE()") == mysql_url.database
    if form != "jetbase":
        assert run_scalar(hook, "SELECT @@character_set_client") == "utf8mb4"


@pytest.mark.parametrize("form", ["uri", "json_host", "jetbase"])
def test_sqlite_connection_forms_run_a_query(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, form: str
) -> None:
    db_file = tmp_path / "app.db"
    if form == "uri":
        value: str | dict[str, Any] = f"sqlite:///{db_file}"  # sqlite:////abs/path: Airflow puts it in schema
    elif form == "json_host":
        value = {"conn_type": "sqlite", "host": str(db_file)}
    else:
        value = {"conn_type": "jetbase", "extra": {"sqlalchemy_url": f"sqlite:///{db_file}"}}
    hook = JetbaseHook(define_connection(monkeypatch, value))
    engine = hook.get_sqlalchemy_engine()
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (id INTEGER)"))
            conn.execute(text("INSERT INTO t VALUES (42)"))
    finally:
        engine.dispose()
    assert db_file.exists()
    check = create_engine(f"sqlite:///{db_file}")
    with check.connect() as conn:
        assert conn.execute(text("SELECT id FROM t")).scalar() == 42
    check.dispose()


def test_sqlite_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = JetbaseHook(define_connection(monkeypatch, {"conn_type": "sqlite", "host": ":memory:"}))
    assert run_scalar(hook, "SELECT 40 + 2") == 42


def _tables_by_schema(url: URL, table: str) -> list[str]:
    admin = create_engine(url)
    try:
        with admin.connect() as conn:
            rows = conn.execute(
                text("SELECT table_schema FROM information_schema.tables WHERE table_name = :t ORDER BY 1"),
                {"t": table},
            )
            return [r[0] for r in rows]
    finally:
        admin.dispose()


def _create_schema(url: URL, *names: str) -> None:
    admin = create_engine(url)
    with admin.begin() as conn:
        for name in names:
            conn.execute(text(f'CREATE SCHEMA "{name}"'))
    admin.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("driver", ["psycopg2", "psycopg"])
@pytest.mark.parametrize("schema", ["etl", "Mixed Case"])
def test_postgres_schema_decides_where_unqualified_tables_land(
    monkeypatch: pytest.MonkeyPatch, postgres_url: URL, driver: str, schema: str
) -> None:
    _create_schema(postgres_url, schema)
    hook = JetbaseHook(
        define_connection(monkeypatch, pg_conn_json(postgres_url, postgres_schema=schema, driver=driver))
    )
    engine = hook.get_sqlalchemy_engine()
    try:
        assert engine.dialect.driver == driver
        # Every pooled connection gets it, not only the first one.
        for table in ("landed_1", "landed_2"):
            with engine.connect() as conn, engine.connect() as other:
                conn.execute(text(f"CREATE TABLE {table} (id int)"))
                conn.commit()
                assert other.execute(text("SELECT current_schema()")).scalar() == schema
    finally:
        engine.dispose()
    assert _tables_by_schema(postgres_url, "landed_1") == [schema]
    assert _tables_by_schema(postgres_url, "landed_2") == [schema]


@pytest.mark.postgres
def test_postgres_schema_through_jetbase_type_with_psycopg3(
    monkeypatch: pytest.MonkeyPatch, postgres_psycopg3_url: URL
) -> None:
    _create_schema(postgres_psycopg3_url, "staging")
    value = {
        "conn_type": "jetbase",
        "extra": {
            "sqlalchemy_url": postgres_psycopg3_url.render_as_string(hide_password=False),
            "postgres_schema": "staging",
        },
    }
    hook = JetbaseHook(define_connection(monkeypatch, value))
    engine = hook.get_sqlalchemy_engine()
    try:
        assert engine.dialect.driver == "psycopg"
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE from_jetbase_type (id int)"))
    finally:
        engine.dispose()
    assert _tables_by_schema(postgres_psycopg3_url, "from_jetbase_type") == ["staging"]


@pytest.mark.postgres
@pytest.mark.parametrize("driver", ["psycopg2", "psycopg"])
def test_postgres_schema_injection_is_not_executed(
    monkeypatch: pytest.MonkeyPatch, postgres_url: URL, driver: str
) -> None:
    admin = create_engine(postgres_url)
    with admin.begin() as conn:
        conn.execute(text("CREATE TABLE victim (id int)"))
    admin.dispose()
    evil = "public; DROP TABLE victim; --"
    hook = JetbaseHook(
        define_connection(monkeypatch, pg_conn_json(postgres_url, postgres_schema=evil, driver=driver))
    )
    engine = hook.get_sqlalchemy_engine()
    try:
        with engine.connect() as conn:
            # The whole string is one (non-existent) schema name in search_path, nothing else.
            assert conn.execute(text("SHOW search_path")).scalar() == '"public; DROP TABLE victim; --"'
            assert conn.execute(text("SELECT current_schema()")).scalar() is None
    finally:
        engine.dispose()
    assert _tables_by_schema(postgres_url, "victim") == ["public"]


@pytest.mark.postgres
def test_postgres_sqlalchemy_query_reaches_the_server(
    monkeypatch: pytest.MonkeyPatch, postgres_url: URL
) -> None:
    value = pg_conn_json(postgres_url, sqlalchemy_query={"application_name": "from-sqlalchemy-query"})
    hook = JetbaseHook(define_connection(monkeypatch, value))
    assert run_scalar(hook, "SELECT current_setting('application_name')") == "from-sqlalchemy-query"


@pytest.mark.postgres
def test_postgres_iam_connection_is_refused_before_connecting(
    monkeypatch: pytest.MonkeyPatch, postgres_url: URL
) -> None:
    # The server trusts every client: without the refusal this connection would migrate as the
    # login, with no IAM token ever fetched.
    password = "iam-fallback-Secret-7"
    value = {**pg_conn_json(postgres_url, iam=True, aws_conn_id="aws_rds"), "password": password}
    conn_id = define_connection(monkeypatch, value)
    with pytest.raises(ConnectionConfigError) as info:
        JetbaseHook(conn_id).get_sqlalchemy_engine()
    assert (info.value.conn_id, info.value.field) == (conn_id, "iam")
    assert password not in str(info.value) and password not in repr(info.value)
    ok, message = JetbaseHook(conn_id).test_connection()
    assert ok is False and "'iam'" in message and password not in message


def test_snowflake_oauth_connection_is_refused_without_the_client_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client_secret = "oauth-client-Secret-3"
    value = {
        "conn_type": "snowflake",
        "login": "oauth-client-id",
        "password": client_secret,
        "extra": {"account": "xy12345", "authenticator": "oauth", "refresh_token": "refresh-Tok-1"},
    }
    conn_id = define_connection(monkeypatch, value)
    with pytest.raises(ConnectionConfigError) as info:
        JetbaseHook(conn_id).get_engine_spec()
    assert info.value.field == "authenticator"
    for secret in (client_secret, "refresh-Tok-1"):
        assert secret not in str(info.value) and secret not in repr(info.value)


# ---------------------------------------------------------------------------------- test_connection
def test_test_connection_success_sqlite(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    hook = JetbaseHook(
        define_connection(monkeypatch, {"conn_type": "sqlite", "host": str(tmp_path / "t.db")})
    )
    ok, message = hook.test_connection()
    assert ok, message
    assert "sqlite" in message


@pytest.mark.postgres
def test_test_connection_success_postgres(monkeypatch: pytest.MonkeyPatch, postgres_url: URL) -> None:
    hook = JetbaseHook(define_connection(monkeypatch, pg_conn_json(postgres_url)))
    ok, message = hook.test_connection()
    assert ok, message


@pytest.mark.mysql
def test_test_connection_wrong_mysql_password(monkeypatch: pytest.MonkeyPatch, mysql_url: URL) -> None:
    password = "Wr0ng-Pa55w0rd!"
    value = {
        "conn_type": "mysql",
        "host": mysql_url.host,
        "port": mysql_url.port,
        "login": mysql_url.username,
        "password": password,
        "schema": mysql_url.database,
    }
    conn_id = define_connection(monkeypatch, value)
    ok, message = JetbaseHook(conn_id).test_connection()
    assert ok is False
    assert "Access denied" in message and conn_id in message
    assert password not in message
    assert "Wr0ng-Pa55w0rd%21" not in message


def test_test_connection_config_error_is_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    value = {"conn_type": "databricks", "host": "h", "password": "dapi-very-secret"}
    conn_id = define_connection(monkeypatch, value)
    ok, message = JetbaseHook(conn_id).test_connection()
    assert ok is False
    assert "http_path" in message and conn_id in message
    assert "dapi-very-secret" not in message


def test_test_connection_unreachable_server(monkeypatch: pytest.MonkeyPatch) -> None:
    # Port 1 on localhost refuses connections: a real network failure, no server needed.
    value = {
        "conn_type": "postgres",
        "host": "127.0.0.1",
        "port": 1,
        "login": "nobody",
        "password": "unreachable-secret",
        "extra": {"connect_timeout": 3},
    }
    conn_id = define_connection(monkeypatch, value)
    ok, message = JetbaseHook(conn_id).test_connection()
    assert ok is False
    assert "OperationalError" in message and "127.0.0.1" in message
    assert "unreachable-secret" not in message


# ------------------------------------------------------------------------------- engine & secrets
def test_engine_is_new_per_call_and_honours_engine_kwargs(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = JetbaseHook(define_connection(monkeypatch, {"conn_type": "sqlite", "host": ":memory:"}))
    first, second = hook.get_sqlalchemy_engine(), hook.get_sqlalchemy_engine({"echo": True})
    try:
        assert first is not second
        assert second.echo is True and not first.echo
    finally:
        first.dispose()
        second.dispose()


def test_secrets_are_registered_with_the_masker(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.providers.common.compat.sdk import redact

    password = f"pg-secret-{uuid.uuid4().hex}"
    value = {
        "conn_type": "postgres",
        "host": "db.internal",
        "login": "etl",
        "password": password,
        "schema": "w",
    }
    hook = JetbaseHook(define_connection(monkeypatch, value))
    spec = hook.get_engine_spec()
    rendered = spec.url.render_as_string(hide_password=False)
    assert password in rendered
    assert password not in str(redact(f"the password is {password}"))
    assert password not in str(redact(rendered))
    assert hook.get_sqlalchemy_url() == spec.url


def test_engine_log_hides_the_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    password = f"jb-secret-{uuid.uuid4().hex}"
    url = "mysql+pymysql://app@db.internal:3306/shop"
    value = {"conn_type": "jetbase", "password": password, "extra": {"sqlalchemy_url": url}}
    hook = JetbaseHook(define_connection(monkeypatch, value))
    hook.get_sqlalchemy_engine().dispose()  # no connection is opened: nothing needs db.internal
    out = capsys.readouterr()
    logged = out.out + out.err
    assert "mysql+pymysql://app:***@db.internal:3306/shop" in logged, logged
    assert password not in logged


def test_get_migrator_builds_on_a_new_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from airflow_provider_jetbase import migration

    hook = JetbaseHook(
        define_connection(monkeypatch, {"conn_type": "sqlite", "host": str(tmp_path / "m.db")})
    )
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    migrator = hook.get_migrator(migrations, lock_timeout=5.0)
    assert isinstance(migrator, migration.Migrator)
