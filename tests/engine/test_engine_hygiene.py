"""The engine as a library inside a worker: it never changes the process (current directory,
environment), adds its SQLite listeners once however many Migrators share an engine, runs no
Jetbase code that logs, and returns JSON-serialisable results."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import URL, Engine

from airflow_provider_jetbase.migration import (
    Migrator,
)
from tests.engine.helpers import table_file
from tests.jetbase_cli import (
    write_migration,
)


def test_engine_never_changes_cwd_or_environment(
    sqlite_url: URL, folder: Path, make_engine: Callable[..., Engine]
) -> None:
    table_file(folder, "1", "e1")
    cwd, env = os.getcwd(), dict(os.environ)
    migrator = Migrator(make_engine(sqlite_url), folder)
    migrator.upgrade(dry_run=True)
    migrator.upgrade()
    migrator.status()
    migrator.validate()
    migrator.rollback()
    migrator.unlock()
    assert os.getcwd() == cwd and dict(os.environ) == env


def test_sqlite_recipe_is_applied_once(
    sqlite_url: URL, folder: Path, make_engine: Callable[..., Engine]
) -> None:
    from airflow_provider_jetbase.migration import sqlite_tx

    engine = make_engine(sqlite_url)
    connect_listeners = len(engine.pool.dispatch.connect)
    Migrator(engine, folder)
    Migrator(engine, folder)
    assert event.contains(engine, "begin", sqlite_tx._on_begin)
    assert event.contains(engine, "connect", sqlite_tx._on_connect)
    assert len(engine.dispatch.begin) == 1 and len(engine.pool.dispatch.connect) == connect_listeners + 1


def test_the_jetbase_modules_the_engine_runs_never_log() -> None:
    """Why the engine forwards no ``jetbase`` log records: the only Jetbase code it runs (queries,
    constants, the file parser and the checksum) neither logs nor prints, nor imports
    ``jetbase.logging`` (whose stderr handler and propagate=False would bypass the task log). If a
    Jetbase release changes that, this fails and forwarding is needed again."""
    probe = (
        "import sys, airflow_provider_jetbase.migration, airflow_provider_jetbase.drift.check\n"
        "print('\\n'.join(sorted(m for m in sys.modules if m == 'jetbase' or m.startswith('jetbase.'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    assert "jetbase.engine.file_parser" in loaded and "jetbase.logging" not in loaded, loaded
    talkers = []
    for name in loaded:
        source_file = getattr(sys.modules.get(name) or importlib.import_module(name), "__file__", None)
        if source_file is None:  # a namespace package: no code of its own
            continue
        source = Path(source_file).read_text()
        if re.search(r"\b(import logging|getLogger|logger\.|print\()", source):
            talkers.append(name)
    assert talkers == [], f"Jetbase modules run by the engine that log or print: {talkers}"


def test_results_are_json_serialisable(
    sqlite_url: URL, folder: Path, make_engine: Callable[..., Engine]
) -> None:

    table_file(folder, "1", "j1")
    write_migration(folder, "ROC__x.sql", "SELECT 1;\n")
    migrator = Migrator(make_engine(sqlite_url), folder)
    payloads = [
        migrator.upgrade(dry_run=True).to_dict(),
        migrator.upgrade().to_dict(),
        migrator.status().to_dict(),
        migrator.validate().to_dict(),
        migrator.lock_status().to_dict(),
        migrator.rollback().to_dict(),
    ]
    decoded = json.loads(json.dumps(payloads))
    status = decoded[2]
    assert status["current"] == "1" and status["applied"][0]["filename"] == "V1__create_j1.sql"
    assert (
        isinstance(status["applied"][0]["applied_at"], str) and status["applied"][0]["applied_at"][:2] == "20"
    )
    assert decoded[3] == {"findings": [], "ok": True}
    assert decoded[5]["rolled_back"][0]["statements"] == ["DROP TABLE j1"]
