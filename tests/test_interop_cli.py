"""The provider's engine and the real ``jetbase`` 0.18.1 CLI are interchangeable on one database.

Each scenario runs on two fresh databases of the same kind: database A is driven alternately by the
CLI and by our engine, database B (the reference) by the CLI alone through the same steps. After
every step the version table rows (without ``applied_at``), the schema, the user tables' row counts
and the lock row of A must equal B's. Both tools read the very same migrations folder for A.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url

from tests import dbs
from tests.jetbase_cli import (
    LOCK_FREE,
    LOCK_HELD_MESSAGE,
    PROVIDER_TABLES,
    CliResult,
    DatabaseState,
    JetbaseProject,
    StatementGate,
    applied_versions,
    assert_same_state,
    count_lock_looks,
    database_state,
    finish,
    jetbase_checksum,
    lock_row,
    migration_files,
    provider_lock_owner_rows,
    run_sql,
    table_exists,
    version_rows,
    write_migration,
)

# ----------------------------------------------------------------------------- fixtures


def _kind(url: URL) -> str:
    return {"sqlite": "sqlite", "postgresql": "postgres", "mysql": "mysql"}[url.get_backend_name()]


@pytest.fixture
def reference_url(db_url: URL, tmp_path: Path) -> Iterator[URL]:
    """A second fresh database of the same kind as ``db_url``, driven by the CLI alone."""
    kind = _kind(db_url)
    if kind == "sqlite":
        yield make_url(f"sqlite:///{tmp_path / 'reference.db'}")
        return
    with dbs.fresh_database(kind) as url:
        yield url


@pytest.fixture
def make_engine() -> Iterator[Callable[..., Engine]]:
    engines: list[Engine] = []

    def factory(url: URL, **kwargs: Any) -> Engine:
        engine = create_engine(url, **kwargs)
        engines.append(engine)
        return engine

    yield factory
    for engine in engines:
        engine.dispose()


def new_migrator(engine: Engine, folder: Path, **kwargs: Any) -> Any:
    from airflow_provider_jetbase.migration import Migrator

    return Migrator(engine, folder, **kwargs)


# ----------------------------------------------------------------------------- migrations

V1 = """
    -- upgrade
    -- Customers, declared over several lines with comments in between.
    CREATE TABLE customers (
        id INTEGER PRIMARY KEY,
        -- the display name
        name VARCHAR(100) NOT NULL
    );

    CREATE TABLE run_log (note VARCHAR(40));
    -- rollback
    DROP TABLE run_log;
    DROP TABLE customers;
"""
V1_1 = """
    ALTER TABLE customers ADD COLUMN email VARCHAR(200);
    --   ROLLBACK
    ALTER TABLE customers DROP COLUMN email;
