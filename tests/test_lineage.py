"""Lineage: what the upgrade and rollback operators report to OpenLineage.

The pure part (migration/lineage.py: statements -> tables and lifecycle states, connection ->
OpenLineage namespace) is tested on its own; the facets (operators/_lineage.py) as OpenLineage's
own serializer writes them; and a real DAG run on a real PostgreSQL database with OpenLineage's
file transport (configured in the run's subprocess environment only) shows the events a lineage
backend receives.
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import URL, make_url

from airflow_provider_jetbase.migration.lineage import (
    LineageRecord,
    LineageTarget,
    TableChange,
    lineage_target,
    table_changes,
)
from airflow_provider_jetbase.migration.results import MigrationRun
from tests.airflow_harness import REPO_ROOT, AirflowHome, DagRunOutcome, conn_env_value
from tests.operator_helpers import write_migrations

PG = LineageTarget(
    "postgresql", "postgres://db.example:5432", "app", "public", ("database", "schema", "table")
)


def _changes(statements: list[str], target: LineageTarget = PG) -> list[tuple[str, str, str | None]]:
    return [(c.name, c.state, c.previous_name) for c in table_changes(statements, target)]


# ------------------------------------------------------------------------------------- namespaces
# One tuple per case: a bare "postgresql" parameter would put the case in the server tier
# (tests/conftest.py reads string parameters as server kinds), and these need no server.
@pytest.mark.parametrize(
    "case",
    [
        (
            "postgresql+psycopg2://u:secret@db.example/app",
            "postgresql",
            "postgres://db.example:5432",
            "app",
            "public",
        ),
        ("postgresql://u@db.example:6543/app", "postgresql", "postgres://db.example:6543", "app", "public"),
        ("mysql+pymysql://root:pw@10.0.0.5/shop", "mysql", "mysql://10.0.0.5:3306", "shop", None),
        ("mariadb+pymysql://root@10.0.0.5:3307/shop", "mariadb", "mysql://10.0.0.5:3307", "shop", None),
        ("sqlite:////data/app.db", "sqlite", "sqlite:///data/app.db", "/data/app.db", None),
        # OpenLineage's account normalisation: a legacy locator gets its cloud, an org-account stays.
        (
            "snowflake://u:pw@xy12345.us-east-1/SALES/RAW?warehouse=w",
            "snowflake",
            "snowflake://xy12345.us-east-1.aws",
            "SALES",
            "RAW",
        ),
        ("snowflake://u:pw@myorg-myacct/SALES", "snowflake", "snowflake://myorg-myacct", "SALES", "PUBLIC"),
        (
            "databricks://token:t@adb-1.2.azuredatabricks.net?http_path=/sql/1&catalog=main&schema=ops",
            "databricks",
            "databricks://adb-1.2.azuredatabricks.net",
            "main",
            "ops",
        ),
        (
            "clickhouse://default:@ch.example:8443/events?protocol=https",
            "clickhouse",
            "clickhouse://ch.example:8443",
            "events",
            None,
        ),
    ],
)
def test_namespace_and_defaults_follow_openlineage_naming(
    case: tuple[str, str, str, str, str | None],
) -> None:
    url, dialect, namespace, database, schema = case
    target = lineage_target(make_url(url), dialect)
    assert target is not None
    assert (target.namespace, target.database, target.schema) == (namespace, database, schema)
    assert "secret" not in json.dumps(target.to_dict()) and "pw" not in target.namespace


def test_an_unknown_database_has_no_target() -> None:
    assert lineage_target(make_url("oracle://u:p@h/x"), "oracle") is None


# ------------------------------------------------------------------------------ statements -> tables
def test_create_alter_drop_and_friends_map_to_lifecycle_states() -> None:
    assert _changes(
        [
            "CREATE TABLE Customers (id INTEGER PRIMARY KEY)",
            "CREATE TABLE IF NOT EXISTS billing.invoices (id INTEGER)",
            "ALTER TABLE orders ADD COLUMN note TEXT",
            "DROP TABLE IF EXISTS legacy, billing.old_invoices CASCADE",
            "TRUNCATE TABLE staging",
            "CREATE OR REPLACE VIEW v_orders AS SELECT * FROM orders",
            "ALTER TABLE billing.drafts RENAME TO proposals",
        ]
    ) == [
        ("app.public.customers", "CREATE", None),
        ("app.billing.invoices", "CREATE", None),
        ("app.public.orders", "ALTER", None),
        ("app.public.legacy", "DROP", None),
        ("app.billing.old_invoices", "DROP", None),
        ("app.public.staging", "TRUNCATE", None),
        ("app.public.v_orders", "OVERWRITE", None),
        # The new name keeps the old one's schema; the old name is the previous identifier.
        ("app.billing.proposals", "RENAME", "app.billing.drafts"),
    ]


def test_statements_that_change_no_dataset_add_none() -> None:
    assert (
        _changes(
            [
                "INSERT INTO orders VALUES (1)",
                "UPDATE orders SET note = 'x'",
                "CREATE INDEX orders_note ON orders (note)",
                "DROP INDEX orders_note",
                "this is not SQL at all (",
                "DO $$ BEGIN PERFORM 1; END $$",
            ]
        )
        == []
    )


def test_one_dataset_per_table_a_run_changed_several_times() -> None:
    assert _changes(
        [
            "CREATE TABLE a (id INTEGER)",
            "ALTER TABLE A ADD COLUMN x INTEGER",  # unquoted: the same table on PostgreSQL
            "CREATE TABLE b (id INTEGER)",
            "DROP TABLE b",  # created and dropped: it ends dropped
            "ALTER TABLE c ADD COLUMN y INTEGER",
            "CREATE TABLE d (id INTEGER)",
            "ALTER TABLE d RENAME TO e",  # created under another name: created
        ]
    ) == [
        ("app.public.a", "CREATE", None),
        ("app.public.b", "DROP", None),
        ("app.public.c", "ALTER", None),
        ("app.public.e", "CREATE", None),
    ]


def test_names_have_the_levels_and_case_rules_of_each_dialect() -> None:
    mysql = LineageTarget("mysql", "mysql://h:3306", "shop", None, ("database", "table"))
    assert _changes(["CREATE TABLE items (id INT)", "DROP TABLE other_db.t"], mysql) == [
        ("shop.items", "CREATE", None),
        ("other_db.t", "DROP", None),
    ]
    sqlite = LineageTarget("sqlite", "sqlite:///x.db", "/x.db", None, ("table",))
    assert _changes(["CREATE TABLE items (id INTEGER)"], sqlite) == [("items", "CREATE", None)]
    # Snowflake folds unquoted identifiers to upper case and keeps quoted ones.
    snow = LineageTarget("snowflake", "snowflake://org-acct", "SALES", "RAW", ("database", "schema", "table"))
    assert _changes(["CREATE TABLE items (id INT)", 'CREATE TABLE "Mixed" (id INT)'], snow) == [
        ("SALES.RAW.ITEMS", "CREATE", None),
        ("SALES.RAW.Mixed", "CREATE", None),
    ]
    databricks = LineageTarget(
        "databricks", "databricks://h", None, "default", ("database", "schema", "table")
    )
    assert _changes(["CREATE TABLE main.ops.t (i INT)", "CREATE TABLE u (i INT)"], databricks) == [
        ("main.ops.t", "CREATE", None),
        ("default.u", "CREATE", None),  # no catalog on the connection: none invented
    ]


def _run(filename: str, version: str, *statements: str) -> MigrationRun:
    return MigrationRun(filename, version, "VERSIONED", tuple(statements), f"sum-{version}", 1.0)


def test_a_dry_run_reports_no_statement_and_no_dataset() -> None:
    record = LineageRecord(
        "upgrade", PG, (_run("V1__a.sql", "1", "CREATE TABLE a (i INT)"),), None, "1", True
    )
    assert record.statements == () and record.changes() == ()
    record = LineageRecord(
        "upgrade", PG, (_run("V1__a.sql", "1", "CREATE TABLE a (i INT)"),), None, "1", False
    )
    assert record.changes() == (TableChange("app.public.a", "CREATE"),)


# ----------------------------------------------------------------------------------------- facets
def _serialized(obj: Any) -> Any:
    from openlineage.client.serde import Serde

    return json.loads(Serde.to_json(obj))


def test_facets_as_openlineage_serializes_them() -> None:
    from airflow_provider_jetbase.operators._lineage import operator_lineage

    record = LineageRecord(
        "upgrade",
        PG,
        (
            _run("V1__a.sql", "1", "CREATE TABLE a (i INT);"),
            _run("V2__b.sql", "2", "ALTER TABLE a RENAME TO b", "DROP TABLE z"),
        ),
        None,
        "2",
        False,
    )
    lineage = operator_lineage(record)
    assert lineage.inputs == []
    outputs = [_serialized(d) for d in lineage.outputs]
    assert [(d["namespace"], d["name"]) for d in outputs] == [
        ("postgres://db.example:5432", "app.public.b"),
        ("postgres://db.example:5432", "app.public.z"),
    ]
    assert outputs[0]["facets"]["lifecycleStateChange"]["lifecycleStateChange"] == "CREATE"
    assert outputs[1]["facets"]["lifecycleStateChange"]["lifecycleStateChange"] == "DROP"
    sql = _serialized(lineage.job_facets["sql"])
    assert sql["query"] == "CREATE TABLE a (i INT);\nALTER TABLE a RENAME TO b;\nDROP TABLE z;"
    run = _serialized(lineage.run_facets["jetbase"])
    assert run["command"] == "upgrade" and run["versionAfter"] == "2" and run["dryRun"] is False
    assert [m["filename"] for m in run["migrations"]] == ["V1__a.sql", "V2__b.sql"]
    assert run["migrations"][1] == {
        "filename": "V2__b.sql",
        "version": "2",
        "migrationType": "VERSIONED",
        "checksum": "sum-2",
    }


def test_a_rename_names_the_previous_identifier() -> None:
    from airflow_provider_jetbase.operators._lineage import operator_lineage

    record = LineageRecord(
        "upgrade", PG, (_run("V3__r.sql", "3", "ALTER TABLE a RENAME TO b"),), "2", "3", False
    )
    (dataset,) = [_serialized(d) for d in operator_lineage(record).outputs]
    facet = dataset["facets"]["lifecycleStateChange"]
    assert facet["lifecycleStateChange"] == "RENAME"
    assert facet["previousIdentifier"] == {"namespace": "postgres://db.example:5432", "name": "app.public.a"}


# ------------------------------------------------------------------------------------ cheap import
def test_importing_the_operator_module_imports_nothing_of_openlineage() -> None:
    import subprocess

    code = textwrap.dedent(
        """
        import json, sys
        import airflow, airflow.sdk
        before = {m for m in sys.modules if "openlineage" in m or m.startswith("sqlglot")}
        import airflow_provider_jetbase.operators.jetbase
        after = {m for m in sys.modules if "openlineage" in m or m.startswith("sqlglot")}
        print(json.dumps(sorted(after - before)))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


