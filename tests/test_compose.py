"""docker-compose.airflow.yml: its structure, and its connections run against a real PostgreSQL.

No Docker engine runs here. The file is checked three ways:
- by the docker compose client (`docker compose config`, or the standalone `docker-compose`),
  which validates it offline, when one is installed;
- by a schema check of our own that always runs (services, commands, dependencies, volumes,
  environment, the files the build and mounts refer to);
- by running its `AIRFLOW_CONN_*` values, with only host/port/user/database rewritten to a fresh
  database of the local PostgreSQL server, through `JetbaseHook` and the example migrations.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from sqlalchemy import inspect, text
from sqlalchemy.engine import URL

if TYPE_CHECKING:
    from tests.airflow_harness import AirflowHome

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.airflow.yml"
AIRFLOW_VERSION = "3.3.2"
AIRFLOW_SERVICES = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-worker-1": "celery",
    "airflow-worker-2": "celery",
}
BROKER = "redis"
TARGET = "postgres-target"
METADATA = "postgres-metadata"


def load_compose() -> dict[str, Any]:
    # safe_load resolves the file's anchors and `<<` merge keys as compose does.
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # `KEY=value` list form
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def conn_vars(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith("AIRFLOW_CONN_")}


def command_text(service: dict[str, Any]) -> str:
    command = service.get("command") or ""
    return " ".join(command) if isinstance(command, list) else str(command)


# ------------------------------------------------------------------------------ docker compose client
def _compose_client() -> list[str] | None:
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone else None


def test_docker_compose_client_validates_the_file() -> None:
    client = _compose_client()
    if client is None:
        # Not unavailable(): this machine kind ships the docker CLI without its compose plugin, in CI
        # too, so a failure here would only say that. Loud, and the structure check still runs.
        message = "SKIPPING: no docker compose client; test_compose_structure checks the file instead"
        warnings.warn(message, stacklevel=1)
        pytest.skip(message)
    # `config` parses, interpolates and validates the file without contacting a Docker engine.
    proc = subprocess.run(
        [*client, "-f", str(COMPOSE), "config"], capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert proc.returncode == 0, f"{' '.join(client)} config failed:\n{proc.stderr}"
    resolved = yaml.safe_load(proc.stdout)
    assert set(AIRFLOW_SERVICES) | {"airflow-init", TARGET, METADATA} <= set(resolved["services"])
    # The resolved form (anchors and merges expanded by compose itself) passes our checks too.
    check_structure(resolved, resolved_paths=True)


# ---------------------------------------------------------------------------------- schema check
def check_structure(data: dict[str, Any], resolved_paths: bool = False) -> None:
    services = data["services"]
    expected = set(AIRFLOW_SERVICES) | {"airflow-init", TARGET, METADATA, BROKER}
    assert expected <= set(services), f"missing services: {sorted(expected - set(services))}"
    assert "healthcheck" in services[BROKER], f"{BROKER} needs a healthcheck for depends_on"

    # Two separate PostgreSQL servers: Airflow's metadata and the migration target.
    for name in (METADATA, TARGET):
        assert str(services[name]["image"]).startswith("postgres:"), name
        assert "healthcheck" in services[name], f"{name} needs a healthcheck for depends_on"
    meta_env, target_env = environment(services[METADATA]), environment(services[TARGET])
    assert meta_env["POSTGRES_DB"] != target_env["POSTGRES_DB"] or services[METADATA] is not services[TARGET]

    airflow_like = {**AIRFLOW_SERVICES, "airflow-init": None}
    for name in airflow_like:
        service = services[name]
        env = environment(service)
        # Same image for all, built from this working tree.
        build = service["build"]
        dockerfile = Path(build["dockerfile"])
        context = Path(build["context"])
        context = context if context.is_absolute() else ROOT / context
        assert context.resolve() == ROOT, f"{name}: build context must be the project root"
        assert (context / dockerfile).is_file(), f"{name}: {dockerfile} does not exist"
        # Metadata DB on the metadata server, CeleryExecutor, no Airflow examples.
        sql_conn = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        assert f"@{METADATA}:" in sql_conn, name
        # CeleryExecutor on the stack's Redis, results in the metadata database (as the deployment tier).
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith(f"redis://{BROKER}:"), name
        assert f"@{METADATA}:" in env["AIRFLOW__CELERY__RESULT_BACKEND"], name
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"].lower() == "false"
        # Connections point at the target server, never at the metadata one.
        conns = conn_vars(env)
        assert conns, f"{name}: no AIRFLOW_CONN_* connections"
        for var, value in conns.items():
            assert TARGET in value and METADATA not in value, f"{name}: {var} must point at {TARGET}"
        # example_dags mounted as the dags folder.
        dags_folder = env.get("AIRFLOW__CORE__DAGS_FOLDER", "/opt/airflow/dags")
        mounts = [str(v) for v in service.get("volumes", [])]
        example_mounts = [m for m in mounts if m.split(":")[1] == dags_folder]
        assert example_mounts, f"{name}: nothing mounted on {dags_folder}"
        source = Path(example_mounts[0].split(":")[0])
        source = source if source.is_absolute() else ROOT / source
        assert source.resolve() == (ROOT / "example_dags").resolve(), f"{name}: mount example_dags/"

    init = services["airflow-init"]
    assert "airflow db migrate" in command_text(init)
    for name, subcommand in AIRFLOW_SERVICES.items():
        service = services[name]
        assert command_text(service).split()[0] == subcommand, f"{name} must run `airflow {subcommand}`"
        depends = service["depends_on"]
        assert depends["airflow-init"]["condition"] == "service_completed_successfully", name
        assert depends[METADATA]["condition"] == "service_healthy", name
    assert (8080, 8080) in [_port_pair(p) for p in services["airflow-apiserver"].get("ports", [])]
    # Files the target server mounts exist.
    for mount in services[TARGET].get("volumes", []):
        mounted = str(mount).split(":")[0]
        if mounted.startswith((".", "/")):
            path = Path(mounted) if Path(mounted).is_absolute() else ROOT / mounted
            assert path.exists(), f"{TARGET} mounts missing {mounted}"


def _port_pair(port: Any) -> tuple[int, int]:
    """``"8080:8080"`` (short form) or ``{published, target}`` (as `compose config` prints it)."""
    if isinstance(port, dict):
        return int(port["published"]), int(port["target"])
    published, target = str(port).rsplit(":", 1)
    return int(published.rsplit(":", 1)[-1]), int(target)


def test_compose_structure() -> None:
    check_structure(load_compose())


def test_dockerfile_installs_the_working_tree_on_airflow_3_3_2() -> None:
    data = load_compose()
    build = data["services"]["airflow-scheduler"]["build"]
    dockerfile = (ROOT / build["dockerfile"]).read_text()
    assert f"apache/airflow:{AIRFLOW_VERSION}" in dockerfile
    # Every file the image copies exists, and the package is installed from that copy.
    for line in dockerfile.splitlines():
        if line.startswith("COPY"):
            sources = [p for p in line.split()[1:-1] if not p.startswith("--")]
            for src in sources:
                assert (ROOT / src).exists(), f"the Dockerfile copies {src}, which does not exist"
    assert re.search(r'pip install .*"/opt/airflow/provider-src\[postgres\]"', dockerfile)
    # The build context must not ship the 750 MB virtualenv or the git history.
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv/" in ignored and ".git/" in ignored
    # The compose file documents itself as Airflow 3.3.2, the version the tests run on.
    import airflow

    assert airflow.__version__ == AIRFLOW_VERSION


def test_target_database_credentials_match_the_connections() -> None:
    from airflow.models.connection import Connection

    services = load_compose()["services"]
    target = environment(services[TARGET])
    for var, value in conn_vars(environment(services["airflow-scheduler"])).items():
        conn = _parse(var, value)
        assert conn.host == TARGET and (conn.port or 5432) == 5432
        assert conn.login == target["POSTGRES_USER"] and conn.password == target["POSTGRES_PASSWORD"]
        assert conn.schema == target["POSTGRES_DB"]
        assert isinstance(conn, Connection)


# ---------------------------------------------------------------- same connections, real PostgreSQL
def _parse(var: str, value: str) -> Any:
    from airflow.models.connection import Connection

    conn_id = var.removeprefix("AIRFLOW_CONN_").lower()
    if value.lstrip().startswith("{"):
        return Connection.from_json(value, conn_id=conn_id)
    return Connection(conn_id=conn_id, uri=value)


def _rewrite(value: str, url: URL) -> str:
    """The same connection value, pointed at ``url``'s server, user and database."""
    if value.lstrip().startswith("{"):
        data = json.loads(value)
        data.update(host=url.host, port=url.port, login=url.username, schema=url.database)
        return json.dumps(data)
    conn = _parse("AIRFLOW_CONN_X", value)
    scheme = value.split("://", 1)[0]
    query = value.split("?", 1)[1] if "?" in value else ""
    netloc = (
        f"{url.username}:{conn.password}@{url.host}:{url.port}"
        if conn.password
        else f"{url.username}@{url.host}:{url.port}"
    )
    return f"{scheme}://{netloc}/{url.database}" + (f"?{query}" if query else "")


