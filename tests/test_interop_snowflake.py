"""The real ``jetbase`` CLI and the provider take turns on one Snowflake warehouse, emulated.

The warehouse is fakesnow 0.12.1 in server mode (tests/snowflake_server.py): DuckDB behind the
Snowflake connector's HTTP protocol, in a process of its own, so the CLI (a subprocess with its
URL in ``env.py``) and the provider (an engine built by the connection mapping from an Airflow
connection of the official Snowflake type) are two clients of one server, as they would be of a
real account. It is not a real Snowflake: see docs/connections/snowflake.md for what that leaves
untested.

The scenarios are PostgreSQL's (tests/test_interop_cli.py), imported rather than copied; only the
fixtures that say which database they run on differ.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from airflow_provider_jetbase.drift import run_drift_check, store_snapshot
from tests.jetbase_cli import JetbaseProject, applied_versions, write_migration
from tests.test_hook_cloud import PASSPHRASE, _pem, define_connection
from tests.test_interop_cli import (  # noqa: F401 - collected here, on the fixtures below
    new_migrator,
    reference_logs,
    test_cli_and_engine_take_turns,
    test_cli_lock_makes_engine_wait_then_time_out,
    test_engine_holds_lock_cli_upgrade_fails,
    test_engine_waits_for_cli_lock_and_proceeds_when_released,
    test_interrupted_engine_leaves_the_lock_free_for_the_cli,
    test_validation_findings_agree_with_the_cli,
    write_scenario_files,
)


@pytest.fixture
def db_url(snowflake_url: URL) -> URL:
    return snowflake_url


@pytest.fixture
def reference_url(snowflake_server: Any) -> Iterator[URL]:
    """A second fresh database on the same server, driven by the CLI alone."""
    from tests.snowflake_server import fresh_database

    with fresh_database(snowflake_server) as name:
        yield snowflake_server.url(name)


@pytest.fixture
def make_engine(snowflake_server: Any) -> Iterator[Callable[..., Engine]]:
    """The provider's side: engines built by the connection mapping, not from the CLI's URL."""
    engines: list[Engine] = []

    def factory(url: URL, **kwargs: Any) -> Engine:
        database = str(url.database).split("/")[0]
        engine = snowflake_server.engine(database, **kwargs)
        engines.append(engine)
        return engine

    yield factory
    for engine in engines:
        engine.dispose()


def test_drift_snapshot_finds_a_change_made_by_hand_after_cli_upgrades(
    db_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    project = JetbaseProject(tmp_path, db_url)
    write_scenario_files(project.migrations_dir, "snowflake")
    project.upgrade(to_version="2").assert_ok()
    engine = make_engine(db_url)
    # The provider continues where the CLI stopped, then records the schema it left.
    assert [r.filename for r in new_migrator(engine, project.migrations_dir).upgrade().applied][:2] == [
        "V2_1__shipments.sql",
        "V10__audit_trail.sql",
    ]
    store_snapshot(engine)
    clean = run_drift_check(engine, project.migrations_dir)
    assert clean.method == "snapshot" and not clean.failed, clean.to_text()

    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE customers ADD COLUMN nickname VARCHAR(40)")
    drift = run_drift_check(engine, project.migrations_dir)
    assert drift.failed
    assert [(f.kind, f.object) for f in drift.findings if f.kind != "pending_migration"] == [
        ("column_added", "customers.nickname")
    ], drift.to_text()
    # The CLI still sees a consistent history: the drift is in the schema, not in Jetbase's rows.
    project.upgrade().assert_ok()
    assert applied_versions(engine) == ["1", "1.1", "1.2", "2", "2.1", "10"]


@pytest.fixture(scope="module")
def rsa_key() -> RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_key_pair_connection_signs_a_jwt_and_migrates_with_the_cli(
    snowflake_server: Any,
    db_url: URL,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    rsa_key: RSAPrivateKey,
) -> None:
    """An official-style Snowflake connection with an encrypted PEM key (the password field is its
    passphrase, as in the official provider) goes through the real connector's key-pair
    authenticator: the JWT it sends is checked here against the public key, since fakesnow does
    not check it."""
    import jwt
    from snowflake.connector.auth.keypair import AuthByKeyPair

    from airflow_provider_jetbase.hooks.jetbase import JetbaseHook
    from tests import snowflake_server as sf

    tokens: list[str] = []
    prepare = AuthByKeyPair.prepare

    def recording_prepare(self: AuthByKeyPair, **kwargs: Any) -> Any:
        token = prepare(self, **kwargs)
        tokens.append(token)
        return token

    monkeypatch.setattr(AuthByKeyPair, "prepare", recording_prepare)
    database = str(db_url.database).split("/")[0]
    fields = snowflake_server.connection_fields(database)
    pem = _pem(rsa_key, PASSPHRASE)
    conn_id = define_connection(
        monkeypatch,
        {
            "conn_type": "snowflake",
            "login": fields.login,
            "password": PASSPHRASE,
            "schema": fields.schema,
            "extra": {**fields.extra, "private_key_content": base64.b64encode(pem.encode()).decode()},
        },
    )
    hook = JetbaseHook(conn_id)
    assert "private_key" in hook.get_engine_spec().connect_args and hook.get_sqlalchemy_url().password is None
    ok, message = hook.test_connection()
    assert ok, message
    assert PASSPHRASE not in message

    claims = jwt.decode(tokens[-1], rsa_key.public_key(), algorithms=["RS256"])
    assert claims["sub"] == f"{sf.ACCOUNT}.{sf.LOGIN}".upper()
    assert claims["iss"].startswith(f"{sf.ACCOUNT}.{sf.LOGIN}.SHA256:".upper())

    # The key-pair engine migrates; the CLI, on the same warehouse, reads what it did.
    project = JetbaseProject(tmp_path, db_url)
    write_migration(project.migrations_dir, "V1__first.sql", "CREATE TABLE first_t (id INTEGER);")
    engine = hook.get_sqlalchemy_engine()
    try:
        assert [r.filename for r in new_migrator(engine, project.migrations_dir).upgrade().applied] == [
            "V1__first.sql"
        ]
    finally:
        engine.dispose()
    assert "Latest migration version: 1" in project.current().assert_ok().messages
