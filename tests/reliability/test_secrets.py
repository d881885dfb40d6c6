"""Secrets never reach task logs, XCom, rendered templates, metadata or exception text; fields that
reach SQL cannot inject SQL.

The example DAGs run with ``dag.test()`` (tests/airflow_harness.py) in a throw-away AIRFLOW_HOME of
their own. Each example's connection (``jetbase_demo``, ``jetbase_rollback_demo``...) points at the
real PostgreSQL server, which trusts every client, so a distinctive password is accepted and travels
through every layer. The connection also carries a token and a Snowflake-style private key in its
extras (unused by PostgreSQL, named in `jetbase_ignore_extras` as another tool's). Afterwards the
subprocess output (task logs go to the console with dag.test()), the XCom values, and EVERY file of
AIRFLOW_HOME (log files, the SQLite metadata database with its XCom, rendered-template and
task-instance tables) are searched for every form of every secret: plain, URL-quoted, the PEM body,
its base64, and the key's DER as base64 and hex.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import URL

from tests.airflow_harness import EXAMPLE_DAGS, AirflowHome, DagRunOutcome, DagSession, example_conn_id
from tests.conftest import require_module

PASSWORD = "Pg-Pa55w0rd/8c41e+Zq"
TOKEN = "dapiTOKEN7e3b9a0c5d1f"
SSL_PASSWORD = "SslKeyPass-4b2e"


@pytest.fixture(scope="module")
def key_forms() -> dict[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    body_lines = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    return {
        "pem": pem,
        "pem_line": body_lines[len(body_lines) // 2],
        "pem_base64": base64.b64encode(pem.encode()).decode(),
        "der_base64": base64.b64encode(der).decode(),
        "der_base64_head": base64.b64encode(der).decode()[100:160],
        "der_hex": der.hex(),
        "der_hex_head": der.hex()[200:280],
    }


def secret_forms(key_forms: dict[str, str]) -> dict[str, str]:
    forms = {
        "password": PASSWORD,
        "password_quote_plus": quote_plus(PASSWORD),
        "password_quote": quote(PASSWORD, safe=""),
        "token": TOKEN,
        "ssl_password": SSL_PASSWORD,
    }
    forms.update({f"key_{k}": v for k, v in key_forms.items()})
    return forms


def assert_no_secret(where: str, content: str | bytes, forms: dict[str, str]) -> None:
    data = content if isinstance(content, bytes) else content.encode("utf-8", "replace")
    for name, value in forms.items():
        assert value.encode() not in data, f"secret {name} found in {where}"


@pytest.fixture(scope="module")
def secrets_home(tmp_path_factory: pytest.TempPathFactory, airflow_metadata_template: Path) -> AirflowHome:
    return AirflowHome.create(tmp_path_factory.mktemp("secrets_airflow_home"), airflow_metadata_template)


@pytest.fixture(scope="module")
def examples(secrets_home: AirflowHome) -> Iterator[DagSession]:
    """One harness subprocess for the module's example runs; each run hands it its own connection."""
    with secrets_home.session(EXAMPLE_DAGS) as session:
        yield session


@pytest.fixture
def pg_database() -> Iterator[URL]:
    from tests import dbs
    from tests.conftest import _require_server

    _require_server("postgres")
    with dbs.fresh_database("postgres") as url:
        yield url


def pg_connection(url: URL, key_forms: dict[str, str], **extra: Any) -> str:
    return json.dumps(
        {
            "conn_type": "postgres",
            "host": url.host,
            "port": url.port,
            "login": url.username,
            "password": PASSWORD,
            "schema": url.database,
            "extra": {
                "sslpassword": SSL_PASSWORD,
                "token": TOKEN,
                "private_key_content": key_forms["pem"],
                "connect_timeout": 5,
                # Other tools' extras are named, or the mapping refuses them.
                "jetbase_ignore_extras": ["token", "private_key_content"],
                **extra,
            },
        }
    )


