"""Shared fixtures: fresh databases on the real PostgreSQL and MariaDB servers, and SQLite files.

A test that needs a server it cannot reach fails in CI (CI=true) with the command that starts the
server; outside CI it is skipped with a loud warning, so a developer without the servers can still
run the rest.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import URL, Engine, make_url

from tests import dbs, run_summary

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def unavailable(ci_message: str, skip_message: str) -> NoReturn:
    """What a test does without something it needs: fail in CI, skip loudly (a warning) outside."""
    if IN_CI:
        pytest.fail(ci_message, pytrace=False)
    warnings.warn(skip_message, stacklevel=3)
    pytest.skip(skip_message)


def _require_server(kind: str) -> None:
    try:
        dbs.check_server(kind)
    except dbs.ServerUnavailable as exc:
        unavailable(f"CI needs {exc}", f"SKIPPING a real-{kind} test outside CI: {exc}")


def require_module(name: str) -> Any:
    """``pytest.importorskip`` that fails in CI: a broken install must not turn coverage into skips."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        unavailable(
            f"CI needs the module {name!r} (from the test extra): {exc}",
            f"SKIPPING outside CI: module {name!r} cannot be imported ({exc})",
        )


@pytest.fixture
def postgres_url() -> Iterator[URL]:
    """A fresh PostgreSQL database (psycopg2), dropped after the test."""
    _require_server("postgres")
    with dbs.fresh_database("postgres") as url:
        yield url


@pytest.fixture
def postgres_psycopg3_url() -> Iterator[URL]:
    """A fresh PostgreSQL database reached through psycopg 3, dropped after the test."""
    _require_server("postgres")
    with dbs.fresh_database("postgres", driver="psycopg") as url:
        yield url


@pytest.fixture
def mysql_url() -> Iterator[URL]:
    """A fresh MariaDB/MySQL database (PyMySQL), dropped after the test."""
    _require_server("mysql")
    with dbs.fresh_database("mysql") as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> URL:
    return make_url(f"sqlite:///{tmp_path / 'target.db'}")


