"""The "Schema versions" page: what the provider's runs left in Airflow, one row per database.

Pure pieces, no Airflow import (the plugin in :mod:`airflow_provider_jetbase.plugins.schema_versions`
reads the metadata database and hands the records over):

- :class:`TaskRecord`: one task instance of a Jetbase operator, its connection id (from its XCom or
  its rendered fields), state, end date and the XComs it left (``return_value``, ``jetbase_error``,
  ``drift_report``).
- :class:`AssetEventRecord`: one ``jetbase://<conn_id>`` ("schema changed") asset event.
- :func:`assemble`: folds them, oldest first, into one :class:`DatabaseRow` per connection: dialect,
  current version, pending count (the last status or plan), lock state, last drift result, when the
  database last answered and the last runs. Upgrade results go through :func:`fleet.summarize`.
- :func:`run_migrations`: the migrations of one DAG run (applied, plan, lint findings, errors).
- :func:`render_page` / :func:`render_run_page`: plain HTML for the UI's iframe.

Nothing here holds a credential: XComs carry none by contract, and the dialect is a word.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

from airflow_provider_jetbase import fleet

UPGRADE = "JetbaseUpgradeOperator"
ROLLBACK = "JetbaseRollbackOperator"
STATUS = "JetbaseStatusOperator"
BASELINE = "JetbaseBaselineOperator"
DRIFT = "JetbaseDriftCheckOperator"
OPERATORS = (UPGRADE, ROLLBACK, STATUS, BASELINE, DRIFT)
XCOM_KEYS = ("return_value", "jetbase_error", "drift_report")
RUN_LINKS = 3
ERROR_CHARS = 300

@dataclass(frozen=True)
class TaskRecord:
    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    operator: str
    state: str | None
    end_date: datetime | None
    conn_id: str | None
    xcoms: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AssetEventRecord:
    conn_id: str
    timestamp: datetime
    extra: Mapping[str, Any]


@dataclass(frozen=True)
class RunLink:
    kind: str
    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    state: str | None
    at: datetime | None

    @property
    def href(self) -> str:
        dag, run, task = (quote(part, safe="") for part in (self.dag_id, self.run_id, self.task_id))
        path = f"/dags/{dag}/runs/{run}/tasks/{task}"
        return path + (f"/mapped/{self.map_index}" if self.map_index >= 0 else "")


@dataclass
class DatabaseRow:
    conn_id: str
    dialect: str | None = None
    current_version: str | None = None
    pending: int | None = None
    locked: bool | None = None
    lock_detail: str | None = None
    drift: str | None = None
    drift_at: datetime | None = None
    last_seen: datetime | None = None
    reachable: bool | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    last_change: tuple[str, ...] = ()
    last_change_at: datetime | None = None
    runs: list[RunLink] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        def when(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        return {
            "conn_id": self.conn_id,
            "dialect": self.dialect,
            "current_version": self.current_version,
            "pending": self.pending,
            "locked": self.locked,
            "lock_detail": self.lock_detail,
            "drift": self.drift,
            "drift_at": when(self.drift_at),
            "last_seen": when(self.last_seen),
            "reachable": self.reachable,
            "last_error": self.last_error,
            "last_error_at": when(self.last_error_at),
            "last_change": list(self.last_change),
            "last_change_at": when(self.last_change_at),
            "runs": [
                {
                    "kind": r.kind,
                    "dag_id": r.dag_id,
                    "run_id": r.run_id,
                    "task_id": r.task_id,
                    "map_index": r.map_index,
                    "state": r.state,
                    "at": when(r.at),
                    "href": r.href,
                }
                for r in self.runs
            ],
        }


def dialect_of(conn_type: str | None, sqlalchemy_url: str | None = None) -> str | None:
    """The dialect word of a connection: its type, or for ``jetbase`` its URL's scheme (no more)."""
    if conn_type == "jetbase":
        if not sqlalchemy_url:
            return None
        from airflow_provider_jetbase.migration.dialects import dialect_name

        scheme = urlsplit(str(sqlalchemy_url)).scheme
        return dialect_name(scheme.split("+", 1)[0]) or None
    from airflow_provider_jetbase.connection_mapping import conn_type_dialect

    return conn_type_dialect((conn_type or "").lower())


def conn_id_of(xcoms: Mapping[str, Any], rendered_fields: Mapping[str, Any] | None) -> str | None:
    """The task's connection id: its XCom says it (upgrade, error record), else its rendered field."""
    for key in ("return_value", "jetbase_error"):
        value = xcoms.get(key)
        if isinstance(value, Mapping) and value.get("jetbase_conn_id"):
            return str(value["jetbase_conn_id"])
    found = (rendered_fields or {}).get("jetbase_conn_id")
    return None if found is None else str(found)


