"""The one vocabulary for booleans written as text: operator parameters rendered from templates and
connection extras (the Airflow UI and environment variables store both as strings)."""

from __future__ import annotations

TRUE_WORDS = frozenset({"true", "t", "yes", "y", "on", "1"})
FALSE_WORDS = frozenset({"false", "f", "no", "n", "off", "0"})


def parse_bool_word(text: str) -> bool | None:
    """True or False for a word of the vocabulary (any case, surrounding spaces ignored), else None."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    return None
