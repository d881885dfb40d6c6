"""Running the real `jetbase` 0.18.1 CLI as a subprocess, the way a user runs it.

The CLI only works from a directory named `jetbase` holding `env.py` and `migrations/` (it reads
`./env.py` and `./migrations` relative to the current directory), so each run gets such a project
directory and `cwd=` (never os.chdir in this process).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def jetbase_executable() -> str:
    # The CLI installed next to this interpreter (the project's .venv), else the one on PATH.
    candidate = Path(sys.executable).parent / "jetbase"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("jetbase")
    if not found:
        raise SystemExit(
            "the `jetbase` CLI is not installed in this environment (pip install jetbase==0.18.1)"
        )
    return found


def write_env_py(project_dir: Path, sqlalchemy_url: str) -> None:
    project_dir.mkdir(parents=True, exist_ok=True)
    (project_dir / "env.py").write_text(f"sqlalchemy_url = {sqlalchemy_url!r}\n")


def run_cli(project_dir: Path, *args: str) -> None:
    if project_dir.name != "jetbase":
        raise ValueError(f"the jetbase CLI must run in a directory named 'jetbase', got {project_dir}")
    proc = subprocess.run(
        [jetbase_executable(), *args], cwd=project_dir, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"`jetbase {' '.join(args)}` in {project_dir} exited {proc.returncode}:\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )


def cli_startup() -> None:
    """`jetbase --help`: the interpreter start and the CLI's imports, no database work."""
    subprocess.run([jetbase_executable(), "--help"], capture_output=True, check=True)
