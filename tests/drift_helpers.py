"""Migrations and out-of-band changes for the drift tests, per database (real servers, no mocks)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import URL, Engine

V1 = """
CREATE TABLE users (
    id INT PRIMARY KEY,
    email VARCHAR(255) NOT NULL,
    name VARCHAR(100),
    active BOOLEAN DEFAULT TRUE,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);
CREATE UNIQUE INDEX ux_users_email ON users (email);
CREATE TABLE legacy (id INTEGER PRIMARY KEY, payload VARCHAR(20));
-- rollback
DROP TABLE legacy;
DROP TABLE users;
"""

V2 = """
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    user_id INT NOT NULL,
    amount DECIMAL(10, 2) DEFAULT 0,
    note TEXT,
    CONSTRAINT fk_orders_user FOREIGN KEY (user_id) REFERENCES users (id)
);
CREATE INDEX ix_orders_amount ON orders (amount);
CREATE VIEW v_active_users AS SELECT id, email FROM users WHERE active = TRUE;
-- rollback
DROP VIEW v_active_users;
DROP TABLE orders;
"""

# Types that reflect differently from how they are written: SERIAL, INT vs INTEGER, TINYINT(1),
# BOOLEAN, now() / CURRENT_TIMESTAMP defaults, AUTO_INCREMENT / AUTOINCREMENT.
V3 = {
    "postgresql": """
CREATE TABLE events (id SERIAL PRIMARY KEY, happened TIMESTAMP DEFAULT now(),
    flag BOOLEAN NOT NULL DEFAULT false,
    big BIGSERIAL, ratio REAL, label CHARACTER VARYING(30));
CREATE TABLE notes (id INTEGER PRIMARY KEY, body VARCHAR(100) NOT NULL, status VARCHAR(10) DEFAULT 'new',
    author_id INT);
""",
    "mysql": """
CREATE TABLE events (id INT AUTO_INCREMENT PRIMARY KEY, happened TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    flag TINYINT(1) NOT NULL DEFAULT 0, big BIGINT, ratio REAL, label VARCHAR(30), yes_no BOOL DEFAULT FALSE);
CREATE TABLE notes (id INTEGER PRIMARY KEY, body VARCHAR(100) NOT NULL, status VARCHAR(10) DEFAULT 'new',
    author_id INT);
""",
    "sqlite": """
CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, happened TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    flag BOOLEAN NOT NULL DEFAULT 0, big BIGINT, ratio REAL, label VARCHAR(30));
CREATE TABLE notes (id INTEGER PRIMARY KEY, body VARCHAR(100) NOT NULL, status VARCHAR(10) DEFAULT 'new',
    author_id INT);
