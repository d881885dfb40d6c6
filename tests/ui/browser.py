"""Headless Debian Chromium driven by Playwright's Python client (no browser download: the system one),
shared by the browser tests (tests/ui/, tests/deployment/test_reviewed_release_ui.py).

Screenshots go to one folder per test module; ``JETBASE_UI_SCREENSHOTS`` (a folder, relative to the
project root or absolute) also receives a copy of the final set, for the docs.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests import run_summary
from tests.conftest import unavailable

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Locator, Page

PROJECT_ROOT = Path(__file__).resolve().parents[2]
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
# Accordions and toasts animate; a bounded, cosmetic pause before a screenshot keeps it sharp.
SETTLE_MS = 1_000
# The tallest a screenshot grows to show a scrolled panel whole (fit_panel).
MAX_SHOT_HEIGHT = 4_000


def require_ui_tools() -> None:
    """Fail in CI, skip loudly elsewhere, without the system Chromium or Playwright's package."""
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (`make ui-deps`, as root: apt-get install -y chromium)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing.append('the playwright Python package (pip install -e ".[test]")')
    if missing:
        message = "UI test needs " + " and ".join(missing)
        unavailable(message, f"SKIPPING the UI test outside CI: {message}")


class Shots:
    """Screenshots of each step, in one folder per module; stable names, since the docs use them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.taken: list[Path] = []
        self.notes: list[str] = []  # printed in the run's summary

    def take(self, page: Page, name: str) -> Path:
        page.wait_for_timeout(SETTLE_MS)
        path = self.folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        return path


@contextmanager
def recorded_shots(folder: Path, config: pytest.Config) -> Iterator[Shots]:
    """A ``Shots`` into ``folder``; on exit copies them to ``JETBASE_UI_SCREENSHOTS`` (if set) and
    adds where they are to the run's closing summary."""
    recorder = Shots(folder)
    yield recorder
    lines = [*recorder.notes, f"UI screenshots ({len(recorder.taken)}): {folder}"]
    target = os.environ.get("JETBASE_UI_SCREENSHOTS")
    if target and recorder.taken:
        target_dir = Path(target) if Path(target).is_absolute() else PROJECT_ROOT / target
        publish_screenshots(folder, target_dir)
        lines.append(f"UI screenshots copied to {target_dir}")
    for line in lines:
        run_summary.add_line(config, line)


def fit_panel(page: Page, inside: Locator) -> None:
    """Make the viewport tall enough that the scrolled panel holding ``inside`` shows all of its
    content (Airflow's task panel scrolls on its own, so a full-page screenshot would cut it);
    bounded by MAX_SHOT_HEIGHT."""
    hidden: int = inside.evaluate(
        """element => {
            for (let e = element.parentElement; e; e = e.parentElement) {
                const overflow = getComputedStyle(e).overflowY;
                if ((overflow === "auto" || overflow === "scroll") && e.scrollHeight > e.clientHeight) {
                    return e.scrollHeight - e.clientHeight;
                }
            }
            return 0;
        }"""
    )
    size = page.viewport_size or VIEWPORT
    if hidden > 0:
        height = min(size["height"] + hidden, MAX_SHOT_HEIGHT)
        page.set_viewport_size({"width": size["width"], "height": height})


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
