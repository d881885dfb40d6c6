"""Run the real ``jetbase`` CLI in a throw-away project, and snapshot what it leaves in a database.

The CLI only works from a directory named ``jetbase`` that holds ``env.py`` and ``migrations/``,
and it reads its configuration from the current directory, ``JETBASE_*`` environment variables
and any ``pyproject.toml`` above it. So every call runs it in a process of its own with its
working directory set and a cleaned copy of the environment: the test process's own directory and
environment are never touched, and a developer's ``JETBASE_SQLALCHEMY_URL`` cannot leak into a test.

That process is a fork of an interpreter that has already imported the CLI and the database's driver
(``tests/cli_forkserver.py``): a fresh ``jetbase`` process spends nearly all its time importing (about 2
CPU-seconds a call on Snowflake, whose connector imports pandas and pyarrow), and the suite makes
hundreds of calls on a 2-core machine. ``JetbaseProject(fresh_process=True)``, or
``TESTS_JETBASE_CLI_FRESH_PROCESS=1`` for the whole suite, runs the installed console script instead;
``tests/test_cli_forkserver.py`` runs the same calls both ways and compares them, and
``JetbaseProject.start`` always runs the console script.

The engine under test is pointed at the same ``<root>/jetbase/migrations`` folder, so both tools
read exactly the same files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import threading
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, inspect, text
from sqlalchemy.engine import URL, Inspector

from tests.cli_forkserver_client import FRESH_PROCESS_VARIABLE, forked_cli_call

# A guard against a hung CLI (e.g. blocked on a row lock), not a speed assertion.
CLI_HANG_GUARD_SECONDS = 300.0

LOCK_HELD_MESSAGE = "Migration lock is already held by another process"
JETBASE_TABLES = ("jetbase_migrations", "jetbase_lock")
# Tables of the provider's own that the CLI never creates nor reads (the lock holder's identity):
# left out of CLI-vs-engine comparisons, checked on their own.
PROVIDER_TABLES = ("jetbase_lock_owner",)


def jetbase_executable() -> str:
    """The ``jetbase`` console script of the interpreter running the tests."""
    beside_python = Path(sys.executable).parent / "jetbase"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("jetbase")
    if found is None:
        raise RuntimeError("the jetbase CLI is not installed next to the test interpreter nor on PATH")
    return found


def clean_cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of the environment without Jetbase configuration, with plain (non-rich) tracebacks."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("JETBASE_")}
    # Plain tracebacks keep the exception message on one line, unwrapped, so tests can match it.
    env["TYPER_STANDARD_TRACEBACK"] = "1"
    env["TYPER_USE_RICH"] = "0"
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "250"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if extra:
        env.update(extra)
    return env


@dataclass(frozen=True)
class CliResult:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def messages(self) -> list[str]:
        """The ``message`` of each JSON log line (the CLI logs JSON when stdout is not a TTY)."""
        found: list[str] = []
        for line in self.output.splitlines():
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and "message" in record:
                found.append(str(record["message"]))
        return found

    def describe(self) -> str:
        return (
            f"jetbase {' '.join(self.args)} exited {self.returncode}\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        )

    def assert_ok(self) -> CliResult:
        assert self.returncode == 0, self.describe()
        return self

    def assert_failed_with(self, fragment: str) -> CliResult:
        """The CLI failed and said ``fragment`` (the exit code alone is not trusted)."""
        assert fragment in self.output, f"expected {fragment!r} in the CLI output\n{self.describe()}"
        assert self.returncode != 0, self.describe()
        return self


def url_to_string(url: URL) -> str:
    # The CLI needs the real URL in env.py; test databases carry no secret passwords.
    return url.render_as_string(hide_password=False)


@dataclass
class JetbaseProject:
    """``<root>/jetbase/env.py`` + ``<root>/jetbase/migrations/``, driven by the real CLI."""

    root: Path
    url: URL
    postgres_schema: str | None = None
    env_extra: dict[str, str] = field(default_factory=dict)
    fresh_process: bool = field(default_factory=lambda: os.environ.get(FRESH_PROCESS_VARIABLE) == "1")

    def __post_init__(self) -> None:
        if self.url.get_backend_name() == "snowflake":
            from tests.snowflake_server import CLI_ENV

            self.env_extra = {**CLI_ENV, **self.env_extra}
        self.jetbase_dir.mkdir(parents=True, exist_ok=True)
        self.migrations_dir.mkdir(exist_ok=True)
        lines = [f"sqlalchemy_url = {url_to_string(self.url)!r}"]
        if self.postgres_schema is not None:
            lines.append(f"postgres_schema = {self.postgres_schema!r}")
        (self.jetbase_dir / "env.py").write_text("\n".join(lines) + "\n")

    @property
    def jetbase_dir(self) -> Path:
        return self.root / "jetbase"

    @property
    def migrations_dir(self) -> Path:
        return self.jetbase_dir / "migrations"

    def run(self, *args: str) -> CliResult:
        argv = [jetbase_executable(), *args]
        env = clean_cli_env(self.env_extra)
        if not self.fresh_process:
            returncode, stdout, stderr = forked_cli_call(
                argv, self.jetbase_dir, env, self.url.drivername, timeout=CLI_HANG_GUARD_SECONDS
            )
            return CliResult(tuple(args), returncode, stdout, stderr)
        completed = subprocess.run(
            argv,
            cwd=self.jetbase_dir,
            env=env,
            capture_output=True,
            text=True,
            timeout=CLI_HANG_GUARD_SECONDS,
            check=False,
        )
        return CliResult(tuple(args), completed.returncode, completed.stdout, completed.stderr)

    def start(self, *args: str) -> subprocess.Popen[str]:
        """Start the CLI without waiting (to race it); finish with :func:`finish`.

        Always a fresh ``jetbase`` console-script process (the racing and killing tests need a
        ``Popen``), so the suite also runs the installed script itself, not only forks of it.
        """
        return subprocess.Popen(
            [jetbase_executable(), *args],
            cwd=self.jetbase_dir,
            env=clean_cli_env(self.env_extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def upgrade(
        self,
        count: int | None = None,
        to_version: str | None = None,
        dry_run: bool = False,
        skip_validation: bool = False,
    ) -> CliResult:
        args = ["upgrade"]
        if count is not None:
            args += ["--count", str(count)]
        if to_version is not None:
            args += ["--to-version", to_version]
        if dry_run:
            args.append("--dry-run")
        if skip_validation:
            args.append("--skip-validation")
        return self.run(*args)

    def rollback(
        self, count: int | None = None, to_version: str | None = None, dry_run: bool = False
    ) -> CliResult:
        args = ["rollback"]
        if count is not None:
            args += ["--count", str(count)]
        if to_version is not None:
            args += ["--to-version", to_version]
        if dry_run:
            args.append("--dry-run")
        return self.run(*args)

    def current(self) -> CliResult:
        return self.run("current")

    def write(self, filename: str, body: str, subdir: str | None = None) -> Path:
        return write_migration(self.migrations_dir, filename, body, subdir=subdir)

    def copy_migrations_from(self, source: Path) -> None:
        """Make this project's folder an exact copy of ``source`` (same bytes, same names)."""
        shutil.rmtree(self.migrations_dir)
        shutil.copytree(source, self.migrations_dir)


