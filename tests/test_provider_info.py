"""Provider metadata and discovery by the real Airflow installed in the venv."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_2_PLUS

import airflow_provider_jetbase
from airflow_provider_jetbase import get_provider_info

OFFICIAL_TYPES = ("postgres", "mysql", "sqlite", "snowflake", "databricks", "clickhouse")


def _airflow_dir() -> Path:
    import airflow

    return Path(airflow.__file__).parent


def _isolated_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(tmp_path / "airflow_home"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
    )
    return env


def _run_python(code: str, tmp_path: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=_isolated_env(tmp_path),
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_provider_info_shape() -> None:
    info = get_provider_info()
    assert info["package-name"] == "airflow-provider-jetbase"
    assert info["versions"] == [airflow_provider_jetbase.__version__]
    assert info["connection-types"] == [
        {
            "hook-class-name": "airflow_provider_jetbase.hooks.jetbase.JetbaseHook",
            "connection-type": "jetbase",
            "hook-name": "Jetbase",
            "conn-fields": info["connection-types"][0]["conn-fields"],
            "ui-field-behaviour": info["connection-types"][0]["ui-field-behaviour"],
        }
    ]
    modules = {
        m
        for section in ("hooks", "operators", "sensors", "triggers")
        for e in info[section]
        for m in e["python-modules"]
    }
    assert modules == {
        "airflow_provider_jetbase.hooks.jetbase",
        "airflow_provider_jetbase.operators.jetbase",
        "airflow_provider_jetbase.operators.drift",
        "airflow_provider_jetbase.operators.baseline",
        "airflow_provider_jetbase.operators.fleet",
        "airflow_provider_jetbase.sensors.jetbase",
        "airflow_provider_jetbase.triggers.jetbase",
    }
    # Each call returns fresh objects: Airflow may adjust what it is given.
    assert get_provider_info() is not info
    assert (
        get_provider_info()["connection-types"][0]["conn-fields"]
        is not info["connection-types"][0]["conn-fields"]
    )


def test_provider_info_validates_against_airflow_schemas() -> None:
    info = get_provider_info()
    provider_info_schema = json.loads((_airflow_dir() / "provider_info.schema.json").read_text())
    jsonschema.validate(info, provider_info_schema)
    # conn-fields / ui-field-behaviour are described in provider.yaml's schema (Airflow 3.2+).
    yaml_schema = json.loads((_airflow_dir() / "provider.yaml.schema.json").read_text())
    conn_type_schema = yaml_schema["properties"]["connection-types"]
    jsonschema.validate(info["connection-types"], conn_type_schema)


def test_conn_fields_secrets_are_password_format() -> None:
    fields = get_provider_info()["connection-types"][0]["conn-fields"]
    assert set(fields) == {
        "sqlalchemy_url",
        "postgres_schema",
        "private_key_content",
        "private_key_file",
        "private_key_passphrase",
    }
    secret = {name for name, f in fields.items() if f["schema"].get("format") == "password"}
    assert secret == {"private_key_content", "private_key_passphrase"}


def test_legacy_ui_methods_match_the_declarative_form() -> None:
    from airflow_provider_jetbase.hooks.jetbase import JetbaseHook

    behaviour = JetbaseHook.get_ui_field_behaviour()
    declared = get_provider_info()["connection-types"][0]["ui-field-behaviour"]
    assert behaviour["hidden_fields"] == declared["hidden-fields"]
    assert behaviour["relabeling"] == declared["relabeling"]
    assert behaviour["placeholders"] == declared["placeholders"]
    try:
        widgets = JetbaseHook.get_connection_form_widgets()
    except ImportError as exc:
        # Airflow 3 installs have no flask-appbuilder/wtforms; its providers manager expects exactly
        # this ImportError from such hooks and reads conn-fields instead.
        assert exc.name is not None and exc.name.split(".")[0] in {
            "flask_appbuilder",
            "wtforms",
            "flask_babel",
        }
        return
    assert set(widgets) == set(get_provider_info()["connection-types"][0]["conn-fields"])


def test_importing_the_package_and_hook_stays_cheap(tmp_path: Path) -> None:
    out = _run_python(
        """
        import sys
        import airflow_provider_jetbase
        print("after_package", sorted(m for m in ("sqlalchemy", "airflow") if m in sys.modules))
        import airflow.providers.common.compat.sdk  # Airflow itself: what any provider pays
        baseline = set(sys.modules)
        import airflow_provider_jetbase.hooks.jetbase
        heavy = ("cryptography", "snowflake", "psycopg2", "psycopg", "pymysql", "databricks",
                 "clickhouse_sqlalchemy", "airflow_provider_jetbase.migration",
                 "airflow_provider_jetbase.connection_mapping", "airflow_provider_jetbase.snowflake_keys",
                 "jetbase", "sqlalchemy.dialects.postgresql", "sqlalchemy.dialects.mysql")
        new = set(sys.modules) - baseline
        print("after_hook", sorted(m for m in new if m.split(".")[0] in heavy or m in heavy))
        print("new_modules", sorted(new))
        """,
        tmp_path,
    )
    assert "after_package []" in out
    assert "after_hook []" in out


@pytest.fixture(scope="module")
def discovered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What Airflow's ProvidersManager (the API server's view) knows of the provider, read once."""
    out = _run_python(
        f"""
        import json, warnings
        warnings.simplefilter("ignore")
        from airflow.providers_manager import ProvidersManager
        pm = ProvidersManager()
        info = pm.hooks["jetbase"]
        ours = sorted(t for t in list(pm.hooks) if (pm.hooks.get(t) and
                      pm.hooks.get(t).package_name == "airflow-provider-jetbase"))
        result = {{
            "listed": "airflow-provider-jetbase" in pm.providers,
            "hook": info.hook_class_name if info else None,
            "conn_id_attr": info.connection_id_attribute_name if info else None,
            "ours": ours,
            "official_types_hooks": {{t: (pm.hooks.get(t).package_name if pm.hooks.get(t) else None)
                                     for t in {OFFICIAL_TYPES!r}}},
            "widgets": sorted(k for k in pm.connection_form_widgets if k.startswith("extra__jetbase__")),
            "behaviour": pm.field_behaviours.get("jetbase"),
        }}
        print("RESULT=" + json.dumps(result))
        """,
        tmp_path_factory.mktemp("providers_manager"),
    )
    result: dict[str, Any] = json.loads(out.split("RESULT=", 1)[1])
    return result