""",
}

ROC = """
DROP VIEW IF EXISTS v_order_totals;
CREATE VIEW v_order_totals AS SELECT user_id, SUM(amount) AS total FROM orders GROUP BY user_id;
"""

# One out-of-band change per entry: (finding kind, object, SQL per dialect). SQLite cannot alter a
# column's type, nullability or default, nor add a foreign key: it rebuilds the table, as tools do.
_SQLITE_REBUILD = (
    "DROP TABLE notes; CREATE TABLE notes (id INTEGER PRIMARY KEY, body {body}, "
    "status VARCHAR(10) DEFAULT {default}, author_id INT{fk})"
)
ALL = ("postgresql", "mysql", "sqlite")
_ADD_FK = "ALTER TABLE notes ADD CONSTRAINT fk_notes_author FOREIGN KEY (author_id) REFERENCES users (id)"
CHANGES: dict[str, tuple[str, str, dict[str, str]]] = {
    "added_column": (
        "column_added",
        "users.nickname",
        {d: "ALTER TABLE users ADD COLUMN nickname VARCHAR(50)" for d in ALL},
    ),
    "dropped_column": (
        "column_dropped",
        "users.name",
        {d: "ALTER TABLE users DROP COLUMN name" for d in ALL},
    ),
    "changed_type": (
        "column_type_changed",
        "notes.body",
        {
            "postgresql": "ALTER TABLE notes ALTER COLUMN body TYPE VARCHAR(200)",
            "mysql": "ALTER TABLE notes MODIFY body VARCHAR(200) NOT NULL",
            "sqlite": _SQLITE_REBUILD.format(body="VARCHAR(200) NOT NULL", default="'new'", fk=""),
        },
    ),
    "changed_nullability": (
        "nullability_changed",
        "notes.body",
        {
            "postgresql": "ALTER TABLE notes ALTER COLUMN body DROP NOT NULL",
            "mysql": "ALTER TABLE notes MODIFY body VARCHAR(100) NULL",
            "sqlite": _SQLITE_REBUILD.format(body="VARCHAR(100)", default="'new'", fk=""),
        },
    ),
    "changed_default": (
        "default_changed",
        "notes.status",
        {
            "postgresql": "ALTER TABLE notes ALTER COLUMN status SET DEFAULT 'open'",
            "mysql": "ALTER TABLE notes ALTER COLUMN status SET DEFAULT 'open'",
            "sqlite": _SQLITE_REBUILD.format(body="VARCHAR(100) NOT NULL", default="'open'", fk=""),
        },
    ),
    "added_index": (
        "index_added",
        "users.ix_users_name",
        {d: "CREATE INDEX ix_users_name ON users (name)" for d in ALL},
    ),
    "dropped_index": (
        "index_dropped",
        "orders.ix_orders_amount",
        {
            "postgresql": "DROP INDEX ix_orders_amount",
            "mysql": "DROP INDEX ix_orders_amount ON orders",
            "sqlite": "DROP INDEX ix_orders_amount",
        },
    ),
    "added_table": (
        "table_added",
        "audit_log",
        {d: "CREATE TABLE audit_log (id INT PRIMARY KEY, msg VARCHAR(20))" for d in ALL},
    ),
    "dropped_table": (
        "table_dropped",
        "legacy",
        {d: "DROP TABLE legacy" for d in ALL},
    ),
    "new_foreign_key": (
        "foreign_key_added",
        "notes.fk_notes_author",
        {
            "postgresql": _ADD_FK,
            "mysql": _ADD_FK,
            "sqlite": _SQLITE_REBUILD.format(
                body="VARCHAR(100) NOT NULL",
                default="'new'",
                fk=", CONSTRAINT fk_notes_author FOREIGN KEY (author_id) REFERENCES users (id)",
            ),
        },
    ),
}

# What else a change legitimately shows, per dialect: MySQL indexes every foreign key.
SIDE_EFFECTS: dict[tuple[str, str], set[tuple[str, str]]] = {
    ("new_foreign_key", "mysql"): {("index_added", "notes.fk_notes_author")},
}


def write_migrations(directory: Path, dialect: str, *, with_repeatable: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "V1__users.sql").write_text(V1)
    (directory / "V2__orders.sql").write_text(V2)
    (directory / "V3__events_notes.sql").write_text(V3[dialect])
    if with_repeatable:
        (directory / "ROC__order_totals.sql").write_text(ROC)
    return directory


def make_engine(url: URL) -> Engine:
    return create_engine(url)


def run_sql(engine: Engine, sql: str) -> None:
    with engine.begin() as conn:
        for statement in sql.split(";"):
            if statement.strip():
                conn.exec_driver_sql(statement)


def _plain(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return value


def dump_database(engine: Engine) -> dict[str, Any]:
    """Every table's rows (all tables, ours and Jetbase's included) and the full reflected catalogue."""
    from airflow_provider_jetbase.drift.schema import snapshot_schema

    with engine.connect() as conn:
        insp = inspect(conn)
        rows = {}
        for table in sorted(insp.get_table_names()):
            quoted = conn.dialect.identifier_preparer.quote(table)
            result = conn.exec_driver_sql(f"SELECT * FROM {quoted}")
            rows[table] = sorted((tuple(_plain(v) for v in r) for r in result), key=repr)
        columns = {
            t: [(c["name"], str(c["type"]), c["nullable"], c.get("default")) for c in insp.get_columns(t)]
            for t in sorted(insp.get_table_names())
        }
        conn.rollback()
    return {"rows": rows, "columns": columns, "model": snapshot_schema(engine).to_dict()}


@contextmanager
def disposing(engine: Engine) -> Iterator[Engine]:
    try:
        yield engine
    finally:
        engine.dispose()


def list_databases(engine: Engine, prefix: str) -> list[str]:
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            names = conn.exec_driver_sql("SELECT datname FROM pg_database").scalars().all()
        else:
            names = conn.exec_driver_sql("SHOW DATABASES").scalars().all()
        conn.rollback()
    return sorted(n for n in names if n.startswith(prefix))