# ------------------------------------------------------------------------------- a real DAG run
LINEAGE_DAG = """
import datetime as dt
from airflow.sdk import DAG
from airflow_provider_jetbase.operators.jetbase import JetbaseRollbackOperator, JetbaseUpgradeOperator

DB = {"jetbase_conn_id": "jb_lineage", "migrations_dir": "migrations"}

with DAG("jetbase_lineage", schedule=None, start_date=dt.datetime(2024, 1, 1)) as dag:
    first = JetbaseUpgradeOperator(task_id="upgrade_v1", to_version="1", **DB)
    rest = JetbaseUpgradeOperator(task_id="upgrade_rest", **DB)
    back = JetbaseRollbackOperator(task_id="rollback", **DB)
    first >> rest >> back
"""

LINEAGE_MIGRATIONS = {
    "V1__customers.sql": (
        "CREATE TABLE customers (id INTEGER PRIMARY KEY);\n"
        "CREATE TABLE scratch (id INTEGER);\n\n"
        "-- rollback\nDROP TABLE scratch;\nDROP TABLE customers;\n"
    ),
    "V2__orders.sql": (
        "ALTER TABLE customers ADD COLUMN email TEXT;\n"
        "DROP TABLE scratch;\n"
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER);\n\n"
        "-- rollback\nDROP TABLE orders;\nCREATE TABLE scratch (id INTEGER);\n"
        "ALTER TABLE customers DROP COLUMN email;\n"
    ),
}


