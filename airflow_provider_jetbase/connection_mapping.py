"""Airflow connection fields -> SQLAlchemy URL + connect_args, as pure functions.

Connections made for the official providers (postgres, mysql, sqlite, snowflake, databricks) and
ClickHouse are read with their own fields and extras, legacy ``extra__<type>__<field>`` keys
included; the ``jetbase`` type takes any SQLAlchemy URL. Each extra is first looked up in
:mod:`airflow_provider_jetbase.connection_extras`: one the mapping cannot honour is refused by
name, never dropped. Nothing here imports Airflow, and
``environ`` is only read (Jetbase's ``JETBASE_SNOWFLAKE_PRIVATE_KEY`` fallback).

Every error is a :class:`ConnectionConfigError` naming the connection id and the field, never the
secret: values of secret fields are not echoed, and URLs are never put in messages.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import quote_plus

from sqlalchemy.engine import URL, make_url

from airflow_provider_jetbase.booleans import parse_bool_word
from airflow_provider_jetbase.connection_extras import (
    CLICKHOUSE_EXTRAS,
    DATABRICKS_EXTRAS,
    IGNORE_EXTRAS_KEY,
    JETBASE_BACKEND_EXTRAS,
    JETBASE_EXTRAS,
    LIBPQ_PARAMS,
    LIBPQ_SECRET_PARAMS,
    MYSQL_EXTRAS,
    POSTGRES_EXTRAS,
    SNOWFLAKE_EXTRAS,
    SQLITE_EXTRAS,
    Extra,
    is_true,
)
from airflow_provider_jetbase.errors import JetbaseProviderError

_log = logging.getLogger(__name__)

JETBASE_KEY_ENV = "JETBASE_SNOWFLAKE_PRIVATE_KEY"
JETBASE_KEY_PASSWORD_ENV = "JETBASE_SNOWFLAKE_PRIVATE_KEY_PASSWORD"

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class ConnectionFields:
    """What an Airflow Connection holds, without Airflow."""

    conn_id: str
    conn_type: str
    host: str | None = None
    login: str | None = None
    password: str | None = None
    schema: str | None = None
    port: int | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)  # already JSON-decoded


@dataclass(frozen=True)
class EngineSpec:
    url: URL  # never log str(url) with the password: use url.render_as_string(hide_password=True)
    connect_args: dict[str, Any]
    dialect: str  # "postgresql" | "mysql" | "sqlite" | "snowflake" | "databricks" | "clickhouse" | other
    secrets: tuple[str, ...]  # every secret value to register with Airflow's masker

    def safe_url(self) -> str:
        return self.url.render_as_string(hide_password=True)


class ConnectionConfigError(JetbaseProviderError, ValueError):
    """A connection that cannot be turned into an engine. The message never holds a secret."""

    def __init__(self, conn_id: str, field: str, reason: str) -> None:
        super().__init__(f"Airflow connection '{conn_id}', field '{field}': {reason}")
        self.conn_id = conn_id
        self.field = field
        self.reason = reason


# The pip extra of this package that brings each driver it installs (by SQLAlchemy drivername).
_DRIVER_EXTRAS = {
    "postgresql": "postgres",
    "postgresql+psycopg2": "postgres",
    "mysql+pymysql": "mysql",
    "snowflake": "snowflake",
    "databricks": "databricks",
    "clickhouse": "clickhouse",
    "clickhouse+http": "clickhouse",
    "clickhouse+native": "clickhouse",
}


class _Reader:
    """Field/extra access for one connection, with the legacy ``extra__<type>__`` prefix."""

    def __init__(self, fields: ConnectionFields, environ: Mapping[str, str]) -> None:
        self.fields = fields
        self.conn_id = fields.conn_id
        self.conn_type = fields.conn_type
        self.environ = environ
        extra = fields.extra
        if isinstance(extra, str):  # tolerate a raw JSON string despite the contract
            try:
                extra = json.loads(extra) if extra.strip() else {}
            except ValueError:
                raise self.error("extra", "is not valid JSON") from None
        if not isinstance(extra, Mapping):
            raise self.error("extra", f"must be a JSON object, got {type(extra).__name__}")
        self.extra: Mapping[str, Any] = extra

    def error(self, field: str, reason: str) -> ConnectionConfigError:
        return ConnectionConfigError(self.conn_id, field, reason)

    def get(self, name: str) -> Any:
        """Extra ``name`` (empty values count as unset), else its legacy prefixed form."""
        value = self.extra.get(name)
        if value not in (None, ""):
            return value
        legacy = self.extra.get(f"extra__{self.conn_type}__{name}")
        return None if legacy in (None, "") else legacy

    def get_str(self, name: str) -> str | None:
        value = self.get(name)
        return None if value is None else str(value)

    def get_bool(self, name: str) -> bool | None:
        value = self.get(name)
        if value is None or isinstance(value, bool):
            return value
        parsed = parse_bool_word(str(value))
        if parsed is None:
            raise self.error(name, f"expected a boolean (true/false), got {value!r}")
        return parsed

    def get_int(self, name: str) -> int | None:
        value = self.get(name)
        if value is None:
            return None
        try:
            return int(value)
        except (TypeError, ValueError):
            raise self.error(name, f"expected an integer, got {value!r}") from None

    def host(self, required: bool = True) -> str | None:
        host = (self.fields.host or "").strip() or None
        if required and not host:
            raise self.error("host", "is required for this connection type")
        return host

    def port(self, default: int | None = None) -> int | None:
        return _check_port(self, "port", self.fields.port, default)

    def json_object(self, name: str) -> dict[str, Any] | None:
        value = self.get(name)
        if value is None:
            return None
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise self.error(name, "is not a valid JSON object") from None
        if not isinstance(value, Mapping):
            raise self.error(name, f"must be a JSON object, got {type(value).__name__}")
        return dict(value)


def _check_port(reader: _Reader, name: str, value: Any, default: int | None) -> int | None:
    if value in (None, ""):
        return default
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise reader.error(name, f"port must be an integer, got {value!r}") from None
    if not 0 < port < 65536:
        raise reader.error(name, f"port must be between 1 and 65535, got {port}")
    return port


@dataclass
class _Built:
    url: URL
    connect_args: dict[str, Any] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)


_LEGACY_KEY = re.compile(r"extra__(.+?)__(.+)")


def _check_extras(r: _Reader, table: Mapping[str, Extra]) -> None:
    """Refuse every set extra that ``table`` refuses or does not know (see connection_extras)."""
    ignored = _ignored_extras(r, table)
    for key, value in r.extra.items():
        name = key
        legacy = _LEGACY_KEY.fullmatch(key)
        if legacy:
            if legacy[1].lower() != r.conn_type.strip().lower():
                continue  # another type's form field, left when the connection's type was changed
            name = legacy[2]
        if value in (None, "") or name in ignored:
            continue
        rule = table.get(name)
        if rule is None:
            raise r.error(
                key,
                f"is not an extra of the official {r.conn_type} provider nor of this provider, and "
                f"would be ignored: remove it, or, if another tool reads it from this connection, "
                f"name it in extra '{IGNORE_EXTRAS_KEY}'",
            )
        if rule.refusal and rule.refused_if(value):
            raise r.error(key, rule.refusal)


def _ignored_extras(r: _Reader, table: Mapping[str, Extra]) -> frozenset[str]:
    value = r.get(IGNORE_EXTRAS_KEY)
    if value is None:
        return frozenset()
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                raise r.error(IGNORE_EXTRAS_KEY, "is not a valid JSON list") from None
        else:
            value = [part.strip() for part in text.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise r.error(IGNORE_EXTRAS_KEY, "must be a list of extra names")
    known = sorted(set(value) & set(table))
    if known:
        # Ignoring an extra this provider reads (say `iam`) would connect differently than asked.
        raise r.error(IGNORE_EXTRAS_KEY, f"{known} are read by this provider and cannot be ignored")
    return frozenset(value)


# ----------------------------------------------------------------------------------------- postgres
_PG_DRIVERS = {"psycopg2": "psycopg2", "psycopg": "psycopg", "psycopg3": "psycopg"}
_SIMPLE_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*|\$user")
_QUOTED_IDENTIFIER = re.compile(r'"(?:[^"]|"")+"')
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def search_path_option(value: str, conn_id: str, field: str) -> str:
    """The libpq ``options`` switch that sets ``search_path`` at connection start.

    No SQL is sent, so nothing can be injected into a statement: the value only becomes a GUC
    setting, each schema quoted as an identifier when it is not a plain name, and whitespace and
    backslashes escaped as libpq's ``options`` parser requires.
    """
    if _CONTROL_CHARS.search(value):
        raise ConnectionConfigError(conn_id, field, "schema names must not contain control characters")
    parts = [p.strip() for p in value.split(",")]
    if not any(parts) or not all(parts):
        raise ConnectionConfigError(conn_id, field, f"invalid schema list {value!r}: empty schema name")
    quoted = []
    for part in parts:
        if _SIMPLE_IDENTIFIER.fullmatch(part) or _QUOTED_IDENTIFIER.fullmatch(part):
            quoted.append(part)
        else:
            quoted.append('"' + part.replace('"', '""') + '"')
    escaped = re.sub(r"([\\\s])", r"\\\1", ",".join(quoted))
    return f"-csearch_path={escaped}"


def _postgres_connect_args(
    r: _Reader, query: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], list[str]]:
    args: dict[str, Any] = {}
    secrets: list[str] = []
    for name in sorted(LIBPQ_PARAMS):
        value = r.get(name)
        if value is None:
            continue
        args[name] = value
        if name in LIBPQ_SECRET_PARAMS:
            secrets.append(str(value))
    for name, value in (query or {}).items():
        if name in args and str(args[name]) != str(value):
            raise r.error(
                f"sqlalchemy_query.{name}",
                f"conflicts with extra '{name}': set one of them",
            )
        args[name] = value
        if name in LIBPQ_SECRET_PARAMS:
            secrets.append(str(value))
    for name in ("postgres_schema", "search_path"):
        schema = r.get_str(name)
        if schema:
            option = search_path_option(schema, r.conn_id, name)
            args["options"] = f"{args['options']} {option}" if args.get("options") else option
            break
    return args, secrets


def _postgres_driver(r: _Reader) -> str:
    scheme = r.get_str("sqlalchemy_scheme")
    if scheme:
        if not scheme.startswith("postgresql"):
            raise r.error("sqlalchemy_scheme", f"must be a postgresql scheme, got {scheme!r}")
        return scheme
    driver = (r.get_str("driver") or "psycopg2").strip().lower()
    if driver not in _PG_DRIVERS:
        raise r.error("driver", f"unknown PostgreSQL driver {driver!r}; use one of {sorted(_PG_DRIVERS)}")
    return f"postgresql+{_PG_DRIVERS[driver]}"


def _postgres_query(r: _Reader) -> dict[str, Any]:
    """The official hook's ``sqlalchemy_query`` (the engine URL's query, which SQLAlchemy hands to
    the driver as connection parameters), as connect_args: values stay out of the logged URL."""
    query = r.json_object("sqlalchemy_query") or {}
    for name, value in query.items():
        if name not in LIBPQ_PARAMS:
            raise r.error(
                f"sqlalchemy_query.{name}",
                "is not a libpq connection parameter (see the PostgreSQL docs, 'Parameter Key Words')",
            )
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise r.error(f"sqlalchemy_query.{name}", "must be a string or a number")
    return query


def _map_postgres(r: _Reader) -> _Built:
    f = r.fields
    query = _postgres_query(r)
    url = URL.create(
        _postgres_driver(r),
        username=f.login or None,
        password=f.password or None,
        host=r.host(),
        port=r.port(),
        database=f.schema or None,
    )
    args, secrets = _postgres_connect_args(r, query)
    return _Built(url, args, secrets)


# -------------------------------------------------------------------------------------------- mysql
_MYSQL_SSL_KEYS = frozenset({"ca", "capath", "cert", "key", "cipher", "check_hostname", "password"})


def _map_mysql(r: _Reader) -> _Built:
    f = r.fields
    args: dict[str, Any] = {}
    secrets: list[str] = []
    for name in ("charset", "unix_socket", "init_command", "ssl_ca", "ssl_cert", "ssl_key"):
        value = r.get_str(name)
        if value:
            args[name] = value
    for name in ("connect_timeout", "read_timeout", "write_timeout"):
        number = r.get_int(name)
        if number is not None:
            args[name] = number
    local_infile = r.get_bool("local_infile")
    if local_infile is not None:
        args["local_infile"] = local_infile
    # The official provider's `ssl` extra is MySQLdb's dict; PyMySQL takes the same keys.
    ssl = r.json_object("ssl")
    if ssl:
        unknown = sorted(set(ssl) - _MYSQL_SSL_KEYS)
        if unknown:
            raise r.error("ssl", f"unsupported keys {unknown}; PyMySQL accepts {sorted(_MYSQL_SSL_KEYS)}")
        args["ssl"] = ssl
        if ssl.get("password"):
            secrets.append(str(ssl["password"]))
    ssl_mode = (r.get_str("ssl_mode") or "").upper()
    if ssl_mode == "DISABLED":
        args["ssl_disabled"] = True
    elif ssl_mode == "REQUIRED":
        # Encrypt without verifying, as libmysqlclient's REQUIRED does.
        args.setdefault("ssl", {"check_hostname": False})
    elif ssl_mode in {"VERIFY_CA", "VERIFY_IDENTITY"}:
        args["ssl_verify_cert"] = True
        args["ssl_verify_identity"] = ssl_mode == "VERIFY_IDENTITY"
    elif ssl_mode and ssl_mode != "PREFERRED":
        raise r.error("ssl_mode", f"unknown ssl_mode {ssl_mode!r}")
    url = URL.create(
        "mysql+pymysql",
        username=f.login or None,
        password=f.password or None,
        host=r.host(required="unix_socket" not in args),
        port=r.port(),
        database=f.schema or None,
    )
    args.update(_pymysql_password_args(url))
    return _Built(url, args, secrets)


def _pymysql_password_args(url: URL) -> dict[str, Any]:
    """PyMySQL encodes a str password as Latin-1: ``pässwörd`` is then refused as a wrong password
    and ``пароль`` raises a UnicodeEncodeError holding it. UTF-8 bytes, as MySQL/MariaDB clients
    send them, are passed as is. The URL keeps the password (logs show ``***``, and callers of
    ``get_sqlalchemy_url`` still get it); connect_args override the URL's value."""
    if url.drivername != "mysql+pymysql" or not isinstance(url.password, str) or not url.password:
        return {}
    return {"password": url.password.encode("utf-8")}