def asset_conn_id(uri: str) -> str | None:
    """``jetbase://<conn_id>`` (Airflow stores it with a trailing slash) -> ``<conn_id>``."""
    prefix = "jetbase://"
    if not uri.startswith(prefix):
        return None
    return uri[len(prefix) :].rstrip("/") or None


def _kind(operator: str) -> str:
    return {
        UPGRADE: "upgrade",
        ROLLBACK: "rollback",
        STATUS: "status",
        BASELINE: "baseline",
        DRIFT: "drift",
    }.get(operator, operator)


def _short(text: str) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= ERROR_CHARS else one_line[: ERROR_CHARS - 1] + "…"


def _seen(row: DatabaseRow, at: datetime | None) -> None:
    row.reachable = True
    if at is not None and (row.last_seen is None or at > row.last_seen):
        row.last_seen = at


def _failed(row: DatabaseRow, message: str, at: datetime | None, generic: bool = False) -> None:
    """``generic``: a failed task that left no error record (a status); within the same outage, the
    last real error (a failed upgrade's ``jetbase_error``) says more, so it stays."""
    if not (generic and row.reachable is False and row.last_error):
        row.last_error = _short(message)
    row.reachable = False
    row.last_error_at = at


def _fold(row: DatabaseRow, record: TaskRecord) -> None:
    result = record.xcoms.get("return_value")
    result = result if isinstance(result, Mapping) else None
    error = record.xcoms.get("jetbase_error")
    error = error if isinstance(error, Mapping) else None
    at = record.end_date
    if record.operator == DRIFT:
        report = record.xcoms.get("drift_report")
        report = report if isinstance(report, Mapping) else result
        if report is None:
            if record.state == "failed":
                _failed(row, "drift check failed before it reported (see the task log)", at, generic=True)
            return
        row.drift = str(report.get("status") or ("ok" if report.get("ok") else "drift"))
        row.drift_at = at
        row.dialect = report.get("dialect") or row.dialect
        if report.get("error"):
            _failed(row, str(report["error"]), at)
            return
        if report.get("current_version") is not None:
            row.current_version = str(report["current_version"])
        if report.get("pending_count") is not None:
            row.pending = int(report["pending_count"])
        _seen(row, at)
        return
    if record.operator == UPGRADE and (result is not None or error is not None):
        (summary,) = fleet.summarize([row.conn_id], [result], [error])
        if summary.status == fleet.FAILED:
            if summary.version_after is not None:
                row.current_version = summary.version_after
            _failed(row, summary.error or "failed", at)
            return
        _seen(row, at)
        if result is not None and result.get("dry_run"):
            # A plan: what would run is what is pending.
            row.pending = len(result.get("applied") or ())
            plan = result.get("plan")
            if isinstance(plan, Mapping) and isinstance(plan.get("database"), Mapping):
                row.dialect = plan["database"].get("dialect") or row.dialect
            row.current_version = summary.version_before
        else:
            row.current_version = summary.version_after
            row.pending = None  # a count/to_version run may leave some: only a status knows
        return
    if result is None:
        if record.state == "failed":
            _failed(row, f"{_kind(record.operator)} task failed (see its log)", at, generic=True)
        return
    if record.operator == STATUS:
        row.current_version = None if result.get("current") is None else str(result["current"])
        row.pending = len(result.get("pending") or ())
        lock = result.get("lock")
        if isinstance(lock, Mapping) and lock.get("supported", True):
            row.locked = bool(lock.get("is_locked"))
            row.lock_detail = (
                f"since {lock.get('locked_at')} by {lock.get('process_id')}" if row.locked else None
            )
    elif record.operator == ROLLBACK and not result.get("dry_run"):
        row.current_version = result.get("version_after")
        row.pending = None
    elif record.operator == BASELINE and not result.get("dry_run"):
        row.current_version = result.get("version_after")
        row.pending = len(result.get("pending") or ())
    _seen(row, at)


def _order(record: TaskRecord) -> tuple[bool, datetime | None, str, int]:
    # Unfinished tasks (no end date) last; within a moment, a stable order.
    return (record.end_date is None, record.end_date, record.task_id, record.map_index)


