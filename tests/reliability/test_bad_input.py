"""Bad-input corpus: every case fails with an error naming the culprit and leaves the database as it was.

The corpus is filed by behaviour: its migration-file, argument, validation, rollback and foreign-table
cases (the tests taking the ``base`` fixture, tests/engine/helpers.py) are in tests/engine/
(test_discovery.py, test_parsing.py, test_arguments.py, test_validation.py, test_rollback.py,
test_failures.py, test_upgrade.py, test_version_table.py). Here: connection errors and operator
parameters as templates render them.

Operator cases run on the real PostgreSQL server and on ClickHouse 26.x (chdb, over the HTTP
interface: tests/clickhouse_server.py) against a database that already holds one applied migration
(``V1__base.sql``), so "unchanged" covers the version table, the lock row (PostgreSQL) and a user
table: a snapshot of the schema and of every row of every table is taken before and compared after.
Connection cases are pure mapping (no server), except the unreachable server and the wrong password,
which go to real ports. Snowflake/Databricks cases never reach a cloud service (mapping only).
"""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import URL

from airflow_provider_jetbase.connection_mapping import (
    ConnectionConfigError,
    ConnectionFields,
    build_engine_spec,
)
from tests.engine.helpers import Baseline, fails
from tests.jetbase_cli import write_migration

pytestmark = pytest.mark.postgres


# ----------------------------------------------------------------------------- connections
def _spec_error(fields: ConnectionFields, *culprits: str) -> ConnectionConfigError:
    with pytest.raises(ConnectionConfigError) as info:
        build_engine_spec(fields, environ={})
    message = str(info.value)
    assert fields.conn_id in message, message
    for culprit in culprits:
        assert culprit in message, f"{culprit!r} not named in: {message}"
    return info.value


@pytest.mark.parametrize(
    ("fields", "culprit"),
    [
        (ConnectionFields("c_unknown", "oracle", host="h"), "conn_type"),
        (ConnectionFields("c_empty_type", "", host="h"), "conn_type"),
        (ConnectionFields("c_pg_nohost", "postgres", login="u", schema="db"), "host"),
        (ConnectionFields("c_my_nohost", "mysql", login="u", schema="db"), "host"),
        (ConnectionFields("c_sqlite_nohost", "sqlite"), "host"),
        (ConnectionFields("c_pg_port_abc", "postgres", host="h", port="abc"), "port"),  # type: ignore[arg-type]
        (ConnectionFields("c_pg_port_0", "postgres", host="h", port=0), "port"),
        (ConnectionFields("c_pg_port_big", "postgres", host="h", port=70000), "port"),
        (
            ConnectionFields("c_db_nopath", "databricks", host="x.cloud.databricks.com", password="dapiX"),
            "http_path",
        ),
        (
            ConnectionFields(
                "c_db_notoken", "databricks", host="x.cloud.databricks.com", extra={"http_path": "/sql/1"}
            ),
            "password",
        ),
        (ConnectionFields("c_sf_noaccount", "snowflake", login="u", password="p"), "account"),
        (ConnectionFields("c_pg_driver", "postgres", host="h", extra={"driver": "pg8000x"}), "driver"),
        (ConnectionFields("c_jetbase_nourl", "jetbase"), "sqlalchemy_url"),
        (
            ConnectionFields("c_jetbase_badurl", "jetbase", extra={"sqlalchemy_url": "not a url"}),
            "sqlalchemy_url",
        ),
        (
            ConnectionFields("c_schema_inject", "postgres", host="h", extra={"postgres_schema": "a,,b"}),
            "postgres_schema",
        ),
    ],
    ids=lambda v: v.conn_id if isinstance(v, ConnectionFields) else None,
)
def test_connection_config_errors(fields: ConnectionFields, culprit: str) -> None:
    _spec_error(fields, culprit)


@pytest.fixture(scope="module")
def rsa_key() -> tuple[str, bytes]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"right-passphrase"),
    ).decode()
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem, der


def _sf(conn_id: str, **extra: Any) -> ConnectionFields:
    return ConnectionFields(conn_id, "snowflake", login="svc", extra={"account": "acme-x1", **extra})


def test_snowflake_wrong_passphrase(rsa_key: tuple[str, bytes]) -> None:
    pem, _ = rsa_key
    err = _spec_error(
        _sf("c_sf_pass", private_key_content=pem, private_key_passphrase="WRONG-pass-123"), "passphrase"
    )
    assert "WRONG-pass-123" not in str(err) and "BEGIN" not in str(err)


def test_snowflake_encrypted_key_without_passphrase(rsa_key: tuple[str, bytes]) -> None:
    pem, _ = rsa_key
    err = _spec_error(_sf("c_sf_nopass", private_key_content=pem), "private_key")
    assert "BEGIN" not in str(err)


@pytest.mark.parametrize(
    ("content", "culprit"),
    [
        (
            "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5IGF0IGFsbA==\n-----END PRIVATE KEY-----\n",
            "private_key_content",
        ),
        ("this is not a key at all", "private_key_content"),
        (base64.b64encode(b"definitely not DER or PEM bytes").decode(), "private_key_content"),
    ],
    ids=["invalid-pem", "garbage", "base64-not-a-key"],
)
def test_snowflake_invalid_key_content(content: str, culprit: str) -> None:
    err = _spec_error(_sf("c_sf_badkey", private_key_content=content), culprit)
    assert content not in str(err)


def test_snowflake_both_key_sources(rsa_key: tuple[str, bytes], tmp_path: Path) -> None:
    pem, _ = rsa_key
    key_file = tmp_path / "key.p8"
    key_file.write_text(pem)
    _spec_error(
        _sf("c_sf_both", private_key_content=pem, private_key_file=str(key_file), private_key_passphrase="x"),
        "private_key_content",
        "private_key_file",
    )


