"""Bad-input corpus: every case fails with an error naming the culprit and leaves the database as it was.

Migration cases run on the real PostgreSQL server against a database that already holds one applied
migration (``V1__base.sql``), so "unchanged" covers the version table, the lock row and a user table.
The same cases run on ClickHouse 26.x (chdb, over the HTTP interface: tests/clickhouse_server.py)
too, except those listed above ``BASE_KINDS`` (each with its reason); there "unchanged" covers the
version table and the user table (Jetbase keeps no lock on ClickHouse).
A snapshot of the schema and of every row of every table is taken before and compared after.
Connection cases are pure mapping (no server), except the unreachable server and the wrong password,
which go to real ports. Snowflake/Databricks cases never reach a cloud service (mapping only).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Engine

from airflow_provider_jetbase.connection_mapping import (
    ConnectionConfigError,
    ConnectionFields,
    build_engine_spec,
)
from airflow_provider_jetbase.migration import Migrator
from airflow_provider_jetbase.migration.errors import (
    DuplicateVersionError,
    IncompatibleTableError,
    InvalidArgumentError,
    MigrationExecutionError,
    MigrationFileError,
    ValidationFailedError,
    VersionNotFoundError,
)
from tests.jetbase_cli import write_migration
from tests.reliability.snapshots import DbSnapshot, assert_unchanged, snapshot

pytestmark = pytest.mark.postgres

BASE = """
CREATE TABLE base_t (id INT PRIMARY KEY, note VARCHAR(20));
INSERT INTO base_t VALUES (1, 'kept');
-- rollback
DROP TABLE base_t;
"""


# Every case on ``base`` runs on each of these, asserting the same thing; where ClickHouse cannot
# keep the database unchanged the case says what remains. What of the corpus does not run on
# ClickHouse, and why:
# - a foreign ``jetbase_lock`` (test_table_of_another_tool_with_the_same_name): Jetbase keeps no lock
#   on ClickHouse and never reads that table;
# - the unreachable server and the refused port: they test the PostgreSQL driver's connect_timeout
#   and refusal, not the database;
# - the connection-mapping cases: no database is involved, they run once.
# Not excluded but different: a failed file is not rolled back (no transactions; the case checks
# what stays), and the operators need a pool there (no lock), which the operator cases give them.
BASE_KINDS = ("postgres", "clickhouse")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "base" in metafunc.fixturenames:
        metafunc.parametrize("base_kind", BASE_KINDS)


@dataclass
class Baseline:
    kind: str
    engine: Engine
    folder: Path
    before: DbSnapshot

    def migrator(self, **kwargs: Any) -> Migrator:
        return Migrator(self.engine, self.folder, lock_timeout=5, lock_poll_interval=0.2, **kwargs)

    def add(self, filename: str, body: str) -> Path:
        return write_migration(self.folder, filename, body)

    def unchanged(self, what: str) -> None:
        assert_unchanged(self.engine, self.before, what)


@pytest.fixture
def base(request: pytest.FixtureRequest, base_kind: str, tmp_path: Path) -> Iterator[Baseline]:
    """``BASE`` applied on a fresh database of ``base_kind`` (its ``<kind>_url`` fixture). The corpus
    SQL is plain enough for both: ClickHouse 26 makes ``CREATE TABLE t (id INT)`` a MergeTree table
    (``default_table_engine``, ``create_table_empty_primary_key_by_default``)."""
    url: URL = request.getfixturevalue(f"{base_kind}_url")
    folder = tmp_path / "migrations"
    write_migration(folder, "V1__base.sql", BASE)
    engine = create_engine(url)
    try:
        Migrator(engine, folder).upgrade()
        yield Baseline(base_kind, engine, folder, snapshot(engine))
    finally:
        engine.dispose()


def _fails(call: Any, error: type[BaseException], *culprits: str) -> BaseException:
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    for culprit in culprits:
        assert culprit in message, f"{culprit!r} not named in: {message}"
    return info.value


# ----------------------------------------------------------------------------- migration files
@pytest.mark.parametrize(
    "filename",
    [
        "V2_add_users.sql",  # no "__"
        "Vx__bad_version.sql",
        "V2.__trailing_dot.sql",
        "V__no_version.sql",
        "V2__.sql",  # empty description
        "v2__lowercase.sql",
        "RA_single_underscore.sql",
        "ROC__.sql",
        "V2-3__dash.sql",
        "V1..2__double_dot.sql",
        "notes.sql",
    ],
)
def test_malformed_filename(base: Baseline, filename: str) -> None:
    base.add(filename, "CREATE TABLE should_not_exist (id INT);")
    for call in (
        base.migrator().upgrade,
        lambda: base.migrator().upgrade(dry_run=True),
        base.migrator().status,
    ):
        _fails(call, MigrationFileError, filename)
    base.unchanged(f"upgrade with {filename}")


@pytest.mark.parametrize(
    ("first", "second"),
    [("V2__a.sql", "V2__b.sql"), ("V2.0__a.sql", "V2_0__b.sql"), ("V2_1__a.sql", "V2.1__b.sql")],
)
def test_duplicate_versions(base: Baseline, first: str, second: str) -> None:
    base.add(first, "CREATE TABLE dup_a (id INT);")
    base.add(second, "CREATE TABLE dup_b (id INT);")
    _fails(base.migrator().upgrade, DuplicateVersionError, first, second)
    base.unchanged("upgrade with duplicate versions")


def test_v1_and_v1_0_are_two_versions_applied_in_a_fixed_order(base: Baseline) -> None:
    """Decision (as Jetbase): ``V1`` and ``V1.0`` are different versions. packaging orders them equal,
    so the engine breaks the tie by the version string: ``1`` before ``1.0``, on every run."""
    base.add("V1.0__same_as_one.sql", "CREATE TABLE one_dot_zero (id INT);")
    result = base.migrator().upgrade(skip_file_validation=True)
    assert [r.version for r in result.applied] == ["1.0"]
    with base.engine.connect() as conn:
        versions = [
            r[0] for r in conn.execute(text("SELECT version FROM jetbase_migrations ORDER BY order_executed"))
        ]
    assert versions == ["1", "1.0"]
    assert [p.version for p in base.migrator().status().pending] == []


def test_empty_file_is_an_error_in_strict_mode_and_a_named_warning_otherwise(
    base: Baseline, caplog: pytest.LogCaptureFixture
) -> None:
    base.add("V2__empty.sql", "")
    (base.folder / "V2__empty.sql").write_bytes(b"")
    _fails(base.migrator(strict=True).upgrade, MigrationFileError, "V2__empty.sql")
    base.unchanged("strict upgrade of an empty file")
    with caplog.at_level(logging.WARNING):
        result = base.migrator().upgrade(dry_run=True)
    assert any("V2__empty.sql" in w and "no upgrade statements" in w for w in result.warnings), (
        result.warnings
    )
    assert "V2__empty.sql" in caplog.text
    base.unchanged("dry run of an empty file")


@pytest.mark.parametrize(
    ("body", "line"),
    [
        ("CREATE TABLE t2 (id INT);\nCREATE TABLE t3 (id INT)\n", 2),  # last statement without ';'
        ("CREATE TABLE t2 (id INT); -- trailing comment\nCREATE TABLE t3 (id INT);\n", 1),
        ("CREATE TABLE t2 (id INT); CREATE TABLE t3 (id INT);\n", 1),
        ("CREATE TABLE t2 (id INT);\n/* block */ CREATE TABLE t3 (id INT);\n", 2),
    ],
    ids=["no-final-delimiter", "comment-after-delimiter", "two-on-one-line", "block-comment"],
)
def test_parsing_hazard_strict_error_names_file_and_line(base: Baseline, body: str, line: int) -> None:
    base.add("V2__hazard.sql", body)
    _fails(base.migrator(strict=True).upgrade, MigrationFileError, "V2__hazard.sql", f"line {line}")
    base.unchanged("strict upgrade with a parsing hazard")
    dry = base.migrator().upgrade(dry_run=True)
    assert any("V2__hazard.sql" in w and f"line {line}" in w for w in dry.warnings), dry.warnings
    base.unchanged("dry run with a parsing hazard")


def test_invalid_utf8_names_file_and_line(base: Baseline) -> None:
    (base.folder / "V2__latin1.sql").write_bytes(b"CREATE TABLE t2 (id INT);\n-- caf\xe9\nSELECT 1;\n")
    _fails(base.migrator().upgrade, MigrationFileError, "V2__latin1.sql", "line 2", "UTF-8")
    base.unchanged("upgrade of a non-UTF-8 file")


def test_directory_named_like_a_migration(base: Baseline) -> None:
    (base.folder / "V3__dir.sql").mkdir()
    _fails(base.migrator().upgrade, MigrationFileError, "V3__dir.sql")
    base.unchanged("upgrade with a directory named V3__dir.sql")


def test_missing_folder(base: Baseline, tmp_path: Path) -> None:
    missing = tmp_path / "no_such_folder"
    _fails(Migrator(base.engine, missing).upgrade, MigrationFileError, str(missing))
    base.unchanged("upgrade from a missing folder")


def test_folder_is_a_file(base: Baseline, tmp_path: Path) -> None:
    not_a_dir = tmp_path / "migrations.txt"
    not_a_dir.write_text("x")
    _fails(Migrator(base.engine, not_a_dir).upgrade, MigrationFileError, str(not_a_dir))
    base.unchanged("upgrade from a file instead of a folder")


# Imports first, as root (the checkout and its virtualenv may be root-only), then drop to nobody.
_READ_FOLDER = """
import logging, os, sys
from pathlib import Path
from airflow_provider_jetbase.migration.errors import MigrationFileError
from airflow_provider_jetbase.migration.files import discover
os.setgroups([])
os.setgid(65534)
os.setuid(65534)
try:
    discover(Path(sys.argv[1]), logging.getLogger("unreadable"))
