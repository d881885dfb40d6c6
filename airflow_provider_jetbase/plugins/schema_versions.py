"""Airflow 3 UI plugin: the "Schema versions" page (Browse menu) and a DAG run's "Jetbase migrations" tab.

Both are external views (iframes) of HTML served by a FastAPI app mounted on the API server at
``/jetbase`` (``fastapi_apps`` and ``external_views``, Airflow 3.1+). The data is what Airflow already
stores: the XComs of the provider's task instances, their rendered ``jetbase_conn_id`` and the
``jetbase://`` asset events, read from the metadata database; no target database is contacted, so a
database that is down shows its last error and when it last answered.

Every endpoint depends on the API server's own ``get_user`` (a JWT in the ``Authorization`` header or
the UI's ``_token`` cookie; without one: 401, with a bad one: 403) and shows only the DAGs the auth
manager lets the user read.

Importing this module is cheap (Airflow's plugin manager imports it in every component): the FastAPI
app, SQLAlchemy queries and the security dependencies are built on the first request.
"""

import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

try:  # common-compat maps it to airflow.sdk (Airflow 3.2+) or airflow.plugins_manager
    from airflow.providers.common.compat.sdk import AirflowPlugin
except ImportError:  # an older common-compat (the floor is 1.22) without the mapping
    from airflow.plugins_manager import AirflowPlugin  # type: ignore[assignment]

if TYPE_CHECKING:
    from fastapi import FastAPI
    from sqlalchemy.orm import Session

    from airflow_provider_jetbase.schema_versions import AssetEventRecord, TaskRecord

URL_PREFIX = "/jetbase"
MAX_TASK_INSTANCES = 2000

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class _LazyApp:
    """An ASGI app that builds the real FastAPI app on its first request."""

    def __init__(self) -> None:
        self._app: FastAPI | None = None
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    self._app = create_app()
        await self._app(scope, receive, send)


