"""How `make test` deals the suite out to its pytest-xdist workers (tests/conftest.py): each module
whole, the deployment tier whole on one worker, the longest first."""

from __future__ import annotations

from typing import Any

from tests import conftest
from tests.module_durations import load

TIER = conftest.DEPLOYMENT_TIER


class _Item:
    def __init__(self, nodeid: str) -> None:
        self.nodeid = nodeid


def test_the_scheduler_keeps_a_module_and_the_deployment_tier_each_on_one_worker() -> None:
    cls = conftest._scheduler_class()
    scheduler = object.__new__(cls)  # its scopes need no worker: no __init__ (which wants nodes)
    split = scheduler._split_scope
    assert split("tests/test_lint.py::test_a[x]") == split("tests/test_lint.py::test_b")
    assert split("tests/engine/test_upgrade.py::t") == "tests/engine/test_upgrade.py"
    assert split("tests/engine/test_upgrade.py::t") != split("tests/engine/test_rollback.py::t")
    assert {split(f"tests/deployment/{m}::t") for m in ("test_fleet.py", "test_secrets_scan.py")} == {TIER}


def test_the_longest_modules_are_dealt_first_and_keep_their_own_order() -> None:
    figures = {m: s for m, s in load().items() if not m.startswith(TIER)}
    longest, shortest = max(figures, key=figures.__getitem__), min(figures, key=figures.__getitem__)
    ids = [f"{shortest}::a", "tests/not_measured.py::a", f"{longest}::b", f"{longest}::a"]
    items: list[Any] = [_Item(i) for i in ids]
    conftest._longest_first(items)
    assert [item.nodeid for item in items] == [
        f"{longest}::b",
        f"{longest}::a",
        f"{shortest}::a",
        "tests/not_measured.py::a",
    ]