except MigrationFileError as exc:
    print("REFUSED", exc)
else:
    print("READ")
"""


@pytest.mark.parametrize("where", ["folder", "subfolder"])
def test_unreadable_folder(base: Baseline, where: str) -> None:
    """chmod 000 cannot stop root, and CI runs as root: there the folder is read by the engine's folder
    reader (what every command reads first, before touching the database) in a child process that
    drops to the unprivileged user ``nobody`` after its imports."""
    base.add("V2__two.sql", "CREATE TABLE two (id INT);")
    (base.folder / "sub").mkdir()
    (base.folder / "sub" / "V3__three.sql").write_text("CREATE TABLE three (id INT);")
    if os.geteuid() != 0:
        locked = base.folder if where == "folder" else base.folder / "sub"
        locked.chmod(0)
        try:
            _fails(base.migrator().upgrade, MigrationFileError, str(locked))
            base.unchanged("upgrade from an unreadable folder")
        finally:
            locked.chmod(0o755)
        return
    # tmp_path's parents are root-only (0700): the folder for "nobody" lives in a directory it may enter.
    shared = Path(tempfile.mkdtemp(prefix="jbtest-unreadable-"))
    try:
        shared.chmod(0o755)
        folder = shared / "migrations"
        shutil.copytree(base.folder, folder)
        locked = folder if where == "folder" else folder / "sub"
        locked.chmod(0)
        child = subprocess.run(
            [sys.executable, "-c", _READ_FOLDER, str(folder)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert child.stdout.startswith("REFUSED"), (child.stdout, child.stderr)
        assert str(locked) in child.stdout, child.stdout
    finally:
        for path in (shared / "migrations", shared / "migrations" / "sub"):
            if path.exists() or path.is_dir():
                path.chmod(0o755)
        shutil.rmtree(shared)
    base.unchanged("nothing ran")


def test_unreadable_file(base: Baseline) -> None:
    """A read error that even root gets: the file is a symlink to /proc/self/mem (EIO on read)."""
    (base.folder / "V2__unreadable.sql").symlink_to("/proc/self/mem")
    _fails(base.migrator().upgrade, MigrationFileError, "V2__unreadable.sql")
    base.unchanged("upgrade with an unreadable file")


def test_symlink_loop_file(base: Baseline) -> None:
    (base.folder / "V2__loop.sql").symlink_to("V2__loop.sql")
    _fails(base.migrator().upgrade, MigrationFileError, "V2__loop.sql")
    base.unchanged("upgrade with a self-referencing symlink")


def test_dangling_symlink(base: Baseline) -> None:
    (base.folder / "V2__dangling.sql").symlink_to("does_not_exist.sql")
    _fails(base.migrator().upgrade, MigrationFileError, "V2__dangling.sql")
    base.unchanged("upgrade with a dangling symlink")


def test_directory_symlink_loop_does_not_hang(base: Baseline) -> None:
    (base.folder / "sub").mkdir()
    (base.folder / "sub" / "back").symlink_to("..")
    base.add("V2__two.sql", "CREATE TABLE two (id INT);")
    pending = [p.filename for p in base.migrator().status().pending]
    assert pending == ["V2__two.sql"]


def test_huge_file_without_final_delimiter(base: Baseline) -> None:
    # ~8 MB of one statement that never ends: strict mode refuses it before anything runs.
    body = "INSERT INTO base_t VALUES\n" + ",\n".join(f"({i}, 'x')" for i in range(2, 600_000)) + "\n"
    (base.folder / "V2__huge.sql").write_text(body)
    _fails(base.migrator(strict=True).upgrade, MigrationFileError, "V2__huge.sql", "line 1")
    base.unchanged("strict upgrade of a huge file without delimiter")


def test_failing_statement_names_file_statement_and_line(base: Baseline) -> None:
    base.add("V2__broken.sql", "CREATE TABLE two (id INT);\n\nCREATE TABLE three (id NOPE);\n")
    err = _fails(
        base.migrator().upgrade, MigrationExecutionError, "V2__broken.sql", "statement 2 of 2", "line 3"
    )
    assert "nope" in str(err).lower()
    if base.kind == "postgres":
        base.unchanged("failed upgrade (PostgreSQL rolls the file back)")
        return
    # ClickHouse has no transactions: statement 1 stays (an empty table ``two``), and the error says
    # so; everything else, the version table included (no row for V2), is as it was.
    assert "may hold part of V2__broken.sql" in str(err) and "repair by hand" in str(err)
    after = snapshot(base.engine)
    assert after.rows == {**base.before.rows, "two": []}, base.before.diff(after)
    assert {t: d for t, d in after.schema.items() if t != "two"} == base.before.schema
    assert [c[0] for c in after.schema["two"]["columns"]] == ["id"]


def test_missing_rollback_section(base: Baseline) -> None:
    base.add("V2__no_rollback.sql", "CREATE TABLE two (id INT);")
    base.migrator().upgrade()
    before = snapshot(base.engine)
    _fails(base.migrator().rollback, MigrationFileError, "V2__no_rollback.sql", "rollback")
    assert_unchanged(base.engine, before, "rollback without a rollback section")


def test_rollback_of_an_applied_version_whose_file_is_gone(base: Baseline) -> None:
    path = base.add("V2__gone.sql", "CREATE TABLE two (id INT);\n-- rollback\nDROP TABLE two;")
    base.migrator().upgrade()
    before = snapshot(base.engine)
    path.unlink()
    _fails(base.migrator().rollback, MigrationFileError, "V2__gone.sql", "2")
    assert_unchanged(base.engine, before, "rollback of a missing file")


def test_changed_checksum(base: Baseline) -> None:
    (base.folder / "V1__base.sql").write_text(BASE.replace("'kept'", "'edited'"))
    base.add("V2__two.sql", "CREATE TABLE two (id INT);")
    _fails(base.migrator().upgrade, ValidationFailedError, "V1__base.sql", "checksum")
    base.unchanged("upgrade after editing an applied file")


def test_applied_file_missing(base: Baseline) -> None:
    (base.folder / "V1__base.sql").unlink()
    base.add("V2__two.sql", "CREATE TABLE two (id INT);")
    _fails(base.migrator().upgrade, ValidationFailedError, "V1__base.sql", "missing")
    base.unchanged("upgrade with an applied file missing")


def test_out_of_order_new_file(base: Baseline) -> None:
    base.add("V2__two.sql", "CREATE TABLE two (id INT);")
    base.migrator().upgrade()
    before = snapshot(base.engine)
    base.add("V1_5__late.sql", "CREATE TABLE late (id INT);")
    _fails(base.migrator().upgrade, ValidationFailedError, "V1_5__late.sql", "1.5")
    assert_unchanged(base.engine, before, "upgrade with an out-of-order file")


# ----------------------------------------------------------------------------- arguments
@pytest.mark.parametrize("command", ["upgrade", "rollback"])
@pytest.mark.parametrize("count", [0, -1, "abc", 1.5, True])
def test_bad_count(base: Baseline, command: str, count: Any) -> None:
    base.add("V2__two.sql", "CREATE TABLE two (id INT);\n-- rollback\nDROP TABLE two;")
    _fails(lambda: getattr(base.migrator(), command)(count=count), InvalidArgumentError, "count", repr(count))
    base.unchanged(f"{command}(count={count!r})")


@pytest.mark.parametrize("command", ["upgrade", "rollback"])
def test_both_count_and_to_version(base: Baseline, command: str) -> None:
    _fails(
        lambda: getattr(base.migrator(), command)(count=1, to_version="1"),
        InvalidArgumentError,
        "count",
        "to_version",
    )
    base.unchanged(f"{command} with both count and to_version")


@pytest.mark.parametrize("command", ["upgrade", "rollback"])
def test_to_version_not_found(base: Baseline, command: str) -> None:
    _fails(lambda: getattr(base.migrator(), command)(to_version="9_9"), VersionNotFoundError, "9.9")
    base.unchanged(f"{command} to an unknown version")


@pytest.mark.parametrize("command", ["upgrade", "rollback"])
@pytest.mark.parametrize("to_version", ["abc", "1.x", "", "1;DROP TABLE base_t"])
def test_to_version_malformed(base: Baseline, command: str, to_version: str) -> None:
    _fails(
        lambda: getattr(base.migrator(), command)(to_version=to_version),
        InvalidArgumentError,
        repr(to_version),
    )
    base.unchanged(f"{command}(to_version={to_version!r})")


def test_rollback_to_a_version_with_a_file_that_was_never_applied(base: Baseline) -> None:
    base.add("V2__two.sql", "CREATE TABLE two (id INT);\n-- rollback\nDROP TABLE two;")
    _fails(lambda: base.migrator().rollback(to_version="2"), VersionNotFoundError, "2", "not been applied")
    base.unchanged("rollback to a never-applied version")


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"lock_timeout": -1}, "lock_timeout"),
        ({"lock_poll_interval": 0}, "lock_poll_interval"),
        ({"stale_lock_after": -5}, "stale_lock_after"),
    ],
)
def test_bad_migrator_settings(base: Baseline, kwargs: dict[str, Any], name: str) -> None:
    _fails(lambda: Migrator(base.engine, base.folder, **kwargs), InvalidArgumentError, name)
    base.unchanged(f"Migrator({kwargs})")


# ----------------------------------------------------------------------------- foreign tables
_FOREIGN_TABLES = {
    "jetbase_migrations": "CREATE TABLE jetbase_migrations (id INT PRIMARY KEY, name VARCHAR(20))",
    "jetbase_lock": "CREATE TABLE jetbase_lock (id INT PRIMARY KEY, owner VARCHAR(20))",
}


@pytest.mark.parametrize(
    ("kind", "table", "ddl"),
    [
        (kind, table, ddl)
        for kind in ("postgres", "mysql", "clickhouse")
        for table, ddl in _FOREIGN_TABLES.items()
        # Jetbase neither reads nor writes a jetbase_lock on ClickHouse (no lock there): not a case.
        if not (kind == "clickhouse" and table == "jetbase_lock")
    ],
)
def test_table_of_another_tool_with_the_same_name(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str, table: str, ddl: str
) -> None:
    url: URL = request.getfixturevalue(f"{kind}_url")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(ddl))
            conn.execute(text(f"INSERT INTO {table} VALUES (1, 'theirs')"))
        folder = tmp_path / "migrations"
        write_migration(folder, "V1__first.sql", "CREATE TABLE first_t (id INT);")
        before = snapshot(engine)
        migrator = Migrator(engine, folder, lock_timeout=2, lock_poll_interval=0.2)
        # Every entry point that reads the table (the sensor uses current(), the drift check
        # validate(), the status operator status()), not only upgrade.
        if table == "jetbase_migrations":
            names = ["upgrade", "rollback", "status", "history", "validate", "current"]
        else:
            names = ["upgrade", "rollback", "lock_status", "unlock"]
        for name in names:
            with pytest.raises(IncompatibleTableError) as info:
                getattr(migrator, name)()
            assert table in str(info.value) and "Jetbase's columns" in str(info.value), (
                name,
                str(info.value),
            )
        assert_unchanged(engine, before, f"upgrade over a foreign {table}")
    finally:
        engine.dispose()


# ----------------------------------------------------------------------------- connections
def _spec_error(fields: ConnectionFields, *culprits: str) -> ConnectionConfigError:
    with pytest.raises(ConnectionConfigError) as info:
        build_engine_spec(fields, environ={})
    message = str(info.value)
    assert fields.conn_id in message, message
    for culprit in culprits:
        assert culprit in message, f"{culprit!r} not named in: {message}"
    return info.value


@pytest.mark.parametrize(
    ("fields", "culprit"),
    [
        (ConnectionFields("c_unknown", "oracle", host="h"), "conn_type"),
        (ConnectionFields("c_empty_type", "", host="h"), "conn_type"),
        (ConnectionFields("c_pg_nohost", "postgres", login="u", schema="db"), "host"),
        (ConnectionFields("c_my_nohost", "mysql", login="u", schema="db"), "host"),
        (ConnectionFields("c_sqlite_nohost", "sqlite"), "host"),
        (ConnectionFields("c_pg_port_abc", "postgres", host="h", port="abc"), "port"),  # type: ignore[arg-type]
        (ConnectionFields("c_pg_port_0", "postgres", host="h", port=0), "port"),
        (ConnectionFields("c_pg_port_big", "postgres", host="h", port=70000), "port"),
        (
            ConnectionFields("c_db_nopath", "databricks", host="x.cloud.databricks.com", password="dapiX"),
            "http_path",
        ),
        (
            ConnectionFields(
                "c_db_notoken", "databricks", host="x.cloud.databricks.com", extra={"http_path": "/sql/1"}
            ),
            "password",
        ),
        (ConnectionFields("c_sf_noaccount", "snowflake", login="u", password="p"), "account"),
        (ConnectionFields("c_pg_driver", "postgres", host="h", extra={"driver": "pg8000x"}), "driver"),
        (ConnectionFields("c_jetbase_nourl", "jetbase"), "sqlalchemy_url"),
        (
            ConnectionFields("c_jetbase_badurl", "jetbase", extra={"sqlalchemy_url": "not a url"}),
            "sqlalchemy_url",
        ),
        (
            ConnectionFields("c_schema_inject", "postgres", host="h", extra={"postgres_schema": "a,,b"}),
            "postgres_schema",
        ),
    ],
    ids=lambda v: v.conn_id if isinstance(v, ConnectionFields) else None,
)
def test_connection_config_errors(fields: ConnectionFields, culprit: str) -> None:
    _spec_error(fields, culprit)


@pytest.fixture(scope="module")
def rsa_key() -> tuple[str, bytes]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"right-passphrase"),
    ).decode()
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem, der


def _sf(conn_id: str, **extra: Any) -> ConnectionFields:
    return ConnectionFields(conn_id, "snowflake", login="svc", extra={"account": "acme-x1", **extra})


def test_snowflake_wrong_passphrase(rsa_key: tuple[str, bytes]) -> None:
    pem, _ = rsa_key
    err = _spec_error(
        _sf("c_sf_pass", private_key_content=pem, private_key_passphrase="WRONG-pass-123"), "passphrase"
    )
    assert "WRONG-pass-123" not in str(err) and "BEGIN" not in str(err)


def test_snowflake_encrypted_key_without_passphrase(rsa_key: tuple[str, bytes]) -> None:
    pem, _ = rsa_key
    err = _spec_error(_sf("c_sf_nopass", private_key_content=pem), "private_key")
    assert "BEGIN" not in str(err)


@pytest.mark.parametrize(
    ("content", "culprit"),
    [
        (
            "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5IGF0IGFsbA==\n-----END PRIVATE KEY-----\n",
            "private_key_content",
        ),
        ("this is not a key at all", "private_key_content"),
        (base64.b64encode(b"definitely not DER or PEM bytes").decode(), "private_key_content"),
    ],
    ids=["invalid-pem", "garbage", "base64-not-a-key"],
)
def test_snowflake_invalid_key_content(content: str, culprit: str) -> None:
    err = _spec_error(_sf("c_sf_badkey", private_key_content=content), culprit)
    assert content not in str(err)


def test_snowflake_both_key_sources(rsa_key: tuple[str, bytes], tmp_path: Path) -> None:
    pem, _ = rsa_key
    key_file = tmp_path / "key.p8"
    key_file.write_text(pem)
    _spec_error(
        _sf("c_sf_both", private_key_content=pem, private_key_file=str(key_file), private_key_passphrase="x"),
        "private_key_content",
        "private_key_file",
    )


def test_snowflake_key_file_missing(tmp_path: Path) -> None:
    _spec_error(_sf("c_sf_nofile", private_key_file=str(tmp_path / "nope.p8")), "private_key_file")


def test_extra_not_json() -> None:
    _spec_error(ConnectionFields("c_extra_str", "postgres", host="h", extra="{not json"), "extra")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- real servers: connect errors
def _hook(monkeypatch: pytest.MonkeyPatch, value: dict[str, Any]) -> Any:
    from airflow_provider_jetbase.hooks.jetbase import JetbaseHook

    conn_id = f"jb_rel_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(value))
    return JetbaseHook(jetbase_conn_id=conn_id)


@pytest.mark.timeout(60)
def test_unreachable_server_fails_within_its_connect_timeout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A black-holed address (TEST-NET-1, RFC 5737): the bound comes from connect_timeout=2, which must
    reach the driver; pytest-timeout (60 s) catches a hang, no wall clock is asserted here."""
    hook = _hook(
        monkeypatch,
        {
            "conn_type": "postgres",
            "host": "192.0.2.1",
            "port": 5432,
            "login": "u",
            "password": "Unreach-Secret-77",
            "schema": "db",
            "extra": {"connect_timeout": 2},
        },
    )
    assert hook.get_engine_spec().connect_args.get("connect_timeout") == 2
    ok, message = hook.test_connection()
    assert not ok
    assert hook.jetbase_conn_id in message and "192.0.2.1" in message, message
    assert "Unreach-Secret-77" not in message
    folder = tmp_path / "m"
    write_migration(folder, "V1__x.sql", "SELECT 1;")
    with pytest.raises(Exception) as info:
        hook.get_migrator(folder).upgrade()
    assert "Unreach-Secret-77" not in str(info.value)


