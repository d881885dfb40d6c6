"""The data of the "Schema versions" page, assembled from task records and asset events (no Airflow).

The real page, on a real API server with real runs, is tested in tests/ui/test_schema_versions_ui.py.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_provider_jetbase import schema_versions as sv

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def _rec(
    operator: str,
    conn_id: str,
    minute: int,
    state: str = "success",
    task_id: str = "t",
    **xcoms: Any,
) -> sv.TaskRecord:
    return sv.TaskRecord(
        dag_id="fleet",
        run_id=f"run_{minute}",
        task_id=task_id,
        map_index=-1,
        operator=operator,
        state=state,
        end_date=T0 + timedelta(minutes=minute),
        conn_id=conn_id,
        xcoms=xcoms,
    )


def _status(current: str, pending: int, locked: bool = False) -> dict[str, Any]:
    return {
        "current": current,
        "applied": [],
        "pending": [{"version": str(i), "filename": f"V{i}__x.sql"} for i in range(pending)],
        "lock": {
            "is_locked": locked,
            "locked_at": "2026-12-01T12:00:00" if locked else None,
            "process_id": "other:1" if locked else None,
            "supported": True,
        },
    }


def test_assemble_one_row_per_database_from_status_plan_drift_errors_and_asset_events() -> None:
    upgrade = {
        "jetbase_conn_id": "a",
        "dry_run": False,
        "version_before": "1",
        "version_after": "3",
        "versions_applied": ["2", "3"],
        "applied": [],
        "duration_ms": 5.0,
    }
    plan = {
        "jetbase_conn_id": "b",
        "dry_run": True,
        "version_before": "1",
        "version_after": "3",
        "versions_applied": ["2", "3"],
        "applied": [{"version": "2"}, {"version": "3"}],
        "plan": {"database": {"dialect": "mysql"}},
    }
    records = [
        _rec(sv.UPGRADE, "a", 1, return_value=upgrade),
        _rec(sv.STATUS, "a", 2, return_value=_status("3", 0)),
        _rec(
            sv.DRIFT,
            "a",
            3,
            drift_report={
                "status": "drift",
                "dialect": "postgresql",
                "current_version": "3",
                "pending_count": 0,
            },
        ),
        _rec(sv.UPGRADE, "b", 1, return_value=plan),
        _rec(sv.STATUS, "c", 1, return_value=_status("2", 0, locked=True)),
        # "d" answered at minute 1, then failed twice: a status with no XCom, an upgrade's error record.
        _rec(sv.STATUS, "d", 1, return_value=_status("5", 1)),
        _rec(sv.STATUS, "d", 4, state="failed"),
        _rec(
            sv.UPGRADE,
            "d",
            5,
            state="failed",
            jetbase_error={
                "jetbase_conn_id": "d",
                "error": "OperationalError: connection refused",
                "versions_applied": [],
                "version_before": None,
                "version_after": None,
                "duration_ms": 1.0,
            },
        ),
        # A later failure with no error record keeps the upgrade's error (same outage), not its time.
        _rec(sv.STATUS, "d", 6, state="failed"),
        _rec(sv.STATUS, None, 9, return_value=_status("9", 9)),  # type: ignore[arg-type]
        _rec("PythonOperator", "a", 9, return_value={"current": "99"}),
    ]
    events = [sv.AssetEventRecord("a", T0 + timedelta(minutes=1), {"versions": ["2", "3"]})]
    rows = {row.conn_id: row for row in sv.assemble(records, events, {"a": "postgresql", "d": None})}

    assert list(rows) == ["a", "b", "c", "d"]
    a = rows["a"]
    assert (a.dialect, a.current_version, a.pending, a.locked, a.drift) == (
        "postgresql",
        "3",
        0,
        False,
        "drift",
    )
    assert a.reachable is True and a.last_seen == T0 + timedelta(minutes=3)
    assert a.last_change == ("2", "3") and a.last_change_at == T0 + timedelta(minutes=1)
    assert [r.kind for r in a.runs] == ["drift", "status", "upgrade"]  # newest first, ours only
    assert a.runs[0].href == "/dags/fleet/runs/run_3/tasks/t"

    b = rows["b"]
    assert (b.dialect, b.current_version, b.pending, b.locked) == ("mysql", "1", 2, None)

    c = rows["c"]
    assert c.locked is True and c.lock_detail == "since 2026-12-01T12:00:00 by other:1"

    d = rows["d"]
    assert d.reachable is False and d.last_seen == T0 + timedelta(minutes=1)
    assert d.current_version == "5"  # as it was when it last answered
    assert d.last_error == "OperationalError: connection refused"
    assert d.last_error_at == T0 + timedelta(minutes=6)


def test_a_later_success_makes_a_database_reachable_again_and_runs_are_capped() -> None:
    records = [_rec(sv.STATUS, "x", m, state="failed") for m in range(5)]
    records.append(_rec(sv.STATUS, "x", 6, return_value=_status("1", 0)))
    (row,) = sv.assemble(records)
    assert row.reachable is True and row.last_error is not None  # the error stays, for the record
    assert len(row.runs) == sv.RUN_LINKS and row.runs[0].run_id == "run_6"


def test_identity_helpers() -> None:
    assert sv.dialect_of("postgres") == "postgresql"
    assert sv.dialect_of("jetbase", "mysql+pymysql://u:secret@h/db") == "mysql"
    assert sv.dialect_of("jetbase", None) is None and sv.dialect_of("http") is None
    assert sv.dialect_of("jetbase", "mariadb+pymysql://h/db") == "mysql"  # the dialect table's name
    assert sv.asset_conn_id("jetbase://warehouse_eu/") == "warehouse_eu"
    assert sv.asset_conn_id("s3://bucket/") is None
    assert sv.conn_id_of({"jetbase_error": {"jetbase_conn_id": "e"}}, None) == "e"
    assert sv.conn_id_of({"return_value": {"current": "1"}}, {"jetbase_conn_id": "r"}) == "r"


def test_run_migrations_and_html_escape_what_the_runs_recorded() -> None:
    plan = {
        "dry_run": True,
        "version_before": "1",
        "version_after": "2",
        "applied": [
            {
                "version": "2",
                "filename": "V2__<b>x</b>.sql",
                "migration_type": "VERSIONED",
                "statements": 1,
                "duration_ms": 0.0,
            }
        ],
        "lint": [
            {
                "rule": "drop-column",
                "severity": "destructive",
                "file": "V2__x.sql",
                "line": 1,
                "message": "DROP COLUMN deletes the column and its data",
            }
        ],
        "plan_hash": "ab" * 32,
    }
    tasks = sv.run_migrations([_rec(sv.UPGRADE, "<script>", 1, task_id="plan", return_value=plan)])
    assert tasks[0]["kind"] == "upgrade" and tasks[0]["dry_run"] is True
    assert tasks[0]["lint"][0]["rule"] == "drop-column"
    page = sv.render_run_page("fleet", "run_1", tasks)
    assert "plan (dry run)" in page and "drop-column" in page and "V2__&lt;b&gt;x&lt;/b&gt;.sql" in page
    assert "<script>" not in page and "<b>" not in page
    (row,) = sv.assemble([_rec(sv.STATUS, "<script>", 1, return_value=_status("1", 0))])
    assert "<script>" not in sv.render_page([row]) and "&lt;script&gt;" in sv.render_page([row])


def test_importing_the_plugin_is_cheap_and_airflow_finds_it(tmp_path: Any) -> None:
    code = (
        "import sys\n"
        # Airflow 3.1's own `import airflow` loads FastAPI: count only what the plugin adds.
        "import airflow\n"
        "before = set(sys.modules)\n"
        "import airflow_provider_jetbase.plugins.schema_versions as m\n"
        "added = set(sys.modules) - before\n"
        "heavy = [n for n in ('fastapi', 'airflow.api_fastapi.core_api.security') if n in added]\n"
        "assert not heavy, heavy\n"
        "from airflow import plugins_manager as pm\n"
        # 3.2+ returns what it loaded; 3.1 keeps it in module globals.
        "if hasattr(pm, '_get_plugins'):\n"
        "    plugins, errors = pm._get_plugins()\n"
        "    external_views = pm._get_ui_plugins()[0]\n"
        "else:\n"
        "    pm.ensure_plugins_loaded(); pm.initialize_ui_plugins()\n"
        "    plugins, errors, external_views = pm.plugins, pm.import_errors, pm.external_views\n"
        "assert not errors, errors\n"
        "assert 'jetbase_schema_versions' in [p.name for p in plugins]\n"
        "views = [v['name'] for v in external_views]\n"
        "assert {'Schema versions', 'Jetbase migrations'} <= set(views), views\n"
        "print('ok')\n"
    )
    env = {"AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PATH": "/usr/bin:/bin"}
    # Not the project folder: its egg-info would be a second copy of the entry points.
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, check=False
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]