def finish(process: subprocess.Popen[str], *args: str) -> CliResult:
    stdout, stderr = process.communicate(timeout=CLI_HANG_GUARD_SECONDS)
    return CliResult(tuple(args), process.returncode, stdout, stderr)


def write_migration(folder: Path, filename: str, body: str, subdir: str | None = None) -> Path:
    """Write one migration file (body dedented, exactly one trailing newline)."""
    target_dir = folder / subdir if subdir else folder
    target_dir.mkdir(parents=True, exist_ok=True)
    path = target_dir / filename
    path.write_text(textwrap.dedent(body).strip("\n") + "\n")
    return path


def migration_files(folder: Path) -> list[Path]:
    """Every migration file below ``folder`` (Jetbase walks subfolders too)."""
    return sorted(p for p in folder.rglob("*.sql") if p.name.startswith(("V", "RA__", "ROC__")))


def jetbase_checksum(path: Path) -> str:
    """The checksum Jetbase itself computes for a file's upgrade section."""
    from jetbase.engine.checksum import calculate_checksum
    from jetbase.engine.file_parser import parse_upgrade_statements

    return calculate_checksum(parse_upgrade_statements(str(path)))


# --------------------------------------------------------------------------- snapshots

VERSION_ROW_COLUMNS = ("version", "description", "filename", "migration_type", "checksum")


def version_rows(
    engine: Engine, include_order: bool = True, tables: Collection[str] | None = None
) -> list[tuple[Any, ...]]:
    """``jetbase_migrations`` rows in execution order, without ``applied_at``.

    ``order_executed`` is kept (when asked) because both tools insert through the same identity
    column: in the same sequence of steps, the same numbers must come out.
    """
    columns = (("order_executed",) if include_order else ()) + VERSION_ROW_COLUMNS
    if not table_exists(engine, "jetbase_migrations", tables):
        return []
    with engine.connect() as conn:
        result = conn.execute(
            text(f"SELECT {', '.join(columns)} FROM jetbase_migrations ORDER BY order_executed")
        )
        return [tuple(row) for row in result]


def applied_versions(engine: Engine) -> list[str]:
    """Versions of the VERSIONED rows, in execution order."""
    return [row[0] for row in version_rows(engine, include_order=False) if row[3] == "VERSIONED"]