def run(examples: DagSession, name: str, conn: str, conf: dict[str, Any] | None = None) -> DagRunOutcome:
    return examples.run(
        EXAMPLE_DAGS / f"{name}.py", name, connections={example_conn_id(name): conn}, run_conf=conf
    )


def scan_home(home: AirflowHome, forms: dict[str, str]) -> int:
    scanned = 0
    for path in home.path.rglob("*"):
        if path.is_file():
            assert_no_secret(str(path), path.read_bytes(), forms)
            scanned += 1
    return scanned


@pytest.mark.postgres
def test_example_dags_leak_no_secret(
    secrets_home: AirflowHome, examples: DagSession, pg_database: URL, key_forms: dict[str, str]
) -> None:
    forms = secret_forms(key_forms)
    conn = pg_connection(pg_database, key_forms)
    # All examples share one database here, so some must fail, and their error paths are scanned
    # too. Each expected outcome is asserted, with why it is what it is.
    runs: list[tuple[str, dict[str, Any] | None, dict[str, str]]] = [
        ("example_jetbase_migrate_before_etl", None, {"migrate": "success", "load_daily_sales": "success"}),
        # The sensor sees version 2 (the first example applied it); the ETL task reads a table of the
        # example's own migrations, which nobody applied here.
        ("example_jetbase_wait_for_version", None, {"wait_for_v2": "success", "count_events": "failed"}),
        ("example_jetbase_rollback", {"count": 1, "dry_run_only": True},
         {"preview_rollback": "success", "rollback": "success"}),
        # Version 3 was applied from another example's folder: the rollback example's V3 is another
        # file, and the real rollback refuses it.
        ("example_jetbase_rollback", {"count": 1}, {"preview_rollback": "success", "rollback": "failed"}),
        # The other examples' tables are drift for the drift example's migrations.
        ("example_jetbase_drift_check", None, {"check_drift": "failed"}),
    ]  # fmt: skip
    for name, conf, tasks in runs:
        outcome = run(examples, name, conn, conf)
        assert outcome.tasks == tasks, outcome.explain()
        assert_no_secret(f"{name} output", outcome.output, forms)
        assert_no_secret(f"{name} XCom", json.dumps(outcome.xcom, default=str), forms)
        assert_no_secret(f"{name} asset events", json.dumps(outcome.asset_events, default=str), forms)
    last = run(examples, "example_jetbase_migrate_before_etl", conn)
    assert last.state == "success", last.explain()
    # Positive control: the connection's non-secret parts do reach the log, so the scan looks where
    # a leak would land.
    assert str(pg_database.database) in last.output and "up to date" in last.output
    assert scan_home(secrets_home, forms) > 1


@pytest.mark.mysql
def test_failing_connection_leaks_no_secret(
    secrets_home: AirflowHome, examples: DagSession, mysql_url: URL, key_forms: dict[str, str]
) -> None:
    """MariaDB root has an empty password: PASSWORD is wrong, the task fails with the driver's error."""
    forms = secret_forms(key_forms)
    conn = json.dumps(
        {
            "conn_type": "mysql",
            "host": mysql_url.host,
            "port": mysql_url.port,
            "login": "root",
            "password": PASSWORD,
            "schema": mysql_url.database,
            "extra": {"token": TOKEN, "connect_timeout": 5, "jetbase_ignore_extras": "token"},
        }
    )
    outcome = run(examples, "example_jetbase_migrate_before_etl", conn)
    assert outcome.state == "failed", outcome.explain()
    assert "Access denied" in outcome.output, outcome.explain()
    assert_no_secret("failed run output", outcome.output, forms)
    scan_home(secrets_home, forms)