# ------------------------------------------------------------------------------------------- sqlite
def _map_sqlite(r: _Reader) -> _Built:
    # The official provider keeps the file path in host; Airflow's URI parser puts
    # `sqlite:///rel.db` / `sqlite:////abs.db` paths in schema instead, so accept both.
    host = (r.fields.host or "").strip()
    path = host or (r.fields.schema or "").strip()
    field_name = "host" if host else "schema"
    if not path:
        raise r.error("host", "the SQLite database file path (or :memory:) is required in the host field")
    if path.startswith("sqlite:"):
        raise r.error("host", "must be a file path, not a URL; use the jetbase connection type for URLs")
    _require_absolute_sqlite_path(r, field_name, path)
    return _Built(URL.create("sqlite", database=path))


def _require_absolute_sqlite_path(r: _Reader, field_name: str, path: str) -> None:
    # A relative path would resolve against the process's current directory, which differs between
    # workers, the triggerer and `airflow tasks test`: each would migrate a different file.
    if path == ":memory:" or os.path.isabs(path):
        return
    raise r.error(
        field_name,
        f"the SQLite path {path!r} is relative, and would depend on the worker's current directory: "
        "use an absolute path (sqlite:////abs/path.db in a URL) or :memory:",
    )


# ---------------------------------------------------------------------------------------- snowflake
_SNOWFLAKE_BOOL_ARGS = (
    "insecure_mode",
    "ocsp_fail_open",
    "json_result_force_utf8_decoding",
    "client_request_mfa_token",
    "client_store_temporary_credential",
)


