"""What the engine sends per migration besides the file's own statements (issue 17).

Each statement is a round trip to the server; on a loaded machine each one waits for the scheduler,
so the bookkeeping per file is counted exactly: the version row and the lock's ownership proof. On
PostgreSQL they are one statement (a data-modifying CTE: the version row is inserted only if the
ownership UPDATE matched our lock row), as few as the raw-driver lower bound; MariaDB has no such
CTE (INSERT, then the UPDATE); SQLite also refreshes the lock first, which takes its write lock.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL, Engine

from airflow_provider_jetbase.migration import Migrator
from tests.jetbase_cli import write_migration

FILES = 5
BOOKKEEPING_PER_FILE = {"postgresql": 1, "mysql": 2, "sqlite": 3}


def test_bookkeeping_statements_per_migration(
    db_url: URL, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    folder = tmp_path / "migrations"
    for number in range(1, FILES + 1):
        write_migration(folder, f"V{number}__t{number}.sql", f"CREATE TABLE rt_t{number} (id INT);")
    engine = make_engine(db_url)
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", record)
    result = Migrator(engine, folder).upgrade()
    event.remove(engine, "before_cursor_execute", record)
    assert [r.version for r in result.applied] == [str(n) for n in range(1, FILES + 1)]

    first = next(i for i, s in enumerate(sent) if s.startswith("CREATE TABLE rt_t1 "))
    last = next(i for i, s in enumerate(sent) if s.startswith(f"CREATE TABLE rt_t{FILES} "))
    # From the first file's statement to the next-to-last file's bookkeeping: FILES - 1 whole files.
    per_file = [s for s in sent[first:last] if not s.startswith("BEGIN")]
    expected = BOOKKEEPING_PER_FILE[engine.dialect.name]
    assert len(per_file) == (FILES - 1) * (1 + expected), per_file
    if engine.dialect.name == "postgresql":
        owned = [s for s in per_file if s.startswith("WITH jetbase_lock_owned AS (UPDATE jetbase_lock ")]
        assert len(owned) == FILES - 1, per_file
        assert not [s for s in per_file if s.startswith("UPDATE jetbase_lock")], per_file

    # The rows are Jetbase's, the lock is released.
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT version, filename, migration_type, checksum FROM jetbase_migrations "
                "ORDER BY order_executed"
            )
        ).all()
        locked = conn.execute(text("SELECT is_locked, process_id FROM jetbase_lock WHERE id = 1")).one()
    assert [(r.version, r.filename, r.migration_type) for r in rows] == [
        (str(n), f"V{n}__t{n}.sql", "VERSIONED") for n in range(1, FILES + 1)
    ]
    assert [r.checksum for r in rows] == [r.checksum for r in result.applied]
    assert not locked.is_locked and locked.process_id is None
