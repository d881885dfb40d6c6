"""Airflow 3.x / 2.11 import shims.

Airflow 3 moved the authoring API to ``airflow.sdk``; Airflow 2.11 only has the old locations.
Every other module of the provider imports these names from here so that the version dance lives
in one place. Names exported (stable): ``AIRFLOW_V_3_0_PLUS``, ``AIRFLOW_V_3_2_PLUS``,
``BaseHook``, ``BaseOperator``, ``BaseSensorOperator``, ``BaseTrigger``, ``TriggerEvent``,
``Asset``, ``AssetAlias``, ``Context``, ``mask_secret``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow import __version__ as _AIRFLOW_VERSION
from packaging.version import Version

_airflow_base_version = Version(Version(_AIRFLOW_VERSION).base_version)
AIRFLOW_V_3_0_PLUS = _airflow_base_version >= Version("3.0.0")
AIRFLOW_V_3_2_PLUS = _airflow_base_version >= Version("3.2.0")

if TYPE_CHECKING:
    from airflow.sdk import Asset, AssetAlias, BaseHook, BaseOperator, BaseSensorOperator, Context
    from airflow.triggers.base import BaseTrigger, TriggerEvent
else:
    try:
        from airflow.sdk import BaseHook, BaseOperator, BaseSensorOperator
    except ImportError:  # Airflow 2.11
        from airflow.hooks.base import BaseHook
        from airflow.models.baseoperator import BaseOperator
        from airflow.sensors.base import BaseSensorOperator

    try:
        from airflow.sdk import Asset, AssetAlias
    except ImportError:  # Airflow 2.x calls assets datasets
        from airflow.datasets import Dataset as Asset
        from airflow.datasets import DatasetAlias as AssetAlias  # 2.10+

    try:
        from airflow.sdk import Context
    except ImportError:
        from airflow.utils.context import Context

    # Triggers stayed in airflow.triggers.base in 3.x (the triggerer is server-side).
    from airflow.triggers.base import BaseTrigger, TriggerEvent


def _load_mask_secret() -> Callable[..., None]:
    candidates = (
        "airflow.sdk.log",  # public in Airflow 3.x
        "airflow.sdk._shared.secrets_masker",
        "airflow.sdk.execution_time.secrets_masker",  # 3.0/3.1, deprecated later
        "airflow.utils.log.secrets_masker",  # Airflow 2.x
    )
    import importlib
    import warnings

    for module_name in candidates:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                module = importlib.import_module(module_name)
        except ImportError:
            continue
        func = getattr(module, "mask_secret", None)
        if callable(func):
            return func
    return _no_masker


def _no_masker(secret: Any, name: str | None = None) -> None:
    """Used only if no Airflow masker can be found; secrets are still never logged by us."""


def mask_secret(secret: str | bytes | None, name: str | None = None) -> None:
    """Register ``secret`` with Airflow's secrets masker (a no-op for empty values)."""
    if not secret:
        return
    if isinstance(secret, bytes):
        # The masker works on text: register the forms that could be printed.
        import base64

        for form in (base64.b64encode(secret).decode("ascii"), secret.hex()):
            mask_secret(form, name)
        return
    # Looked up per call (cheap: modules are cached by Python) to keep no state of our own.
    _load_mask_secret()(secret, name)


__all__ = [
    "AIRFLOW_V_3_0_PLUS",
    "AIRFLOW_V_3_2_PLUS",
    "Asset",
    "AssetAlias",
    "BaseHook",
    "BaseOperator",
    "BaseSensorOperator",
    "BaseTrigger",
    "Context",
    "TriggerEvent",
    "mask_secret",
]