@pytest.mark.parametrize(
    ("kind", "login", "refusal"),
    [
        pytest.param("mysql", "root", "Access denied", marks=pytest.mark.mysql),
        ("clickhouse", "default", "Authentication failed"),
    ],
)
def test_wrong_password_is_named_and_not_echoed(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, kind: str, login: str, refusal: str
) -> None:
    """MariaDB's root and ClickHouse's default user have an empty password, so any password is wrong
    (PostgreSQL here trusts everyone)."""
    url: URL = request.getfixturevalue(f"{kind}_url")
    hook = _hook(
        monkeypatch,
        {
            "conn_type": kind,
            "host": url.host,
            "port": url.port,
            "login": login,
            "password": "Wrong-Pw-9f3a",
            "schema": url.database,
            "extra": {"connect_timeout": 5} if kind == "mysql" else {},
        },
    )
    ok, message = hook.test_connection()
    assert not ok
    assert hook.jetbase_conn_id in message and refusal in message, message
    assert "Wrong-Pw-9f3a" not in message


def test_refused_port(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = _hook(
        monkeypatch,
        {
            "conn_type": "postgres",
            "host": "127.0.0.1",
            "port": 1,
            "login": "postgres",
            "schema": "db",
            "extra": {"connect_timeout": 2},
        },
    )
    ok, message = hook.test_connection()
    assert not ok
    assert hook.jetbase_conn_id in message and "refused" in message.lower(), message


# ----------------------------------------------------------------------------- operator parameters
@pytest.mark.parametrize(
    ("operator", "kwargs", "culprits"),
    [
        ("upgrade", {"count": "abc"}, ("count", "'abc'")),
        ("upgrade", {"count": "0"}, ("count", "0")),
        ("upgrade", {"count": "-1"}, ("count", "'-1'")),
        ("rollback", {"count": "1.5"}, ("count", "'1.5'")),
        ("upgrade", {"dry_run": "maybe"}, ("dry_run", "'maybe'")),
        ("rollback", {"count": "1", "to_version": "1"}, ("count", "to_version")),
        ("upgrade", {"to_version": "abc"}, ("'abc'",)),
    ],
)
def test_operator_parameters_as_rendered_by_templates(
    base: Baseline,
    monkeypatch: pytest.MonkeyPatch,
    operator: str,
    kwargs: dict[str, Any],
    culprits: tuple[str, ...],
) -> None:
    """What a params-driven DAG hands the operators (templates render strings)."""
    import datetime as dt

    from airflow.sdk import DAG

    from airflow_provider_jetbase.operators.jetbase import JetbaseRollbackOperator, JetbaseUpgradeOperator

    url = base.engine.url
    conn_id = f"jb_rel_op_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}",
        json.dumps(
            {
                "conn_type": base.kind,
                "host": url.host,
                "port": url.port,
                "login": url.username,
                "schema": url.database,
            }
        ),
    )
    # Jetbase has no lock on ClickHouse: the operators run there only in a pool (one slot per target).
    pool: dict[str, Any] = {"pool": "jb_bad_input"} if base.kind == "clickhouse" else {}
    cls = JetbaseUpgradeOperator if operator == "upgrade" else JetbaseRollbackOperator
    with DAG(f"jb_bad_{uuid.uuid4().hex[:6]}", schedule=None, start_date=dt.datetime(2026, 1, 1)):
        op = cls(
            task_id="t",
            jetbase_conn_id=conn_id,
            migrations_dir=str(base.folder),
            lock_timeout=2,
            **pool,
            **kwargs,
        )
    _fails(lambda: op.execute({}), ValueError, *culprits)
    base.unchanged(f"{operator} operator with {kwargs}")
