"""Scratch targets for replay, each reached by a login that can change nothing else.

Replaying the applied migrations runs their SQL again. A migration may reach beyond its own
database: ``UPDATE live_db.accounts ...`` on MySQL/MariaDB, ``ALTER ROLE``, ``GRANT``,
``ALTER DATABASE live SET ...`` on PostgreSQL, ``ATTACH '/path/live.db'`` on SQLite. Run as the
connection's own user, such statements would change the live server at every check. So the replay
never runs as that user; the server itself confines it:

- PostgreSQL: a throwaway role ``jb_replay_<hex>`` (LOGIN with a random password, NOSUPERUSER
  NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS, member of no role; it inherits only what
  PostgreSQL gives a database owner, such as its public schema) owns the scratch database
  ``jetbase_drift_<hex>`` and replays connected as itself. It may do anything inside its database
  and nothing to other databases' objects, roles or settings. Creating it needs CREATEROLE (or
  superuser) besides CREATEDB.
- MySQL/MariaDB: a throwaway user ``'jb_replay_<hex>'@'<this client's host>'`` with
  ``ALL PRIVILEGES ON jetbase_drift_<hex>.*`` and nothing else. Creating it needs CREATE USER and
  the right to grant on the scratch database.
- SQLite: an in-memory database whose connection refuses ATTACH (and so ``VACUUM INTO``) through
  SQLite's authorizer, the only way a statement reaches a file.

The scratch database is dropped first, then the role/user, also when the replay fails. Leftovers
of a killed worker are recognisable by the ``jetbase_drift_`` and ``jb_replay_`` prefixes. When the
isolation cannot be set up, nothing is replayed: :class:`IsolationUnavailableError` says why.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import re
import secrets
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_jetbase.errors import JetbaseProviderError, describe_error
from airflow_provider_jetbase.migration.dialects import dialect_name, known_dialect

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

SCRATCH_PREFIX = "jetbase_drift_"
REPLAY_ROLE_PREFIX = "jb_replay_"

# Connection arguments that would replace the throwaway login's credentials.
_CREDENTIAL_ARGS = frozenset({"user", "username", "password", "passwd", "passfile"})
# MySQL/MariaDB error numbers that mean "this login may not do that".
_MYSQL_DENIED = frozenset({1044, 1045, 1132, 1142, 1143, 1211, 1227, 1370, 1410})


class ReplayUnsupportedError(JetbaseProviderError, RuntimeError):
    pass


class ReplayUnavailableError(JetbaseProviderError, RuntimeError):
    """Replay could not be set up; nothing was replayed. ``reason`` says why and what to do."""


class ScratchDatabaseError(ReplayUnavailableError):
    """The scratch database could not be created (usually: the user may not create databases)."""

    def __init__(self, name: str, where: str, cause: str) -> None:
        self.cause = cause
        super().__init__(
            f"could not create the scratch database {name} on {where}: {cause}. The drift check "
            "replays the migrations there: give the user the right to create and drop databases, or "
            "pass a reference connection (reference_conn_id) to a server where it has it, or use "
            "method='snapshot'"
        )


class IsolationUnavailableError(ReplayUnavailableError):
    """The throwaway login that confines the replay could not be set up."""

    def __init__(self, where: str, cause: str) -> None:
        self.cause = cause
        super().__init__(
            f"the replay cannot be confined to its scratch database on {where}: {cause}. The drift "
            "check replays only as a throwaway role/user whose sole rights are on the scratch "
            "database, so that no migration statement can change anything else on the server: give "
            "the connection's user the right to create roles/users (PostgreSQL: CREATEROLE; MySQL/"
            "MariaDB: CREATE USER and GRANT OPTION), or pass a reference connection "
            "(reference_conn_id) to a server where it has it, or use method='snapshot'"
        )


@dataclass
class Scratch:
    """A scratch target: the engine to replay into and reflect, and how it is confined."""

    engine: Engine
    detail: str
    # Why a failed statement failed, when it failed because it reached outside the scratch database
    # (the isolation refused it); None for an ordinary failure.
    refused: Callable[[BaseException], str | None]
    # SQLite: the authorizer's refusals, so a failing statement can be told apart from a refused one.
    denied: list[str] = field(default_factory=list)


def _where(engine: Engine) -> str:
    return f"{engine.url.host or 'localhost'}:{engine.url.port or 'default port'}"


def _reason(exc: BaseException, secret: str | None = None) -> str:
    return describe_error(exc, (secret,) if secret else ())


def _sqlstate(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", None) or exc
    return getattr(orig, "pgcode", None) or getattr(orig, "sqlstate", None)


def _postgres_refused(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", None) or exc
    state = _sqlstate(exc)
    if state == "42501" or (state == "0A000" and "cross-database" in str(orig)):
        return _reason(exc)
    return None


def _mysql_refused(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", None) or exc
    args = getattr(orig, "args", ())
    if args and args[0] in _MYSQL_DENIED:
        return _reason(exc)
    return None


def _password() -> str:
    # Upper, lower, digit and punctuation: passes MariaDB's password-validation plugins too.
    return "Jb1_" + secrets.token_urlsafe(24)


def _quote(bind: Engine | Connection, name: str) -> str:
    return str(bind.dialect.identifier_preparer.quote_identifier(name))


def _literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _pg_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _pg_options(schema: str) -> str:
    ident = schema if re.fullmatch(r"[a-z_][a-z0-9_$]*", schema) else '"' + schema.replace('"', '""') + '"'
    return "-csearch_path=" + ident.replace("\\", "\\\\").replace(" ", "\\ ")


def _login_args(connect_args: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in connect_args.items() if k not in _CREDENTIAL_ARGS}


def _cleanup(logger: logging.Logger, what: str, admin: Engine, statement: str) -> str | None:
    """Run one drop statement; on failure log it and return the problem (never raises)."""
    try:
        with admin.connect() as raw:
            raw.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(statement)
    except Exception as exc:  # noqa: BLE001 - every drop is attempted; the caller reports the rest
        problem = f"could not drop {what} on {_where(admin)} ({_reason(exc)}): drop it by hand"
        logger.error("Jetbase drift check: %s", problem)
        return problem
    return None


class ScratchCleanupError(JetbaseProviderError, RuntimeError):
    pass


@contextlib.contextmanager
def _dropping(logger: logging.Logger, admin: Engine, drops: list[tuple[str, str]]) -> Iterator[None]:
    """Run ``drops`` (appended to while the body runs) in reverse order on exit; a failed drop is
    raised after the others ran, unless the body is already failing."""
    try:
        yield
    except BaseException:
        for what, statement in reversed(drops):
            _cleanup(logger, what, admin, statement)
        raise
    problems = [p for what, stmt in reversed(drops) if (p := _cleanup(logger, what, admin, stmt))]
    if problems:
        raise ScratchCleanupError("; ".join(problems))


@contextlib.contextmanager
def postgres_scratch(
    target: Engine, admin: Engine, connect_args: Mapping[str, Any], logger: logging.Logger
) -> Iterator[Scratch]:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    with target.connect() as conn:
        encoding, collate, ctype, schema = conn.exec_driver_sql(
            "SELECT pg_encoding_to_char(encoding), datcollate, datctype, current_schema() "
            "FROM pg_database WHERE datname = current_database()"
        ).one()
        conn.rollback()
    token = uuid.uuid4().hex[:16]
    name, role = SCRATCH_PREFIX + token, REPLAY_ROLE_PREFIX + token
    where = _where(admin)
    password = _password()
    drops: list[tuple[str, str]] = []
    scratch: Engine | None = None
    with _dropping(logger, admin, drops):
        with admin.connect() as raw:
            conn = raw.execution_options(isolation_level="AUTOCOMMIT")
            user, is_super, can_create_db, can_create_role = conn.exec_driver_sql(
                "SELECT current_user, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles "
                "WHERE rolname = current_user"
            ).one()
            if not (is_super or can_create_db):
                raise ScratchDatabaseError(
                    name, where, f"the user {user} may not create databases (no CREATEDB)"
                )
            if not (is_super or can_create_role):
                raise IsolationUnavailableError(
                    where, f"the user {user} may not create roles (no CREATEROLE)"
                )
            qname, qrole = _quote(conn, name), _quote(conn, role)
            force = " WITH (FORCE)" if (conn.dialect.server_version_info or (0,)) >= (13,) else ""
            try:
                conn.exec_driver_sql(
                    f"CREATE ROLE {qrole} LOGIN PASSWORD {_pg_literal(password)} NOSUPERUSER NOCREATEDB "
                    "NOCREATEROLE NOREPLICATION NOBYPASSRLS"
                )
            except Exception as exc:  # noqa: BLE001 - the statement carries the password: never chain it
                raise IsolationUnavailableError(
                    where, f"creating the role {role} failed ({_reason(exc, password)})"
                ) from None
            drops.append((f"the replay role {role}", f"DROP ROLE IF EXISTS {qrole}"))
            if not is_super:
                # CREATE DATABASE ... OWNER needs membership in the owner; the role gains nothing by it.
                conn.exec_driver_sql(f"GRANT {qrole} TO {_quote(conn, user)}")
            create = f"CREATE DATABASE {qname} OWNER {qrole} TEMPLATE template0"
            try:
                conn.exec_driver_sql(
                    f"{create} ENCODING {_pg_literal(encoding)} LC_COLLATE {_pg_literal(collate)} "
                    f"LC_CTYPE {_pg_literal(ctype)}"
                )
            except Exception as exc:  # noqa: BLE001 - decided below: a missing right, or the locale
                if _sqlstate(exc) == "42501":
                    raise ScratchDatabaseError(name, where, _reason(exc)) from exc
                try:
                    conn.exec_driver_sql(create)
                except Exception as retry:  # noqa: BLE001
                    raise ScratchDatabaseError(
                        name, where, f"{_reason(retry)} (with the target's locale: {_reason(exc)})"
                    ) from retry
                # Only now is it known that the locale was the problem (e.g. the reference server lacks it).
                logger.warning(
                    "The scratch database %s uses the server's default locale: the target's (encoding %s, "
                    "LC_COLLATE %s, LC_CTYPE %s) is not available on %s (%s)",
                    name,
                    encoding,
                    collate,
                    ctype,
                    where,
                    _reason(exc),
                )
            drops.append((f"the scratch database {name}", f"DROP DATABASE IF EXISTS {qname}{force}"))
        try:
            args = _login_args(connect_args)
            # The scratch database is dropped afterwards, so waiting for WAL flushes buys nothing.
            options = [str(args.get("options", "")), "-c synchronous_commit=off"]
            if schema and schema != "public":
                options.append(_pg_options(schema))
            args["options"] = " ".join(o for o in options if o)
            scratch = create_engine(
                admin.url.set(username=role, password=password, database=name),
                connect_args=args,
                poolclass=NullPool,
            )
            try:
                with scratch.begin() as sconn:
                    if schema and schema != "public":
                        sconn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {_quote(sconn, schema)}")
                    else:
                        sconn.exec_driver_sql("SELECT 1")
            except Exception as exc:  # noqa: BLE001 - e.g. pg_hba.conf admits no password login for it
                raise IsolationUnavailableError(
                    where, f"the throwaway role {role} could not log in to {name} ({_reason(exc, password)})"
                ) from None
            yield Scratch(
                scratch,
                f"temporary PostgreSQL database {name} as the throwaway role {role}",
                _postgres_refused,
            )
        finally:
            if scratch is not None:
                scratch.dispose()


@contextlib.contextmanager
def mysql_scratch(
    target: Engine, admin: Engine, connect_args: Mapping[str, Any], logger: logging.Logger
) -> Iterator[Scratch]:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    with target.connect() as conn:
        charset, collation = conn.exec_driver_sql(
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA "
            "WHERE SCHEMA_NAME = DATABASE()"
        ).one()
        conn.rollback()
    token = uuid.uuid4().hex[:16]
    name, user = SCRATCH_PREFIX + token, REPLAY_ROLE_PREFIX + token
    where = _where(admin)
    password = _password()
    drops: list[tuple[str, str]] = []
    scratch: Engine | None = None
    with _dropping(logger, admin, drops):
        with admin.connect() as conn:
            # The server names this client's host as it will name the replay login's: use it.
            client = str(conn.exec_driver_sql("SELECT USER()").scalar() or "")
            host = client.rsplit("@", 1)[1] if "@" in client else "localhost"
            account = f"{_literal(user)}@{_literal(host)}"
            qname = _quote(conn, name)
            try:
                conn.exec_driver_sql(f"CREATE DATABASE {qname} CHARACTER SET {charset} COLLATE {collation}")
            except Exception as exc:  # noqa: BLE001
                raise ScratchDatabaseError(name, where, _reason(exc)) from exc
            drops.append((f"the scratch database {name}", f"DROP DATABASE IF EXISTS {qname}"))
            try:
                conn.exec_driver_sql(f"CREATE USER {account} IDENTIFIED BY {_literal(password)}")
            except Exception as exc:  # noqa: BLE001 - the statement carries the password: never chain it
                raise IsolationUnavailableError(
                    where, f"creating the user {user}@{host} failed ({_reason(exc, password)})"
                ) from None
            drops.insert(0, (f"the replay user {user}@{host}", f"DROP USER IF EXISTS {account}"))
            try:
                conn.exec_driver_sql(f"GRANT ALL PRIVILEGES ON {qname}.* TO {account}")
            except Exception as exc:  # noqa: BLE001
                raise IsolationUnavailableError(
                    where, f"granting {user}@{host} the rights on {name} failed ({_reason(exc)})"
                ) from exc
        try:
            scratch = create_engine(
                admin.url.set(username=user, password=password, database=name),
                connect_args=_login_args(connect_args),
                poolclass=NullPool,
            )
            try:
                with scratch.connect() as sconn:
                    sconn.exec_driver_sql("SELECT 1")
            except Exception as exc:  # noqa: BLE001
                raise IsolationUnavailableError(
                    where, f"the throwaway user {user}@{host} could not log in ({_reason(exc, password)})"
                ) from None
            yield Scratch(
                scratch,
                f"scratch MySQL/MariaDB database {name} as the throwaway user {user}@{host}",
                _mysql_refused,
            )
        finally:
            if scratch is not None:
                scratch.dispose()


@contextlib.contextmanager
def sqlite_scratch(
    target: Engine, admin: Engine, connect_args: Mapping[str, Any], logger: logging.Logger
) -> Iterator[Scratch]:
    """An in-memory database on this machine: the target, the reference and the login play no part."""
    import sqlite3

    from sqlalchemy import create_engine, event
    from sqlalchemy.pool import StaticPool

    denied: list[str] = []

    def authorizer(
        action: int, arg1: str | None, arg2: str | None, db: str | None, source: str | None
    ) -> int:
        if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
            denied.append(f"ATTACH of {arg1!r}" if action == sqlite3.SQLITE_ATTACH else "DETACH")
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    def refused(exc: BaseException) -> str | None:
        return f"{_reason(exc)} ({denied[-1]} refused)" if denied else None

    scratch = create_engine("sqlite://", poolclass=StaticPool)

    @event.listens_for(scratch, "connect")
    def _confine(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.set_authorizer(authorizer)

    try:
        yield Scratch(scratch, "in-memory SQLite database (ATTACH refused)", refused, denied)
    finally:
        scratch.dispose()


@contextlib.contextmanager
def scratch_target(
    target: Engine,
    *,
    reference: Engine | None = None,
    connect_args: Mapping[str, Any] | None = None,
    logger: logging.Logger | None = None,
) -> Iterator[Scratch]:
    """Yield an empty scratch database like the target's, reached by a login confined to it; both
    are removed on exit, whether the body succeeded or not. ``connect_args`` are those of the server
    the scratch database is created on (the reference's when given, else the target's)."""
    log = logger or logging.getLogger(__name__)
    dialect = dialect_name(target.dialect.name)
    admin = reference or target
    if reference is not None and dialect_name(reference.dialect.name) != dialect:
        raise ReplayUnsupportedError(
            f"the reference connection is {reference.dialect.name}, the target {dialect}: they must match"
        )
    facts = known_dialect(dialect)
    if facts is None or facts.scratch_factory is None:
        raise ReplayUnsupportedError(f"replay into a scratch database is not supported on {dialect}")
    module, _, name = facts.scratch_factory.partition(":")
    factory = getattr(importlib.import_module(module), name)
    with factory(target, admin, connect_args or {}, log) as scratch:
        yield scratch
