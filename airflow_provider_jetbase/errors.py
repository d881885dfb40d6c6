"""The provider's error family: ``except JetbaseProviderError`` catches every error the provider
raises on purpose (engine, drift check, connection mapping, Snowflake keys, operator parameters).

Each class also keeps the standard base it had (``ValueError``, ``RuntimeError``), so existing
``except ValueError`` code goes on working. No Airflow import here: the engine uses this module.
"""

from __future__ import annotations


class JetbaseProviderError(Exception):
    """Base class of every exception the provider defines."""


class ParameterError(JetbaseProviderError, ValueError):
    """An operator parameter (often rendered from a template) has a value the provider cannot use;
    the message names the parameter."""


def describe_error(exc: BaseException, secrets: tuple[str, ...] = ()) -> str:
    """``Type: message`` of the driver's own error, on one line: SQLAlchemy's ``str()`` appends the
    SQL statement (which may carry a secret) and a docs link. Each of ``secrets`` becomes ``***``."""
    orig = getattr(exc, "orig", None)
    inner = orig if isinstance(orig, BaseException) else exc
    message = " ".join(str(inner).split())
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    return f"{type(inner).__name__}: {message}" if message else type(inner).__name__