# What lock_row() returns for a free lock: the one shape every test compares with.
LOCK_FREE: tuple[bool, bool, str | None] = (False, False, None)


def lock_row(engine: Engine, tables: Collection[str] | None = None) -> tuple[bool, bool, str | None] | None:
    """(is_locked, locked_at is set, process_id) of the single lock row, None without the table."""
    if not table_exists(engine, "jetbase_lock", tables):
        return None
    with engine.connect() as conn:
        # Whether locked_at is set is asked of the database: fakesnow's server sends a NULL
        # TIMESTAMP_NTZ as 1970-01-01 on the wire.
        row = conn.execute(
            text(
                "SELECT is_locked, CASE WHEN locked_at IS NULL THEN 0 ELSE 1 END, process_id "
                "FROM jetbase_lock WHERE id = 1"
            )
        ).first()
    if row is None:
        return None
    return bool(row[0]), bool(row[1]), row[2]


def table_exists(engine: Engine, name: str, tables: Collection[str] | None = None) -> bool:
    """``tables``: the table names already read (database_state reads them once for all its parts)."""
    return name in (inspect(engine).get_table_names() if tables is None else tables)


# fakesnow (the Snowflake emulator) backs an IDENTITY column with a DuckDB sequence whose name ends in
# a random suffix: two identical tables differ only there.
_FAKESNOW_SEQUENCE = re.compile(r"(_fs_seq_\w+)_[0-9a-f]{8}\b")


def _column_signature(column: Mapping[str, Any]) -> tuple[Any, ...]:
    identity = column.get("identity")
    default = None if column.get("default") is None else str(column["default"])
    return (
        column["name"],
        str(column["type"]),
        bool(column["nullable"]),
        None if default is None else _FAKESNOW_SEQUENCE.sub(r"\1", default),
        column.get("autoincrement"),
        None if identity is None else tuple(sorted((k, str(v)) for k, v in dict(identity).items())),
    )


def schema_snapshot(engine: Engine, inspector: Inspector | None = None) -> dict[str, Any]:
    """Tables with their columns (name, type, nullability, default), primary keys and indexes."""
    inspector = inspect(engine) if inspector is None else inspector
    snapshot: dict[str, Any] = {}
    for table in sorted(inspector.get_table_names()):
        if table in PROVIDER_TABLES:
            continue
        snapshot[table] = {
            "columns": [_column_signature(c) for c in inspector.get_columns(table)],
            "pk": tuple(inspector.get_pk_constraint(table).get("constrained_columns") or ()),
            "indexes": sorted(
                (ix["name"], tuple(str(c) for c in ix["column_names"]), bool(ix["unique"]))
                for ix in inspector.get_indexes(table)
            ),
        }
    snapshot["<views>"] = sorted(inspector.get_view_names())
    return snapshot


def provider_lock_owner_rows(engine: Engine) -> int:
    """Rows in the provider's lock-holder table (0 when absent): must be 0 whenever the lock is free."""
    if not table_exists(engine, PROVIDER_TABLES[0]):
        return 0
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT COUNT(*) FROM {PROVIDER_TABLES[0]}")).scalar_one())


def user_table_counts(engine: Engine, tables: Collection[str] | None = None) -> dict[str, int]:
    """Row counts of every non-Jetbase table: shows how often RA/ROC and seed files really ran."""
    counts: dict[str, int] = {}
    names = inspect(engine).get_table_names() if tables is None else tables
    with engine.connect() as conn:
        for table in sorted(names):
            if table in JETBASE_TABLES or table in PROVIDER_TABLES:
                continue
            counts[table] = int(conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one())
    return counts


