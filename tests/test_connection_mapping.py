"""Connection fields -> URL + connect_args, for every connection type, and every error case.

Real-server engine tests (PostgreSQL, MariaDB, SQLite) are in test_hook.py; this module checks the
pure mapping, plus dialect loading for the cloud databases (no cloud service is contacted here).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from sqlalchemy import create_engine, make_url

from airflow_provider_jetbase.connection_mapping import (
    JETBASE_KEY_ENV,
    JETBASE_KEY_PASSWORD_ENV,
    SUPPORTED_CONN_TYPES,
    ConnectionConfigError,
    ConnectionFields,
    EngineSpec,
    build_engine_spec,
    search_path_option,
)

KEY_PASSPHRASE = "key-passphrase-42"


def spec(
    conn_type: str, conn_id: str = "my_conn", environ: dict[str, str] | None = None, **kw: Any
) -> EngineSpec:
    return build_engine_spec(
        ConnectionFields(conn_id=conn_id, conn_type=conn_type, **kw), environ=environ or {}
    )


def config_error(conn_type: str, conn_id: str = "bad_conn", **kw: Any) -> ConnectionConfigError:
    with pytest.raises(ConnectionConfigError) as info:
        spec(conn_type, conn_id=conn_id, **kw)
    return info.value


@pytest.fixture(scope="module")
def rsa_key() -> RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: RSAPrivateKey, passphrase: str | None = None) -> str:
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc).decode()


def der(key: RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_supported_types() -> None:
    assert set(SUPPORTED_CONN_TYPES) == {
        "postgres",
        "mysql",
        "sqlite",
        "snowflake",
        "databricks",
        "clickhouse",
        "jetbase",
    }


# ------------------------------------------------------------------------------------------ postgres
def test_postgres_fields_and_libpq_extras() -> None:
    s = spec(
        "postgres",
        host="db.example.com",
        login="etl",
        password="p@ss:w/rd",
        schema="warehouse",
        port=6543,
        extra={
            "sslmode": "verify-full",
            "sslrootcert": "/etc/ca.pem",
            "connect_timeout": 7,
            "application_name": "jetbase",
            "extra__postgres__sslcert": "/etc/client.pem",  # legacy prefixed key
            "cursor": "dictcursor",  # official provider's: declared as not applicable
            "iam": False,  # token auth off: nothing to refuse
        },
    )
    assert s.dialect == "postgresql"
    assert s.url.drivername == "postgresql+psycopg2"
    assert (s.url.host, s.url.port, s.url.database, s.url.username, s.url.password) == (
        "db.example.com",
        6543,
        "warehouse",
        "etl",
        "p@ss:w/rd",
    )
    assert s.connect_args == {
        "sslmode": "verify-full",
        "sslrootcert": "/etc/ca.pem",
        "sslcert": "/etc/client.pem",
        "connect_timeout": 7,
        "application_name": "jetbase",
    }
    assert "p@ss:w/rd" in s.secrets
    assert s.url.render_as_string(hide_password=False) in s.secrets
    assert "p@ss:w/rd" not in s.safe_url()


@pytest.mark.parametrize(
    ("extra", "driver"),
    [
        ({}, "postgresql+psycopg2"),
        ({"driver": "psycopg"}, "postgresql+psycopg"),
        ({"driver": "psycopg3"}, "postgresql+psycopg"),
        ({"sqlalchemy_scheme": "postgresql+psycopg"}, "postgresql+psycopg"),
    ],
)
def test_postgres_driver_choice(extra: dict[str, str], driver: str) -> None:
    assert spec("postgres", host="h", extra=extra).url.drivername == driver


def test_postgres_schema_becomes_a_libpq_option_merged_with_user_options() -> None:
    s = spec(
        "postgres", host="h", extra={"postgres_schema": "analytics", "options": "-cstatement_timeout=5000"}
    )
    assert s.connect_args["options"] == "-cstatement_timeout=5000 -csearch_path=analytics"
    s = spec("postgres", host="h", extra={"search_path": "a, b"})
    assert s.connect_args["options"] == "-csearch_path=a,b"
    # postgres_schema wins over search_path when both are present
    s = spec("postgres", host="h", extra={"postgres_schema": "first", "search_path": "second"})
    assert s.connect_args["options"] == "-csearch_path=first"


@pytest.mark.parametrize(
    ("value", "option"),
    [
        ("public", "-csearch_path=public"),
        ("$user, public", "-csearch_path=$user,public"),
        ("My Schema", '-csearch_path="My\\ Schema"'),
        ('we"ird', '-csearch_path="we""ird"'),
        ('"Already Quoted"', '-csearch_path="Already\\ Quoted"'),
        ("public; DROP TABLE x", '-csearch_path="public;\\ DROP\\ TABLE\\ x"'),
        ("back\\slash", '-csearch_path="back\\\\slash"'),
    ],
)
def test_search_path_quoting(value: str, option: str) -> None:
    assert search_path_option(value, "c", "postgres_schema") == option


@pytest.mark.parametrize("value", ["a\nb", "a,,b", " , ", "x\x00"])
def test_search_path_rejects_unusable_values(value: str) -> None:
    with pytest.raises(ConnectionConfigError) as info:
        search_path_option(value, "pg_conn", "postgres_schema")
    assert "'pg_conn'" in str(info.value) and "'postgres_schema'" in str(info.value)


# --------------------------------------------------------------------------------------------- mysql
def test_mysql_fields_and_extras() -> None:
    s = spec(
        "mysql",
        host="127.0.0.1",
        login="root",
        password="pw-123",
        schema="shop",
        port=3307,
        extra={
            "charset": "utf8mb4",
            "ssl": '{"ca": "/etc/ca.pem", "check_hostname": false}',
            "connect_timeout": "9",
            "local_infile": "true",
            "cursor": "sscursor",  # official provider's: not a PyMySQL argument
        },
    )
    assert s.dialect == "mysql"
    assert s.url.drivername == "mysql+pymysql"
    assert (s.url.host, s.url.port, s.url.database, s.url.username) == ("127.0.0.1", 3307, "shop", "root")
    assert s.connect_args == {
        "charset": "utf8mb4",
        "ssl": {"ca": "/etc/ca.pem", "check_hostname": False},
        "connect_timeout": 9,
        "local_infile": True,
        "password": b"pw-123",
    }


@pytest.mark.parametrize(
    ("conn_type", "fields"),
    [
        ("mysql", {"host": "h", "login": "u", "password": "pässwörd✓"}),
        ("jetbase", {"password": "pässwörd✓", "extra": {"sqlalchemy_url": "mysql+pymysql://u@h/db"}}),
        ("jetbase", {"extra": {"sqlalchemy_url": "mysql+pymysql://u:p%C3%A4ssw%C3%B6rd%E2%9C%93@h/db"}}),
    ],
)
def test_mysql_password_reaches_pymysql_as_utf8_bytes(conn_type: str, fields: dict[str, Any]) -> None:
    # PyMySQL would encode a str as Latin-1; the URL keeps the str for display (***) and callers.
    s = spec(conn_type, **fields)
    assert s.connect_args["password"] == "pässwörd✓".encode()
    assert s.url.password == "pässwörd✓" and "pässwörd✓" in s.secrets


def test_mysql_without_password_passes_none() -> None:
    assert "password" not in spec("mysql", host="h", login="u").connect_args
    assert spec("jetbase", extra={"sqlalchemy_url": "mysql+pymysql://u@h/db"}).connect_args == {}
    # Other MySQL drivers take their own password forms: left to them.
    fields = ConnectionFields("c", "jetbase", extra={"sqlalchemy_url": "mysql+mysqldb://u:pw@h/db"})
    assert build_engine_spec(fields, environ={}, check_driver=False).connect_args == {}


def test_mysql_ssl_mode_and_unix_socket() -> None:
    assert spec("mysql", host="h", extra={"ssl_mode": "DISABLED"}).connect_args == {"ssl_disabled": True}
    assert spec("mysql", host="h", extra={"ssl_mode": "required"}).connect_args == {
        "ssl": {"check_hostname": False}
    }
    s = spec("mysql", extra={"unix_socket": "/run/mysqld/mysqld.sock"}, schema="db")
    assert s.url.host is None and s.connect_args == {"unix_socket": "/run/mysqld/mysqld.sock"}


# -------------------------------------------------------------------------------------------- sqlite
@pytest.mark.parametrize(
    ("fields", "database"),
    [
        ({"host": "/var/data/app.db"}, "/var/data/app.db"),
        ({"host": ":memory:"}, ":memory:"),
        ({"schema": "/abs/x.db"}, "/abs/x.db"),  # Airflow's parse of sqlite:////abs/x.db
    ],
)
def test_sqlite_paths(fields: dict[str, Any], database: str) -> None:
    s = spec("sqlite", **fields)
    assert s.url.drivername == "sqlite" and s.url.database == database
    assert s.dialect == "sqlite" and s.connect_args == {}


@pytest.mark.parametrize(
    ("conn_type", "fields", "field"),
    [
        ("sqlite", {"host": "relative/app.db"}, "host"),
        ("sqlite", {"host": "~/app.db"}, "host"),  # not expanded by sqlite3 either
        ("sqlite", {"schema": "rel.db"}, "schema"),  # Airflow's parse of sqlite:///rel.db
        ("jetbase", {"extra": {"sqlalchemy_url": "sqlite:///rel.db"}}, "sqlalchemy_url"),
        ("jetbase", {"host": "sqlite+pysqlite:///data/rel.db"}, "host"),
    ],
)
def test_sqlite_relative_paths_are_refused(conn_type: str, fields: dict[str, Any], field: str) -> None:
    # The worker's, the triggerer's and `airflow tasks test`'s current directories differ.
    err = config_error(conn_type, **fields)
    _assert_helpful(err, field)
    assert "relative" in str(err) and "absolute path" in str(err), str(err)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite:////abs/x.db"])
def test_sqlite_urls_that_need_no_directory(url: str) -> None:
    assert spec("jetbase", extra={"sqlalchemy_url": url}).dialect == "sqlite"


# ----------------------------------------------------------------------------------------- snowflake
SF_EXTRA = {"account": "xy12345", "warehouse": "COMPUTE_WH", "database": "ANALYTICS", "role": "LOADER"}


def test_snowflake_password_auth_url() -> None:
    s = spec("snowflake", login="svc_user", password="sf-p@ss/word", schema="PUBLIC", extra=SF_EXTRA)
    assert s.dialect == "snowflake"
    assert s.url.drivername == "snowflake"
    assert s.url.host == "xy12345"
    assert s.url.database == "ANALYTICS/PUBLIC"
    assert s.url.username == "svc_user" and s.url.password == "sf-p@ss/word"
    assert dict(s.url.query) == {"warehouse": "COMPUTE_WH", "role": "LOADER"}
    assert "private_key" not in s.connect_args
    assert "sf-p@ss/word" in s.secrets
    # The snowflake dialect reads account/database/schema back from this URL.
    engine = create_engine(s.url, connect_args=s.connect_args)
    _, opts = engine.dialect.create_connect_args(s.url)
    assert (opts["account"], opts["database"], opts["schema"], opts["warehouse"], opts["role"]) == (
        "xy12345",
        "ANALYTICS",
        "PUBLIC",
        "COMPUTE_WH",
        "LOADER",
    )
    assert opts["password"] == "sf-p@ss/word" and opts["user"] == "svc_user"
    # Same as snowflake-sqlalchemy's own URL builder (the official provider's way).
    from snowflake.sqlalchemy import URL as snowflake_url

    official = make_url(
        snowflake_url(
            account="xy12345",
            user="svc_user",
            password="sf-p@ss/word",
            database="ANALYTICS",
            schema="PUBLIC",
            warehouse="COMPUTE_WH",
            role="LOADER",
        )
    )
    assert official == s.url


def test_snowflake_region_legacy_keys_and_connect_args() -> None:
    s = spec(
        "snowflake",
        login="u",
        password="pw-long-enough",
        extra={
            "extra__snowflake__account": "xy12345",
            "extra__snowflake__region": "eu-west-1",
            "extra__snowflake__database": "DB",
            "extra__snowflake__warehouse": "WH",
            "authenticator": "snowflake",
            "insecure_mode": "true",
            "session_parameters": '{"QUERY_TAG": "jetbase"}',
            "proxy_host": "proxy",
            "proxy_port": "8080",
            "proxy_password": "proxy-secret",
        },
    )
    assert s.url.host == "xy12345.eu-west-1"
    assert s.url.database == "DB"
    assert dict(s.url.query) == {"warehouse": "WH", "authenticator": "snowflake"}
    assert s.connect_args == {
        "insecure_mode": True,
        "session_parameters": {"QUERY_TAG": "jetbase"},
        "proxy_host": "proxy",
        "proxy_port": 8080,
        "proxy_password": "proxy-secret",
    }
    assert "proxy-secret" in s.secrets
    engine = create_engine(s.url, connect_args=s.connect_args)
    _, opts = engine.dialect.create_connect_args(s.url)
    assert opts["host"] == "xy12345.eu-west-1.snowflakecomputing.com" and opts["account"] == "xy12345"


def test_snowflake_custom_endpoint_host_port_protocol() -> None:
    """The official hook's host/port extras, and our protocol extra, become connect arguments
    (snowflake-sqlalchemy 1.x refuses them in the URL); tests/test_interop_snowflake.py reaches a
    server with them."""
    extra = {"account": "acc", "host": "127.0.0.1", "port": "8765", "protocol": "HTTP"}
    s = spec("snowflake", login="u", password="pw-long-enough", extra=extra)
    assert s.connect_args == {"host": "127.0.0.1", "port": 8765, "protocol": "http"}
    assert s.url.host == "acc" and not s.url.query
    with pytest.raises(ConnectionConfigError, match="protocol"):
        spec("snowflake", login="u", password="pw-long-enough", extra={**extra, "protocol": "ftp"})


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
@pytest.mark.parametrize("form", ["pem", "base64", "file"])
@pytest.mark.parametrize("passphrase_in", ["private_key_passphrase", "password"])
def test_snowflake_key_pair_variants(
    rsa_key: RSAPrivateKey, tmp_path: Path, form: str, encrypted: bool, passphrase_in: str
) -> None:
    text = pem(rsa_key, KEY_PASSPHRASE if encrypted else None)
    extra: dict[str, Any] = dict(SF_EXTRA)
    if form == "pem":
        extra["private_key_content"] = text
    elif form == "base64":
        extra["private_key_content"] = base64.b64encode(text.encode()).decode()
    else:
        key_file = tmp_path / "rsa_key.p8"
        key_file.write_text(text)
        extra["private_key_file"] = str(key_file)
    password = None
    if encrypted and passphrase_in == "private_key_passphrase":
        extra["private_key_passphrase"] = KEY_PASSPHRASE
    elif encrypted:
        password = KEY_PASSPHRASE  # the official provider's rule: password = key passphrase
    s = spec("snowflake", login="svc_user", password=password, schema="PUBLIC", extra=extra)
    assert s.connect_args["private_key"] == der(rsa_key)
    loaded = serialization.load_der_private_key(s.connect_args["private_key"], password=None)
    assert isinstance(loaded, RSAPrivateKey)
    assert loaded.private_numbers() == rsa_key.private_numbers()
    assert s.url.password is None  # key-pair auth: never a password in the URL
    assert s.url.username == "svc_user"
    if encrypted:
        assert KEY_PASSPHRASE in s.secrets
    if form != "file":
        assert extra["private_key_content"] in s.secrets
    assert base64.b64encode(der(rsa_key)).decode() in s.secrets


def test_snowflake_unencrypted_key_with_password_field_set(rsa_key: RSAPrivateKey) -> None:
    s = spec(
        "snowflake",
        login="u",
        password="old-password",
        extra={**SF_EXTRA, "private_key_content": pem(rsa_key)},
    )
    assert s.connect_args["private_key"] == der(rsa_key)
    assert s.url.password is None


def test_snowflake_jetbase_env_fallback(rsa_key: RSAPrivateKey) -> None:
    environ = {JETBASE_KEY_ENV: pem(rsa_key, KEY_PASSPHRASE), JETBASE_KEY_PASSWORD_ENV: KEY_PASSPHRASE}
    s = spec("snowflake", login="u", extra=SF_EXTRA, environ=environ)
    assert s.connect_args["private_key"] == der(rsa_key)
    assert KEY_PASSPHRASE in s.secrets
    # A password on the connection means password auth: the env key is not used.
    s = spec("snowflake", login="u", password="pw-auth", extra=SF_EXTRA, environ=environ)
    assert "private_key" not in s.connect_args and s.url.password == "pw-auth"
    # Neither: no key, no password (e.g. an externalbrowser authenticator).
    s = spec("snowflake", login="u", extra=SF_EXTRA, environ={})
    assert "private_key" not in s.connect_args and s.url.password is None


def test_snowflake_env_fallback_wrong_password_names_the_variable(rsa_key: RSAPrivateKey) -> None:
    environ = {JETBASE_KEY_ENV: pem(rsa_key, KEY_PASSPHRASE), JETBASE_KEY_PASSWORD_ENV: "wrong-passphrase"}
    err = config_error("snowflake", login="u", extra=SF_EXTRA, environ=environ)
    assert err.field == JETBASE_KEY_PASSWORD_ENV
    assert "wrong-passphrase" not in str(err)


def test_snowflake_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulates an environment without snowflake-sqlalchemy: importing it fails.
    import sys

    from sqlalchemy.dialects import registry

    monkeypatch.setitem(sys.modules, "snowflake.sqlalchemy", None)
    monkeypatch.setattr(registry, "impls", {k: v for k, v in registry.impls.items() if k != "snowflake"})
    err = config_error("snowflake", login="u", password="sf-secret-pw", extra=SF_EXTRA)
    assert 'pip install "airflow-provider-jetbase[snowflake]"' in str(err)
    assert "'bad_conn'" in str(err)
    assert "sf-secret-pw" not in str(err)


# ---------------------------------------------------------------------------------------- databricks
def test_databricks_url() -> None:
    s = spec(
        "databricks",
        host="https://adb-1234567890123456.7.azuredatabricks.net/",
        password="dapi0123456789abcdef",
        extra={"http_path": "/sql/1.0/warehouses/abc123", "catalog": "main", "schema": "default"},
    )
    assert s.dialect == "databricks"
    assert s.url.drivername == "databricks"
    assert s.url.host == "adb-1234567890123456.7.azuredatabricks.net"
    assert s.url.username == "token" and s.url.password == "dapi0123456789abcdef"
    assert dict(s.url.query) == {
        "http_path": "/sql/1.0/warehouses/abc123",
        "catalog": "main",
        "schema": "default",
    }
    assert "dapi0123456789abcdef" in s.secrets
    engine = create_engine(s.url, connect_args=s.connect_args)
    assert engine.dialect.name == "databricks"
    _, kwargs = engine.dialect.create_connect_args(s.url)
    assert kwargs["server_hostname"] == "adb-1234567890123456.7.azuredatabricks.net"
    assert kwargs["http_path"] == "/sql/1.0/warehouses/abc123"
    assert kwargs["access_token"] == "dapi0123456789abcdef"
    assert kwargs["catalog"] == "main" and kwargs["schema"] == "default"


def test_databricks_token_from_extra_and_schema_field() -> None:
    s = spec(
        "databricks",
        host="dbc-1.cloud.databricks.com",
        schema="bronze",
        extra={"token": "dapi-extra-token", "extra__databricks__http_path": "/sql/1.0/warehouses/x"},
    )
    assert s.url.password == "dapi-extra-token"
    assert dict(s.url.query) == {"http_path": "/sql/1.0/warehouses/x", "schema": "bronze"}


# ---------------------------------------------------------------------------------------- clickhouse
def test_clickhouse_defaults_and_dialect() -> None:
    s = spec("clickhouse", host="ch.local", login="default", password="ch-secret")
    assert (
        s.url.render_as_string(hide_password=False) == "clickhouse://default:ch-secret@ch.local:8123/default"
    )
    assert s.dialect == "clickhouse"
    engine = create_engine(s.url, connect_args=s.connect_args)
    assert engine.dialect.name == "clickhouse"
    assert engine.dialect.driver == "http"
    s = spec("clickhouse", host="ch.local", port=9000, schema="analytics", extra={"protocol": "https"})
    assert (s.url.port, s.url.database, dict(s.url.query)) == (9000, "analytics", {"protocol": "https"})


# ------------------------------------------------------------------------------------------- jetbase
def test_jetbase_url_verbatim_and_overrides() -> None:
    s = spec("jetbase", extra={"sqlalchemy_url": "mysql+pymysql://app:url-pw@db:3306/shop?charset=utf8mb4"})
    assert (
        s.url.render_as_string(hide_password=False)
        == "mysql+pymysql://app:url-pw@db:3306/shop?charset=utf8mb4"
    )
    assert s.dialect == "mysql"
    assert "url-pw" in s.secrets
    s = spec(
        "jetbase",
        login="override_user",
        password="override-pw",
        extra={"sqlalchemy_url": "mysql+pymysql://app:url-pw@db:3306/shop"},
    )
    assert (s.url.username, s.url.password) == ("override_user", "override-pw")
    # the host field works too, and postgres URLs get the search_path option
    s = spec("jetbase", host="postgresql+psycopg://u@h/db", extra={"postgres_schema": "stage"})
    assert s.url.drivername == "postgresql+psycopg" and s.connect_args == {"options": "-csearch_path=stage"}
    s = spec("jetbase", extra={"extra__jetbase__sqlalchemy_url": "sqlite:///:memory:"})
    assert s.dialect == "sqlite"


def test_jetbase_snowflake_url_with_key_pair(rsa_key: RSAPrivateKey) -> None:
    s = spec(
        "jetbase",
        extra={
            "sqlalchemy_url": "snowflake://svc@xy12345.us-east-1/DB/PUBLIC?warehouse=WH",
            "private_key_content": base64.b64encode(pem(rsa_key, KEY_PASSPHRASE).encode()).decode(),
            "private_key_passphrase": KEY_PASSPHRASE,
        },
    )
    assert s.dialect == "snowflake"
    assert s.connect_args["private_key"] == der(rsa_key)
    assert s.url.password is None and s.url.host == "xy12345.us-east-1"
    # Jetbase's own env vars, as in Jetbase's guide, for a URL without a password:
    s = spec(
        "jetbase",
        extra={"sqlalchemy_url": "snowflake://svc@xy12345/DB/PUBLIC?warehouse=WH"},
        environ={JETBASE_KEY_ENV: pem(rsa_key)},
    )
    assert s.connect_args["private_key"] == der(rsa_key)
    # A password in the URL means password auth.
    s = spec(
        "jetbase",
        extra={"sqlalchemy_url": "snowflake://svc:url-pw@xy12345/DB/PUBLIC"},
        environ={JETBASE_KEY_ENV: pem(rsa_key)},
    )
    assert "private_key" not in s.connect_args and s.url.password == "url-pw"


# -------------------------------------------------------------------------------------------- errors
def _assert_helpful(err: ConnectionConfigError, field: str, *secrets: str) -> None:
    message = str(err)
    assert "'bad_conn'" in message, message
    assert err.conn_id == "bad_conn"
    assert err.field == field and f"'{field}'" in message, message
    for secret in secrets:
        assert secret not in message, message


def test_unknown_connection_type_lists_supported() -> None:
    err = config_error("oracle", host="h", password="oracle-secret")
    _assert_helpful(err, "conn_type", "oracle-secret")
    for supported in SUPPORTED_CONN_TYPES:
        assert supported in str(err)


@pytest.mark.parametrize(
    ("conn_type", "fields", "field"),
    [
        ("postgres", {"password": "pg-secret-1"}, "host"),
        ("mysql", {"password": "my-secret-1"}, "host"),
        ("sqlite", {}, "host"),
        ("clickhouse", {"password": "ch-secret-1"}, "host"),
        ("databricks", {"password": "dapi-secret-1", "extra": {"http_path": "/p"}}, "host"),
        ("postgres", {"host": "h", "port": 70000, "password": "pg-secret-2"}, "port"),
        ("postgres", {"host": "h", "port": "abc", "password": "pg-secret-3"}, "port"),
        ("postgres", {"host": "h", "password": "pg-secret-4", "extra": {"driver": "pg8000"}}, "driver"),
        ("databricks", {"host": "h", "password": "dapi-secret-2"}, "http_path"),
        ("databricks", {"host": "h", "extra": {"http_path": "/p"}}, "password"),
        ("snowflake", {"login": "u", "password": "sf-secret-1"}, "account"),
        ("snowflake", {"password": "sf-secret-2", "schema": "S", "extra": {"account": "a"}}, "database"),
        ("jetbase", {"password": "jb-secret-1"}, "sqlalchemy_url"),
        ("jetbase", {"extra": {"sqlalchemy_url": "not a url with jb-secret-2"}}, "sqlalchemy_url"),
        ("jetbase", {"extra": {"sqlalchemy_url": "nosuchdb://u:jb-secret-3@h/db"}}, "sqlalchemy_url"),
        ("mysql", {"host": "h", "extra": {"ssl": "{not json"}}, "ssl"),
        ("mysql", {"host": "h", "extra": {"connect_timeout": "soon"}}, "connect_timeout"),
    ],
)
def test_config_errors_name_the_field_not_the_secret(
    conn_type: str, fields: dict[str, Any], field: str
) -> None:
    err = config_error(conn_type, **fields)
    secrets = [v for v in (fields.get("password"),) if v]
    secrets += ["jb-secret-2", "jb-secret-3"]
    _assert_helpful(err, field, *secrets)


def test_missing_driver_names_the_dbapi_and_hint() -> None:
    err = config_error("jetbase", extra={"sqlalchemy_url": "postgresql+pg8000://u:pg-secret@h/db"})
    _assert_helpful(err, "sqlalchemy_url", "pg-secret")
    assert "pg8000" in str(err) and "not installed" in str(err)


def test_snowflake_key_errors(rsa_key: RSAPrivateKey, tmp_path: Path) -> None:
    encrypted = pem(rsa_key, KEY_PASSPHRASE)
    b64 = base64.b64encode(encrypted.encode()).decode()
    key_file = tmp_path / "key.p8"
    key_file.write_text(encrypted)
    empty = tmp_path / "empty.p8"
    empty.write_text("")
    cases: list[tuple[dict[str, Any], str | None, str]] = [
        ({"private_key_content": encrypted, "private_key_file": str(key_file)}, None, "private_key_content"),
        ({"private_key_file": str(tmp_path / "missing.p8")}, None, "private_key_file"),
        ({"private_key_file": str(empty)}, None, "private_key_file"),
        (
            {"private_key_content": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"},
            None,
            "private_key_content",
        ),
        (
            {"private_key_content": b64, "private_key_passphrase": "wrong-passphrase"},
            None,
            "private_key_passphrase",
        ),
        ({"private_key_content": encrypted}, "wrong-password-field", "password (key passphrase)"),
        ({"private_key_content": encrypted}, None, "password (key passphrase)"),
        (
            {"private_key_content": base64.b64encode(b"definitely not a key").decode()},
            None,
            "private_key_content",
        ),
    ]
    for extra, password, field in cases:
        err = config_error("snowflake", login="u", password=password, extra={**SF_EXTRA, **extra})
        message = str(err)
        assert "'bad_conn'" in message and field in message, message
        for secret in (
            KEY_PASSPHRASE,
            "wrong-passphrase",
            "wrong-password-field",
            b64[:40],
            encrypted.splitlines()[1],
        ):
            assert secret not in message, message


def test_jetbase_url_with_password_warns_without_the_password(caplog: pytest.LogCaptureFixture) -> None:
    fields = ConnectionFields(
        conn_id="url_pw", conn_type="jetbase", extra={"sqlalchemy_url": "postgresql://u:s3cr3t-pw@h/db"}
    )
    with caplog.at_level("WARNING", logger="airflow_provider_jetbase.connection_mapping"):
        build_engine_spec(fields)
    text = caplog.text
    assert "url_pw" in text and "sqlalchemy_url" in text and "password field" in text
    assert "s3cr3t-pw" not in text
    caplog.clear()
    with caplog.at_level("WARNING", logger="airflow_provider_jetbase.connection_mapping"):
        build_engine_spec(
            ConnectionFields(
                conn_id="no_pw", conn_type="jetbase", extra={"sqlalchemy_url": "postgresql://u@h/db"}
            )
        )
    assert "no_pw" not in caplog.text


# ------------------------------------------------------------- official-provider extras: refused
SECRET = "s3cr3t-Value-9"  # the password / client secret: never in an error


@pytest.mark.parametrize(
    ("conn_type", "base", "extra", "field"),
    [
        ("postgres", {"host": "h"}, {"iam": True}, "iam"),
        ("postgres", {"host": "h"}, {"iam": "true", "aws_conn_id": "aws_rds"}, "iam"),
        ("postgres", {"host": "h"}, {"aws_conn_id": "aws_rds"}, "aws_conn_id"),
        ("postgres", {"host": "h"}, {"azure_conn_id": "azure_pg"}, "azure_conn_id"),
        ("postgres", {"host": "h"}, {"redshift": True}, "redshift"),
        ("postgres", {"host": "h"}, {"redshift-serverless": "true"}, "redshift-serverless"),
        ("postgres", {"host": "h"}, {"cluster-identifier": "c1"}, "cluster-identifier"),
        ("postgres", {"host": "h"}, {"workgroup-name": "wg"}, "workgroup-name"),
        ("postgres", {"host": "h"}, {"extra__postgres__iam": True}, "extra__postgres__iam"),
        ("postgres", {"host": "h"}, {"sqlalchemy_query": {"not_libpq": "1"}}, "sqlalchemy_query.not_libpq"),
        ("postgres", {"host": "h"}, {"sqlalchemy_query": {"sslmode": ["a"]}}, "sqlalchemy_query.sslmode"),
        (
            "postgres",
            {"host": "h"},
            {"sslmode": "require", "sqlalchemy_query": {"sslmode": "disable"}},
            "sqlalchemy_query.sslmode",
        ),
        ("postgres", {"host": "h"}, {"sslmod": "require"}, "sslmod"),  # a typo is not dropped
        ("mysql", {"host": "h"}, {"client": "mysql-connector-python"}, "client"),
        ("mysql", {"host": "h"}, {"client": "mariadb"}, "client"),
        ("mysql", {"host": "h"}, {"iam": True}, "iam"),
        ("mysql", {"host": "h"}, {"aws_conn_id": "aws_rds"}, "aws_conn_id"),
        ("mysql", {"host": "h"}, {"ssl_verify_cert": True}, "ssl_verify_cert"),
        ("sqlite", {"host": "/tmp/x.db"}, {"mode": "ro"}, "mode"),
        ("snowflake", {"login": "client-id"}, {"authenticator": "oauth"}, "authenticator"),
        ("snowflake", {"login": "client-id"}, {"authenticator": "OAUTH"}, "authenticator"),
        ("snowflake", {"login": "u"}, {"authenticator": "externalbrowser"}, "authenticator"),
        ("snowflake", {"login": "u"}, {"authenticator": "https://evil.example.com"}, "authenticator"),
        ("snowflake", {"login": "client-id"}, {"refresh_token": "rt-xyz"}, "refresh_token"),
        ("snowflake", {"login": "client-id"}, {"grant_type": "client_credentials"}, "grant_type"),
        ("snowflake", {"login": "client-id"}, {"token_endpoint": "https://idp/token"}, "token_endpoint"),
        ("snowflake", {"login": "client-id"}, {"scope": "session:role:X"}, "scope"),
        ("snowflake", {"login": "client-id"}, {"azure_conn_id": "az"}, "azure_conn_id"),
        (
            "databricks",
            {"host": "h"},
            {"http_path": "/p", "use_azure_managed_identity": True},
            "use_azure_managed_identity",
        ),
        ("databricks", {"host": "h"}, {"http_path": "/p", "azure_tenant_id": "t"}, "azure_tenant_id"),
        (
            "databricks",
            {"host": "h"},
            {"http_path": "/p", "service_principal_oauth": "true"},
            "service_principal_oauth",
        ),
        ("databricks", {"host": "h"}, {"http_path": "/p", "federated_k8s": True}, "federated_k8s"),
        ("clickhouse", {"host": "h"}, {"compression": "lz4"}, "compression"),
        ("jetbase", {}, {"sqlalchemy_url": "mysql+pymysql://u@h/db", "sslmode": "require"}, "sslmode"),
        ("jetbase", {}, {"sqlalchemy_url": "postgresql://u@h/db", "iam": True}, "iam"),
        # Ignoring an extra the provider reads would connect otherwise than asked.
        ("postgres", {"host": "h"}, {"iam": True, "jetbase_ignore_extras": ["iam"]}, "jetbase_ignore_extras"),
        ("postgres", {"host": "h"}, {"jetbase_ignore_extras": {"a": 1}}, "jetbase_ignore_extras"),
    ],
)
def test_official_extras_not_honoured_are_refused_naming_the_field(
    conn_type: str, base: dict[str, Any], extra: dict[str, Any], field: str
) -> None:
    if conn_type == "snowflake":
        extra = {"account": "xy12345", **extra}
    err = config_error(conn_type, conn_id="shared_conn", password=SECRET, extra=extra, **base)
    assert err.field == field
    assert err.conn_id == "shared_conn"
    assert f"'{field}'" in str(err) and "'shared_conn'" in str(err)
    assert SECRET not in str(err) and SECRET not in repr(err) and SECRET not in repr(err.args)
    assert "rt-xyz" not in str(err)


def test_refusals_say_what_to_do_instead() -> None:
    iam = config_error("postgres", host="h", password=SECRET, extra={"iam": True})
    assert "password field" in iam.reason
    oauth = config_error(
        "snowflake", login="client-id", password=SECRET, extra={"account": "a", "refresh_token": "rt"}
    )
    assert "key-pair" in oauth.reason and "client secret" in oauth.reason
    client = config_error("mysql", host="h", extra={"client": "mysql-connector-python"})
    assert "mysqlclient" in client.reason
    unknown = config_error("postgres", host="h", extra={"threads": 4})
    assert "jetbase_ignore_extras" in unknown.reason


# ------------------------------------------------------------ official-provider extras: honoured
@pytest.mark.parametrize("value", [False, "false", "", None])
def test_postgres_token_auth_switched_off_is_not_refused(value: Any) -> None:
    s = spec("postgres", host="h", extra={"iam": value, "redshift": value, "cursor": "dictcursor"})
    assert s.connect_args == {}


def test_postgres_sqlalchemy_query_is_passed_to_the_driver_not_the_url() -> None:
    s = spec(
        "postgres",
        host="h",
        extra={
            "sqlalchemy_query": {"application_name": "etl", "sslpassword": "ssl-secret-1"},
            "options": "-cwork_mem=64MB",
            "postgres_schema": "staging",
            "application_name": "etl",  # same value twice: not a conflict
        },
    )
    assert s.connect_args == {
        "application_name": "etl",
        "sslpassword": "ssl-secret-1",
        "options": "-cwork_mem=64MB -csearch_path=staging",
    }
    assert dict(s.url.query) == {}
    assert "ssl-secret-1" in s.secrets and "ssl-secret-1" not in s.safe_url()
    # The official hook also accepts the query as a JSON string (from a URI's extras).
    text = spec("postgres", host="h", extra={"sqlalchemy_query": '{"connect_timeout": 4}'})
    assert text.connect_args == {"connect_timeout": 4}


@pytest.mark.parametrize("client", ["mysqlclient", "pymysql", "PyMySQL", ""])
def test_mysql_clients_taking_mysqldb_arguments_use_pymysql(client: str) -> None:
    s = spec("mysql", host="h", extra={"client": client, "charset": "utf8mb4"})
    assert s.url.drivername == "mysql+pymysql"
    assert s.connect_args == {"charset": "utf8mb4"}


@pytest.mark.parametrize(
    "authenticator", ["snowflake", "SNOWFLAKE_JWT", "username_password_mfa", "https://acme.okta.com/"]
)
def test_snowflake_authenticators_needing_no_token_are_passed(authenticator: str) -> None:
    s = spec("snowflake", login="u", password="pw", extra={"account": "a", "authenticator": authenticator})
    assert s.url.query["authenticator"] == authenticator


def test_databricks_extra_host_and_session_configuration() -> None:
    s = spec(
        "databricks",
        host="ignored.example.com",
        password="dapi-1",
        extra={
            "host": "https://dbc-9.cloud.databricks.com/",
            "http_path": "/sql/1.0/warehouses/w",
            "session_configuration": {"spark.sql.ansi.enabled": "true"},
        },
    )
    assert s.url.host == "dbc-9.cloud.databricks.com"
    assert s.connect_args == {"session_configuration": {"spark.sql.ansi.enabled": "true"}}
    engine = create_engine(s.url, connect_args=s.connect_args)
    assert engine.dialect.name == "databricks"


@pytest.mark.parametrize("names", [["threads", "profile"], "threads, profile", '["threads", "profile"]'])
def test_other_tools_extras_named_in_jetbase_ignore_extras_are_left_alone(names: Any) -> None:
    s = spec(
        "postgres",
        host="h",
        extra={"threads": 4, "profile": "dbt", "sslmode": "require", "jetbase_ignore_extras": names},
    )
    assert s.connect_args == {"sslmode": "require"}


def test_legacy_form_keys_of_another_type_are_left_alone_and_empty_values_are_unset() -> None:
    s = spec(
        "postgres",
        host="h",
        extra={
            "extra__snowflake__account": "left-from-a-type-change",
            "extra__postgres__sslmode": "require",
            "unknown_but_empty": "",
            "unknown_but_null": None,
        },
    )
    assert s.connect_args == {"sslmode": "require"}


def test_inventory_covers_every_extra_the_installed_postgres_hook_reads() -> None:
    # The installed official provider names the extras it keeps from libpq; each one must have a
    # rule here (honoured or refused), or a provider upgrade could bring a silently dropped extra.
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    from airflow_provider_jetbase.connection_extras import POSTGRES_EXTRAS

    assert set(PostgresHook.ignored_extra_options) <= set(POSTGRES_EXTRAS)


def test_jetbase_form_fields_left_empty_are_accepted_for_any_backend() -> None:
    # The jetbase type's form saves every field, empty ones included, whatever the URL's backend.
    form = {
        "postgres_schema": "",
        "private_key_content": "",
        "private_key_file": "",
        "private_key_passphrase": "",
    }
    s = spec("jetbase", extra={"sqlalchemy_url": "mysql+pymysql://u@h/db", **form})
    assert s.url.drivername == "mysql+pymysql"
    err = config_error("jetbase", extra={"sqlalchemy_url": "mysql+pymysql://u@h/db", "postgres_schema": "x"})
    assert err.field == "postgres_schema"


def test_the_first_mapping_claiming_a_connection_builds_it_and_none_claiming_is_refused() -> None:
    from sqlalchemy.engine import URL

    from airflow_provider_jetbase.connection_extras import honoured
    from airflow_provider_jetbase.connection_mapping import (
        ConnectionMapping,
        _Built,
        _claiming_mapping,
        _Reader,
    )

    def build(drivername: str) -> Any:
        return lambda r: _Built(URL.create(drivername, host=r.host()))

    extras = {"iam": honoured("token auth"), "pat": honoured("token")}
    by_token = ConnectionMapping("pgx", "postgresql", build("postgresql+a"), extras, requires=("iam",))
    by_pat = ConnectionMapping("pgx", "postgresql", build("postgresql+b"), extras, requires=("pat",))
    mappings = (by_token, by_pat)

    def claimer(extra: dict[str, Any]) -> ConnectionMapping:
        return _claiming_mapping(
            _Reader(ConnectionFields("c", "pgx", host="h", extra=extra), {}), "pgx", mappings
        )

    assert claimer({"iam": True, "pat": "x"}) is by_token
    assert claimer({"iam": False, "pat": "x"}) is by_pat
    with pytest.raises(ConnectionConfigError) as info:
        claimer({"iam": "false"})
    assert info.value.field == "extra" and "iam or pat" in info.value.reason
    with pytest.raises(ConnectionConfigError) as unknown:
        _claiming_mapping(_Reader(ConnectionFields("c", "nope", extra={}), {}), "nope", mappings)
    assert unknown.value.field == "conn_type"
