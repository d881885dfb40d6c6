"""The provider reaches Airflow only through ``airflow.providers.common.compat`` (and the triggerer's
``airflow.triggers.base``), and registering secrets with Airflow's masker changes no process-wide
setting, even while many threads do it at once (the triggerer runs checks in threads)."""

from __future__ import annotations

import ast
import sys
import threading
import uuid
import warnings
from pathlib import Path

import airflow_provider_jetbase
from airflow_provider_jetbase.hooks import jetbase as hook_module

PACKAGE = Path(airflow_provider_jetbase.__file__).parent
# airflow.providers.openlineage: the optional lineage provider's own OperatorLineage, as Airflow's SQL
# operators import it (compat has no alias for it); only operators/_lineage.py, loaded by its listener.
ALLOWED = ("airflow.providers.common.compat", "airflow.triggers.base", "airflow.providers.openlineage")
# The Schema versions plugin runs inside the API server and reads its metadata database: the API
# server's own security dependencies and models have no compat alias. Only that module may import
# them; tests/test_schema_versions.py loads it on every Airflow of the matrix.
API_SERVER_SIDE = ("airflow.api_fastapi", "airflow.models", "airflow.plugins_manager")
PLUGIN = "plugins/schema_versions.py"


def _airflow_imports() -> list[tuple[str, int, str]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                if name == "airflow" or name.startswith("airflow."):
                    found.append((str(path.relative_to(PACKAGE)), node.lineno, name))
    return found


def test_airflow_is_imported_only_through_the_compat_provider() -> None:
    imports = _airflow_imports()
    assert imports, "the provider imports Airflow somewhere"
    outside = [
        (path, line, name)
        for path, line, name in imports
        if not name.startswith(ALLOWED) and not (path == PLUGIN and name.startswith(API_SERVER_SIDE))
    ]
    assert outside == [], f"import these from airflow.providers.common.compat.sdk instead: {outside}"
    lineage = {i[0] for i in imports if i[2].startswith("airflow.providers.openlineage")}
    # jetbase.py: a type hint and the listener-time check that the provider is there (tests/test_lineage.py).
    assert lineage <= {"operators/_lineage.py", "operators/jetbase.py"}, lineage


def test_the_provider_classes_are_airflows_own() -> None:
    import airflow.sdk as sdk
    from airflow.triggers.base import BaseTrigger

    from airflow_provider_jetbase.operators.drift import JetbaseDriftCheckOperator
    from airflow_provider_jetbase.operators.jetbase import JetbaseUpgradeOperator
    from airflow_provider_jetbase.sensors.jetbase import JetbaseVersionSensor
    from airflow_provider_jetbase.triggers.jetbase import JetbaseVersionTrigger

    assert issubclass(hook_module.JetbaseHook, sdk.BaseHook)
    assert issubclass(JetbaseUpgradeOperator, sdk.BaseOperator)
    assert issubclass(JetbaseDriftCheckOperator, sdk.BaseOperator)
    assert issubclass(JetbaseVersionSensor, sdk.BaseSensorOperator)
    assert issubclass(JetbaseVersionTrigger, BaseTrigger)


def test_masked_secrets_are_redacted_including_the_printable_forms_of_bytes() -> None:
    from airflow.providers.common.compat.sdk import redact

    secret = f"s3cret-{uuid.uuid4().hex}"
    hook_module._mask(secret)
    assert secret not in str(redact(f"value={secret}"))
    raw = uuid.uuid4().bytes + uuid.uuid4().bytes
    hook_module._mask(raw)
    assert raw.hex() not in str(redact(f"der={raw.hex()}"))
    hook_module._mask(None)  # empty values are ignored, not errors
    hook_module._mask("")


def test_masking_from_many_threads_never_touches_the_warning_filters() -> None:
    """A per-call ``warnings.catch_warnings()`` replaces the process's filter list while it runs, and
    concurrent calls can leave a global "ignore" filter behind. The filter list must stay the same
    object with the same content at every moment, seen from another thread."""
    hook_module._mask(f"first-{uuid.uuid4().hex}")  # imports done before the snapshot is taken
    before = warnings.filters
    content = list(before)
    secrets = [f"threaded-{uuid.uuid4().hex}" for _ in range(8)]
    stop = threading.Event()
    changes: list[str] = []

    def watch() -> None:
        while not stop.is_set():
            if warnings.filters is not before or list(warnings.filters) != content:
                changes.append(repr(warnings.filters[:2]))
                return

    def mask(secret: str) -> None:
        for _ in range(300):
            hook_module._mask(secret)

    watcher = threading.Thread(target=watch)
    workers = [threading.Thread(target=mask, args=(s,)) for s in secrets]
    # Switch threads as often as CPython allows, so that a short-lived change is seen.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        watcher.start()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=120)
    finally:
        stop.set()
        watcher.join(timeout=30)
        sys.setswitchinterval(interval)
    assert not any(w.is_alive() for w in workers + [watcher])
    assert changes == [], f"the warning filters changed while masking: {changes}"
    assert warnings.filters is before and list(warnings.filters) == content