def jetbase_ddl(engine: Engine, tables: Collection[str] | None = None) -> dict[str, Any]:
    """The Jetbase tables' definitions as the database itself reports them.

    The inspector's types lose details that matter here (MySQL's ``TIMESTAMP(6)`` shows as
    ``TIMESTAMP``), so each dialect's own catalogue is read as well.
    """
    ddl: dict[str, Any] = {}
    dialect = engine.dialect.name
    with engine.connect() as conn:
        for table in JETBASE_TABLES:
            if not table_exists(engine, table, tables):
                continue
            if dialect == "sqlite":
                sql = conn.execute(
                    text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :t"), {"t": table}
                ).scalar_one()
                ddl[table] = " ".join(str(sql).split())
            elif dialect == "mysql":
                created = str(conn.execute(text(f"SHOW CREATE TABLE {table}")).one()[1])
                ddl[table] = re.sub(r" AUTO_INCREMENT=\d+", "", created)
            elif dialect == "postgresql":
                ddl[table] = [
                    tuple(row)
                    for row in conn.execute(
                        text(
                            "SELECT column_name, data_type, character_maximum_length, datetime_precision, "
                            "is_nullable, column_default, is_identity, identity_generation "
                            "FROM information_schema.columns "
                            "WHERE table_schema = current_schema() AND table_name = :t "
                            "ORDER BY ordinal_position"
                        ),
                        {"t": table},
                    )
                ]
            elif dialect == "snowflake":
                # Snowflake stores unquoted names upper-case; fakesnow's catalogue has no
                # DATETIME_PRECISION, and its sequence names end in a random suffix.
                ddl[table] = [
                    tuple(_FAKESNOW_SEQUENCE.sub(r"\1", v) if isinstance(v, str) else v for v in row)
                    for row in conn.execute(
                        text(
                            "SELECT column_name, data_type, character_maximum_length, numeric_precision, "
                            "numeric_scale, is_nullable, column_default "
                            "FROM information_schema.columns "
                            "WHERE table_schema = current_schema() AND table_name = :t "
                            "ORDER BY ordinal_position"
                        ),
                        {"t": table.upper()},
                    )
                ]
            elif dialect == "clickhouse":
                # The database name is in the text; each test has its own.
                created = str(conn.execute(text(f"SHOW CREATE TABLE {table}")).scalar_one())
                ddl[table] = created.replace(f"{engine.url.database}.", "")
            else:
                # Without a branch the comparison would compare two empty dicts and always pass.
                raise NotImplementedError(f"jetbase_ddl cannot read table definitions on {dialect}")
    return ddl


@dataclass(frozen=True)
class DatabaseState:
    rows: list[tuple[Any, ...]]
    schema: dict[str, Any]
    ddl: dict[str, Any]
    counts: dict[str, int]
    lock: tuple[bool, bool, str | None] | None


def database_state(engine: Engine, include_order: bool = True) -> DatabaseState:
    # One inspector and one read of the table names for all parts: on the Snowflake emulator every
    # catalogue query costs tens of milliseconds, and nothing writes while the state is read.
    inspector = inspect(engine)
    tables = inspector.get_table_names()
    return DatabaseState(
        rows=version_rows(engine, include_order=include_order, tables=tables),
        schema=schema_snapshot(engine, inspector),
        ddl=jetbase_ddl(engine, tables),
        counts=user_table_counts(engine, tables),
        lock=lock_row(engine, tables),
    )


def assert_same_state(actual: DatabaseState, expected: DatabaseState, step: str) -> None:
    """Compare piece by piece so a failure says which part differs."""
    assert actual.rows == expected.rows, (
        f"{step}: jetbase_migrations rows differ\n{actual.rows}\n!=\n{expected.rows}"
    )
    assert actual.schema == expected.schema, f"{step}: schema differs\n{actual.schema}\n!=\n{expected.schema}"
    assert actual.ddl == expected.ddl, f"{step}: Jetbase table DDL differs\n{actual.ddl}\n!=\n{expected.ddl}"
    assert actual.counts == expected.counts, (
        f"{step}: user-table row counts differ: {actual.counts} != {expected.counts}"
    )
    assert actual.lock == expected.lock, f"{step}: lock row differs: {actual.lock} != {expected.lock}"


def run_sql(engine: Engine, statements: Sequence[str], params: Mapping[str, Any] | None = None) -> None:
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement), dict(params or {}))


# --------------------------------------------------------------------------- racing helpers


class StatementGate:
    """Blocks the engine's thread inside a migration, while it holds Jetbase's lock.

    A listener on the engine's own Engine stops before any statement containing ``marker`` until
    the test opens the gate, so the test can act while the migration is in flight.
    """

    def __init__(self, engine: Engine, marker: str) -> None:
        self.marker = marker
        self.reached = threading.Event()
        self.released = threading.Event()
        event.listen(engine, "before_cursor_execute", self._before)

    def _before(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if self.marker in statement:
            self.reached.set()
            # Bounded so a broken test cannot hang the suite; not a timing assertion.
            self.released.wait(timeout=300)


def count_lock_looks(engine: Engine) -> list[str]:
    """Record each read or update of the lock row: a waiting engine keeps polling it.

    Counted by what reaches the database, not by a clock, so the proof does not depend on speed.
    """
    seen: list[str] = []

    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        normalized = " ".join(statement.lower().split())
        if "jetbase_lock" in normalized and normalized.startswith(("update", "select")):
            seen.append(normalized)

    event.listen(engine, "after_cursor_execute", after)
    return seen


class UpgradeThread(threading.Thread):
    """``migrator.upgrade()`` in a daemon thread; ``result`` or ``error`` afterwards."""

    def __init__(self, migrator: Any, name: str = "jbtest-upgrade") -> None:
        super().__init__(name=name, daemon=True)
        self.migrator = migrator
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.migrator.upgrade()
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            self.error = exc