def create_app() -> "FastAPI":
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.common.db.common import SessionDep
    from airflow.api_fastapi.core_api.security import GetUserDep, ReadableDagsFilterDep
    from fastapi import Depends, FastAPI
    from fastapi.responses import HTMLResponse

    from airflow_provider_jetbase import schema_versions as sv

    def authenticated(user: GetUserDep) -> None:
        """Refuse a request without a valid token before anything is read."""

    app = FastAPI(
        title="Jetbase schema versions",
        dependencies=[Depends(authenticated)],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    # The security dependencies read the auth manager from the app serving the request: ours.
    app.state.auth_manager = get_auth_manager()

    @app.get("/schema-versions.json")
    def schema_versions_json(session: SessionDep, readable: ReadableDagsFilterDep) -> dict[str, Any]:
        rows = _rows(session, set(readable.value or ()))
        return {"databases": [row.to_dict() for row in rows]}

    @app.get("/schema-versions", response_class=HTMLResponse)
    def schema_versions_page(session: SessionDep, readable: ReadableDagsFilterDep) -> str:
        return sv.render_page(_rows(session, set(readable.value or ())), ui_base=_ui_base())

    @app.get("/runs/{dag_id}/{run_id}.json")
    def run_json(
        dag_id: str, run_id: str, session: SessionDep, readable: ReadableDagsFilterDep
    ) -> dict[str, Any]:
        return {"dag_id": dag_id, "run_id": run_id, "tasks": _run(session, readable.value, dag_id, run_id)}

    @app.get("/runs/{dag_id}/{run_id}", response_class=HTMLResponse)
    def run_page(dag_id: str, run_id: str, session: SessionDep, readable: ReadableDagsFilterDep) -> str:
        return sv.render_run_page(dag_id, run_id, _run(session, readable.value, dag_id, run_id))

    return app


def _ui_base() -> str:
    from urllib.parse import urlsplit

    from airflow.providers.common.compat.sdk import conf

    base = conf.get("api", "base_url", fallback="") or ""

    return urlsplit(base).path.rstrip("/")


def _run(session: "Session", readable: set[str] | None, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    from fastapi import HTTPException

    from airflow_provider_jetbase import schema_versions as sv

    if dag_id not in (readable or set()):
        raise HTTPException(status_code=404, detail="DAG run not found")
    return sv.run_migrations(_task_records(session, {dag_id}, run_id=run_id))


def _rows(session: "Session", readable: set[str]) -> list[Any]:
    from airflow_provider_jetbase import schema_versions as sv

    records = _task_records(session, readable)
    events = _asset_events(session, readable)
    conn_ids = {r.conn_id for r in records if r.conn_id} | {e.conn_id for e in events}
    return sv.assemble(records, events, _dialects(session, conn_ids))


def _task_records(session: "Session", dag_ids: set[str], run_id: str | None = None) -> "list[TaskRecord]":
    from airflow.models.renderedtifields import RenderedTaskInstanceFields as RTIF
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    from airflow_provider_jetbase import schema_versions as sv

    if not dag_ids:
        return []
    query = select(TI.dag_id, TI.run_id, TI.task_id, TI.map_index, TI.operator, TI.state, TI.end_date).where(
        TI.operator.in_(sv.OPERATORS), TI.dag_id.in_(dag_ids)
    )
    if run_id is not None:
        query = query.where(TI.run_id == run_id)
    tis = session.execute(query.order_by(TI.end_date.desc()).limit(MAX_TASK_INSTANCES)).all()
    if not tis:
        return []
    keys = {(t.dag_id, t.run_id, t.task_id, t.map_index) for t in tis}
    run_ids = {t.run_id for t in tis}
    task_ids = {t.task_id for t in tis}
    xcoms: dict[tuple[str, str, str, int], dict[str, Any]] = {}
    for xcom in session.scalars(
        select(XComModel).where(
            XComModel.dag_id.in_(dag_ids),
            XComModel.run_id.in_(run_ids),
            XComModel.task_id.in_(task_ids),
            XComModel.key.in_(sv.XCOM_KEYS),
        )
    ):
        key = (xcom.dag_id, xcom.run_id, xcom.task_id, xcom.map_index)
        if key in keys:
            xcoms.setdefault(key, {})[xcom.key] = XComModel.deserialize_value(xcom)
    rendered: dict[tuple[str, str, str, int], Any] = {}
    for rtif in session.execute(
        select(RTIF.dag_id, RTIF.run_id, RTIF.task_id, RTIF.map_index, RTIF.rendered_fields).where(
            RTIF.dag_id.in_(dag_ids), RTIF.run_id.in_(run_ids), RTIF.task_id.in_(task_ids)
        )
    ):
        rendered[(rtif.dag_id, rtif.run_id, rtif.task_id, rtif.map_index)] = rtif.rendered_fields
    records = []
    for t in tis:
        key = (t.dag_id, t.run_id, t.task_id, t.map_index)
        found = xcoms.get(key, {})
        fields = rendered.get(key)
        records.append(
            sv.TaskRecord(
                dag_id=t.dag_id,
                run_id=t.run_id,
                task_id=t.task_id,
                map_index=t.map_index,
                operator=t.operator,
                state=None if t.state is None else str(t.state),
                end_date=t.end_date,
                conn_id=sv.conn_id_of(found, fields if isinstance(fields, dict) else None),
                xcoms=found,
            )
        )
    return records


def _asset_events(session: "Session", readable: set[str]) -> "list[AssetEventRecord]":
    from airflow.models.asset import AssetEvent, AssetModel
    from sqlalchemy import or_, select

    from airflow_provider_jetbase import schema_versions as sv

    query = (
        select(AssetModel.uri, AssetEvent.timestamp, AssetEvent.extra)
        .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
        .where(
            AssetModel.uri.like("jetbase://%"),
            or_(AssetEvent.source_dag_id.in_(readable), AssetEvent.source_dag_id.is_(None)),
        )
        .order_by(AssetEvent.timestamp.desc())
        .limit(MAX_TASK_INSTANCES)
    )
    events = []
    for uri, timestamp, extra in session.execute(query):
        conn_id = sv.asset_conn_id(uri)
        if conn_id:
            events.append(sv.AssetEventRecord(conn_id, timestamp, extra if isinstance(extra, dict) else {}))
    return events


def _dialects(session: "Session", conn_ids: set[str]) -> dict[str, str | None]:
    """The dialect word of each connection stored in the metadata DB (only the word leaves here)."""
    from airflow.models.connection import Connection
    from sqlalchemy import select

    from airflow_provider_jetbase import schema_versions as sv

    found: dict[str, str | None] = {}
    if not conn_ids:
        return found
    for conn in session.scalars(select(Connection).where(Connection.conn_id.in_(conn_ids))):
        try:
            url = conn.extra_dejson.get("sqlalchemy_url") if conn.conn_type == "jetbase" else None
            found[conn.conn_id] = sv.dialect_of(conn.conn_type, url)
        except Exception:  # noqa: BLE001 - an undecryptable extra: the dialect stays unknown
            found[conn.conn_id] = None
    return found


class JetbaseSchemaVersionsPlugin(AirflowPlugin):
    """Browse -> Schema versions, and a "Jetbase migrations" tab on every DAG run."""

    name = "jetbase_schema_versions"
    fastapi_apps = [{"app": _LazyApp(), "url_prefix": URL_PREFIX, "name": "Jetbase schema versions"}]
    external_views = [
        {
            "name": "Schema versions",
            "href": f"{URL_PREFIX}/schema-versions",
            "destination": "nav",
            "category": "browse",
            "url_route": "jetbase-schema-versions",
        },
        {
            "name": "Jetbase migrations",
            "href": f"{URL_PREFIX}/runs/{{DAG_ID}}/{{RUN_ID}}",
            "destination": "dag_run",
            "url_route": "jetbase-run-migrations",
        },
    ]
