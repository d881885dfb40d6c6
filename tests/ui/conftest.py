"""Prints where the UI test left its screenshots, in the run's closing summary."""

from __future__ import annotations

import pytest

from tests.ui.browser import SUMMARY_LINES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    for line in config.stash.get(SUMMARY_LINES, []):
        terminalreporter.write_line(line)
