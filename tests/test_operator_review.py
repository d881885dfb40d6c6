"""The operators' review parameters on real databases: a dry run's plan in XCom, ``plan_hash``
(templated, as a hash or as the plan itself) checked before anything runs, ``lint`` in the task log
and XCom."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import URL

from airflow_provider_jetbase.errors import ParameterError
from airflow_provider_jetbase.migration.errors import LintFailedError, PlanMismatchError
from airflow_provider_jetbase.operators import _params
from tests.operator_helpers import (
    CONN_ID,
    UseConn,
    applied_versions,
    make_dag,
    render_and_execute,
    table_names,
    write_migrations,
)
from tests.test_operators import use_conn  # noqa: F401 - the fixture

MIGRATIONS = {
    "V1__create_a.sql": "CREATE TABLE table_a (id INTEGER PRIMARY KEY);\n-- rollback\nDROP TABLE table_a;\n",
    "V2__create_b.sql": "CREATE TABLE table_b (id INTEGER PRIMARY KEY, n INTEGER);\n"
    "-- rollback\nDROP TABLE table_b;\n",
    "V3__fill_b.sql": "UPDATE table_b SET n = 0;\n",
}


def _operator(
    kind: str, dag_file: Path, migrations: Path, params: dict[str, Any] | None = None, **kw: Any
) -> Any:
    from airflow_provider_jetbase.operators.jetbase import JetbaseRollbackOperator, JetbaseUpgradeOperator

    cls = JetbaseUpgradeOperator if kind == "upgrade" else JetbaseRollbackOperator
    with make_dag(f"t_review_{kind}", fileloc=dag_file, params=params):
        return cls(task_id=kind, jetbase_conn_id=CONN_ID, migrations_dir=str(migrations), **kw)


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mysql"])
def test_dry_run_plan_then_apply_with_templated_plan_hash(
    kind: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    use_conn: UseConn,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    url: URL = request.getfixturevalue(f"{kind}_url")
    use_conn(url)
    migrations = write_migrations(tmp_path / "migrations", MIGRATIONS)
    dag_file = tmp_path / "dag.py"

    plan_xcom, _ = render_and_execute(_operator("upgrade", dag_file, migrations, dry_run=True))
    json.dumps(plan_xcom)
    plan = plan_xcom["plan"]
    assert plan_xcom["plan_hash"] == plan["plan_hash"]
    assert [s["filename"] for s in plan["steps"]] == list(MIGRATIONS)
    assert plan["database"]["connection_id"] == CONN_ID
    assert [(f["rule"], f["file"], f["line"]) for f in plan_xcom["lint"]] == [
        ("no-rollback-section", "V3__fill_b.sql", None),
        ("update-without-where", "V3__fill_b.sql", 1),
    ]
    assert plan_xcom["lint"] == plan["lint"]
    assert "| 3 | 3 | `V3__fill_b.sql` | VERSIONED | 1 |" in plan_xcom["plan_markdown"]
    log = capsys.readouterr().out
    assert "Lint of the statements that would run" in log
    assert "update-without-where | V3__fill_b.sql | 1" in log
    assert applied_versions(url) == []

    # What Jinja renders the pulled plan to (a dict's Python repr) gives the exact differences.
    (migrations / "V4__create_d.sql").write_text("CREATE TABLE table_d (id INTEGER PRIMARY KEY);\n")
    refused = _operator("upgrade", dag_file, migrations, params={"plan": plan}, plan_hash="{{ params.plan }}")
    with pytest.raises(PlanMismatchError, match="file\\(s\\) added: V4__create_d.sql"):
        render_and_execute(refused, params={"plan": plan})
    assert applied_versions(url) == [] and "table_a" not in table_names(url)

    (migrations / "V4__create_d.sql").unlink()
    apply = _operator("upgrade", dag_file, migrations, plan_hash="{{ params.plan_hash }}")
    result, _ = render_and_execute(apply, params={"plan_hash": plan["plan_hash"]})
    assert result["versions_applied"] == ["1", "2", "3"] and result["plan_hash"] == plan["plan_hash"]
    assert "plan" not in result and [f["rule"] for f in result["lint"]] == [f["rule"] for f in plan["lint"]]
    assert applied_versions(url) == ["1", "2", "3"]


def test_rollback_with_a_stale_plan_hash_fails_before_anything_runs(
    sqlite_url: URL,
    tmp_path: Path,
    use_conn: UseConn,  # noqa: F811
) -> None:
    use_conn(sqlite_url)
    files = {**MIGRATIONS, "V3__fill_b.sql": "UPDATE table_b SET n = 0;\n-- rollback\nSELECT 1;\n"}
    migrations = write_migrations(tmp_path / "migrations", files)
    dag_file = tmp_path / "dag.py"
    render_and_execute(_operator("upgrade", dag_file, migrations, to_version="2"))
    plan_xcom, _ = render_and_execute(_operator("rollback", dag_file, migrations, dry_run=True))
    assert plan_xcom["plan"]["command"] == "rollback"
    assert [(f["rule"], f["line"]) for f in plan_xcom["lint"]] == [("drop-table", 3)]
    render_and_execute(_operator("upgrade", dag_file, migrations, lint="off"))  # the database moves on
    stale = _operator("rollback", dag_file, migrations, plan_hash=json.dumps(plan_xcom))
    with pytest.raises(PlanMismatchError, match="approved at version 2, now at 3"):
        render_and_execute(stale)
    assert applied_versions(sqlite_url) == ["1", "2", "3"]


def test_lint_fail_operator_leaves_the_database_unchanged(
    postgres_url: URL,
    tmp_path: Path,
    use_conn: UseConn,  # noqa: F811
) -> None:
    use_conn(postgres_url)
    migrations = write_migrations(tmp_path / "migrations", MIGRATIONS)
    with pytest.raises(LintFailedError, match="update-without-where"):
        render_and_execute(_operator("upgrade", tmp_path / "dag.py", migrations, lint="fail"))
    assert applied_versions(postgres_url) == [] and "table_a" not in table_names(postgres_url)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, (None, None)),
        ("  ab12  ", ("ab12", None)),
        ({"plan_hash": "ab12", "steps": []}, ("ab12", {"plan_hash": "ab12", "steps": []})),
        ('{"plan_hash": "ab12"}', ("ab12", {"plan_hash": "ab12"})),
        (
            "{'plan_hash': 'ab12', 'version_before': None}",
            ("ab12", {"plan_hash": "ab12", "version_before": None}),
        ),
        (
            {"plan_hash": "ab12", "plan": {"plan_hash": "ab12", "x": 1}},
            ("ab12", {"plan_hash": "ab12", "x": 1}),
        ),
    ],
)
def test_plan_hash_parameter_forms(value: Any, expected: Any) -> None:
    assert _params.to_plan_expectation(value) == expected


@pytest.mark.parametrize("value", ["{not a plan", {"no_hash": 1}, 42, "", "None", " null "])
def test_plan_hash_parameter_rejects_other_values(value: Any) -> None:
    with pytest.raises(ParameterError, match="plan_hash"):
        _params.to_plan_expectation(value)


def test_lint_parameter() -> None:
    assert [_params.to_lint_mode(v) for v in (None, "None", "WARN", "fail", "off")] == [
        "warn",
        "warn",
        "warn",
        "fail",
        "off",
    ]
    with pytest.raises(ParameterError, match="'lint'"):
        _params.to_lint_mode("strict")