def _events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _complete(events: list[dict[str, Any]], task_id: str) -> dict[str, Any]:
    found = [
        e for e in events if e["eventType"] == "COMPLETE" and e["job"]["name"] == f"jetbase_lineage.{task_id}"
    ]
    assert len(found) == 1, [(e["eventType"], e["job"]["name"]) for e in events]
    return found[0]


def _states(event: dict[str, Any]) -> dict[str, str]:
    return {
        d["name"]: d["facets"]["lifecycleStateChange"]["lifecycleStateChange"]
        for d in event["outputs"]
        if "lifecycleStateChange" in d.get("facets", {})
    }


def test_a_real_run_emits_complete_events_with_the_changes(lineage_runs: LineageRuns) -> None:
    postgres_url, events_file, outcome = lineage_runs.url, lineage_runs.events_file, lineage_runs.outcome
    assert outcome.tasks == {"upgrade_v1": "success", "upgrade_rest": "success", "rollback": "success"}, (
        outcome.explain()
    )
    events = _events(events_file)
    namespace = f"postgres://{postgres_url.host}:{postgres_url.port or 5432}"
    prefix = f"{postgres_url.database}.public."

    first = _complete(events, "upgrade_v1")
    assert {d["namespace"] for d in first["outputs"]} == {namespace}
    assert _states(first) == {prefix + "customers": "CREATE", prefix + "scratch": "CREATE"}
    assert first["job"]["facets"]["sql"]["query"] == (
        "CREATE TABLE customers (id INTEGER PRIMARY KEY);\nCREATE TABLE scratch (id INTEGER);"
    )
    jetbase = first["run"]["facets"]["jetbase"]
    assert (jetbase["command"], jetbase.get("versionBefore"), jetbase["versionAfter"]) == (
        "upgrade",
        None,
        "1",
    )
    assert [m["filename"] for m in jetbase["migrations"]] == ["V1__customers.sql"]

    rest = _complete(events, "upgrade_rest")
    assert _states(rest) == {
        prefix + "customers": "ALTER",
        prefix + "scratch": "DROP",
        prefix + "orders": "CREATE",
    }
    assert "ALTER TABLE customers ADD COLUMN email TEXT;" in rest["job"]["facets"]["sql"]["query"]
    jetbase = rest["run"]["facets"]["jetbase"]
    assert (jetbase["versionBefore"], jetbase["versionAfter"]) == ("1", "2")
    assert [m["version"] for m in jetbase["migrations"]] == ["2"]

    back = _complete(events, "rollback")
    assert _states(back) == {
        prefix + "orders": "DROP",
        prefix + "scratch": "CREATE",
        prefix + "customers": "ALTER",
    }
    assert back["job"]["facets"]["sql"]["query"].startswith("DROP TABLE orders;")
    jetbase = back["run"]["facets"]["jetbase"]
    assert (jetbase["command"], jetbase["versionBefore"], jetbase["versionAfter"]) == ("rollback", "2", "1")
    # Nothing secret reaches the events: the URL's password is never part of a namespace or facet.
    if postgres_url.password:
        assert postgres_url.password not in events_file.read_text()


