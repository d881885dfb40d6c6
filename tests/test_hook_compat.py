"""The Airflow import shims resolve to the installed Airflow's classes, and the masker works."""

from __future__ import annotations

import uuid

import airflow
from packaging.version import Version

from airflow_provider_jetbase import compat


def test_shims_resolve_for_the_installed_airflow() -> None:
    is_3 = Version(Version(airflow.__version__).base_version) >= Version("3.0.0")
    assert compat.AIRFLOW_V_3_0_PLUS is is_3
    if is_3:
        import airflow.sdk as sdk

        assert compat.BaseHook is sdk.BaseHook
        assert compat.BaseOperator is sdk.BaseOperator
        assert compat.BaseSensorOperator is sdk.BaseSensorOperator
        assert compat.Asset is sdk.Asset
        assert compat.AssetAlias is sdk.AssetAlias
        assert compat.Context is sdk.Context
    from airflow.triggers.base import BaseTrigger, TriggerEvent

    assert compat.BaseTrigger is BaseTrigger and compat.TriggerEvent is TriggerEvent


def test_mask_secret_reaches_airflows_masker() -> None:
    from airflow.sdk._shared.secrets_masker import redact

    secret = f"s3cret-{uuid.uuid4().hex}"
    compat.mask_secret(secret)
    assert secret not in str(redact(f"value={secret}"))
    raw = uuid.uuid4().bytes + uuid.uuid4().bytes
    compat.mask_secret(raw)  # bytes: their printable forms are masked
    assert raw.hex() not in str(redact(f"der={raw.hex()}"))
    compat.mask_secret(None)  # empty values are ignored, not errors
    compat.mask_secret("")
