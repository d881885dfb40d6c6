"""One ``airflow db migrate`` per test run: each Airflow home of the tests gets a copy of its database.

Migrating a fresh SQLite metadata database costs about 4.4 CPU-seconds, and a run of the suite made
about eight (one per xdist worker's ``dag.test()`` home, the secrets file's, one per UI server). The
database ``airflow db migrate`` leaves is the same whatever home it ran in: besides the schema it
holds the default pool and the default task-log name templates (checked on Airflow 3.3.2), no path,
key nor connection (the homes' Fernet keys and secrets are their own configuration). So the first
home of a run migrates one in the run's shared temporary folder, under a file lock the xdist workers
share, and every home copies it. The demo (``scripts/demo.py``) still migrates its own: that is what
``make demo`` does.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from filelock import FileLock

from tests.ui.airflow_server import migrate

TEMPLATE_FOLDER = "airflow-metadata-template"
# A bound on the wait for another worker's migration, not a speed assertion.
LOCK_TIMEOUT_SECONDS = 600.0


def shared_run_folder(basetemp: Path) -> Path:
    """The folder every process of this test run shares: an xdist worker's basetemp is a child."""
    return basetemp.parent if os.environ.get("PYTEST_XDIST_WORKER") else basetemp


def metadata_template(run_folder: Path) -> Path:
    """This run's migrated metadata database (made on the first call of the run)."""
    folder = run_folder / TEMPLATE_FOLDER
    database = folder / "airflow.db"
    with FileLock(str(run_folder / f"{TEMPLATE_FOLDER}.lock"), timeout=LOCK_TIMEOUT_SECONDS):
        if not database.exists():
            home = folder / "home"
            home.mkdir(parents=True, exist_ok=True)
            partial = folder / "airflow.db.partial"
            env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
            env.update(
                {
                    "AIRFLOW_HOME": str(home),
                    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{partial}",
                    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                }
            )
            migrate(home, env)
            # Renamed only once complete: a worker never copies a half-migrated database.
            partial.rename(database)
    return database


def copy_metadata(template: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, destination)
