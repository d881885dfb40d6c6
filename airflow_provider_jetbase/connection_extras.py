"""Every connection extra each connection type accepts: honoured (how) or refused (why, and what instead).

The inventory comes from the official Airflow provider hooks (postgres 7.1 installed here; mysql,
snowflake, databricks and sqlite read from apache/airflow's ``providers/*/hooks``) plus this
provider's own extras. An extra is looked up here before a connection is mapped, so nothing is
dropped without a word:

- a *refused* extra (when set to a value that matters: ``iam: false`` is not refused) fails with
  a :class:`ConnectionConfigError` naming the connection and the field, never the value;
- an extra in no table fails the same way: it would otherwise be dropped. Another tool's extras on
  a shared connection are named in ``jetbase_ignore_extras`` (a JSON list or comma-separated);
- legacy form keys ``extra__<type>__<name>`` count as ``<name>`` for their own type; those of
  another type (left behind when a connection's type was changed) cannot be meant for this one and
  are left alone.

Supporting a new database or auth method is one table here (or one entry) plus its builder.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from airflow_provider_jetbase.booleans import FALSE_WORDS

IGNORE_EXTRAS_KEY = "jetbase_ignore_extras"


def is_set(value: Any) -> bool:
    return value not in (None, "")


def is_true(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    # Anything but a false word or an empty value counts as set: a refusal must not be dodged by
    # spelling "true" differently.
    text = str(value).strip().lower()
    return not (text in FALSE_WORDS or text in {"", "none", "null"})


@dataclass(frozen=True)
class Extra:
    """How one extra is treated. ``refusal`` set: refused when ``refused_if(value)``; else honoured."""

    how: str  # honoured: what it does (documentation); refused-only extras say "refused"
    refusal: str | None = None  # why it is refused, and what to do instead
    refused_if: Callable[[Any], bool] = is_set


def honoured(how: str) -> Extra:
    return Extra(how)


def refused(reason: str, when: Callable[[Any], bool] = is_set) -> Extra:
    return Extra("refused", reason, when)


def _table(entries: Mapping[str, Extra]) -> Mapping[str, Extra]:
    return MappingProxyType(dict(entries))


# -------------------------------------------------------------------------------------- postgres
# libpq connection parameters (PostgreSQL 17 docs). The official hook passes every extra it does
# not know to psycopg as a connection parameter; libpq refuses any other name, so refusing it here
# (before a connection is tried) matches what the official hook ends with.
LIBPQ_PARAMS = frozenset(
    {
        "hostaddr", "passfile", "require_auth", "channel_binding", "connect_timeout", "client_encoding",
        "options", "application_name", "fallback_application_name", "keepalives", "keepalives_idle",
        "keepalives_interval", "keepalives_count", "tcp_user_timeout", "sslmode", "requiressl",
        "sslnegotiation", "sslcompression", "sslcert", "sslkey", "sslpassword", "sslcertmode",
        "sslrootcert", "sslcrl", "sslcrldir", "sslsni", "requirepeer", "ssl_min_protocol_version",
        "ssl_max_protocol_version", "gssencmode", "krbsrvname", "gsslib", "gssdelegation", "service",
        "target_session_attrs", "load_balance_hosts",
    }
)  # fmt: skip
LIBPQ_SECRET_PARAMS = frozenset({"sslpassword"})

_PG_TOKEN_AUTH = (
    "token authentication (AWS IAM, Redshift, Azure Entra ID) is not supported: this provider does "
    "not fetch cloud tokens, and connecting with the login's password instead would fail or use a "
    "different identity. Put the database password in the connection's password field and remove "
    "this extra"
)
_IGNORED_CURSOR = (
    "ignored: it only shapes the rows the official hook's own queries return; migrations read "
    "no rows through it"
)
_IGNORE_EXTRAS = honoured(
    "names extras another tool reads from the same connection; this provider leaves them alone"
)

POSTGRES_EXTRAS = _table(
    {
        **{name: honoured("passed to libpq as a connection parameter") for name in sorted(LIBPQ_PARAMS)},
        "postgres_schema": honoured("sets search_path at connection start (libpq options)"),
        "search_path": honoured("as postgres_schema"),
        "driver": honoured("psycopg2 (default) or psycopg (3)"),
        "sqlalchemy_scheme": honoured("the SQLAlchemy drivername, postgresql[+driver]"),
        "sqlalchemy_query": honoured(
            "a JSON object of libpq parameters, passed to the driver as the official hook's URL query is"
        ),
        "cursor": honoured(_IGNORED_CURSOR),
        "iam": refused(_PG_TOKEN_AUTH, is_true),
        "aws_conn_id": refused(_PG_TOKEN_AUTH),
        "azure_conn_id": refused(_PG_TOKEN_AUTH),
        "redshift": refused(_PG_TOKEN_AUTH, is_true),
        "redshift-serverless": refused(_PG_TOKEN_AUTH, is_true),
        "cluster-identifier": refused(_PG_TOKEN_AUTH),
        "workgroup-name": refused(_PG_TOKEN_AUTH),
        IGNORE_EXTRAS_KEY: _IGNORE_EXTRAS,
    }
)

# ----------------------------------------------------------------------------------------- mysql
MYSQL_CLIENTS = frozenset({"mysqlclient", "pymysql"})
_MYSQL_IAM = (
    "AWS IAM authentication is not supported: this provider does not fetch RDS tokens. Put the "
    "database password in the connection's password field and remove this extra"
)
MYSQL_EXTRAS = _table(
    {
        "client": refused(
            "only mysqlclient (the official default) and pymysql are honoured, both through PyMySQL, "
            "which takes MySQLdb's connect arguments; mysql-connector-python reads other extras "
            "(ssl_*) and is not used here. Remove 'client' or set it to 'mysqlclient'",
            lambda value: str(value).strip().lower() not in MYSQL_CLIENTS,
        ),
        "charset": honoured("PyMySQL charset"),
        "unix_socket": honoured("PyMySQL unix_socket; the host may then be empty"),
        "ssl": honoured("MySQLdb's ssl dict (ca, capath, cert, key, cipher, check_hostname, password)"),
        "ssl_mode": honoured("DISABLED, PREFERRED, REQUIRED, VERIFY_CA, VERIFY_IDENTITY, as libmysqlclient"),
        "ssl_ca": honoured("PyMySQL ssl_ca"),
        "ssl_cert": honoured("PyMySQL ssl_cert"),
        "ssl_key": honoured("PyMySQL ssl_key"),
        "init_command": honoured("PyMySQL init_command (a hook argument in the official provider)"),
        "local_infile": honoured("PyMySQL local_infile (a hook argument in the official provider)"),
        "connect_timeout": honoured("PyMySQL connect_timeout, seconds"),
        "read_timeout": honoured("PyMySQL read_timeout, seconds"),
        "write_timeout": honoured("PyMySQL write_timeout, seconds"),
        "cursor": honoured(_IGNORED_CURSOR),
        "iam": refused(_MYSQL_IAM, is_true),
        "aws_conn_id": refused(_MYSQL_IAM),
        IGNORE_EXTRAS_KEY: _IGNORE_EXTRAS,
    }
)

# ---------------------------------------------------------------------------------------- sqlite
SQLITE_EXTRAS = _table(
    {
        # The official hook appends extras to a file: URI (mode=ro, cache=shared, ...). Those are
        # not applied here, and a read-only or shared-cache database is no place for migrations.
        IGNORE_EXTRAS_KEY: _IGNORE_EXTRAS,
    }
)

# ------------------------------------------------------------------------------------- snowflake
# Authenticators that need nothing but what this provider passes (login, password, key pair).
SNOWFLAKE_AUTHENTICATORS = frozenset({"snowflake", "snowflake_jwt", "username_password_mfa"})


def snowflake_authenticator_refused(value: Any) -> bool:
    text = str(value).strip().lower()
    if text in SNOWFLAKE_AUTHENTICATORS:
        return False
    # Native Okta SSO: the connector signs in with the login and password, no browser involved.
    return not (text.startswith("https://") and text.rstrip("/").endswith(".okta.com"))


_SF_OAUTH = (
    "Snowflake OAuth (refresh_token, client credentials, Azure) is not supported: this provider "
    "does not fetch OAuth tokens, and would otherwise send the client secret as a password. Use "
    "key-pair auth (private_key_content or private_key_file) or a password, and remove this extra"
)
SNOWFLAKE_EXTRAS = _table(
    {
        "account": honoured("the account identifier (URL host)"),
        "region": honoured("appended to the account"),
        "database": honoured("URL database"),
        "warehouse": honoured("URL query"),
        "role": honoured("URL query"),
        "authenticator": refused(
            "only the snowflake (password), snowflake_jwt (key pair), username_password_mfa and "
            "native Okta (https://<account>.okta.com) authenticators are honoured: oauth needs a "
            "token this provider does not fetch, externalbrowser a browser a worker has not. Use "
            "key-pair auth or a password",
            snowflake_authenticator_refused,
        ),
        "private_key_content": honoured("key-pair auth: PEM or base64 PEM; the password is its passphrase"),
        "private_key_file": honoured("key-pair auth: path of a PEM key"),
        "private_key_passphrase": honoured("the key's passphrase, when the password field is not it"),
        "session_parameters": honoured("connect argument"),
        "insecure_mode": honoured("connect argument"),
        "ocsp_fail_open": honoured("connect argument"),
        "json_result_force_utf8_decoding": honoured("connect argument"),
        "client_request_mfa_token": honoured("connect argument"),
        "client_store_temporary_credential": honoured("connect argument"),
        "host": honoured("connect argument: a custom endpoint (privatelink, proxies)"),
        "port": honoured("connect argument"),
        "protocol": honoured(
            "connect argument, http or https (the provider's own; the official hook has none)"
        ),
        "proxy_host": honoured("connect argument"),
        "proxy_port": honoured("connect argument"),
        "proxy_user": honoured("connect argument"),
        "proxy_password": honoured("connect argument (masked)"),
        "refresh_token": refused(_SF_OAUTH),
        "grant_type": refused(_SF_OAUTH),
        "token_endpoint": refused(_SF_OAUTH),
        "scope": refused(_SF_OAUTH),
        "azure_conn_id": refused(_SF_OAUTH),
        IGNORE_EXTRAS_KEY: _IGNORE_EXTRAS,
    }
)

# ------------------------------------------------------------------------------------ databricks
_DBX_TOKEN_AUTH = (
    "Azure AD, service-principal OAuth and Kubernetes federated-token authentication are not "
    "supported: this provider does not fetch tokens. Put a personal access token in the password "
    "field and remove this extra"
)
DATABRICKS_EXTRAS = _table(
    {
        "http_path": honoured("the SQL warehouse or cluster HTTP path (URL query)"),
        "token": honoured("the access token, when the password field is empty"),
        "host": honoured("the workspace hostname, over the host field (as the official hook)"),
        "catalog": honoured("initial catalog (URL query)"),
        "schema": honoured("initial schema (URL query), over the schema field"),
        "session_configuration": honoured("Spark session parameters, a connect argument"),
        **{
            name: refused(_DBX_TOKEN_AUTH, is_true)
            for name in (
                "use_azure_managed_identity", "use_default_azure_credential", "service_principal_oauth",
                "federated_k8s",
            )
        },
        **{
            name: refused(_DBX_TOKEN_AUTH)
            for name in (
                "azure_tenant_id", "azure_managed_identity_client_id", "azure_ad_endpoint",
                "azure_resource_id", "k8s_token_path", "k8s_namespace_path",
                "k8s_projected_volume_token_path",
            )
        },
        IGNORE_EXTRAS_KEY: _IGNORE_EXTRAS,
    }
)  # fmt: skip

# ------------------------------------------------------------------------------------ clickhouse
# No official Airflow provider: these are this provider's own.
CLICKHOUSE_EXTRAS = _table(
    {
        "protocol": honoured("http or https"),
        "secure": honoured("true: https"),
        "verify": honoured("TLS certificate verification"),
        IGNORE_EXTRAS_KEY: _IGNORE_EXTRAS,
    }
)

# --------------------------------------------------------------------------------------- jetbase
# The URL carries everything else; these extras apply only to the URL's backend.
JETBASE_EXTRAS = _table(
    {
        "sqlalchemy_url": honoured("the SQLAlchemy URL (or the host field)"),
        IGNORE_EXTRAS_KEY: _IGNORE_EXTRAS,
    }
)
JETBASE_BACKEND_EXTRAS: Mapping[str, Mapping[str, Extra]] = MappingProxyType(
    {
        "postgresql": _table(
            {
                **{name: POSTGRES_EXTRAS[name] for name in sorted(LIBPQ_PARAMS)},
                "postgres_schema": POSTGRES_EXTRAS["postgres_schema"],
                "search_path": POSTGRES_EXTRAS["search_path"],
            }
        ),
        "snowflake": _table(
            {
                name: SNOWFLAKE_EXTRAS[name]
                for name in ("private_key_content", "private_key_file", "private_key_passphrase")
            }
        ),
    }
)
