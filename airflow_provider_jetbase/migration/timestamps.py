"""Timestamps as drivers return them: a ``datetime``, or ISO text (SQLite stores TEXT)."""

from __future__ import annotations

import datetime as dt
from typing import Any


def parse_db_timestamp(value: Any) -> dt.datetime | None:
    """A ``datetime`` as is; text parsed as ISO 8601 (``2026-01-01 10:00:00.123``); else None."""
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    return None
