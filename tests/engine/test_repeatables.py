"""Repeatable migrations: ``RA__`` files run on every upgrade, ``ROC__`` files when their checksum
changed, each keeping one row; a missing repeatable file is a validation finding."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL, Engine

from airflow_provider_jetbase.migration import (
    Migrator,
    ValidationFailedError,
)
from tests.engine.helpers import table_file
from tests.jetbase_cli import (
    jetbase_checksum,
    version_rows,
    write_migration,
)


def test_runs_always_and_runs_on_change_across_runs(
    db_url: URL, folder: Path, make_engine: Callable[..., Engine]
) -> None:
    write_migration(
        folder, "V1__log.sql", "CREATE TABLE run_log (note VARCHAR(40));\n-- rollback\nDROP TABLE run_log;\n"
    )
    write_migration(folder, "RA__stamp.sql", "INSERT INTO run_log (note) VALUES ('ra');\n")
    write_migration(folder, "ROC__roc.sql", "INSERT INTO run_log (note) VALUES ('roc1');\n")
    engine = make_engine(db_url)
    migrator = Migrator(engine, folder)

    def notes() -> list[str]:
        with engine.connect() as conn:
            return sorted(r[0] for r in conn.execute(text("SELECT note FROM run_log")))

    first = migrator.upgrade()
    assert [r.filename for r in first.applied] == ["V1__log.sql", "RA__stamp.sql", "ROC__roc.sql"]
    assert [(r[2], r[3]) for r in version_rows(engine, include_order=False)] == [
        ("V1__log.sql", "VERSIONED"),
        ("RA__stamp.sql", "RUNS_ALWAYS"),
        ("ROC__roc.sql", "RUNS_ON_CHANGE"),
    ]
    assert [r[0] for r in version_rows(engine, include_order=False)] == ["1", None, None]
    second = migrator.upgrade()
    assert [r.filename for r in second.applied] == ["RA__stamp.sql"]
    # RA row updated, not duplicated
    assert notes() == ["ra", "ra", "roc1"] and len(version_rows(engine, include_order=False)) == 3
    write_migration(folder, "ROC__roc.sql", "INSERT INTO run_log (note) VALUES ('roc2');\n")
    third = migrator.upgrade()
    assert [r.filename for r in third.applied] == ["RA__stamp.sql", "ROC__roc.sql"]
    assert notes() == ["ra", "ra", "ra", "roc1", "roc2"]
    assert len(version_rows(engine, include_order=False)) == 3
    assert version_rows(engine, include_order=False)[2][4] == jetbase_checksum(folder / "ROC__roc.sql")
    assert [p.filename for p in migrator.status().pending] == ["RA__stamp.sql"]


def test_missing_repeatable_file_is_reported(
    sqlite_url: URL, folder: Path, make_engine: Callable[..., Engine]
) -> None:
    table_file(folder, "1", "x")
    write_migration(folder, "RA__noop.sql", "SELECT 1;\n")
    engine = make_engine(sqlite_url)
    migrator = Migrator(engine, folder)
    migrator.upgrade()
    (folder / "RA__noop.sql").unlink()
    assert [f.kind for f in migrator.validate().findings] == ["missing_repeatable_file"]
    with pytest.raises(ValidationFailedError, match="RA__noop.sql"):
        migrator.upgrade()
