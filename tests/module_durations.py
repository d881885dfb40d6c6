"""How long each test module took in a recent full run: the order in which `make test` hands the
modules to its pytest-xdist workers, longest first, so the long ones do not start last and keep one
worker busy after the others are done. Only the order depends on these figures, never a result; a
module missing here (a new one) goes after the measured ones.

Refresh them from a run's JUnit report::

    .venv/bin/python -m pytest -n 4 --junitxml=/tmp/suite.xml
    .venv/bin/python -m tests.module_durations /tmp/suite.xml
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

FIGURES = Path(__file__).with_name("module_durations.json")


def load() -> dict[str, float]:
    try:
        figures: dict[str, float] = json.loads(FIGURES.read_text())
    except FileNotFoundError:
        return {}
    return figures


def from_junit(report: Path) -> dict[str, float]:
    """Seconds per module path (``tests/x/test_y.py``), setup and teardown included."""
    seconds: defaultdict[str, float] = defaultdict(float)
    for case in ET.parse(report).iter("testcase"):
        parts = [p for p in (case.get("classname") or "").split(".") if not p[:1].isupper()]
        seconds["/".join(parts) + ".py"] += float(case.get("time") or 0.0)
    ranked = sorted(seconds.items(), key=lambda pair: pair[1], reverse=True)
    return {module: round(total, 1) for module, total in ranked}


if __name__ == "__main__":
    FIGURES.write_text(json.dumps(from_junit(Path(sys.argv[1])), indent=1) + "\n")