def _snowflake_key(r: _Reader, password: str | None) -> tuple[bytes | None, list[str], bool]:
    """(DER key or None, secrets, whether the password field was consumed as the passphrase)."""
    content = r.get_str("private_key_content")
    key_file = r.get_str("private_key_file")
    explicit_passphrase = r.get_str("private_key_passphrase")
    from_env = False
    if not content and not key_file:
        if password:
            return None, [], False
        content = r.environ.get(JETBASE_KEY_ENV) or None
        if not content:
            return None, [], False
        from_env = True
        explicit_passphrase = r.environ.get(JETBASE_KEY_PASSWORD_ENV) or None

    passphrase = explicit_passphrase or password
    try:
        from airflow_provider_jetbase.snowflake_keys import PrivateKeyError, load_private_key_der

        try:
            loaded = load_private_key_der(
                content=content,
                file=key_file,
                passphrase=passphrase,
                content_field=JETBASE_KEY_ENV if from_env else "private_key_content",
                passphrase_field=(
                    JETBASE_KEY_PASSWORD_ENV
                    if from_env
                    else "private_key_passphrase"
                    if explicit_passphrase
                    else "password (key passphrase)"
                ),
                # The password field doubles as the passphrase (official provider's rule): an
                # unencrypted key next to a password is not an error, the password is just unused.
                passphrase_optional=not explicit_passphrase,
            )
        except PrivateKeyError as exc:
            raise r.error(exc.field, exc.reason) from None
    except ImportError as exc:
        raise r.error(
            "private_key_content" if content else "private_key_file",
            f"key-pair auth needs 'cryptography' ({exc.name} is missing): "
            'pip install "airflow-provider-jetbase[snowflake]"',
        ) from None
    return loaded.der, list(loaded.secrets), True


