"""compare_schemas on reflected SQLite schemas for the facets the end-to-end tests do not change,
and the report's JSON and text forms."""

from __future__ import annotations

import json

from sqlalchemy import create_engine
from sqlalchemy.pool import StaticPool

from airflow_provider_jetbase.drift import compare_schemas, snapshot_schema
from airflow_provider_jetbase.drift.report import DriftReport, Finding
from tests.drift_helpers import run_sql

BASE = (
    "CREATE TABLE t (id INT PRIMARY KEY, code VARCHAR(5) CHECK (code <> ''), n INT,"
    " CONSTRAINT uq_t_n UNIQUE (n));"
    "CREATE VIEW v AS SELECT id FROM t;"
    "CREATE TABLE jetbase_whatever (id INT)"
)


def _model(sql: str):  # type: ignore[no-untyped-def]
    engine = create_engine("sqlite://", poolclass=StaticPool)
    try:
        run_sql(engine, sql)
        return snapshot_schema(engine)
    finally:
        engine.dispose()


def test_identical_schemas_have_equal_models_and_no_findings() -> None:
    a, b = _model(BASE), _model(BASE)
    assert a == b and a.fingerprint() == b.fingerprint()
    assert compare_schemas(a, b) == []
    assert "jetbase_whatever" not in a.tables


def test_view_check_unique_and_primary_key_changes() -> None:
    expected = _model(BASE)
    live = _model(
        "CREATE TABLE t (id INT, code VARCHAR(5) CHECK (code <> 'x'), n INT, PRIMARY KEY (id, n));"
        "CREATE VIEW v AS SELECT id, n FROM t"
    )
    found = sorted((f.kind, f.object) for f in compare_schemas(expected, live))
    assert found == [
        ("check_constraint_added", "t.(code <> 'x')"),
        ("check_constraint_dropped", "t.(code <> '')"),
        ("primary_key_changed", "t"),
        ("unique_constraint_dropped", "t.uq_t_n"),
        ("view_changed", "v"),
    ]


def test_report_json_and_text() -> None:
    finding = Finding("column_added", "column x INT NULL exists live", object="t.x", actual={"type": "INT"})
    report = DriftReport(
        dialect="sqlite",
        method="replay",
        method_detail="1 file(s) replayed into a in-memory SQLite database",
        findings=(
            finding.with_severity("error"),
            Finding("pending_migration", "V2 pending", severity="info"),
        ),
        current_version="1",
        applied_count=1,
        pending_count=1,
        fail_on=("schema",),
        checked_at="2026-01-01T00:00:00+00:00",
        duration_ms=12.345,
        tables_checked=1,
    )
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is False and data["counts"] == {"error": 1, "warning": 0, "info": 1}
    assert data["findings"][0]["category"] == "schema" and data["findings"][1]["category"] == "migration"
    text = report.to_text()
    lines = text.splitlines()
    assert lines[0].startswith("Jetbase drift check: DRIFT - 1 error(s)")
    assert "schema compared by replay" in lines[0]
    assert lines[1].split() == ["SEVERITY", "KIND", "OBJECT", "DETAIL"]
    assert lines[3].split()[:3] == ["ERROR", "column_added", "t.x"]
    assert lines[4].split()[:3] == ["INFO", "pending_migration", "-"]
