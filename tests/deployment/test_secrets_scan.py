"""No component of a real deployment writes a connection's password anywhere: not the logs of the
api-server, scheduler, dag-processor, triggerer and Celery workers, not the task logs (files and the
API's log endpoint), not the metadata database (XCom, rendered template fields, audit log...), not
the Celery broker. It runs after every other test of the tier (conftest orders it last), so it scans
what all of them left, plus one run that succeeds and one that fails, on a connection with the
password."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text

from tests.deployment.deployment import REDIS_HOST, REDIS_PORT, SECRET_PASSWORD, Deployment

pytestmark = pytest.mark.deployment

DAG = "jbdeploy_upgrade"


def metadata_tables(deployment: Deployment) -> dict[str, str]:
    """Every table of the metadata database, each row as PostgreSQL's text form of the row."""
    engine = create_engine(deployment.metadata_url)
    dumped: dict[str, str] = {}
    try:
        for table in inspect(engine).get_table_names():
            with engine.connect() as conn:
                rows = conn.execute(text(f'SELECT t::text FROM "{table}" t')).scalars().all()
            dumped[table] = "\n".join(rows)
    finally:
        engine.dispose()
    return dumped


def broker_contents(deployment: Deployment) -> str:
    import redis

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=deployment.redis_db, socket_timeout=5)
    parts: list[Any] = []
    try:
        for key in client.scan_iter():
            raw: Any = client.type(key)
            kind = raw.decode() if isinstance(raw, bytes) else str(raw)
            reader = {
                "string": client.get,
                "list": lambda k: client.lrange(k, 0, -1),
                "hash": client.hgetall,
                "set": client.smembers,
                "zset": lambda k: client.zrange(k, 0, -1),
            }.get(kind)
            parts.append((key, reader(key) if reader else kind))
    finally:
        client.close()
    return repr(parts)


def api_task_logs(deployment: Deployment) -> dict[str, str]:
    tis = deployment.api("GET", "/dags/~/dagRuns/~/taskInstances?limit=1000")["task_instances"]
    logs = {}
    for ti in tis:
        for attempt in range(1, int(ti["try_number"]) + 1):
            key = f"{ti['dag_id']}/{ti['dag_run_id']}/{ti['task_id']}[{ti['map_index']}]/{attempt}"
            logs[key] = deployment.task_log(
                ti["dag_id"], ti["dag_run_id"], ti["task_id"], attempt, map_index=ti["map_index"]
            )
    return logs


def test_no_component_log_task_log_table_or_broker_message_holds_the_connection_password(
    deployment: Deployment,
) -> None:
    slot = deployment.slots["secrets"]
    # The scan would find it: the password is in the connection the components were given.
    assert SECRET_PASSWORD in deployment.server.env[f"AIRFLOW_CONN_{slot.conn_id.upper()}"]
    ok = deployment.trigger(DAG, {"conn_id": slot.conn_id, "migrations": "basic"})
    assert deployment.wait_run(DAG, ok)["state"] == "success"
    broken = deployment.trigger(DAG, {"conn_id": slot.conn_id, "migrations": "broken"})
    assert deployment.wait_run(DAG, broken)["state"] == "failed"
    assert "no_such_table" in deployment.task_log(DAG, broken, "migrate", 1)

    found: list[str] = []
    files = [p for p in deployment.home.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".log") and "attempt=" in p.name for p in files), files
    for path in files:
        if SECRET_PASSWORD.encode() in path.read_bytes():
            found.append(f"file {path}")
    for key, log in api_task_logs(deployment).items():
        if SECRET_PASSWORD in log:
            found.append(f"task log {key} (API)")
    tables = metadata_tables(deployment)
    assert {"xcom", "rendered_task_instance_fields", "log", "connection"} <= set(tables)
    assert tables["xcom"] and tables["rendered_task_instance_fields"], "the runs stored nothing to scan"
    found += [f"metadata table {name}" for name, rows in tables.items() if SECRET_PASSWORD in rows]
    if SECRET_PASSWORD in broker_contents(deployment):
        found.append(f"Redis database {deployment.redis_db}")
    assert not found, f"the connection password was written to: {found}"