def _snowflake_connect_args(r: _Reader) -> tuple[dict[str, Any], list[str]]:
    args: dict[str, Any] = {}
    secrets: list[str] = []
    for name in _SNOWFLAKE_BOOL_ARGS:
        flag = r.get_bool(name)
        if flag is not None:
            args[name] = flag
    session_parameters = r.json_object("session_parameters")
    if session_parameters:
        args["session_parameters"] = session_parameters
    # A custom endpoint (privatelink, proxies) is a connect arg: snowflake-sqlalchemy rejects
    # `host` in the URL query.
    sf_host = r.get_str("host")
    if sf_host:
        args["host"] = sf_host
    sf_port = _check_port(r, "port (extra)", r.get("port"), None)
    if sf_port:
        args["port"] = sf_port
    # Not an extra of the official hook: plain HTTP is for a TLS-terminating proxy or a local
    # emulator next to the custom host (the connector defaults to https).
    protocol = r.get_str("protocol")
    if protocol:
        if protocol.lower() not in {"http", "https"}:
            raise r.error("protocol", f"must be http or https, got {protocol!r}")
        args["protocol"] = protocol.lower()
    for name in ("proxy_host", "proxy_user", "proxy_password"):
        value = r.get_str(name)
        if value:
            args[name] = value
    proxy_port = _check_port(r, "proxy_port", r.get("proxy_port"), None)
    if proxy_port:
        args["proxy_port"] = proxy_port
    if args.get("proxy_password"):
        secrets.append(args["proxy_password"])
    return args, secrets


