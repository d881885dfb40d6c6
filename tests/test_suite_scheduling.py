"""How `make test` deals the suite out to its pytest-xdist workers (tests/conftest.py): each module
whole, the deployment tier whole on one worker, the longest first."""

from __future__ import annotations

from types import SimpleNamespace
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


class _Worker:
    """What xdist's scheduler asks of a worker: the indexes of the tests to run, and a shutdown."""

    def __init__(self, name: str) -> None:
        self.gateway, self.shutting_down, self.sent = SimpleNamespace(id=name), False, list[int]()

    def send_runtest_some(self, indexes: list[int]) -> None:
        self.sent.extend(indexes)

    def shutdown(self) -> None:
        self.shutting_down = True


def test_the_workers_are_dealt_the_longest_modules_first_not_those_with_most_tests() -> None:
    figures = {m: s for m, s in load().items() if not m.startswith(TIER)}
    ranked = sorted(figures, key=figures.__getitem__, reverse=True)
    long_few, short_many = ranked[0], ranked[-1]
    ids = [f"{short_many}::t{i}" for i in range(30)] + [f"{long_few}::a", "tests/deployment/test_fleet.py::a"]
    ids += [f"tests/deployment/test_fleet.py::{n}" for n in "bcd"]
    items: list[Any] = [_Item(i) for i in ids]
    conftest._longest_first(items)
    collection = [item.nodeid for item in items]
    config = SimpleNamespace(getvalue=lambda name: ["3*popen"], option=SimpleNamespace(loadscopereorder=True))
    scheduler = conftest._scheduler_class()(config)
    workers = [_Worker(f"gw{i}") for i in range(3)]
    for worker in workers:
        scheduler.add_node(worker)
        scheduler.add_node_collection(worker, collection)
    scheduler.schedule()
    dealt = [sorted({collection[i].split("::")[0] for i in worker.sent}) for worker in workers]
    assert dealt == [["tests/deployment/test_fleet.py"], [long_few], [short_many]]
