"""Release packaging: sdist and wheel build, pass `twine check`, and the wheel works on its own.

The wheel is installed into a fresh virtualenv that sees the dependencies already installed in the
project's .venv (through a `.pth` file pointing at a mirror of its site-packages that leaves out
this project's editable install), so the test needs no network and takes seconds; it first proves
that the project is NOT importable there, so whatever Airflow finds afterwards comes from the wheel.
Official providers ship their example DAGs with their tests, not in the wheel; here they stay in
the source tree and are imported with the wheel's package.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "airflow_provider_jetbase"
DIST_NAME = "airflow-provider-jetbase"


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    # An isolated build, as a release would do it (the build backend comes from the index).
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"python -m build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    wheels = list(out.glob("*.whl"))
    sdists = list(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in out.iterdir())
    return {"wheel": wheels[0], "sdist": sdists[0]}


def test_twine_check_passes(dists: dict[str, Path]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(dists["wheel"]), str(dists["sdist"])],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("PASSED") == 2


def _metadata(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return zf.read(name).decode()


def test_wheel_metadata(dists: dict[str, Path]) -> None:
    meta = _metadata(dists["wheel"])
    assert f"Name: {DIST_NAME}" in meta
    for classifier in ("Framework :: Apache Airflow", "Framework :: Apache Airflow :: Provider"):
        assert f"Classifier: {classifier}\n" in meta
    assert "Project-URL: Documentation, " in meta and "Project-URL: Homepage, " in meta
    assert "License-File: LICENSE" in meta
    assert "Requires-Dist: apache-airflow>=3.1.0" in meta
    assert "Requires-Dist: apache-airflow-providers-common-compat>=1.22.0" in meta
    assert "Requires-Dist: jetbase<0.19,>=0.18.1" in meta or "Requires-Dist: jetbase>=0.18.1,<0.19" in meta
    # The long description is the README (what PyPI shows).
    assert "Description-Content-Type: text/markdown" in meta
    assert "## A DAG in ten lines" in meta


def test_wheel_holds_every_module_and_the_entry_point(dists: dict[str, Path]) -> None:
    with zipfile.ZipFile(dists["wheel"]) as zf:
        names = set(zf.namelist())
        entry_points = zf.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    source_files = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / PACKAGE).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith((".pyc", ".pyo"))
    }
    missing = source_files - names
    assert not missing, f"files of the package missing from the wheel (package-data?): {sorted(missing)}"
    assert not [n for n in names if n.startswith(("tests/", "example_dags/", "docs/", "benchmarks/"))]
    assert "[apache_airflow_provider]" in entry_points
    assert f"provider_info = {PACKAGE}:get_provider_info" in entry_points
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names)


def test_sdist_holds_changelog_license_docs_and_examples(dists: dict[str, Path]) -> None:
    with tarfile.open(dists["sdist"]) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    for required in ("LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml", "mkdocs.yml",
                     "docker-compose.airflow.yml", "docs/index.md", "tests/conftest.py"):  # fmt: skip
        assert required in names, f"{required} is not in the sdist"
    examples = {p.relative_to(ROOT).as_posix() for p in (ROOT / "example_dags").rglob("*") if p.is_file()}
    examples = {e for e in examples if "__pycache__" not in e}
    assert examples <= names, f"example files missing from the sdist: {sorted(examples - names)}"
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


# ------------------------------------------------------------------------------ fresh virtualenv
@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A venv that sees .venv's dependencies but not this project."""
    base = tmp_path_factory.mktemp("venv")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site_packages = Path(sysconfig.get_paths()["purelib"])
    mirror = base / "deps"
    mirror.mkdir()
    for entry in site_packages.iterdir():
        name = entry.name
        # This project's editable install (its finder, .pth and dist-info) stays out.
        if (
            name.startswith((PACKAGE, f"__editable__.{PACKAGE}", f"__editable___{PACKAGE}"))
            or name == "__pycache__"
        ):
            continue
        (mirror / name).symlink_to(entry)
    venv_site = next((venv / "lib").glob("python3*/site-packages"))
    (venv_site / "project_deps.pth").write_text(f"{mirror}\n")
    yield venv