def _map_snowflake(r: _Reader) -> _Built:
    f = r.fields
    account = r.get_str("account") or r.host(required=False)
    if not account:
        raise r.error("account", "the Snowflake account identifier (extra 'account') is required")
    region = r.get_str("region")
    database = r.get_str("database")
    schema = f.schema or None
    if schema and not database:
        raise r.error("database", "a schema is set but no database: Snowflake URLs need both")
    der, secrets, password_is_passphrase = _snowflake_key(r, f.password or None)
    query: dict[str, str] = {}
    for name in ("warehouse", "role", "authenticator"):
        value = r.get_str(name)
        if value:
            query[name] = value
    path = "/".join(quote_plus(part) for part in (database, schema) if part) or None
    url = URL.create(
        "snowflake",
        username=f.login or None,
        password=None if (der is not None or password_is_passphrase) else (f.password or None),
        host=f"{account}.{region}" if region else account,
        database=path,
        query=query,
    )
    args, more = _snowflake_connect_args(r)
    if der is not None:
        args["private_key"] = der
    return _Built(url, args, secrets + more)


# --------------------------------------------------------------------------------------- databricks
def _map_databricks(r: _Reader) -> _Built:
    f = r.fields
    # The official hook prefers the extra's host to the host field.
    host = r.get_str("host") or r.host()
    assert host is not None
    host = re.sub(r"^https?://", "", host, flags=re.IGNORECASE).rstrip("/")
    if not host:
        raise r.error("host", "is required (the workspace hostname)")
    token = f.password or r.get_str("token")
    if not token:
        raise r.error("password", "a Databricks access token is required (password field or extra 'token')")
    http_path = r.get_str("http_path")
    if not http_path:
        raise r.error("http_path", "the SQL warehouse/cluster HTTP path (extra 'http_path') is required")
    query = {"http_path": http_path}
    catalog = r.get_str("catalog")
    schema = r.get_str("schema") or f.schema
    if catalog:
        query["catalog"] = catalog
    if schema:
        query["schema"] = schema
    url = URL.create("databricks", username="token", password=token, host=host, port=r.port(), query=query)
    args: dict[str, Any] = {}
    session_configuration = r.json_object("session_configuration")
    if session_configuration:
        args["session_configuration"] = session_configuration
    return _Built(url, args, [token])


