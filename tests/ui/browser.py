"""Headless Debian Chromium driven by Playwright's Python client (no browser download: the system one).

Screenshots go to one folder per test session; ``JETBASE_UI_SCREENSHOTS`` (a folder, relative to the
project root or absolute) also receives a copy of the final set, for the docs.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext

CHROMIUM = Path("/usr/bin/chromium")
# Loopback only, nothing phoned home: this machine has no outside network and the test must not try.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
)
LAUNCH_TIMEOUT_MS = 60_000
ACTION_TIMEOUT_MS = 30_000
VIEWPORT = {"width": 1400, "height": 1000}
# Lines (where the screenshots are) that tests/ui/conftest.py prints in the run's closing summary.
SUMMARY_LINES = pytest.StashKey[list[str]]()


@contextmanager
def chromium_context(user_data_dir: Path) -> Iterator[BrowserContext]:
    """A fresh Chromium profile in ``user_data_dir``; the browser is closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(user_data_dir),
            executable_path=str(CHROMIUM),
            headless=True,
            args=list(CHROMIUM_FLAGS),
            viewport=VIEWPORT,  # type: ignore[arg-type]
            timeout=LAUNCH_TIMEOUT_MS,
        )
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        context.set_default_navigation_timeout(ACTION_TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()


def publish_screenshots(source: Path, target: Path) -> list[Path]:
    """Copy the PNGs of ``source`` into ``target`` (replacing same-named files)."""
    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for png in sorted(source.glob("*.png")):
        copied.append(Path(shutil.copy2(png, target / png.name)))
    return copied