@pytest.mark.postgres
def test_compose_connections_migrate_a_real_postgres(
    postgres_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_jetbase.hooks.jetbase import JetbaseHook

    services = load_compose()["services"]
    conns = conn_vars(environment(services["airflow-scheduler"]))
    assert conns
    # What docker/target-init.sql does when postgres-target starts (as its owner).
    init_sql = (ROOT / "docker" / "target-init.sql").read_text()
    from sqlalchemy import create_engine

    admin = create_engine(postgres_url)
    try:
        with admin.begin() as conn:
            for statement in filter(None, (s.strip() for s in _strip_comments(init_sql).split(";"))):
                conn.execute(text(statement))
    finally:
        admin.dispose()

    folders = example_migrations_by_conn()
    for var, value in conns.items():
        conn_id = var.removeprefix("AIRFLOW_CONN_").lower()
        # The folder of the example DAG that uses this connection (any example's for the others).
        migrations = folders.get(conn_id, ROOT / "example_dags" / "migrations" / "migrate_before_etl")
        expected_versions = sorted(
            (p.name.split("__")[0][1:].replace("_", ".") for p in migrations.glob("V*__*.sql")),
            key=lambda v: tuple(int(x) for x in v.split(".")),
        )
        assert expected_versions, f"the example migrations folder {migrations} is empty"
        rewritten = _rewrite(value, postgres_url)
        monkeypatch.setenv(var, rewritten)
        hook = JetbaseHook(jetbase_conn_id=conn_id)
        ok, message = hook.test_connection()
        assert ok, message
        spec = hook.get_engine_spec()
        expected_schema = _parse(var, value).extra_dejson.get("postgres_schema") or "public"
        migrator = hook.get_migrator(migrations)
        try:
            result = migrator.upgrade()
            assert [run.version for run in result.applied if run.version] == expected_versions
            assert migrator.current() == expected_versions[-1]
            with migrator.engine.connect() as conn:
                # The schema the connection's postgres_schema names got the tables.
                assert conn.execute(text("SELECT current_schema()")).scalar() == expected_schema
                names = inspect(conn).get_table_names(schema=expected_schema)
                assert "jetbase_migrations" in names
        finally:
            migrator.engine.dispose()
        assert spec.url.database == postgres_url.database


def example_migrations_by_conn() -> dict[str, Path]:
    """conn id -> migrations folder, read from the example DAG files.

    Jetbase keeps one version table per database/schema, so a connection id shared by two examples
    with different migrations folders would make the second fail validation: that is an error here.
    """
    found: dict[str, Path] = {}
    for dag_file in sorted((ROOT / "example_dags").glob("example_*.py")):
        source = dag_file.read_text()
        conn = re.search(r'^CONN_ID = "([^"]+)"', source, re.MULTILINE)
        folder = re.search(r'migrations_dir="([^"]+)"|^MIGRATIONS = "([^"]+)"', source, re.MULTILINE)
        assert conn and folder, f"{dag_file.name}: no CONN_ID or migrations folder found"
        path = (dag_file.parent / (folder[1] or folder[2])).resolve()
        assert path.is_dir(), f"{dag_file.name}: migrations folder {path} does not exist"
        previous = found.setdefault(conn[1], path)
        assert previous == path, (
            f"{dag_file.name}: connection {conn[1]!r} is also used with {previous}; examples with their "
            "own migrations folder need their own connection (one version table per schema)"
        )
    return found


def _example_conn_vars() -> dict[str, str]:
    """conn id -> the compose file's value, for every example DAG's connection."""
    conns = conn_vars(environment(load_compose()["services"]["airflow-scheduler"]))
    return {cid: conns[f"AIRFLOW_CONN_{cid.upper()}"] for cid in example_migrations_by_conn()}


def test_every_example_connection_is_in_the_compose_file() -> None:
    used = set(example_migrations_by_conn())
    assert len(used) == len(list((ROOT / "example_dags").glob("example_*.py"))), "examples share a CONN_ID"
    defined = {
        var.removeprefix("AIRFLOW_CONN_").lower()
        for var in conn_vars(environment(load_compose()["services"]["airflow-scheduler"]))
    }
    assert used <= defined, f"example connections missing from the compose file: {sorted(used - defined)}"


def test_every_example_connection_has_its_own_schema_on_the_target() -> None:
    """One database, one version table per schema: no two examples may share a schema."""
    schemas: dict[str, str] = {}
    for conn_id, value in _example_conn_vars().items():
        conn = _parse(f"AIRFLOW_CONN_{conn_id.upper()}", value)
        schema = conn.extra_dejson.get("postgres_schema") or "public"
        assert schema not in schemas, f"{conn_id} and {schemas[schema]} share the schema {schema!r}"
        schemas[schema] = conn_id
        assert (conn.host, conn.schema) == (TARGET, "warehouse"), conn_id
    created = set(
        re.findall(r"CREATE SCHEMA IF NOT EXISTS (\w+)", (ROOT / "docker" / "target-init.sql").read_text())
    )
    missing = set(schemas) - created - {"public"}
    assert not missing, f"docker/target-init.sql does not create the schemas {sorted(missing)}"


@pytest.mark.postgres
def test_all_example_migrations_share_one_database(
    postgres_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every example's migrations, applied one after another through its own compose connection to ONE
    fresh database, succeed; a second pass over all of them (which validates every version table
    against its folder) finds nothing to do; each schema records exactly its own folder's versions."""
    from sqlalchemy import create_engine

    from airflow_provider_jetbase.hooks.jetbase import JetbaseHook

    admin = create_engine(postgres_url)
    try:
        with admin.begin() as conn:
            init_sql = _strip_comments((ROOT / "docker" / "target-init.sql").read_text())
            for statement in filter(None, (s.strip() for s in init_sql.split(";"))):
                conn.execute(text(statement))
    finally:
        admin.dispose()

    folders = example_migrations_by_conn()
    values = _example_conn_vars()
    assert len(values) >= 4, values.keys()
    for conn_id, value in values.items():
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", _rewrite(value, postgres_url))

    def versions_of(folder: Path) -> list[str]:
        return sorted(
            (p.name.split("__")[0][1:].replace("_", ".") for p in folder.glob("V*__*.sql")),
            key=lambda v: tuple(int(x) for x in v.split(".")),
        )

    for attempt in ("first", "second"):
        for conn_id, folder in folders.items():
            migrator = JetbaseHook(jetbase_conn_id=conn_id).get_migrator(folder)
            try:
                result = migrator.upgrade()
                applied = [run.version for run in result.applied if run.version]
                expected = versions_of(folder) if attempt == "first" else []
                assert applied == expected, (
                    f"{attempt} pass, {conn_id}: applied {applied}, expected {expected}"
                )
                assert migrator.current() == versions_of(folder)[-1], conn_id
            finally:
                migrator.engine.dispose()

    engine = create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            for conn_id, folder in folders.items():
                parsed = _parse(f"AIRFLOW_CONN_{conn_id.upper()}", values[conn_id])
                schema = parsed.extra_dejson.get("postgres_schema") or "public"
                recorded = (
                    conn.execute(
                        text(f'SELECT version FROM "{schema}".jetbase_migrations WHERE version IS NOT NULL')
                    )
                    .scalars()
                    .all()
                )
                assert sorted(recorded, key=lambda v: tuple(int(x) for x in v.split("."))) == versions_of(
                    folder
                ), f"{conn_id}: schema {schema} records {recorded}"
    finally:
        engine.dispose()


def _strip_comments(sql: str) -> str:
    return "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))


@pytest.mark.postgres
def test_example_dag_runs_with_the_compose_connection(postgres_url: URL, airflow_home: AirflowHome) -> None:
    """The migrate-before-ETL example, run by Airflow (`dag.test()`) with the compose file's
    `AIRFLOW_CONN_JETBASE_DEMO` value pointed at the local PostgreSQL: migrations, then the ETL."""
    from sqlalchemy import create_engine

    from tests.airflow_harness import EXAMPLE_DAGS

    conns = conn_vars(environment(load_compose()["services"]["airflow-scheduler"]))
    value = _rewrite(conns["AIRFLOW_CONN_JETBASE_DEMO"], postgres_url)
    dag_id = "example_jetbase_migrate_before_etl"
    outcome = airflow_home.run_dag(EXAMPLE_DAGS / f"{dag_id}.py", dag_id, connections={"jetbase_demo": value})
    assert outcome.state == "success", outcome.explain()
    assert set(outcome.tasks.values()) == {"success"}, outcome.explain()
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            versions = conn.execute(text("SELECT version FROM public.jetbase_migrations")).scalars().all()
            sales = conn.execute(text("SELECT COUNT(*) FROM public.daily_sales")).scalar()
    finally:
        engine.dispose()
    folder = example_migrations_by_conn()["jetbase_demo"]
    assert sorted(versions) == sorted(
        p.name.split("__")[0][1:].replace("_", ".") for p in folder.glob("V*.sql")
    )
    assert sales and sales >= 1, "the ETL task loaded nothing into the table the migrations created"
