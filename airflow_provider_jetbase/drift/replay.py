"""Build the expected schema by replaying the applied migrations into a scratch target.

The scratch target lives on the same server as the database checked (or on the reference
server), so both sides are reflected by the same server version and compare like for like:

- SQLite: an in-memory database;
- PostgreSQL: ``CREATE DATABASE jetbase_drift_<hex> TEMPLATE template0`` with the target's
  encoding and locale, dropped ``WITH (FORCE)`` in ``finally``;
- MySQL/MariaDB: ``CREATE DATABASE jetbase_drift_<hex>`` with the target's character set,
  dropped in ``finally``.

A scratch database left behind by a killed worker is recognisable by the ``jetbase_drift_`` prefix.
Nothing here writes to the target database: it is only read (encoding, current schema).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_jetbase.drift.schema import SchemaModel, snapshot_schema
from airflow_provider_jetbase.errors import JetbaseProviderError
from airflow_provider_jetbase.migration.dialects import dialect_name

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

SCRATCH_PREFIX = "jetbase_drift_"
REPLAYABLE_DIALECTS = ("sqlite", "postgresql", "mysql")

VERSIONED = "VERSIONED"
RUNS_ALWAYS = "RUNS_ALWAYS"
RUNS_ON_CHANGE = "RUNS_ON_CHANGE"

_VERSION_RE = re.compile(r"^\d+([._]\d+)*$")


class AppliedRow(Protocol):
    """The fields of a ``jetbase_migrations`` row that replay needs (``AppliedMigration`` has them)."""

    @property
    def version(self) -> str | None: ...
    @property
    def filename(self) -> str: ...
    @property
    def migration_type(self) -> str: ...
    @property
    def checksum(self) -> str | None: ...


class ReplayError(JetbaseProviderError, RuntimeError):
    """A migration could not be replayed into the scratch database; names the file and statement."""

    def __init__(self, filename: str, statement_number: int, statement: str, cause: BaseException) -> None:
        self.filename = filename
        self.statement_number = statement_number
        head = statement if len(statement) <= 200 else statement[:197] + "..."
        reason = getattr(cause, "orig", None) or cause
        super().__init__(
            f"replaying {filename} failed at statement {statement_number} ({head!r}): "
            f"{type(reason).__name__}: {reason}"
        )


class ReplayUnsupportedError(JetbaseProviderError, RuntimeError):
    pass


class ScratchDatabaseError(JetbaseProviderError, RuntimeError):
    """The scratch database could not be created (usually: the user may not create databases)."""

    def __init__(self, name: str, admin: Engine, cause: BaseException) -> None:
        reason = getattr(cause, "orig", None) or cause
        where = f"{admin.url.host or 'localhost'}:{admin.url.port or 'default port'}"
        super().__init__(
            f"could not create the scratch database {name} on {where} ({type(reason).__name__}: "
            f"{str(reason).strip()}). The drift check replays the migrations there: give the user the "
            "right to create and drop databases, or pass a reference connection (reference_conn_id) "
            "to a server where it has it, or use method='snapshot'"
        )


@dataclass(frozen=True)
class ReplayStep:
    filename: str
    path: Path
    version: str | None
    migration_type: str


@dataclass(frozen=True)
class ReplayPlan:
    steps: tuple[ReplayStep, ...]
    notes: tuple[str, ...]


def _version_of(filename: str) -> str | None:
    if not filename.startswith("V") or "__" not in filename:
        return None
    raw = filename.split("__", 1)[0][1:]
    return raw.replace("_", ".") if _VERSION_RE.match(raw) else None


def _scan(directory: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """Versioned files by normalised version, repeatable files by filename (non-.sql files ignored)."""
    versioned: dict[str, Path] = {}
    repeatable: dict[str, Path] = {}
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for filename in sorted(files):
            if not filename.endswith(".sql") or filename.startswith("."):
                continue
            path = Path(root) / filename
            if filename.startswith(("RA__", "ROC__")):
                repeatable.setdefault(filename, path)
                continue
            version = _version_of(filename)
            if version is not None:
                versioned.setdefault(version, path)
    return versioned, repeatable


def plan_replay(applied: Sequence[AppliedRow], migrations_dir: str | os.PathLike[str]) -> ReplayPlan:
    """The files to replay: applied versioned files in version order, then the applied runs-always
    and runs-on-change files (Jetbase's order within an upgrade). A repeatable file changed since it
    last ran is not replayed: the database holds its previous content, which is gone."""
    from jetbase.engine.checksum import calculate_checksum
    from jetbase.engine.file_parser import parse_upgrade_statements
    from packaging.version import parse as parse_version

    directory = Path(migrations_dir)
    if not directory.is_dir():
        raise FileNotFoundError(f"migrations folder {directory} does not exist")
    versioned_files, repeatable_files = _scan(directory)
    notes: list[str] = []
    steps: list[ReplayStep] = []

    versioned_rows = [r for r in applied if r.migration_type == VERSIONED and r.version]
    for row in sorted(versioned_rows, key=lambda r: parse_version(str(r.version))):
        version = str(row.version)
        path = versioned_files.get(version)
        if path is None:
            notes.append(
                f"applied version {version} ({row.filename}) has no file: not replayed, so the "
                "schema comparison may report what it created as added"
            )
            continue
        steps.append(ReplayStep(path.name, path, version, VERSIONED))

    for kind in (RUNS_ALWAYS, RUNS_ON_CHANGE):
        for row in sorted((r for r in applied if r.migration_type == kind), key=lambda r: r.filename):
            path = repeatable_files.get(row.filename)
            if path is None:
                notes.append(f"applied repeatable {row.filename} has no file: not replayed")
                continue
            checksum = calculate_checksum(parse_upgrade_statements(str(path)))
            if row.checksum and checksum != row.checksum:
                notes.append(
                    f"{row.filename} changed since it last ran: not replayed (its previous content is "
                    "what the database holds)"
                )
                continue
            steps.append(ReplayStep(path.name, path, None, kind))
    return ReplayPlan(tuple(steps), tuple(notes))


# --------------------------------------------------------------------------- scratch targets
def _quote(bind: Engine | Connection, name: str) -> str:
    return str(bind.dialect.identifier_preparer.quote_identifier(name))


def _pg_options(schema: str) -> str:
    ident = schema if re.fullmatch(r"[a-z_][a-z0-9_$]*", schema) else '"' + schema.replace('"', '""') + '"'
    return "-csearch_path=" + ident.replace("\\", "\\\\").replace(" ", "\\ ")


@contextlib.contextmanager
def _postgres_scratch(
    target: Engine, admin: Engine, connect_args: Mapping[str, Any], logger: logging.Logger
) -> Iterator[tuple[Engine, str]]:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    with target.connect() as conn:
        encoding, collate, ctype, schema = conn.exec_driver_sql(
            "SELECT pg_encoding_to_char(encoding), datcollate, datctype, current_schema() "
            "FROM pg_database WHERE datname = current_database()"
        ).one()
        conn.rollback()
    name = SCRATCH_PREFIX + uuid.uuid4().hex[:16]
    with admin.connect() as raw:
        conn = raw.execution_options(isolation_level="AUTOCOMMIT")
        quoted = _quote(conn, name)

        def literal(value: str) -> str:
            return "'" + value.replace("'", "''") + "'"

        try:
            conn.exec_driver_sql(
                f"CREATE DATABASE {quoted} TEMPLATE template0 ENCODING {literal(encoding)} "
                f"LC_COLLATE {literal(collate)} LC_CTYPE {literal(ctype)}"
            )
        except Exception:  # noqa: BLE001 - e.g. the reference server lacks the target's locale
            logger.warning("could not copy the target's locale to the scratch database; using defaults")
            try:
                conn.exec_driver_sql(f"CREATE DATABASE {quoted} TEMPLATE template0")
            except Exception as exc:
                raise ScratchDatabaseError(name, admin, exc) from exc
        force = " WITH (FORCE)" if (conn.dialect.server_version_info or (0,)) >= (13,) else ""
    scratch: Engine | None = None
    try:
        args = dict(connect_args)
        # The scratch database is dropped afterwards, so waiting for WAL flushes buys nothing.
        options = [str(args.get("options", "")), "-c synchronous_commit=off"]
        if schema and schema != "public":
            options.append(_pg_options(schema))
        args["options"] = " ".join(o for o in options if o)
        scratch = create_engine(admin.url.set(database=name), connect_args=args, poolclass=NullPool)
        if schema and schema != "public":
            with scratch.begin() as sconn:
                sconn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {_quote(sconn, schema)}")
        yield scratch, f"temporary PostgreSQL database {name}"
    finally:
        if scratch is not None:
            scratch.dispose()
        with admin.connect() as raw:
            raw.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                f"DROP DATABASE IF EXISTS {quoted}{force}"
            )


@contextlib.contextmanager
def _mysql_scratch(
    target: Engine, admin: Engine, connect_args: Mapping[str, Any]
) -> Iterator[tuple[Engine, str]]:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    with target.connect() as conn:
        charset, collation = conn.exec_driver_sql(
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA "
            "WHERE SCHEMA_NAME = DATABASE()"
        ).one()
        conn.rollback()
    name = SCRATCH_PREFIX + uuid.uuid4().hex[:16]
    with admin.connect() as conn:
        quoted = _quote(conn, name)
        try:
            conn.exec_driver_sql(f"CREATE DATABASE {quoted} CHARACTER SET {charset} COLLATE {collation}")
        except Exception as exc:
            raise ScratchDatabaseError(name, admin, exc) from exc
    scratch: Engine | None = None
    try:
        scratch = create_engine(
            admin.url.set(database=name), connect_args=dict(connect_args), poolclass=NullPool
        )
        yield scratch, f"scratch MySQL/MariaDB database {name}"
    finally:
        if scratch is not None:
            scratch.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted}")


@contextlib.contextmanager
def scratch_engine(
    target: Engine,
    *,
    reference: Engine | None = None,
    connect_args: Mapping[str, Any] | None = None,
    logger: logging.Logger | None = None,
) -> Iterator[tuple[Engine, str]]:
    """Yield an empty scratch database like the target's and a description of it; it is removed
    on exit, whether the body succeeded or not. ``connect_args`` are those of the server the
    scratch database is created on (the reference's when given, else the target's)."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import StaticPool

    log = logger or logging.getLogger(__name__)
    dialect = dialect_name(target.dialect.name)
    admin = reference or target
    if reference is not None and dialect_name(reference.dialect.name) != dialect:
        raise ReplayUnsupportedError(
            f"the reference connection is {reference.dialect.name}, the target {dialect}: they must match"
        )
    if dialect == "sqlite":
        scratch = create_engine("sqlite://", poolclass=StaticPool)
        try:
            yield scratch, "in-memory SQLite database"
        finally:
            scratch.dispose()
    elif dialect == "postgresql":
        with _postgres_scratch(target, admin, connect_args or {}, log) as pair:
            yield pair
    elif dialect == "mysql":
        with _mysql_scratch(target, admin, connect_args or {}) as pair:
            yield pair
    else:
        raise ReplayUnsupportedError(f"replay into a scratch database is not supported on {dialect}")


def replay_into(scratch: Engine, plan: ReplayPlan) -> None:
    """Run each file's upgrade statements as Jetbase does: one transaction per file, statements
    parsed by Jetbase's own parser and executed as ``text()``."""
    from jetbase.engine.file_parser import parse_upgrade_statements
    from sqlalchemy import text

    # One connection for the whole replay: a new backend per file costs a connect and cold
    # catalog caches each time, which dominated a 1,000-file replay on PostgreSQL.
    with scratch.connect() as conn:
        for step in plan.steps:
            statements = parse_upgrade_statements(str(step.path))
            with conn.begin():
                for number, statement in enumerate(statements, start=1):
                    try:
                        conn.execute(text(statement))
                    except Exception as exc:
                        raise ReplayError(step.filename, number, statement, exc) from exc


def build_expected_schema(
    target: Engine,
    plan: ReplayPlan,
    *,
    reference: Engine | None = None,
    connect_args: Mapping[str, Any] | None = None,
    logger: logging.Logger | None = None,
) -> tuple[SchemaModel, str]:
    """Replay ``plan`` into a scratch database and reflect it; returns the model and where it was built."""
    with scratch_engine(target, reference=reference, connect_args=connect_args, logger=logger) as (
        scratch,
        detail,
    ):
        replay_into(scratch, plan)
        return snapshot_schema(scratch), detail