def assemble(
    records: Iterable[TaskRecord],
    asset_events: Iterable[AssetEventRecord] = (),
    dialects: Mapping[str, str | None] | None = None,
) -> list[DatabaseRow]:
    """One row per connection id, sorted by id; ``dialects`` (from the connections) wins when known."""
    rows: dict[str, DatabaseRow] = {}
    ordered = sorted((r for r in records if r.conn_id and r.operator in OPERATORS), key=_sort_key)
    for record in ordered:
        assert record.conn_id is not None
        row = rows.setdefault(record.conn_id, DatabaseRow(record.conn_id))
        _fold(row, record)
        row.runs.insert(
            0,
            RunLink(
                _kind(record.operator),
                record.dag_id,
                record.run_id,
                record.task_id,
                record.map_index,
                record.state,
                record.end_date,
            ),
        )
        del row.runs[RUN_LINKS:]
    for event in sorted(asset_events, key=lambda e: e.timestamp):
        row = rows.setdefault(event.conn_id, DatabaseRow(event.conn_id))
        row.last_change = tuple(str(v) for v in event.extra.get("versions") or () if v is not None)
        row.last_change_at = event.timestamp
    for conn_id, row in rows.items():
        known = (dialects or {}).get(conn_id)
        row.dialect = known or row.dialect
    return [rows[k] for k in sorted(rows)]


def _sort_key(record: TaskRecord) -> tuple[bool, str, str, int]:
    ended, at, task_id, map_index = _order(record)
    return (ended, "" if at is None else at.isoformat(), task_id, map_index)


# --------------------------------------------------------------------------- one run
def run_migrations(records: Sequence[TaskRecord]) -> list[dict[str, Any]]:
    """The Jetbase tasks of one DAG run: per task, what it applied (or would), lint and errors."""
    tasks = []
    for record in sorted(records, key=lambda r: (r.task_id, r.map_index)):
        if record.operator not in OPERATORS:
            continue
        result = record.xcoms.get("return_value")
        result = result if isinstance(result, Mapping) else {}
        error = record.xcoms.get("jetbase_error")
        report = record.xcoms.get("drift_report")
        files = result.get("applied") or result.get("rolled_back") or result.get("recorded") or []
        pending = result.get("pending") if record.operator == STATUS else None
        tasks.append(
            {
                "task_id": record.task_id,
                "map_index": record.map_index,
                "kind": _kind(record.operator),
                "conn_id": record.conn_id,
                "state": record.state,
                "dry_run": bool(result.get("dry_run")),
                "version_before": result.get("version_before"),
                "version_after": result.get("version_after", result.get("current")),
                "files": [dict(f) for f in files if isinstance(f, Mapping)],
                "pending": [dict(p) for p in pending or () if isinstance(p, Mapping)],
                "lint": [dict(f) for f in result.get("lint") or () if isinstance(f, Mapping)],
                "plan_hash": result.get("plan_hash"),
                "drift": (report.get("status") if isinstance(report, Mapping) else None),
                "error": (_short(str(error.get("error"))) if isinstance(error, Mapping) else None),
            }
        )
    return tasks