@pytest.fixture(scope="session")
def clickhouse_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The ClickHouse HTTP test server (tests/clickhouse_server.py) of this test run: one process on
    a free loopback port, one chdb data directory, stopped at the end of the run."""
    require_module("chdb")
    from tests.clickhouse_server import running_server

    with running_server(str(tmp_path_factory.mktemp("chdb"))) as port:
        yield port


@pytest.fixture
def clickhouse_url(clickhouse_port: int) -> Iterator[URL]:
    """A fresh database on the ClickHouse test server (clickhouse-sqlalchemy's HTTP driver), dropped
    after the test."""
    from tests.clickhouse_server import fresh_database

    with fresh_database(clickhouse_port) as name:
        yield URL.create(
            "clickhouse",
            username="default",
            password="",
            host="127.0.0.1",
            port=clickhouse_port,
            database=name,
        )


@pytest.fixture(params=["sqlite", "postgres", "mysql"])
def db_url(request: pytest.FixtureRequest) -> URL:
    """The same test on SQLite, the real PostgreSQL and the real MariaDB."""
    name = {"sqlite": "sqlite_url", "postgres": "postgres_url", "mysql": "mysql_url"}[request.param]
    url: URL = request.getfixturevalue(name)
    return url


@pytest.fixture(scope="session")
def snowflake_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """fakesnow's server mode in its own process for the whole session (tests/snowflake_server.py)."""
    require_module("fakesnow.server")
    from tests.snowflake_server import ServerFailed, running_server

    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(running_server(tmp_path_factory.mktemp("fakesnow")))
        except ServerFailed as exc:
            unavailable(f"CI needs the fakesnow server: {exc}", f"SKIPPING a Snowflake-server test: {exc}")
        yield server


@pytest.fixture
def snowflake_url(snowflake_server: Any) -> Iterator[URL]:
    """A fresh database on the fakesnow server, as the URL the jetbase CLI uses."""
    from tests.snowflake_server import fresh_database

    with fresh_database(snowflake_server) as name:
        yield snowflake_server.url(name)


@pytest.fixture(scope="session")
def airflow_metadata_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test run's one migrated Airflow metadata database (SQLite), copied into each Airflow home
    (tests/airflow_metadata.py)."""
    from tests.airflow_metadata import metadata_template, shared_run_folder

    return metadata_template(shared_run_folder(tmp_path_factory.getbasetemp()))


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory, airflow_metadata_template: Path) -> object:
    """A throw-away AIRFLOW_HOME with a migrated SQLite metadata database, shared by the session's
    dag.test() runs (tests/airflow_harness.py)."""
    from tests.airflow_harness import AirflowHome

    return AirflowHome.create(tmp_path_factory.mktemp("airflow_home"), airflow_metadata_template)


@pytest.fixture
def pg_login(postgres_url: URL) -> Iterator[Callable[[str], URL]]:
    """Make a login role of the test on ``postgres_url``'s database (``make("NOCREATEDB ...")``,
    with SELECT on its public tables); every role made is dropped afterwards."""
    from sqlalchemy import create_engine, text

    made: list[str] = []

    def run(url: URL, *statements: str) -> None:
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                for statement in statements:
                    conn.execute(text(statement))
        finally:
            engine.dispose()

    def make(attributes: str) -> URL:
        role = dbs.new_name("jbt_login")
        run(
            postgres_url,
            f"CREATE ROLE {role} LOGIN {attributes}",
            f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}",
        )
        made.append(role)
        return postgres_url.set(username=role)

    yield make
    for role in made:
        run(postgres_url, f"DROP OWNED BY {role}")
        run(postgres_url.set(database="postgres"), f"DROP ROLE IF EXISTS {role}")


@pytest.fixture
def make_engine() -> Iterator[Callable[..., Engine]]:
    """``make_engine(url, **kwargs)``: a SQLAlchemy engine, disposed after the test."""
    made: list[Engine] = []

    def factory(url: URL, **kwargs: Any) -> Engine:
        engine = create_engine(url, **kwargs)
        made.append(engine)
        return engine

    yield factory
    for engine in made:
        engine.dispose()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """An empty migrations folder."""
    path = tmp_path / "migrations"
    path.mkdir()
    return path


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # ``base_kind`` is in the closure only of tests taking the ``base`` fixture (a test that
    # parametrizes an argument named ``base`` itself does not pull the fixture in).
    if "base_kind" in metafunc.fixturenames:
        from tests.engine.helpers import BASE_KINDS

        metafunc.parametrize("base_kind", BASE_KINDS)


@pytest.fixture
def base(request: pytest.FixtureRequest, base_kind: str, tmp_path: Path) -> Iterator[Any]:
    """The bad-input baseline (tests/engine/helpers.py): ``BASE`` applied on a fresh database of
    ``base_kind`` (its ``<kind>_url`` fixture), with a snapshot of it. The corpus SQL is plain enough
    for both kinds: ClickHouse 26 makes ``CREATE TABLE t (id INT)`` a MergeTree table
    (``default_table_engine``, ``create_table_empty_primary_key_by_default``)."""
    from airflow_provider_jetbase.migration import Migrator
    from tests.engine.helpers import BASE, Baseline
    from tests.jetbase_cli import write_migration
    from tests.reliability.snapshots import snapshot

    url: URL = request.getfixturevalue(f"{base_kind}_url")
    folder = tmp_path / "migrations"
    write_migration(folder, "V1__base.sql", BASE)
    engine = create_engine(url)
    try:
        Migrator(engine, folder).upgrade()
        yield Baseline(base_kind, engine, folder, snapshot(engine))
    finally:
        engine.dispose()


# `make test-fast` runs what needs no database server and no Airflow metadata database: tests are
# sorted out here by the fixtures and markers they use, so a new test lands in the right tier.
_SERVER_FIXTURES = frozenset(
    {
        "postgres_url",
        "postgres_psycopg3_url",
        "mysql_url",
        "pg_login",
        "base_kind",  # the bad-input baseline (fixture `base`): PostgreSQL or ClickHouse
        "airflow_home",
        "restricted_conn",
        "clickhouse_url",
        "snowflake_server",
        "snowflake_url",
    }
)
_SERVER_KINDS = frozenset({"postgres", "postgresql", "mysql", "mariadb", "psycopg", "psycopg2"})
_SERVER_MARKERS = ("postgres", "mysql", "ui", "deployment")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        uses = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        # A parameter naming a server fixture or kind ("postgres_url", "mysql") selects a server too.
        named = {v for v in params.values() if isinstance(v, str)} & (_SERVER_FIXTURES | _SERVER_KINDS)
        server = bool(uses & _SERVER_FIXTURES) or bool(named)
        server = server or ("db_url" in uses and params.get("db_url") != "sqlite")
        if server or any(item.get_closest_marker(m) for m in _SERVER_MARKERS):
            item.add_marker(pytest.mark.slow_tier)
    if hasattr(config, "workerinput"):  # an xdist worker: the order it collects is the order dealt
        _longest_first(items)


# `make test` runs the suite on pytest-xdist workers. Each test module runs whole on one worker (its
# module-scoped fixtures, a UI server or a built wheel, are made once), and the deployment tier, one
# real Airflow deployment for all its modules, runs whole on one worker too; the modules go to
# whichever worker is free. (Not xdist_group markers: xdist 3.8 renames the items' node ids to apply
# them, which pytest 9 no longer lets it do, so they are silently ignored.)
DEPLOYMENT_TIER = "tests/deployment/"


def _scheduler_class() -> Any:
    from xdist.scheduler import LoadScopeScheduling  # here: importing conftest needs no xdist

    class ModuleAndTierScheduling(LoadScopeScheduling):
        def __init__(self, config: pytest.Config, log: Any = None) -> None:
            super().__init__(config, log)
            # Deal the scopes in the collection's order, which _longest_first made longest first:
            # by default xdist re-sorts them by their number of tests (--no-loadscope-reorder).
            config.option.loadscopereorder = False

        def _split_scope(self, nodeid: str) -> str:
            return _scope(nodeid)

    return ModuleAndTierScheduling


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    return _scheduler_class()(config, log)


def _scope(nodeid: str) -> str:
    return DEPLOYMENT_TIER if nodeid.startswith(DEPLOYMENT_TIER) else nodeid.split("::", 1)[0]


def _longest_first(items: list[pytest.Item]) -> None:
    """Hand the workers the longest modules first (tests/module_durations.py): the order in which
    xdist deals out the modules is the collection's."""
    from tests.module_durations import load

    figures = load()
    tier = sum(seconds for module, seconds in figures.items() if module.startswith(DEPLOYMENT_TIER))

    def seconds(item: pytest.Item) -> float:
        scope = _scope(item.nodeid)
        return tier if scope == DEPLOYMENT_TIER else figures.get(scope, 0.0)

    items.sort(key=seconds, reverse=True)  # stable: a module's own tests keep their order


def pytest_configure(config: pytest.Config) -> None:
    run_summary.start(config)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist, in the controller: where a worker writes its summary lines."""
    run_summary.hand_to_worker(node.config, node.workerinput)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Where the browser tests (tests/ui/, tests/deployment/) left their screenshots, and how long the
    deployment took to start (tests/run_summary.py)."""
    run_summary.write_lines(config, terminalreporter)