# --------------------------------------------------------------------------------------- clickhouse
def _map_clickhouse(r: _Reader) -> _Built:
    f = r.fields
    query: dict[str, str] = {}
    protocol = r.get_str("protocol")
    if protocol is None and r.get_bool("secure"):
        protocol = "https"
    if protocol:
        if protocol not in {"http", "https"}:
            raise r.error("protocol", f"must be http or https, got {protocol!r}")
        query["protocol"] = protocol
    verify = r.get_bool("verify")
    if verify is not None:
        query["verify"] = "true" if verify else "false"
    url = URL.create(
        "clickhouse",
        # clickhouse-sqlalchemy signs in with HTTP Basic auth of the URL's username and password even
        # when they are None, as the text "None": fill in ClickHouse's own defaults instead.
        username=f.login or "default",
        password=f.password or "",
        host=r.host(),
        port=r.port(default=8443 if protocol == "https" else 8123),
        database=f.schema or "default",
        query=query,
    )
    return _Built(url)


# ------------------------------------------------------------------------------------------ jetbase
def _map_jetbase(r: _Reader) -> _Built:
    f = r.fields
    raw = r.get_str("sqlalchemy_url") or r.host(required=False)
    field_name = "sqlalchemy_url" if r.get_str("sqlalchemy_url") else "host"
    if not raw:
        raise r.error(
            "sqlalchemy_url", "a SQLAlchemy URL is required (extra 'sqlalchemy_url' or the host field)"
        )
    try:
        url = make_url(raw.strip())
    except Exception:  # noqa: BLE001 - make_url raises many types; the URL may hold a password
        raise r.error(
            field_name, "is not a valid SQLAlchemy URL (dialect+driver://user:pass@host/db)"
        ) from None
    if url.password:
        # Airflow's connection API redacts extras by key name only: a password inside the URL is returned.
        _log.warning(
            "connection %r: field %r carries a password; put it in the connection's password field instead",
            f.conn_id,
            field_name,
        )
    if f.login:
        url = url.set(username=f.login)
    port = r.port()
    if port:
        url = url.set(port=port)
    backend = url.get_backend_name()
    _check_extras(r, {**JETBASE_EXTRAS, **JETBASE_BACKEND_EXTRAS.get(backend, {})})
    secrets: list[str] = []
    args: dict[str, Any] = {}
    if backend == "snowflake":
        url_password = url.password if isinstance(url.password, str) else None
        password = f.password or url_password
        der, key_secrets, password_is_passphrase = _snowflake_key(r, password)
        secrets += key_secrets
        if password:
            secrets.append(password)
        if der is not None or password_is_passphrase:
            url = url.set(password=None)
            if der is not None:
                args["private_key"] = der
        elif f.password:
            url = url.set(password=f.password)
    else:
        if f.password:
            url = url.set(password=f.password)
        if backend == "postgresql":
            args, secrets = _postgres_connect_args(r)
        elif backend == "mysql":
            args = _pymysql_password_args(url)
        elif backend == "sqlite" and url.database and url.query.get("uri") is None:
            _require_absolute_sqlite_path(r, field_name, url.database)
    return _Built(url, args, secrets)


# ------------------------------------------------------------------------------------- the mapping
@dataclass(frozen=True)
class ConnectionMapping:
    """One way of turning connections into engines, in the manner Cosmos' profile mappings claim
    connections: the type (and extras) it claims, the extras it honours or refuses, its builder.

    A new database or auth method is one entry in ``_MAPPINGS``: mappings of one type are tried in
    order, and the first whose ``requires`` extras are all set (not empty, not false) claims the
    connection; its ``extras`` table is checked before ``build`` runs.
    """

    conn_type: str
    dialect: str  # "": the URL's backend (the jetbase type)
    build: Callable[[_Reader], _Built]
    extras: Mapping[str, Extra] | None  # None: build checks them itself (they depend on the URL)
    requires: tuple[str, ...] = ()

    def claims(self, r: _Reader) -> bool:
        return all(r.get(name) is not None and is_true(r.get(name)) for name in self.requires)