# --------------------------------------------------------------------------- HTML
_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:16px;color:#1a202c;
font-size:14px}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:20px 0 6px}p.note{color:#4a5568;margin:0 0 12px}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #e2e8f0;padding:6px 8px;text-align:left;vertical-align:top}
th{background:#f7fafc;font-weight:600}.ok{color:#276749}.bad{color:#c53030;font-weight:600}.warn{color:#b7791f;font-weight:600}
.muted{color:#718096}a{color:#2b6cb0}code{font-size:12px}td.runs{white-space:nowrap;font-size:12px}
"""


def _e(value: Any) -> str:
    return html.escape("-" if value is None or value == "" else str(value))


def _when(value: datetime | None) -> str:
    return "never" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def _row_html(row: DatabaseRow, ui_base: str) -> str:
    if row.reachable is False:
        reach = (
            f'<span class="bad">unreachable</span><br><span class="muted">{_e(row.last_error)}</span>'
            f"<br>last seen {_e(_when(row.last_seen))}"
        )
    else:
        reach = f'<span class="ok">reachable</span><br>last seen {_e(_when(row.last_seen))}'
    if row.locked is None:
        lock = '<span class="muted">unknown</span>'
    elif row.locked:
        lock = f'<span class="warn">locked</span><br><span class="muted">{_e(row.lock_detail)}</span>'
    else:
        lock = '<span class="ok">free</span>'
    pending = _e(row.pending)
    if row.pending:
        pending = f'<span class="warn">{pending}</span>'
    drift = '<span class="muted">never checked</span>'
    if row.drift is not None:
        css = "ok" if row.drift == "ok" else "bad"
        drift = (
            f'<span class="{css}">{_e(row.drift)}</span><br>'
            f'<span class="muted">{_e(_when(row.drift_at))}</span>'
        )
    change = "-"
    if row.last_change_at is not None:
        change = (
            f"{_e(', '.join(row.last_change))}<br><span class='muted'>{_e(_when(row.last_change_at))}</span>"
        )
    links = "<br>".join(
        f'<a target="_top" href="{html.escape(ui_base + r.href)}">{_e(r.kind)}</a> '
        f'<span class="muted">{_e(r.dag_id)} · {_e(r.state)} · {_e(_when(r.at))}</span>'
        for r in row.runs
    )
    return (
        f'<tr data-conn-id="{html.escape(row.conn_id)}"><td><code>{_e(row.conn_id)}</code></td>'
        f"<td>{_e(row.dialect)}</td><td>{_e(row.current_version)}</td><td>{pending}</td>"
        f"<td>{lock}</td><td>{drift}</td><td>{reach}</td><td>{change}</td><td class='runs'>{links}</td></tr>"
    )


def render_page(rows: Sequence[DatabaseRow], ui_base: str = "") -> str:
    head = (
        "<tr><th>Connection</th><th>Dialect</th><th>Version</th><th>Pending</th><th>Lock</th>"
        "<th>Last drift check</th><th>Database</th><th>Last schema change</th><th>Last runs</th></tr>"
    )
    body = "".join(_row_html(r, ui_base) for r in rows) or (
        '<tr><td colspan="9" class="muted">No Jetbase run has been recorded yet.</td></tr>'
    )
    return _page(
        "Schema versions",
        '<h1>Schema versions</h1><p class="note">Every database a Jetbase task has migrated or '
        "checked, from the runs' XComs and <code>jetbase://</code> asset events. Pending and lock "
        "come from the last status or plan.</p>"
        f'<table id="schema-versions"><thead>{head}</thead><tbody>{body}</tbody></table>',
    )


def render_run_page(dag_id: str, run_id: str, tasks: Sequence[Mapping[str, Any]]) -> str:
    parts = [f'<h1>Jetbase migrations</h1><p class="note">{_e(dag_id)} · {_e(run_id)}</p>']
    if not tasks:
        parts.append('<p class="muted">No Jetbase task in this run.</p>')
    for task in tasks:
        label = task["task_id"] + (f" [{task['map_index']}]" if task["map_index"] >= 0 else "")
        what = "plan (dry run)" if task["dry_run"] else task["kind"]
        parts.append(
            f'<h2 data-task-id="{html.escape(label)}">{_e(label)}: {_e(what)} on '
            f"<code>{_e(task['conn_id'])}</code> · {_e(task['state'])}</h2>"
            f"<p>version {_e(task['version_before'])} → {_e(task['version_after'])}"
            + (f" · drift: {_e(task['drift'])}" if task["drift"] else "")
            + (f" · plan_hash <code>{_e(str(task['plan_hash'])[:16])}</code>" if task["plan_hash"] else "")
            + "</p>"
        )
        if task["error"]:
            parts.append(f'<p class="bad">{_e(task["error"])}</p>')
        if task["files"]:
            rows = "".join(
                f"<tr><td>{_e(f.get('version'))}</td><td><code>{_e(f.get('filename'))}</code></td>"
                f"<td>{_e(f.get('migration_type'))}</td><td>{_e(f.get('statements'))}</td>"
                f"<td>{_e(f.get('duration_ms'))}</td></tr>"
                for f in task["files"]
            )
            parts.append(
                "<table><thead><tr><th>Version</th><th>File</th><th>Type</th><th>Statements</th>"
                f"<th>ms</th></tr></thead><tbody>{rows}</tbody></table>"
            )
        if task["pending"]:
            rows = "".join(
                f"<tr><td>{_e(p.get('version'))}</td><td><code>{_e(p.get('filename'))}</code></td></tr>"
                for p in task["pending"]
            )
            parts.append(
                f"<table><thead><tr><th>Pending</th><th>File</th></tr></thead><tbody>{rows}</tbody></table>"
            )
        if task["lint"]:
            rows = "".join(
                f"<tr><td>{_e(f.get('severity'))}</td><td>{_e(f.get('rule'))}</td>"
                f"<td><code>{_e(f.get('file'))}:{_e(f.get('line'))}</code></td><td>{_e(f.get('message'))}</td></tr>"
                for f in task["lint"]
            )
            parts.append(
                "<table><thead><tr><th>Lint</th><th>Rule</th><th>File</th><th>Finding</th></tr></thead>"
                f"<tbody>{rows}</tbody></table>"
            )
    return _page(f"Jetbase migrations of {run_id}", "".join(parts))
