"""The error family: ``except JetbaseProviderError`` catches everything the provider raises on
purpose, and each error keeps its standard base and its message."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import airflow_provider_jetbase
from airflow_provider_jetbase import JetbaseProviderError


def _defined_exceptions() -> list[type[BaseException]]:
    found: list[type[BaseException]] = []
    for info in pkgutil.walk_packages(airflow_provider_jetbase.__path__, "airflow_provider_jetbase."):
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == module.__name__:
                found.append(obj)
    return found


def test_every_exception_class_the_provider_defines_is_a_jetbase_provider_error() -> None:
    found = _defined_exceptions()
    names = {cls.__name__ for cls in found}
    # The walk really reached every layer (engine, drift, mapping, keys, operators).
    assert {
        "JetbaseError",
        "LockTimeoutError",
        "DriftCheckError",
        "ReplayError",
        "SchemaModelError",
        "ConnectionConfigError",
        "PrivateKeyError",
        "ParameterError",
        "TaskKilledError",
    } <= names
    assert [cls.__qualname__ for cls in found if not issubclass(cls, JetbaseProviderError)] == []


def test_errors_keep_their_standard_bases() -> None:
    from airflow_provider_jetbase.connection_mapping import ConnectionConfigError
    from airflow_provider_jetbase.drift.check import DriftCheckError
    from airflow_provider_jetbase.drift.replay import ReplayError
    from airflow_provider_jetbase.migration import InvalidArgumentError, JetbaseError
    from airflow_provider_jetbase.snowflake_keys import PrivateKeyError

    for cls in (
        ConnectionConfigError,
        PrivateKeyError,
        InvalidArgumentError,
        airflow_provider_jetbase.ParameterError,
    ):
        assert issubclass(cls, ValueError), cls
    for runtime in (DriftCheckError, ReplayError):
        assert issubclass(runtime, RuntimeError), runtime
    assert issubclass(JetbaseError, JetbaseProviderError)


def _bad_count() -> None:
    from airflow_provider_jetbase.migration.planner import upgrade_options

    upgrade_options(count=0)


def _bad_connection() -> None:
    from airflow_provider_jetbase.connection_mapping import ConnectionFields, build_engine_spec

    build_engine_spec(ConnectionFields(conn_id="c1", conn_type="nosuchdb"))


def _bad_parameter() -> None:
    from airflow_provider_jetbase.operators import _params

    _params.to_bool("dry_run", "maybe")


def _bad_fail_on() -> None:
    from airflow_provider_jetbase.drift.report import resolve_fail_on

    resolve_fail_on("colum_added")


def _bad_folder(tmp_path: Path) -> Callable[[], None]:
    def run() -> None:
        import logging

        from airflow_provider_jetbase.migration.files import discover

        discover(tmp_path / "missing", logging.getLogger("test_error_family"))

    return run


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("count", "'count' must be a positive integer, got 0"),
        ("connection", "Airflow connection 'c1', field 'conn_type': unsupported connection type 'nosuchdb'"),
        ("parameter", "Parameter 'dry_run' must be a boolean (true/false), got 'maybe'"),
        ("fail_on", "fail_on: unknown finding kind 'colum_added'"),
        ("folder", "does not exist or is not a folder"),
    ],
)
def test_one_except_clause_catches_engine_mapping_parameter_and_drift_errors(
    name: str, message: str, tmp_path: Path
) -> None:
    calls = {
        "count": _bad_count,
        "connection": _bad_connection,
        "parameter": _bad_parameter,
        "fail_on": _bad_fail_on,
        "folder": _bad_folder(tmp_path),
    }
    with pytest.raises(JetbaseProviderError) as caught:
        calls[name]()
    assert message in str(caught.value)


def test_the_error_family_imports_nothing_heavy() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; import airflow_provider_jetbase.errors; "
            "print(sorted(m for m in ('airflow', 'sqlalchemy') if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "[]"