FAILING_DAG = """
import datetime as dt
from airflow.sdk import DAG
from airflow_provider_jetbase.operators.jetbase import JetbaseUpgradeOperator

with DAG("jetbase_lineage_fail", schedule=None, start_date=dt.datetime(2024, 1, 1)) as dag:
    JetbaseUpgradeOperator(
        task_id="migrate", jetbase_conn_id="jb_lineage_fail", migrations_dir="migrations_fail"
    )
"""

FAILING_MIGRATIONS = {
    "V1__ok.sql": "CREATE TABLE kept (id INTEGER);\n",
    # PostgreSQL rolls the whole file back: its CREATE never happened.
    "V2__broken.sql": "CREATE TABLE never (id INTEGER);\nINSERT INTO no_such_table VALUES (1);\n",
}


@dataclass
class LineageRuns:
    url: URL
    fail_url: URL
    events_file: Path
    outcome: DagRunOutcome
    fail_outcome: DagRunOutcome


@pytest.fixture(scope="module")
def lineage_runs(
    airflow_home: AirflowHome, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LineageRuns]:
    """Both real DAG runs, each on a fresh PostgreSQL database of its own, in one subprocess
    (tests/airflow_harness.py) writing its OpenLineage events to one file."""
    from tests import dbs
    from tests.conftest import _require_server

    _require_server("postgres")
    root = tmp_path_factory.mktemp("lineage")
    dags = root / "dags"
    write_migrations(dags / "migrations", LINEAGE_MIGRATIONS)
    (dags / "lineage_dag.py").write_text(LINEAGE_DAG)
    write_migrations(dags / "migrations_fail", FAILING_MIGRATIONS)
    (dags / "failing_dag.py").write_text(FAILING_DAG)
    events_file = root / "openlineage.jsonl"
    transport = {"type": "file", "log_file_path": str(events_file), "append": True}
    env = {"AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(transport), "AIRFLOW__OPENLINEAGE__NAMESPACE": "t"}
    with dbs.fresh_database("postgres") as url, dbs.fresh_database("postgres") as fail_url:
        connections = {"jb_lineage": conn_env_value(url), "jb_lineage_fail": conn_env_value(fail_url)}
        with airflow_home.session(dags, connections=connections, env=env) as session:
            outcome = session.run(dags / "lineage_dag.py", "jetbase_lineage")
            fail_outcome = session.run(dags / "failing_dag.py", "jetbase_lineage_fail")
        yield LineageRuns(url, fail_url, events_file, outcome, fail_outcome)


def test_a_failed_upgrade_reports_what_committed_before_the_failure(lineage_runs: LineageRuns) -> None:
    postgres_url, events_file, outcome = (
        lineage_runs.fail_url,
        lineage_runs.events_file,
        lineage_runs.fail_outcome,
    )
    assert outcome.tasks == {"migrate": "failed"}, outcome.explain()
    failed = [
        e
        for e in _events(events_file)
        if e["eventType"] == "FAIL" and e["job"]["name"] == "jetbase_lineage_fail.migrate"
    ]
    assert len(failed) == 1
    (event,) = failed
    assert _states(event) == {f"{postgres_url.database}.public.kept": "CREATE"}
    assert event["job"]["facets"]["sql"]["query"] == "CREATE TABLE kept (id INTEGER);"
    jetbase = event["run"]["facets"]["jetbase"]
    assert jetbase["failed"] is True and jetbase["versionAfter"] == "1"
    assert [m["filename"] for m in jetbase["migrations"]] == ["V1__ok.sql"]


WITHOUT_OPENLINEAGE = """
import importlib.abc, json, sys


# As if neither OpenLineage's client nor its provider were installed; only the provider's entry point
# (its get_provider_info, which `import airflow` reads through the providers manager) stays.
ENTRY_POINT = {"airflow.providers.openlineage", "airflow.providers.openlineage.get_provider_info"}


class NoOpenLineage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        blocked = name == "openlineage" or name.startswith(("openlineage.", "airflow.providers.openlineage."))
        if blocked and name not in ENTRY_POINT:
            raise ModuleNotFoundError(f"blocked: {name}")
        return None


sys.meta_path.insert(0, NoOpenLineage())
sys.path.insert(0, REPO)
from tests.test_lineage import PG, _run
from airflow_provider_jetbase.migration.lineage import LineageRecord
from airflow_provider_jetbase.operators.jetbase import JetbaseRollbackOperator, JetbaseUpgradeOperator

results = []
for cls in (JetbaseUpgradeOperator, JetbaseRollbackOperator):
    op = cls(task_id="t", migrations_dir="m")
    runs = (_run("V1__a.sql", "1", "CREATE TABLE a (i INT)"),)
    op._lineage_record = LineageRecord("upgrade", PG, runs, None, "1", False)
    results += [op.get_openlineage_facets_on_complete(None), op.get_openlineage_facets_on_failure(None)]
loaded = sorted(m for m in sys.modules if "openlineage" in m and m not in ENTRY_POINT)
print(json.dumps({"results": [r is None for r in results], "loaded": loaded}))
"""


def test_without_openlineage_the_operators_report_nothing_and_import_nothing_of_it() -> None:
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-c", f"REPO = {str(REPO_ROOT)!r}\n" + WITHOUT_OPENLINEAGE],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO_ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {"results": [True, True, True, True], "loaded": []}
