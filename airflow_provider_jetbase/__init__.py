"""Jetbase provider for Apache Airflow.

Only ``get_provider_info`` and the error family's base (``except JetbaseProviderError`` catches
every error the provider raises on purpose) live here: Airflow's providers manager imports this
module at start-up, so it must import nothing heavy (no SQLAlchemy, no Airflow, no drivers).
"""

from __future__ import annotations

import copy
from typing import Any

from airflow_provider_jetbase.errors import JetbaseProviderError, ParameterError

__all__ = ["JetbaseProviderError", "ParameterError", "get_provider_info"]

__version__ = "0.1.0"

_HOOK_CLASS = "airflow_provider_jetbase.hooks.jetbase.JetbaseHook"

# Jetbase's own URL forms, one per database; secrets go in the Password field, not the URL.
# Airflow 3.3's UI ignores ui-field-behaviour placeholders of extra fields and offers a field's
# schema ``examples`` as suggestions instead; older UIs show the joined placeholder.
_URL_FORMS = (
    "postgresql+psycopg2://user@host:5432/database",
    "mysql+pymysql://user@host:3306/database",
    "sqlite:////absolute/path/to/database.db",
    "snowflake://user@account/database/schema?warehouse=WH&role=ROLE",
    "databricks://token@host?http_path=HTTP_PATH&catalog=CATALOG&schema=SCHEMA",
    "clickhouse://user@host:8123/database",
)
_URL_EXAMPLES = " | ".join(_URL_FORMS)

# The ``jetbase`` connection form (Airflow 3.2+ reads these declaratively; the hook's legacy
# get_ui_field_behaviour() returns the same content for older Airflow).
JETBASE_CONN_FIELDS: dict[str, dict[str, Any]] = {
    "sqlalchemy_url": {
        "label": "SQLAlchemy URL",
        "description": "Any SQLAlchemy URL Jetbase supports. Login/Password, if set, override the URL's.",
        "schema": {"type": ["string", "null"], "examples": list(_URL_FORMS)},
    },
    "postgres_schema": {
        "label": "PostgreSQL schema",
        "description": "Sets search_path on every connection (PostgreSQL URLs only).",
        "schema": {"type": ["string", "null"]},
    },
    "private_key_content": {
        "label": "Snowflake private key (PEM or base64)",
        "description": (
            "Key-pair auth for Snowflake URLs: the PEM text (pasting it on one line is fine) or base64 "
            "of the PEM file. Mutually exclusive with the key file."
        ),
        "schema": {"type": ["string", "null"], "format": "password"},
    },
    "private_key_file": {
        "label": "Snowflake private key file",
        "description": "Path of a PEM private key file readable by the workers.",
        "schema": {"type": ["string", "null"]},
    },
    "private_key_passphrase": {
        "label": "Snowflake private key passphrase",
        "description": "Only for an encrypted key. Falls back to the Password field.",
        "schema": {"type": ["string", "null"], "format": "password"},
    },
}

JETBASE_UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["host", "port", "schema"],
    "relabeling": {"login": "Login (overrides the URL's)", "password": "Password (overrides the URL's)"},
    "placeholders": {
        "sqlalchemy_url": _URL_EXAMPLES,
        "postgres_schema": "public",
        "private_key_content": "-----BEGIN PRIVATE KEY----- ... -----END PRIVATE KEY-----",
        "private_key_file": "/opt/airflow/keys/snowflake_rsa_key.p8",
        "login": "optional",
        "password": "optional (Snowflake: key passphrase when a key is set)",
        "extra": '{"sqlalchemy_url": "postgresql+psycopg2://user:password@host:5432/db"}',
    },
}


def get_provider_info() -> dict[str, Any]:
    """Provider metadata read by Airflow's providers manager (``apache_airflow_provider`` entry point)."""
    return {
        "package-name": "airflow-provider-jetbase",
        "name": "Jetbase",
        "description": (
            "Jetbase SQL migrations in Airflow: a hook, upgrade/rollback/status/baseline and drift-check "
            "operators, and a version sensor with its trigger."
        ),
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Jetbase",
                "external-doc-url": "https://pypi.org/project/jetbase/",
                "tags": ["software"],
            }
        ],
        "hooks": [
            {"integration-name": "Jetbase", "python-modules": ["airflow_provider_jetbase.hooks.jetbase"]}
        ],
        "operators": [
            {
                "integration-name": "Jetbase",
                "python-modules": [
                    "airflow_provider_jetbase.operators.jetbase",
                    "airflow_provider_jetbase.operators.drift",
                    "airflow_provider_jetbase.operators.baseline",
                    "airflow_provider_jetbase.operators.fleet",
                ],
            }
        ],
        "sensors": [
            {"integration-name": "Jetbase", "python-modules": ["airflow_provider_jetbase.sensors.jetbase"]}
        ],
        "triggers": [
            {"integration-name": "Jetbase", "python-modules": ["airflow_provider_jetbase.triggers.jetbase"]}
        ],
        "connection-types": [
            {
                "hook-class-name": _HOOK_CLASS,
                "connection-type": "jetbase",
                "hook-name": "Jetbase",
                # Copies: the providers manager keeps and may adjust what it is given.
                "conn-fields": copy.deepcopy(JETBASE_CONN_FIELDS),
                "ui-field-behaviour": copy.deepcopy(JETBASE_UI_FIELD_BEHAVIOUR),
            }
        ],
    }
