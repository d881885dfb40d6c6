"""JetbaseHook for the cloud databases.

Snowflake: MOCKED CLOUD. `fakesnow` (a DuckDB-backed emulator patched over the Snowflake
connector) stands in for a Snowflake account, so the engine the hook builds really executes
queries, but no Snowflake service is involved and authentication is not checked by it: the key
pair is checked by decoding connect_args["private_key"] here.

Databricks / ClickHouse: no server is reachable from this machine (Databricks is a cloud service;
Debian's clickhouse-server 18.16 is too old for Jetbase's DateTime64 tables and chdb is in-process
only), so these tests stop at the engine: URL, connect_args and dialect loading.
"""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from sqlalchemy import text

from airflow_provider_jetbase.hooks.jetbase import JetbaseHook
from tests.conftest import require_module

PASSPHRASE = "sf-key-passphrase"


def define_connection(monkeypatch: pytest.MonkeyPatch, value: str | dict[str, Any]) -> str:
    conn_id = f"jb_cloud_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}", value if isinstance(value, str) else json.dumps(value)
    )
    return conn_id


@pytest.fixture(scope="module")
def rsa_key() -> RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: RSAPrivateKey, passphrase: str | None) -> str:
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc).decode()


def _snowflake_conn(**extra: Any) -> dict[str, Any]:
    return {
        "conn_type": "snowflake",
        "login": "svc_jetbase",
        "schema": "PUBLIC",
        "extra": {
            "account": "xy12345",
            "region": "eu-west-1",
            "database": "ANALYTICS",
            "warehouse": "WH",
            **extra,
        },
    }


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
@pytest.mark.parametrize("form", ["pem", "base64", "file"])
def test_snowflake_key_pair_engine_runs_queries_on_fakesnow(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, rsa_key: RSAPrivateKey, form: str, encrypted: bool
) -> None:
    fakesnow = require_module("fakesnow")
    pem = _pem(rsa_key, PASSPHRASE if encrypted else None)
    extra: dict[str, Any] = {}
    if form == "pem":
        extra["private_key_content"] = pem
    elif form == "base64":
        extra["private_key_content"] = base64.b64encode(pem.encode()).decode()
    else:
        key_path = tmp_path / "rsa_key.p8"
        key_path.write_text(pem)
        extra["private_key_file"] = str(key_path)
    if encrypted:
        extra["private_key_passphrase"] = PASSPHRASE
    hook = JetbaseHook(define_connection(monkeypatch, _snowflake_conn(**extra)))
    spec = hook.get_engine_spec()
    key = serialization.load_der_private_key(spec.connect_args["private_key"], password=None)
    assert isinstance(key, RSAPrivateKey) and key.private_numbers() == rsa_key.private_numbers()
    assert spec.url.password is None
    with fakesnow.patch():
        engine = hook.get_sqlalchemy_engine()
        try:
            with engine.begin() as conn:
                assert conn.execute(text("SELECT current_database(), current_schema()")).one() == (
                    "ANALYTICS",
                    "PUBLIC",
                )
                conn.execute(text("CREATE TABLE jetbase_probe (version VARCHAR)"))
                conn.execute(text("INSERT INTO jetbase_probe VALUES ('1.2')"))
                assert conn.execute(text("SELECT version FROM jetbase_probe")).scalar() == "1.2"
        finally:
            engine.dispose()


def test_snowflake_password_auth_and_test_connection_on_fakesnow(monkeypatch: pytest.MonkeyPatch) -> None:
    fakesnow = require_module("fakesnow")
    conn = {**_snowflake_conn(), "password": "sf-password-123"}
    hook = JetbaseHook(define_connection(monkeypatch, conn))
    assert hook.get_dialect_name() == "snowflake"
    assert hook.get_sqlalchemy_url().password == "sf-password-123"
    with fakesnow.patch():
        ok, message = hook.test_connection()
    assert ok, message
    assert "sf-password-123" not in message


def test_snowflake_via_jetbase_type_and_env_key(
    monkeypatch: pytest.MonkeyPatch, rsa_key: RSAPrivateKey
) -> None:
    fakesnow = require_module("fakesnow")
    conn = {
        "conn_type": "jetbase",
        "extra": {"sqlalchemy_url": "snowflake://svc@xy12345/DB/PUBLIC?warehouse=WH"},
    }
    environ = {
        "JETBASE_SNOWFLAKE_PRIVATE_KEY": _pem(rsa_key, PASSPHRASE),
        "JETBASE_SNOWFLAKE_PRIVATE_KEY_PASSWORD": PASSPHRASE,
    }
    hook = JetbaseHook(define_connection(monkeypatch, conn), environ=environ)
    assert hook.get_engine_spec().connect_args["private_key"] == rsa_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with fakesnow.patch():
        ok, message = hook.test_connection()
    assert ok, message


def test_databricks_engine_from_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = {
        "conn_type": "databricks",
        "host": "https://adb-1234567890123456.7.azuredatabricks.net",
        "password": "dapi-test-token-1234",
        "extra": {"http_path": "/sql/1.0/warehouses/abc", "catalog": "main", "schema": "ops"},
    }
    hook = JetbaseHook(define_connection(monkeypatch, conn))
    engine = hook.get_sqlalchemy_engine()
    assert engine.dialect.name == "databricks"
    assert engine.url.host == "adb-1234567890123456.7.azuredatabricks.net"
    assert dict(engine.url.query) == {
        "http_path": "/sql/1.0/warehouses/abc",
        "catalog": "main",
        "schema": "ops",
    }
    engine.dispose()


def test_clickhouse_engine_from_uri_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = JetbaseHook(define_connection(monkeypatch, "clickhouse://default:ch-pass-123@ch.internal"))
    engine = hook.get_sqlalchemy_engine()
    assert engine.dialect.name == "clickhouse"
    assert (
        engine.url.render_as_string(hide_password=False)
        == "clickhouse://default:ch-pass-123@ch.internal:8123/default"
    )
    engine.dispose()