_MAPPINGS: tuple[ConnectionMapping, ...] = (
    ConnectionMapping("postgres", "postgresql", _map_postgres, POSTGRES_EXTRAS),
    ConnectionMapping("mysql", "mysql", _map_mysql, MYSQL_EXTRAS),
    ConnectionMapping("sqlite", "sqlite", _map_sqlite, SQLITE_EXTRAS),
    ConnectionMapping("snowflake", "snowflake", _map_snowflake, SNOWFLAKE_EXTRAS),
    ConnectionMapping("databricks", "databricks", _map_databricks, DATABRICKS_EXTRAS),
    ConnectionMapping("clickhouse", "clickhouse", _map_clickhouse, CLICKHOUSE_EXTRAS),
    ConnectionMapping("jetbase", "", _map_jetbase, None),
)
SUPPORTED_CONN_TYPES: tuple[str, ...] = tuple(dict.fromkeys(m.conn_type for m in _MAPPINGS))


def conn_type_dialect(conn_type: str) -> str | None:
    """The dialect the mappings of an Airflow connection type build (None: the type names none
    itself, as ``jetbase`` whose URL does, or no mapping claims it)."""
    return next((m.dialect for m in _MAPPINGS if m.conn_type == conn_type and m.dialect), None)


def _claiming_mapping(
    r: _Reader, conn_type: str, mappings: tuple[ConnectionMapping, ...] = _MAPPINGS
) -> ConnectionMapping:
    candidates = [m for m in mappings if m.conn_type == conn_type]
    if not candidates:
        raise r.error(
            "conn_type",
            f"unsupported connection type {r.fields.conn_type!r}; "
            f"supported: {', '.join(SUPPORTED_CONN_TYPES)}",
        )
    for mapping in candidates:
        if mapping.claims(r):
            return mapping
    needed = " or ".join("+".join(m.requires) for m in candidates)
    raise r.error("extra", f"no mapping of the {conn_type} type claims this connection: it needs {needed}")


def build_engine_spec(
    fields: ConnectionFields, environ: Mapping[str, str] | None = None, *, check_driver: bool = True
) -> EngineSpec:
    """Map an Airflow connection to a SQLAlchemy URL and connect_args.

    ``environ`` (default ``os.environ``, only read) supplies Jetbase's
    ``JETBASE_SNOWFLAKE_PRIVATE_KEY`` / ``_PASSWORD`` when a Snowflake connection has neither a
    password nor a key of its own. ``check_driver`` loads the SQLAlchemy dialect and its DBAPI so a
    missing driver is reported here, with the pip extra to install.
    """
    conn_type = (fields.conn_type or "").strip().lower()
    reader = _Reader(fields, os.environ if environ is None else environ)
    mapping = _claiming_mapping(reader, conn_type)
    if mapping.extras is not None:
        _check_extras(reader, mapping.extras)
    built = mapping.build(reader)
    url = built.url
    dialect = mapping.dialect or url.get_backend_name()
    secrets = [*built.secrets]
    for value in (fields.password, url.password if isinstance(url.password, str) else None):
        if value:
            secrets += [value, quote_plus(value)]
    if url.password:
        secrets.append(url.render_as_string(hide_password=False))
    if check_driver:
        ensure_driver(url, fields.conn_id, "sqlalchemy_url" if conn_type == "jetbase" else "conn_type")
    unique = tuple(dict.fromkeys(s for s in secrets if s))
    return EngineSpec(url=url, connect_args=built.connect_args, dialect=dialect, secrets=unique)


def ensure_driver(url: URL, conn_id: str, field: str = "conn_type") -> None:
    """Load ``url``'s dialect and DBAPI module, or raise an error naming what to install."""
    from sqlalchemy.exc import NoSuchModuleError

    extra = _DRIVER_EXTRAS.get(url.drivername)
    if url.drivername == "postgresql+psycopg":
        hint = 'pip install "psycopg[binary]"'
    elif extra:
        hint = f'pip install "airflow-provider-jetbase[{extra}]"'
    else:
        hint = f"install the SQLAlchemy dialect and DBAPI driver for {url.drivername!r}"
    try:
        dialect_cls = url.get_dialect()
        dialect_cls.import_dbapi()
    except NoSuchModuleError:
        raise ConnectionConfigError(
            conn_id, field, f"no SQLAlchemy dialect for {url.drivername!r} is installed: {hint}"
        ) from None
    except ImportError as exc:
        raise ConnectionConfigError(
            conn_id, field, f"the driver for {url.drivername!r} is not installed ({exc.name}): {hint}"
        ) from None