"""
# A custom delimiter lets a line inside a string literal end with ';'.
V1_2 = """
    -- jetbase: delimiter=@@
    -- orders
    CREATE TABLE orders (
        id INTEGER PRIMARY KEY,
        note VARCHAR(100)
    )@@
    INSERT INTO orders (id, note) VALUES (1, 'first;
    second')@@
    -- rollback
    DROP TABLE orders@@
"""
V2 = """
    INSERT INTO customers (id, name, email)
    VALUES (1, 'Ada', 'ada@example.com');
    INSERT INTO customers (id, name, email) VALUES (2, 'Grace', NULL);
    -- rollback
    DELETE FROM customers WHERE id IN (1, 2);
"""
V2_1 = """
    CREATE TABLE shipments (id INTEGER PRIMARY KEY, order_id INTEGER);
    -- rollback
    DROP TABLE shipments;
"""
V10 = """
    CREATE TABLE audit_trail (
        id INTEGER PRIMARY KEY,
        happened VARCHAR(40)
    );
    CREATE INDEX ix_audit_trail_happened ON audit_trail (happened);
    -- rollback
    DROP TABLE audit_trail;
"""
# Snowflake has no CREATE INDEX on standard tables: there V10's second statement is a second table.
V10_BY_BACKEND = {
    "snowflake": """
    CREATE TABLE audit_trail (
        id INTEGER PRIMARY KEY,
        happened VARCHAR(40)
    );
    CREATE TABLE audit_trail_archive (id INTEGER PRIMARY KEY, happened VARCHAR(40));
    -- rollback
    DROP TABLE audit_trail_archive;
    DROP TABLE audit_trail;
""",
}
RA = """
    -- runs on every upgrade
    INSERT INTO run_log (note) VALUES ('upgrade ran');
"""
ROC = """
    DROP VIEW IF EXISTS customer_names;
    CREATE VIEW customer_names AS
        SELECT name FROM customers;
"""
ROC_CHANGED = """
    DROP VIEW IF EXISTS customer_names;
    CREATE VIEW customer_names AS
        SELECT name, email FROM customers;
"""


def write_scenario_files(folder: Path, backend: str = "") -> None:
    write_migration(folder, "V1__create_customers.sql", V1)
    write_migration(folder, "V1_1__add_email.sql", V1_1)
    write_migration(folder, "V1.2__orders.sql", V1_2)
    write_migration(folder, "V2__seed_customers.sql", V2)
    # Jetbase walks subfolders: a version in one must be ordered with the others.
    write_migration(folder, "V2_1__shipments.sql", V2_1, subdir="later")
    write_migration(folder, "V10__audit_trail.sql", V10_BY_BACKEND.get(backend, V10))
    write_migration(folder, "RA__log_run.sql", RA)
    write_migration(folder, "ROC__customer_names.sql", ROC)


# ----------------------------------------------------------------------------- scenario


@dataclass(frozen=True)
class ReferenceStep:
    """One step of the reference database: the CLI's arguments, the files it read, the state after."""

    args: tuple[str, ...]
    files: str
    state: DatabaseState


@dataclass
class ReferenceLog:
    """The reference database's steps through one scenario, to replay against another database A.

    The CLI alone, from a fresh database, through the same commands on the same files, leaves the same
    state: so a scenario run once with a live reference can serve as the reference of the next run of
    the same steps (the other order of take-turns). A Pair replaying it checks at every step that the
    command and the files are the recorded ones, and at the end that no recorded step was left over.
    """

    steps: list[ReferenceStep] = field(default_factory=list)


@dataclass
class CommandProbe(JetbaseProject):
    """Runs nothing: says which arguments a ``lambda p: p.upgrade(...)`` action gives the CLI."""

    def __post_init__(self) -> None:
        pass

    def run(self, *args: str) -> CliResult:
        return CliResult(tuple(args), 0, "", "")


def folder_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


class Pair:
    """Database A (mixed CLI/engine) and reference database B (CLI only), same files.

    With ``replay`` (a ReferenceLog recorded by an earlier Pair through the same steps) there is no
    database B: each step compares A with B's recorded state. Otherwise B is live and ``log`` records
    its steps."""

    def __init__(
        self,
        tmp_path: Path,
        url: URL,
        ref_url: URL | None,
        make_engine: Callable[..., Engine],
        replay: ReferenceLog | None = None,
    ) -> None:
        self.a = JetbaseProject(tmp_path / "a", url)
        self.engine_a = make_engine(url)
        self.migrator = new_migrator(
            self.engine_a, self.a.migrations_dir, lock_timeout=30.0, lock_poll_interval=0.2
        )
        self.replay = replay
        self.replayed = 0
        self.log = ReferenceLog()
        if replay is None:
            assert ref_url is not None, "a live reference needs its database"
            self.b = JetbaseProject(tmp_path / "b", ref_url)
            self.engine_b = make_engine(ref_url)

    def write(self, writer: Callable[[Path], object]) -> None:
        writer(self.a.migrations_dir)
        if self.replay is None:
            self.b.copy_migrations_from(self.a.migrations_dir)

    def reference_step(self, action: Callable[[JetbaseProject], Any], step: str) -> DatabaseState:
        """The CLI's ``action`` on B and B's state after it (recorded), or the recorded state."""
        if self.replay is not None:
            return self._replayed_step(action, step)
        result = action(self.b).assert_ok()
        state = database_state(self.engine_b)
        self.log.steps.append(ReferenceStep(result.args, folder_digest(self.b.migrations_dir), state))
        return state

    def _replayed_step(self, action: Callable[[JetbaseProject], Any], step: str) -> DatabaseState:
        assert self.replay is not None
        steps = self.replay.steps
        assert self.replayed < len(steps), f"{step}: the recorded reference has no step {self.replayed + 1}"
        recorded = steps[self.replayed]
        self.replayed += 1
        args = action(CommandProbe(self.a.root, self.a.url)).args
        assert recorded.args == args, f"{step}: the recorded reference ran {recorded.args}, not {args}"
        assert recorded.files == folder_digest(self.a.migrations_dir), (
            f"{step}: the recorded reference read other migration files"
        )
        return recorded.state

    def cli_both(self, action: Callable[[JetbaseProject], Any], step: str) -> None:
        action(self.a).assert_ok()
        self.compare(step, self.reference_step(action, step))

    def engine_vs_cli(
        self, engine_action: Callable[[Any], Any], cli_action: Callable[[JetbaseProject], Any], step: str
    ) -> Any:
        cwd, environ = os.getcwd(), dict(os.environ)
        stamps_before = applied_at_by_filename(self.engine_a)
        result = engine_action(self.migrator)
        assert (os.getcwd(), dict(os.environ)) == (cwd, environ), f"{step}: the engine changed cwd or environ"
        # Rows the engine (re)wrote carry a new applied_at, as the CLI's INSERT/UPDATE give them.
        stamps_after = applied_at_by_filename(self.engine_a)
        for run in getattr(result, "applied", ()):
            assert run.filename in stamps_after, f"{step}: no row for {run.filename}"
            assert stamps_after[run.filename] != stamps_before.get(run.filename), (
                f"{step}: applied_at of {run.filename} was not refreshed"
            )
        self.compare(step, self.reference_step(cli_action, step))
        return result

    def assert_replayed(self) -> None:
        if self.replay is not None:
            left = len(self.replay.steps) - self.replayed
            assert left == 0, f"{left} step(s) of the recorded reference were not replayed"

    def check(self, step: str) -> None:
        """A against the live B as it is now."""
        self.compare(step, database_state(self.engine_b))

    def compare(self, step: str, expected: DatabaseState) -> None:
        assert_same_state(database_state(self.engine_a), expected, step)
        assert provider_lock_owner_rows(self.engine_a) == 0, f"{step}: a lock holder row was left behind"


def applied_at_by_filename(engine: Engine) -> dict[str, Any]:
    if not table_exists(engine, "jetbase_migrations"):
        return {}
    with engine.connect() as conn:
        return {
            row[0]: row[1]
            for row in conn.execute(text("SELECT filename, applied_at FROM jetbase_migrations"))
        }


def assert_run_checksums(result: Any, folder: Path, key: str) -> None:
    """Every run reported by the engine carries the checksum Jetbase computes for its file."""
    by_name = {p.name: p for p in migration_files(folder)}
    runs = getattr(result, key)
    assert runs, f"the engine reported no {key}"
    for run in runs:
        assert run.checksum == jetbase_checksum(by_name[run.filename]), run.filename


@pytest.fixture(scope="module")
def reference_logs() -> dict[str, ReferenceLog]:
    """Per backend, the reference database's steps through test_cli_and_engine_take_turns. Database B
    gets the same CLI commands on the same files whichever tool starts on A, so the first order run
    records them (on a live B) and the other replays them (ReferenceLog checks each step is the same)."""
    return {}


@pytest.mark.parametrize("first", ["cli_first", "engine_first"])
def test_cli_and_engine_take_turns(
    first: str,
    db_url: URL,
    tmp_path: Path,
    make_engine: Callable[..., Engine],
    reference_logs: dict[str, ReferenceLog],
    request: pytest.FixtureRequest,
) -> None:
    backend = db_url.get_backend_name()
    replay = reference_logs.get(backend)
    reference_url = None if replay is not None else request.getfixturevalue("reference_url")
    pair = Pair(tmp_path, db_url, reference_url, make_engine, replay=replay)
    pair.write(lambda folder: write_scenario_files(folder, backend))
    cli_turn = first == "cli_first"

    # 1. apply up to 1.2 (the CLI accepts "1_2"; so must we).
    if cli_turn:
        pair.cli_both(lambda p: p.upgrade(to_version="1_2"), "1: CLI upgrade --to-version 1_2")
    else:
        result = pair.engine_vs_cli(
            lambda m: m.upgrade(to_version="1_2"),
            lambda p: p.upgrade(to_version="1_2"),
            "1: engine upgrade(to_version='1_2')",
        )
        assert [r.filename for r in result.applied] == [
            "V1__create_customers.sql",
            "V1_1__add_email.sql",
            "V1.2__orders.sql",
            "RA__log_run.sql",
            "ROC__customer_names.sql",
        ]
        assert_run_checksums(result, pair.a.migrations_dir, "applied")
    assert applied_versions(pair.engine_a) == ["1", "1.1", "1.2"]

    # 2. the other tool continues with everything pending.
    if cli_turn:
        result = pair.engine_vs_cli(lambda m: m.upgrade(), lambda p: p.upgrade(), "2: engine continues")
        # ROC is unchanged, so only the versioned files and the RA file run.
        assert [r.filename for r in result.applied] == [
            "V2__seed_customers.sql",
            "V2_1__shipments.sql",
            "V10__audit_trail.sql",
            "RA__log_run.sql",
        ]
        assert_run_checksums(result, pair.a.migrations_dir, "applied")
    else:
        pair.cli_both(lambda p: p.upgrade(), "2: CLI continues")
    assert applied_versions(pair.engine_a) == ["1", "1.1", "1.2", "2", "2.1", "10"]

    # 3. roll back one with the first tool.
    if cli_turn:
        pair.cli_both(lambda p: p.rollback(), "3: CLI rolls back one")
    else:
        result = pair.engine_vs_cli(
            lambda m: m.rollback(), lambda p: p.rollback(), "3: engine rolls back one"
        )
        assert [r.filename for r in result.rolled_back] == ["V10__audit_trail.sql"]
    assert applied_versions(pair.engine_a) == ["1", "1.1", "1.2", "2", "2.1"]

    # 4. roll back two more with the other tool.
    if cli_turn:
        result = pair.engine_vs_cli(
            lambda m: m.rollback(count=2), lambda p: p.rollback(count=2), "4: engine rolls back two"
        )
        assert [r.filename for r in result.rolled_back] == ["V2_1__shipments.sql", "V2__seed_customers.sql"]
    else:
        pair.cli_both(lambda p: p.rollback(count=2), "4: CLI rolls back two")
    assert applied_versions(pair.engine_a) == ["1", "1.1", "1.2"]

    # 5. a changed runs-on-change file is re-run (and its row updated) by the first tool...
    pair.write(lambda folder: write_migration(folder, "ROC__customer_names.sql", ROC_CHANGED))
    if cli_turn:
        pair.cli_both(lambda p: p.upgrade(count=1), "5: CLI upgrade after ROC change")
    else:
        result = pair.engine_vs_cli(
            lambda m: m.upgrade(count=1), lambda p: p.upgrade(count=1), "5: engine upgrade after ROC change"
        )
        assert [r.filename for r in result.applied] == [
            "V2__seed_customers.sql",
            "RA__log_run.sql",
            "ROC__customer_names.sql",
        ]
        assert_run_checksums(result, pair.a.migrations_dir, "applied")

    # 6. ...and then is left alone by the other one, which sees the stored checksum as current.
    if cli_turn:
        result = pair.engine_vs_cli(lambda m: m.upgrade(), lambda p: p.upgrade(), "6: engine upgrade")
        assert [r.filename for r in result.applied] == [
            "V2_1__shipments.sql",
            "V10__audit_trail.sql",
            "RA__log_run.sql",
        ]
    else:
        pair.cli_both(lambda p: p.upgrade(), "6: CLI upgrade")

    rows = version_rows(pair.engine_a, include_order=False)
    roc = [r for r in rows if r[2] == "ROC__customer_names.sql"]
    assert len(roc) == 1 and roc[0][4] == jetbase_checksum(pair.a.migrations_dir / "ROC__customer_names.sql")

    # Both read the same history from the rows, whoever wrote them.
    history = [
        (h.order_executed, h.version, h.description, h.filename, h.migration_type, h.checksum)
        for h in pair.migrator.history()
    ]
    assert history == version_rows(pair.engine_a)
    assert pair.migrator.current() == "10"
    assert "Latest migration version: 10" in pair.a.current().messages
    # Runs-always files are always pending (the CLI's status lists them too).
    assert [p.filename for p in pair.migrator.status().pending] == ["RA__log_run.sql"]
    assert pair.migrator.validate().ok

    # 7. roll back to a version (given as "1_1") with the first tool, 8. re-apply with the other.
    if cli_turn:
        pair.cli_both(lambda p: p.rollback(to_version="1_1"), "7: CLI rollback --to-version 1_1")
        result = pair.engine_vs_cli(lambda m: m.upgrade(), lambda p: p.upgrade(), "8: engine re-applies")
        assert [r.filename for r in result.applied][:4] == [
            "V1.2__orders.sql",
            "V2__seed_customers.sql",
            "V2_1__shipments.sql",
            "V10__audit_trail.sql",
        ]
    else:
        result = pair.engine_vs_cli(
            lambda m: m.rollback(to_version="1_1"),
            lambda p: p.rollback(to_version="1_1"),
            "7: engine rollback(to_version='1_1')",
        )
        assert [r.filename for r in result.rolled_back] == [
            "V10__audit_trail.sql",
            "V2_1__shipments.sql",
            "V2__seed_customers.sql",
            "V1.2__orders.sql",
        ]
        pair.cli_both(lambda p: p.upgrade(), "8: CLI re-applies")
    assert applied_versions(pair.engine_a) == ["1", "1.1", "1.2", "2", "2.1", "10"]
    assert lock_row(pair.engine_a) == LOCK_FREE
    pair.assert_replayed()
    if replay is None:
        reference_logs[backend] = pair.log


def test_validation_findings_agree_with_the_cli(
    db_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    """Drift made after CLI upgrades: our report names what the CLI's audits and upgrade name."""
    project = JetbaseProject(tmp_path, db_url)
    for version, table in (("1", "t1"), ("2", "t2"), ("3", "t3")):
        write_migration(
            project.migrations_dir, f"V{version}__create_{table}.sql", f"CREATE TABLE {table} (id INTEGER);"
        )
    project.upgrade().assert_ok()
    engine = make_engine(db_url)
    migrator = new_migrator(engine, project.migrations_dir)
    assert migrator.validate().ok

    # A space inside a line changes the checksum (a comment would not).
    write_migration(project.migrations_dir, "V2__create_t2.sql", "CREATE TABLE t2 (id  INTEGER);")
    write_migration(
        project.migrations_dir, "V1__create_t1.sql", "-- a new comment\nCREATE TABLE t1 (id INTEGER);"
    )
    audit = project.run("validate-checksums").assert_ok()
    assert "→ 2" in " ".join(audit.messages) and "→ 1" not in " ".join(audit.messages), audit.describe()
    findings = migrator.validate().findings
    assert [(f.kind, f.version) for f in findings] == [("checksum_mismatch", "2")], findings

    # A new file below the latest applied version.
    write_migration(project.migrations_dir, "V1_5__late.sql", "CREATE TABLE late (id INTEGER);")
    project.upgrade(count=None).assert_failed_with("V1_5__late.sql has version 1.5")
    kinds = {(f.kind, f.version) for f in migrator.validate().findings}
    assert kinds == {("checksum_mismatch", "2"), ("out_of_order", "1.5")}, kinds

    # An applied file that disappeared.
    (project.migrations_dir / "V3__create_t3.sql").unlink()
    files_audit = project.run("validate-files").assert_ok()
    assert "3" in " ".join(files_audit.messages), files_audit.describe()
    kinds = {(f.kind, f.version) for f in migrator.validate().findings}
    assert ("missing_file", "3") in kinds, kinds
    with pytest.raises(Exception) as caught:
        migrator.upgrade()
    assert type(caught.value).__name__ == "ValidationFailedError", caught.value
    assert applied_versions(engine) == ["1", "2", "3"]


def test_checksums_identical_for_every_file(
    db_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    """The checksum in our results and rows equals Jetbase's, for every scenario file and odd ones."""
    project = JetbaseProject(tmp_path, db_url)
    write_scenario_files(project.migrations_dir)
    # Checksum-relevant oddities: trailing spaces inside a line, a dropped final statement,
    # an upgrade-only file, a file with CRLF line ends.
    write_migration(
        project.migrations_dir,
        "V20__odd_spacing.sql",
        """
        CREATE TABLE odd (id INTEGER,   label VARCHAR(10));
        INSERT INTO odd (id, label) VALUES (1, 'a  b');
        SELECT 1
        -- rollback
        DROP TABLE odd;
    """,
    )
    (project.migrations_dir / "V21__crlf.sql").write_bytes(
        b"CREATE TABLE crlf_table (\r\n  id INTEGER\r\n);\r\n-- rollback\r\nDROP TABLE crlf_table;\r\n"
    )
    # Non-ASCII text.
    write_migration(
        project.migrations_dir,
        "V22__unicode.sql",
        """
        CREATE TABLE unicode_table (label VARCHAR(20));
        INSERT INTO unicode_table (label) VALUES ('café ☕');
    """,
    )
    # The delimiter directive is case-insensitive and may follow other comments.
    write_migration(
        project.migrations_dir,
        "V23__slash_delimiter.sql",
        """
        -- a header comment
        -- Jetbase: Delimiter=//
        CREATE TABLE slash_table (id INTEGER)//
        -- rollback
        DROP TABLE slash_table//
    """,
    )
    # Rollback only: Jetbase records it with the checksum of no statements at all.
    write_migration(project.migrations_dir, "V24__no_upgrade.sql", "-- rollback\nDROP TABLE slash_table;")
    engine = make_engine(db_url)
    result = new_migrator(engine, project.migrations_dir).upgrade()
    assert_run_checksums(result, project.migrations_dir, "applied")
    assert {r.filename for r in result.applied} == {p.name for p in migration_files(project.migrations_dir)}
    by_name = {p.name: p for p in migration_files(project.migrations_dir)}
    for _order, _version, _description, filename, _type, checksum in version_rows(engine):
        assert checksum == jetbase_checksum(by_name[filename]), filename
    # The CLI agrees: it finds nothing changed and nothing pending.
    audit = project.run("validate-checksums").assert_ok()  # exits 0 even on drift: read its message
    assert "All migration checksums are valid" in " ".join(audit.messages), audit.describe()


# ----------------------------------------------------------------------------- locks


def test_engine_holds_lock_cli_upgrade_fails(
    db_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    on_sqlite = db_url.get_backend_name() == "sqlite"
    # On SQLite the CLI's acquire waits out pysqlite's busy timeout (5 s by default) on the engine's
    # file lock before it fails; the same timeout given in the CLI's URL as 0.2 s fails the same way.
    project = JetbaseProject(tmp_path, db_url.update_query_dict({"timeout": "0.2"}) if on_sqlite else db_url)
    write_migration(
        project.migrations_dir,
        "V1__gate.sql",
        """
        SELECT 'jb_gate_marker' AS gate;
        CREATE TABLE gated (id INTEGER);
        -- rollback
        DROP TABLE gated;
    """,
    )
    write_migration(project.migrations_dir, "V2__after.sql", "CREATE TABLE after_gate (id INTEGER);")
    engine = make_engine(db_url)
    gate = StatementGate(engine, "jb_gate_marker")
    migrator = new_migrator(engine, project.migrations_dir)
    outcome: dict[str, Any] = {}

    def run_engine() -> None:
        try:
            outcome["result"] = migrator.upgrade(count=1)
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            outcome["error"] = exc

    worker = threading.Thread(target=run_engine)
    worker.start()
    try:
        assert gate.reached.wait(timeout=300), f"the engine never reached the gate: {outcome}"
        observer = make_engine(db_url)
        held = lock_row(observer)
        assert held is not None and held[0] and held[1], f"engine is migrating without the lock: {held}"
        assert held[2], "the engine's lock row has no process_id"
        assert len(held[2]) <= 36
        assert_records_this_process(observer, held[2])

        cli = project.upgrade()
        # SQLite: the engine holds the file's write lock for the whole migration (so no waiter can take
        # the lock row over between its ownership checks), so the CLI's acquire fails on the file lock.
        cli.assert_failed_with("database is locked" if on_sqlite else LOCK_HELD_MESSAGE)
        assert "Status: LOCKED" in " ".join(project.run("lock-status").messages)
        # The CLI changed nothing and did not steal or clear the lock.
        assert lock_row(observer) == held
        assert "after_gate" not in database_state(observer).schema
    finally:
        gate.released.set()
        worker.join()
    assert "error" not in outcome, outcome.get("error")
    assert [r.filename for r in outcome["result"].applied] == ["V1__gate.sql"]
    assert applied_versions(engine) == ["1"]
    assert lock_row(engine) == LOCK_FREE
    # Now the CLI can continue.
    project.upgrade().assert_ok()
    assert applied_versions(engine) == ["1", "2"]


def assert_records_this_process(engine: Engine, process_id: str) -> None:
    """Issue 10 (lock robustness): the holder (host, pid) is recoverable, for the stale-lock policy.

    Either in the provider's side table, or encoded in the 36-character process_id itself.
    """
    if table_exists(engine, PROVIDER_TABLES[0]):
        with engine.connect() as conn:
            owner = conn.execute(text(f"SELECT process_id, pid FROM {PROVIDER_TABLES[0]}")).one()
        assert owner[0] == process_id and owner[1] == os.getpid(), owner
        return
    from airflow_provider_jetbase.migration.lock import parse_process_id

    origin = parse_process_id(process_id)
    assert origin is not None, f"process_id {process_id} does not say who holds the lock"
    assert origin[1] == os.getpid() & 0xFFFFFFF, (origin, os.getpid())


def _hold_lock_like_the_cli(engine: Engine, process_id: str) -> None:
    run_sql(
        engine,
        [
            "UPDATE jetbase_lock SET is_locked = TRUE, locked_at = CURRENT_TIMESTAMP, process_id = :pid "
            "WHERE id = 1 AND is_locked = FALSE"
        ],
        {"pid": process_id},
    )


def test_cli_lock_makes_engine_wait_then_time_out(
    db_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    from airflow_provider_jetbase.migration.errors import LockTimeoutError

    project = JetbaseProject(tmp_path, db_url)
    write_migration(project.migrations_dir, "V1__first.sql", "CREATE TABLE first_t (id INTEGER);")
    project.upgrade().assert_ok()  # the CLI creates both tables
    write_migration(project.migrations_dir, "V2__second.sql", "CREATE TABLE second_t (id INTEGER);")
    engine = make_engine(db_url)
    holder = "0b7e3c2a-8d1f-4c55-9f0e-3a2b1c4d5e6f"
    _hold_lock_like_the_cli(engine, holder)
    assert lock_row(engine) == (True, True, holder)
    assert "Status: LOCKED" in " ".join(project.run("lock-status").assert_ok().messages)

    attempts = count_lock_looks(engine)
    migrator = new_migrator(engine, project.migrations_dir, lock_timeout=1.0, lock_poll_interval=0.1)
    with pytest.raises(LockTimeoutError) as caught:
        migrator.upgrade()
    message = str(caught.value)
    assert holder in message, message
    with engine.connect() as conn:
        locked_at = conn.execute(text("SELECT locked_at FROM jetbase_lock WHERE id = 1")).scalar_one()
    assert str(locked_at)[:10] in message, f"the message does not say since when ({locked_at}): {message}"
    assert "unlock" in message.lower(), message
    assert len(attempts) >= 3, f"the engine looked at the lock {len(attempts)} time(s): it did not poll"
    # Nothing ran and the CLI's lock is untouched.
    assert applied_versions(engine) == ["1"]
    assert lock_row(engine) == (True, True, holder)
    info = migrator.lock_status()
    assert info.is_locked and info.process_id == holder and info.supported

    # Our unlock clears the CLI's lock exactly as `jetbase unlock` would; then both can run again.
    migrator.unlock()
    assert lock_row(engine) == LOCK_FREE
    assert "Status: UNLOCKED" in " ".join(project.run("lock-status").assert_ok().messages)
    assert [r.filename for r in migrator.upgrade().applied] == ["V2__second.sql"]


def test_engine_waits_for_cli_lock_and_proceeds_when_released(
    db_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    project = JetbaseProject(tmp_path, db_url)
    write_migration(project.migrations_dir, "V1__first.sql", "CREATE TABLE first_t (id INTEGER);")
    project.upgrade().assert_ok()
    write_migration(project.migrations_dir, "V2__second.sql", "CREATE TABLE second_t (id INTEGER);")
    engine = make_engine(db_url)
    _hold_lock_like_the_cli(engine, "11111111-2222-3333-4444-555555555555")

    attempts = count_lock_looks(engine)
    released = threading.Event()

    def release_after_some_polls() -> None:
        while len(attempts) < 3:
            if released.wait(timeout=0.05):
                return
        project.run("unlock").assert_ok()  # the CLI's own unlock
        released.set()

    helper = threading.Thread(target=release_after_some_polls)
    helper.start()
    try:
        result = new_migrator(
            engine, project.migrations_dir, lock_timeout=300.0, lock_poll_interval=0.1
        ).upgrade()
    finally:
        released.set()
        helper.join()
    assert [r.filename for r in result.applied] == ["V2__second.sql"]
    assert applied_versions(engine) == ["1", "2"]
    assert lock_row(engine) == LOCK_FREE


def test_interrupted_engine_leaves_the_lock_free_for_the_cli(
    db_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    """Ctrl-C (or a task kill turned into an exception) mid-migration: the CLI is not locked out."""
    project = JetbaseProject(tmp_path, db_url)
    write_migration(project.migrations_dir, "V1__first.sql", "CREATE TABLE first_t (id INTEGER);")
    write_migration(
        project.migrations_dir,
        "V2__interrupted.sql",
        """
        SELECT 'jb_interrupt_marker' AS here;
        CREATE TABLE interrupted_t (id INTEGER);
        -- rollback
        DROP TABLE interrupted_t;
        """,
    )
    engine = make_engine(db_url)

    def interrupt(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "jb_interrupt_marker" in statement:
            raise KeyboardInterrupt

    event.listen(engine, "before_cursor_execute", interrupt)
    with pytest.raises(KeyboardInterrupt):
        new_migrator(engine, project.migrations_dir).upgrade()
    event.remove(engine, "before_cursor_execute", interrupt)

    assert lock_row(engine) == LOCK_FREE
    assert provider_lock_owner_rows(engine) == 0
    assert applied_versions(engine) == ["1"]
    project.upgrade().assert_ok()
    assert applied_versions(engine) == ["1", "2"]


def test_byte_order_mark_file_behaves_as_with_the_cli(
    db_url: URL, reference_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    """Jetbase reads an editor's UTF-8 BOM as part of the first statement and sends it to the database.

    SQLite ignores it; PostgreSQL and MariaDB reject the statement. Our engine must parse, checksum and
    fail (or succeed) exactly like the CLI, leaving the same state.
    """
    body = "\ufeffCREATE TABLE bom_table (label VARCHAR(20));\nINSERT INTO bom_table (label) VALUES ('x');\n"
    pair = Pair(tmp_path, db_url, reference_url, make_engine)
    pair.write(lambda folder: write_migration(folder, "V1__first.sql", "CREATE TABLE first_t (id INTEGER);"))
    bom_file = pair.a.migrations_dir / "V2__bom.sql"
    bom_file.write_bytes(body.encode())
    pair.b.copy_migrations_from(pair.a.migrations_dir)

    dry = pair.migrator.upgrade(dry_run=True)
    from jetbase.engine.file_parser import parse_upgrade_statements

    bom_run = [r for r in dry.applied if r.filename == "V2__bom.sql"][0]
    assert list(bom_run.statements) == parse_upgrade_statements(str(bom_file))
    assert bom_run.checksum == jetbase_checksum(bom_file)

    from airflow_provider_jetbase.migration.errors import MigrationExecutionError

    try:
        pair.migrator.upgrade()
        engine_ok = True
    except MigrationExecutionError as exc:
        engine_ok = False
        assert "V2__bom.sql" in str(exc)
    cli_ok = pair.b.upgrade().returncode == 0
    assert engine_ok == cli_ok, (
        f"engine {'succeeded' if engine_ok else 'failed'}, CLI {'did' if cli_ok else 'did not'}"
    )
    pair.check("after the BOM file")


GATES = {
    # dialect -> (statement in the CLI's migration that blocks, hold, release) on a test session
    "postgresql": (
        "SELECT pg_advisory_xact_lock(424242);",
        "SELECT pg_advisory_lock(424242)",
        "SELECT pg_advisory_unlock(424242)",
    ),
    "mysql": (
        "SELECT GET_LOCK('jb_gate', 300);\nSELECT RELEASE_LOCK('jb_gate');",
        "SELECT GET_LOCK('jb_gate', 10)",
        "SELECT RELEASE_LOCK('jb_gate')",
    ),
}


@pytest.mark.parametrize("url_fixture", ["postgres_url", "mysql_url"])
def test_engine_waits_for_a_running_cli_upgrade_then_finds_nothing_to_do(
    url_fixture: str, request: pytest.FixtureRequest, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    """The CLI is migrating when the engine starts: the engine waits, then plans from the CLI's rows.

    (SQLite has no server-side lock a separate process could block on, so it is not in this test.)
    """
    url: URL = request.getfixturevalue(url_fixture)
    engine = make_engine(url)
    blocking, hold, release = GATES[engine.dialect.name]
    project = JetbaseProject(tmp_path, url)
    write_migration(
        project.migrations_dir, "V1__gated.sql", blocking + "\nCREATE TABLE gated_t (id INTEGER);"
    )
    write_migration(project.migrations_dir, "V2__after.sql", "CREATE TABLE after_t (id INTEGER);")

    with engine.connect() as gate_session:
        gate_session.execute(text(hold))
        cli = project.start("upgrade")
        try:
            while lock_row(engine) is None or not lock_row(engine)[0]:  # type: ignore[index]
                assert cli.poll() is None, finish(cli, "upgrade").describe()
                threading.Event().wait(0.05)
            looks = count_lock_looks(engine)
            outcome: dict[str, Any] = {}

            def run_engine() -> None:
                try:
                    outcome["result"] = new_migrator(
                        engine, project.migrations_dir, lock_timeout=300.0, lock_poll_interval=0.05
                    ).upgrade()
                except BaseException as exc:  # noqa: BLE001 - reported to the main thread
                    outcome["error"] = exc

            worker = threading.Thread(target=run_engine)
            worker.start()
            while len(looks) < 3 and worker.is_alive():
                worker.join(timeout=0.05)
        finally:
            gate_session.execute(text(release))
            gate_session.commit()
        finish(cli, "upgrade").assert_ok()
        worker.join()

    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"].applied == (), "the engine re-planned from a stale read"
    assert applied_versions(engine) == ["1", "2"]
    assert lock_row(engine) == LOCK_FREE
