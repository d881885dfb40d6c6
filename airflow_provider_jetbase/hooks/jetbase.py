"""JetbaseHook: an Airflow connection (any supported type) -> a SQLAlchemy Engine -> a Migrator.

SQLAlchemy engines, drivers and the migration engine are imported inside methods so that
importing this module (done by Airflow's providers manager and by DAG parsing) stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseHook

from airflow_provider_jetbase.errors import describe_error

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Engine

    from airflow_provider_jetbase.connection_mapping import EngineSpec
    from airflow_provider_jetbase.migration import Migrator

_TEST_QUERY = "SELECT 1"


class JetbaseHook(BaseHook):
    """Builds SQLAlchemy engines for Jetbase from an Airflow connection.

    The connection may be of the ``jetbase`` type (any SQLAlchemy URL in the ``sqlalchemy_url``
    extra) or one made for an official provider: ``postgres``, ``mysql``, ``sqlite``,
    ``snowflake``, ``databricks``, ``clickhouse``; their fields and extras are read as those
    providers read them.

    :param jetbase_conn_id: the Airflow connection id.
    :param environ: where Jetbase's ``JETBASE_SNOWFLAKE_PRIVATE_KEY`` fallback is read from
        (default ``os.environ``; only read).
    """

    conn_name_attr = "jetbase_conn_id"
    default_conn_name = "jetbase_default"
    conn_type = "jetbase"
    hook_name = "Jetbase"

    def __init__(
        self,
        jetbase_conn_id: str = default_conn_name,
        *,
        environ: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.jetbase_conn_id = jetbase_conn_id
        self._environ = environ

    # ------------------------------------------------------------------ connection -> engine
    def get_engine_spec(self) -> EngineSpec:
        """The URL, connect_args and secrets for the connection; secrets are masked first."""
        from airflow_provider_jetbase.connection_mapping import ConnectionFields, build_engine_spec

        conn = self.get_connection(self.jetbase_conn_id)
        # Mask before mapping: a mapping error must not be able to reveal a raw secret either.
        _mask(conn.password)
        fields = ConnectionFields(
            conn_id=self.jetbase_conn_id,
            conn_type=conn.conn_type or "",
            host=conn.host,
            login=conn.login,
            password=conn.password,
            schema=conn.schema,
            port=conn.port,
            extra=conn.extra_dejson,
        )
        spec = build_engine_spec(fields, environ=self._environ)
        for secret in spec.secrets:
            _mask(secret)
        der = spec.connect_args.get("private_key")
        if isinstance(der, bytes):
            _mask(der)
        return spec

    def get_sqlalchemy_url(self) -> URL:
        return self.get_engine_spec().url

    def get_dialect_name(self) -> str:
        """``postgresql``, ``mysql``, ``sqlite``, ``snowflake``, ``databricks``, ``clickhouse``..."""
        return self.get_engine_spec().dialect

    def get_sqlalchemy_engine(self, engine_kwargs: dict[str, Any] | None = None) -> Engine:
        """A new Engine on every call (the caller disposes it); never cached at module level."""
        return self._create_engine(self.get_engine_spec(), engine_kwargs)

    def _create_engine(self, spec: EngineSpec, engine_kwargs: dict[str, Any] | None = None) -> Engine:
        from sqlalchemy import create_engine

        from airflow_provider_jetbase.migration.dialects import known_dialect

        kwargs = dict(engine_kwargs or {})
        connect_args = {**spec.connect_args, **(kwargs.pop("connect_args", None) or {})}
        self.log.info(
            "Connecting to %s (connection '%s', dialect %s)",
            spec.safe_url(),
            self.jetbase_conn_id,
            spec.dialect,
        )
        facts = known_dialect(spec.dialect)
        if facts is not None and not facts.supports_lock:
            self.log.info(
                "Jetbase takes no migration lock on %s: avoid concurrent migration runs", spec.dialect
            )
        engine = create_engine(spec.url, connect_args=connect_args, **kwargs)
        from airflow_provider_jetbase.migration.clickhouse_errors import wrap_clickhouse_driver_errors

        wrap_clickhouse_driver_errors(engine)
        return engine

    def get_migrator(self, migrations_dir: str | os.PathLike[str], **migrator_kwargs: Any) -> Migrator:
        """A Migrator for ``migrations_dir`` on a new engine of this connection."""
        from airflow_provider_jetbase.migration import Migrator

        return Migrator(self.get_sqlalchemy_engine(), migrations_dir, **migrator_kwargs)

    def test_connection(self) -> tuple[bool, str]:
        """Run ``SELECT 1``; the message says what failed, with every secret scrubbed."""
        from airflow_provider_jetbase.connection_mapping import ConnectionConfigError

        secrets: tuple[str, ...] = ()
        try:
            spec = self.get_engine_spec()
            secrets = spec.secrets
            engine = self._create_engine(spec)
        except ConnectionConfigError as exc:
            return False, str(exc)
        except Exception as exc:  # noqa: BLE001 - Test connection must answer with a message
            return False, _scrub(f"{type(exc).__name__}: {exc}", secrets, self._raw_password())
        try:
            from sqlalchemy import text

            with engine.connect() as connection:
                connection.execute(text(_TEST_QUERY)).scalar()
        except Exception as exc:  # noqa: BLE001 - any driver error is the test's answer
            return False, _scrub(
                f"Connection '{self.jetbase_conn_id}' ({spec.dialect} at "
                f"{spec.safe_url()}) failed: {describe_error(exc)}",
                secrets,
                self._raw_password(),
            )
        finally:
            engine.dispose()
        return True, f"Connection '{self.jetbase_conn_id}' ({spec.dialect}) works: {_TEST_QUERY} succeeded"

    def _raw_password(self) -> str | None:
        try:
            return self.get_connection(self.jetbase_conn_id).password
        except Exception:  # noqa: BLE001 - only for scrubbing; a missing password scrubs nothing
            return None

    # ------------------------------------------------------------------ form for Airflow 3.1
    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Form fields for Airflow 3.1 (with flask-appbuilder installed); 3.2+ reads ``conn-fields``
        from the provider info."""
        from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import PasswordField, StringField

        return {
            "sqlalchemy_url": StringField(lazy_gettext("SQLAlchemy URL"), widget=BS3TextFieldWidget()),
            "postgres_schema": StringField(lazy_gettext("PostgreSQL schema"), widget=BS3TextFieldWidget()),
            "private_key_content": PasswordField(
                lazy_gettext("Snowflake private key (PEM or base64)"), widget=BS3PasswordFieldWidget()
            ),
            "private_key_file": StringField(
                lazy_gettext("Snowflake private key file (path)"), widget=BS3TextFieldWidget()
            ),
            "private_key_passphrase": PasswordField(
                lazy_gettext("Snowflake private key passphrase"), widget=BS3PasswordFieldWidget()
            ),
        }

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Field behaviour for Airflow 3.1 (same content as the provider info's)."""
        from airflow_provider_jetbase import JETBASE_UI_FIELD_BEHAVIOUR

        return {
            "hidden_fields": list(JETBASE_UI_FIELD_BEHAVIOUR["hidden-fields"]),
            "relabeling": dict(JETBASE_UI_FIELD_BEHAVIOUR["relabeling"]),
            "placeholders": dict(JETBASE_UI_FIELD_BEHAVIOUR["placeholders"]),
        }


def _mask(secret: str | bytes | None) -> None:
    """Register ``secret`` with Airflow's secrets masker; bytes (a DER key) as their printable forms.

    Airflow's masker is thread-safe and changes no process-wide setting, so the triggerer's threads
    may call this at once."""
    from airflow.providers.common.compat.sdk import mask_secret

    if not secret:
        return
    if isinstance(secret, bytes):
        import base64

        for form in (base64.b64encode(secret).decode("ascii"), secret.hex()):
            mask_secret(form)
        return
    mask_secret(secret)


def _scrub(message: str, secrets: tuple[str, ...], password: str | None) -> str:
    from urllib.parse import quote, quote_plus

    candidates = set(secrets)
    if password:
        candidates |= {password, quote_plus(password), quote(password, safe="")}
    for secret in sorted(candidates, key=len, reverse=True):
        # Very short secrets would scrub ordinary words; they are still masked in logs by Airflow.
        if len(secret) >= 3:
            message = message.replace(secret, "***")
    return message