def _run(venv: Path, code: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "PYTHONPATH"))
    }
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "example_dags"),
    )
    # cwd outside the project, so the source tree's package cannot be imported from the cwd.
    return subprocess.run(
        [str(venv / "bin" / "python"), "-c", code],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=home,
    )


def test_wheel_installs_and_airflow_finds_the_provider(
    dists: dict[str, Path], fresh_venv: Path, tmp_path: Path
) -> None:
    # Before: the project is not importable in the fresh venv, so nothing below can come from the tree.
    before = _run(fresh_venv, f"import {PACKAGE}", tmp_path)
    assert before.returncode != 0 and "ModuleNotFoundError" in before.stderr, before.stderr[-2000:]

    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(fresh_venv / "bin" / "python"), "install",
         "--no-deps", "--no-index", str(dists["wheel"])],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr

    where = _run(fresh_venv, f"import {PACKAGE}; print({PACKAGE}.__file__)", tmp_path)
    assert where.returncode == 0, where.stderr[-2000:]
    assert Path(where.stdout.strip()).is_relative_to(fresh_venv), where.stdout

    # `airflow providers list`, through the venv's interpreter (its console script is .venv's).
    listing = _run(
        fresh_venv,
        "import sys; from airflow.__main__ import main; "
        "sys.argv = ['airflow', 'providers', 'list', '-o', 'json']; main()",
        tmp_path,
    )
    assert listing.returncode == 0, listing.stderr[-3000:]
    providers = {p["package_name"]: p for p in json.loads(listing.stdout[listing.stdout.index("[") :])}
    assert DIST_NAME in providers, sorted(providers)
    from airflow_provider_jetbase import __version__

    assert providers[DIST_NAME]["version"] == __version__


def test_example_dags_import_with_the_wheel(dists: dict[str, Path], fresh_venv: Path, tmp_path: Path) -> None:
    # Ensure the wheel is installed even when this test runs alone.
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(fresh_venv / "bin" / "python"), "install", "-q",
         "--no-deps", "--no-index", str(dists["wheel"])],
        check=True, capture_output=True,
    )  # fmt: skip
    code = textwrap.dedent(
        f"""
        import json, sys
        try:
            from airflow.dag_processing.dagbag import DagBag
        except ImportError:
            from airflow.models.dagbag import DagBag
        import {PACKAGE}
        bag = DagBag(dag_folder={str(ROOT / "example_dags")!r})
        modules = sorted({{type(t).__module__ for d in bag.dags.values() for t in d.tasks}})
        ours = [m for m in modules if m.startswith("{PACKAGE}")]
        print(json.dumps({{
            "errors": {{k: str(v)[-500:] for k, v in bag.import_errors.items()}},
            "dags": sorted(bag.dags),
            "dag_files": sorted({{d.fileloc.rsplit("/", 1)[-1] for d in bag.dags.values()}}),
            "package": {PACKAGE}.__file__,
            "task_modules": ours,
            "operator_files": sorted({{sys.modules[m].__file__ for m in ours}}),
        }}))
        """
    )
    proc = _run(fresh_venv, code, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["errors"] == {}
    example_files = sorted((ROOT / "example_dags").glob("example_*.py"))
    # Every example file defines at least one DAG (the fleet example defines three).
    assert result["dag_files"] == [f.name for f in example_files] and example_files
    assert all(dag_id.startswith("example_jetbase_") for dag_id in result["dags"])
    # The operators the example DAGs use were loaded from the wheel, not from the source tree.
    assert result["task_modules"]
    for path in [result["package"], *result["operator_files"]]:
        assert Path(path).is_relative_to(fresh_venv), path