@pytest.mark.postgres
def test_url_password_in_jetbase_connection_is_not_leaked(
    secrets_home: AirflowHome, examples: DagSession, pg_database: URL, key_forms: dict[str, str]
) -> None:
    forms = secret_forms(key_forms)
    url = pg_database.set(password=PASSWORD).render_as_string(hide_password=False)
    conn = json.dumps({"conn_type": "jetbase", "extra": {"sqlalchemy_url": url}})
    outcome = run(examples, "example_jetbase_migrate_before_etl", conn)
    assert outcome.state == "success", outcome.explain()
    assert_no_secret("jetbase-URL run output", outcome.output, forms)
    assert_no_secret("jetbase-URL run output (rendered URL)", outcome.output, {"url": url})
    scan_home(secrets_home, {**forms, "url": url})


# ------------------------------------------------------------------------------------ SQL injection
INJECTIONS = [
    "public; DROP TABLE victim",
    "public'; DROP TABLE victim; --",
    '"public"; DROP TABLE victim',
    "public,$$;DROP TABLE victim;$$",
    "public -c search_path=pg_catalog",
]


@pytest.mark.postgres
@pytest.mark.parametrize("driver", ["psycopg2", "psycopg"])
@pytest.mark.parametrize("schema", INJECTIONS)
def test_postgres_schema_cannot_inject_sql(
    pg_database: URL, tmp_path: Path, driver: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_jetbase.hooks.jetbase import JetbaseHook
    from tests.jetbase_cli import write_migration

    admin = create_engine(pg_database)
    with admin.begin() as conn:
        conn.execute(text("CREATE TABLE public.victim (id INT)"))
        conn.execute(text("INSERT INTO public.victim VALUES (1)"))
    conn_id = f"jb_inject_{abs(hash((driver, schema))) % 10**8}"
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}",
        json.dumps(
            {
                "conn_type": "postgres",
                "host": pg_database.host,
                "port": pg_database.port,
                "login": pg_database.username,
                "schema": pg_database.database,
                "extra": {"postgres_schema": schema, "driver": driver},
            }
        ),
    )
    folder = tmp_path / "migrations"
    write_migration(folder, "V1__t.sql", "CREATE TABLE injected_check (id INT);")
    hook = JetbaseHook(jetbase_conn_id=conn_id)
    try:
        migrator = hook.get_migrator(folder, lock_timeout=2)
        try:
            migrator.upgrade()
        except Exception as exc:  # noqa: BLE001 - a schema that does not exist may fail the upgrade
            assert "syntax error" not in str(exc).lower(), f"the schema value reached SQL: {exc}"
        finally:
            migrator.engine.dispose()
        probe = create_engine(hook.get_sqlalchemy_url(), connect_args=hook.get_engine_spec().connect_args)
        try:
            with probe.connect() as pconn:
                search_path = pconn.execute(text("SHOW search_path")).scalar_one()
        finally:
            probe.dispose()
        with admin.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM public.victim")).scalar_one() == 1
        assert "victim" in inspect(admin).get_table_names(schema="public")
        # The value only ever became schema names in search_path (quoted when not plain), never SQL
        # nor another server option.
        print(f"\n{schema!r} -> search_path {search_path}")
        assert search_path != "pg_catalog" and "public" in search_path, search_path
    finally:
        admin.dispose()