def test_providers_manager_discovers_the_provider_and_hook(discovered: dict[str, Any]) -> None:
    assert discovered["listed"] is True
    assert discovered["hook"] == "airflow_provider_jetbase.hooks.jetbase.JetbaseHook"
    assert discovered["conn_id_attr"] == "jetbase_conn_id"
    assert discovered["ours"] == ["jetbase"]
    for conn_type, package in discovered["official_types_hooks"].items():
        assert package != "airflow-provider-jetbase", conn_type


@pytest.mark.xfail(
    not AIRFLOW_V_3_2_PLUS,
    reason="Airflow 3.1's ProvidersManager takes a hook's connection form (extra fields and field "
    "behaviour) only from get_connection_form_widgets()/get_ui_field_behaviour(), and skips both when "
    "wtforms/flask-appbuilder (the FAB provider) are not installed; 3.2 reads the provider info's "
    "conn-fields and ui-field-behaviour",
    strict=True,
)
def test_providers_manager_reads_the_connection_form(discovered: dict[str, Any]) -> None:
    assert discovered["behaviour"]["hidden_fields"] == ["host", "port", "schema"]
    assert discovered["widgets"] == sorted(
        f"extra__jetbase__{f}"
        for f in (
            "sqlalchemy_url",
            "postgres_schema",
            "private_key_content",
            "private_key_file",
            "private_key_passphrase",
        )
    )


@pytest.mark.skipif(not AIRFLOW_V_3_2_PLUS, reason="ProvidersManagerTaskRuntime is new in Airflow 3.2")
def test_task_runtime_providers_manager_resolves_the_hook(tmp_path: Path) -> None:
    out = _run_python(
        """
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime
        info = ProvidersManagerTaskRuntime().hooks["jetbase"]
        print("HOOK=" + info.hook_class_name)
        """,
        tmp_path,
    )
    assert "HOOK=airflow_provider_jetbase.hooks.jetbase.JetbaseHook" in out


def test_airflow_providers_list_shows_it(tmp_path: Path) -> None:
    airflow_cli = Path(sys.executable).with_name("airflow")
    result = subprocess.run(
        [str(airflow_cli), "providers", "list", "--output", "json"],
        capture_output=True,
        text=True,
        env=_isolated_env(tmp_path),
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    start = result.stdout.index("[")
    providers = {p["package_name"]: p for p in json.loads(result.stdout[start:])}
    assert providers["airflow-provider-jetbase"]["version"] == airflow_provider_jetbase.__version__