def test_snowflake_key_file_missing(tmp_path: Path) -> None:
    _spec_error(_sf("c_sf_nofile", private_key_file=str(tmp_path / "nope.p8")), "private_key_file")


def test_extra_not_json() -> None:
    _spec_error(ConnectionFields("c_extra_str", "postgres", host="h", extra="{not json"), "extra")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- real servers: connect errors
def _hook(monkeypatch: pytest.MonkeyPatch, value: dict[str, Any]) -> Any:
    from airflow_provider_jetbase.hooks.jetbase import JetbaseHook

    conn_id = f"jb_rel_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(value))
    return JetbaseHook(jetbase_conn_id=conn_id)


@pytest.mark.timeout(60)
def test_unreachable_server_fails_within_its_connect_timeout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A black-holed address (TEST-NET-1, RFC 5737): the bound comes from connect_timeout=2, which must
    reach the driver; pytest-timeout (60 s) catches a hang, no wall clock is asserted here."""
    hook = _hook(
        monkeypatch,
        {
            "conn_type": "postgres",
            "host": "192.0.2.1",
            "port": 5432,
            "login": "u",
            "password": "Unreach-Secret-77",
            "schema": "db",
            "extra": {"connect_timeout": 2},
        },
    )
    assert hook.get_engine_spec().connect_args.get("connect_timeout") == 2
    ok, message = hook.test_connection()
    assert not ok
    assert hook.jetbase_conn_id in message and "192.0.2.1" in message, message
    assert "Unreach-Secret-77" not in message
    folder = tmp_path / "m"
    write_migration(folder, "V1__x.sql", "SELECT 1;")
    with pytest.raises(Exception) as info:
        hook.get_migrator(folder).upgrade()
    assert "Unreach-Secret-77" not in str(info.value)


@pytest.mark.parametrize(
    ("kind", "login", "refusal"),
    [
        pytest.param("mysql", "root", "Access denied", marks=pytest.mark.mysql),
        ("clickhouse", "default", "Authentication failed"),
    ],
)
def test_wrong_password_is_named_and_not_echoed(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, kind: str, login: str, refusal: str
) -> None:
    """MariaDB's root and ClickHouse's default user have an empty password, so any password is wrong
    (PostgreSQL here trusts everyone)."""
    url: URL = request.getfixturevalue(f"{kind}_url")
    hook = _hook(
        monkeypatch,
        {
            "conn_type": kind,
            "host": url.host,
            "port": url.port,
            "login": login,
            "password": "Wrong-Pw-9f3a",
            "schema": url.database,
            "extra": {"connect_timeout": 5} if kind == "mysql" else {},
        },
    )
    ok, message = hook.test_connection()
    assert not ok
    assert hook.jetbase_conn_id in message and refusal in message, message
    assert "Wrong-Pw-9f3a" not in message


def test_refused_port(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = _hook(
        monkeypatch,
        {
            "conn_type": "postgres",
            "host": "127.0.0.1",
            "port": 1,
            "login": "postgres",
            "schema": "db",
            "extra": {"connect_timeout": 2},
        },
    )
    ok, message = hook.test_connection()
    assert not ok
    assert hook.jetbase_conn_id in message and "refused" in message.lower(), message


# ----------------------------------------------------------------------------- operator parameters
@pytest.mark.parametrize(
    ("operator", "kwargs", "culprits"),
    [
        ("upgrade", {"count": "abc"}, ("count", "'abc'")),
        ("upgrade", {"count": "0"}, ("count", "0")),
        ("upgrade", {"count": "-1"}, ("count", "'-1'")),
        ("rollback", {"count": "1.5"}, ("count", "'1.5'")),
        ("upgrade", {"dry_run": "maybe"}, ("dry_run", "'maybe'")),
        ("rollback", {"count": "1", "to_version": "1"}, ("count", "to_version")),
        ("upgrade", {"to_version": "abc"}, ("'abc'",)),
    ],
)
def test_operator_parameters_as_rendered_by_templates(
    base: Baseline,
    monkeypatch: pytest.MonkeyPatch,
    operator: str,
    kwargs: dict[str, Any],
    culprits: tuple[str, ...],
) -> None:
    """What a params-driven DAG hands the operators (templates render strings)."""
    import datetime as dt

    from airflow.sdk import DAG

    from airflow_provider_jetbase.operators.jetbase import JetbaseRollbackOperator, JetbaseUpgradeOperator

    url = base.engine.url
    conn_id = f"jb_rel_op_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}",
        json.dumps(
            {
                "conn_type": base.kind,
                "host": url.host,
                "port": url.port,
                "login": url.username,
                "schema": url.database,
            }
        ),
    )
    # Jetbase has no lock on ClickHouse: the operators run there only in a pool (one slot per target).
    pool: dict[str, Any] = {"pool": "jb_bad_input"} if base.kind == "clickhouse" else {}
    cls = JetbaseUpgradeOperator if operator == "upgrade" else JetbaseRollbackOperator
    with DAG(f"jb_bad_{uuid.uuid4().hex[:6]}", schedule=None, start_date=dt.datetime(2026, 1, 1)):
        op = cls(
            task_id="t",
            jetbase_conn_id=conn_id,
            migrations_dir=str(base.folder),
            lock_timeout=2,
            **pool,
            **kwargs,
        )
    fails(lambda: op.execute({}), ValueError, *culprits)
    base.unchanged(f"{operator} operator with {kwargs}")