# ------------------------------------------------------------------------- Snowflake key pair (MOCKED)
def test_snowflake_key_pair_secrets_stay_out_of_logs_and_errors(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """MOCKED CLOUD: fakesnow (a DuckDB-backed emulator patched over the Snowflake connector) stands in
    for Snowflake, so the key really goes through loading, DER conversion and the connector, but no
    Snowflake service is reached. An encrypted key with a passphrase; a migration that fails, so the
    error path is covered too. Every log record (DEBUG and up, every logger) and every message are
    checked for the key in each form and for the passphrase."""
    fakesnow = require_module("fakesnow")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from airflow_provider_jetbase.hooks.jetbase import JetbaseHook
    from airflow_provider_jetbase.migration.errors import MigrationExecutionError
    from tests.jetbase_cli import write_migration

    passphrase = "Sf-Passphrase-5d9c"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase.encode()),
    ).decode()
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pem_lines = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    forms = {
        "passphrase": passphrase,
        "pem_line": pem_lines[len(pem_lines) // 2],
        "pem_base64": base64.b64encode(pem.encode()).decode()[40:120],
        "der_base64": base64.b64encode(der).decode()[100:180],
        "der_hex": der.hex()[200:300],
        "token": TOKEN,
    }
    conn_id = "jb_sf_secrets"
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}",
        json.dumps(
            {
                "conn_type": "snowflake",
                "login": "svc_jetbase",
                "schema": "PUBLIC",
                "extra": {
                    "account": "xy12345",
                    "database": "ANALYTICS",
                    "warehouse": "WH",
                    "private_key_content": base64.b64encode(pem.encode()).decode(),
                    "private_key_passphrase": passphrase,
                    "token": TOKEN,
                    "jetbase_ignore_extras": ["token"],
                },
            }
        ),
    )
    folder = tmp_path / "migrations"
    write_migration(folder, "V1__ok.sql", "CREATE TABLE ok_t (id INT);")
    write_migration(folder, "V2__fails.sql", "SELECT * FROM no_such_table_here;")
    hook = JetbaseHook(jetbase_conn_id=conn_id)
    with caplog.at_level(logging.DEBUG), fakesnow.patch():
        spec = hook.get_engine_spec()
        assert spec.connect_args["private_key"] == der  # the key really was loaded and converted
        ok, message = hook.test_connection()
        assert ok, message
        migrator = hook.get_migrator(folder, lock_timeout=2)
        try:
            with pytest.raises(MigrationExecutionError) as info:
                migrator.upgrade()
        finally:
            migrator.engine.dispose()
    assert "V2__fails.sql" in str(info.value)
    captured = capfd.readouterr()
    console = captured.out + captured.err
    for where, content in [
        ("test_connection message", message),
        ("exception text", str(info.value)),
        ("exception repr", repr(info.value)),
        ("safe URL", spec.safe_url()),
        ("log records", "\n".join(r.getMessage() for r in caplog.records)),
        ("console (Airflow's structlog handlers)", console),
    ]:
        assert_no_secret(where, content, forms)
    # Positive control: the run's log lines were captured, so a leak would have been seen. Which
    # channel carries them (pytest's caplog or Airflow's structlog console handler) depends on how
    # earlier tests in the session left logging configured; both channels are checked above.
    logged = console + "\n".join(r.getMessage() for r in caplog.records)
    assert "V2__fails.sql" in logged and "xy12345" in logged, logged


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_filename_and_version_values_cannot_inject_sql(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A file name is stored as description/filename (bound parameters, as in Jetbase), and a
    to_version string is validated before any SQL: quotes and semicolons stay data."""
    from airflow_provider_jetbase.migration import Migrator
    from airflow_provider_jetbase.migration.errors import InvalidArgumentError
    from tests.jetbase_cli import write_migration

    url: URL = request.getfixturevalue(f"{kind}_url")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE victim (id INT)"))
            conn.execute(text("INSERT INTO victim VALUES (1)"))
        folder = tmp_path / "migrations"
        name = "V2__x'); DROP TABLE victim; --.sql"
        write_migration(folder, name, "CREATE TABLE harmless (id INT);\n-- rollback\nDROP TABLE harmless;")
        migrator = Migrator(engine, folder, lock_timeout=2)
        migrator.upgrade()
        for bad in ("2'; DROP TABLE victim; --", "2 OR 1=1"):
            with pytest.raises(InvalidArgumentError):
                migrator.rollback(to_version=bad)
        migrator.rollback()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM victim")).scalar_one() == 1
        history = migrator.history()
        assert history == []  # rolled back: the row was found and deleted by its version
        migrator.upgrade()
        row = migrator.history()[0]
        assert (row.filename, row.description) == (name, "x'); DROP TABLE victim; --")
    finally:
        engine.dispose()
