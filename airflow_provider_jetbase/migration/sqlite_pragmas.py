"""The PRAGMAs SQLite silently ignores inside a transaction, and where a migration may hold them.

Each migration runs in one transaction (``sqlite_tx``), and inside a transaction SQLite ignores
``PRAGMA foreign_keys = ...`` and ``PRAGMA journal_mode = ...`` without an error. SQLite's own
table-rebuild recipe (https://www.sqlite.org/lang_altertable.html#otheralter) turns foreign keys
off around the rebuild; ignored, the ``DROP TABLE`` of the old table cascades into (or fails on) its
child rows. The jetbase CLI runs the leading statements of a file before pysqlite opens its implicit
transaction (at the first INSERT/UPDATE/DELETE), so there the PRAGMA works.

So such a PRAGMA at the very beginning of a section runs before ``BEGIN``, one at the very end runs
after ``COMMIT`` (the recipe's ``PRAGMA foreign_keys = ON``), and one anywhere else, where it
could only be ignored, refuses the whole run before anything runs. Reading them (``PRAGMA
foreign_keys``) and ``PRAGMA foreign_key_check`` work inside the transaction and stay there. The
parsed statements, and so the checksum, are not changed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from airflow_provider_jetbase.migration.errors import MigrationFileError
from airflow_provider_jetbase.migration.files import MigrationFile, Section

IGNORED_IN_TRANSACTION = frozenset({"foreign_keys", "journal_mode"})

_QUOTED = r'"[^"]*"|`[^`]*`|\[[^\]]*\]|\w+'
# A setting, not a read: "PRAGMA [schema.]name = value" or "PRAGMA [schema.]name(value)".
_PRAGMA_SET_RE = re.compile(
    rf"^PRAGMA\s+(?:(?:{_QUOTED})\s*\.\s*)?[\"`\[']?(\w+)[\"`\]']?\s*(?:=|\()", re.IGNORECASE
)


def ignored_pragma(statement: str) -> str | None:
    """The PRAGMA's name (lower case) if ``statement`` sets one SQLite ignores in a transaction."""
    match = _PRAGMA_SET_RE.match(statement.lstrip("\ufeff").lstrip())
    if match is None:
        return None
    name = match.group(1).lower()
    return name if name in IGNORED_IN_TRANSACTION else None


@dataclass(frozen=True)
class PragmaSplit:
    """Statements ``[0, leading)`` run before ``BEGIN``, ``[leading, trailing)`` in the transaction,
    ``[trailing, total)`` after ``COMMIT``."""

    leading: int
    trailing: int
    total: int

    @property
    def outside(self) -> bool:
        return self.leading > 0 or self.trailing < self.total


def split_section(section: Section) -> PragmaSplit:
    statements = section.statements
    total = len(statements)
    leading = 0
    while leading < total and ignored_pragma(statements[leading]) is not None:
        leading += 1
    trailing = total
    while trailing > leading and ignored_pragma(statements[trailing - 1]) is not None:
        trailing -= 1
    return PragmaSplit(leading, trailing, total)


def misplaced(f: MigrationFile, section: Section) -> list[str]:
    split = split_section(section)
    found: list[str] = []
    for index in range(split.leading, split.trailing):
        name = ignored_pragma(section.statements[index])
        if name is not None:
            found.append(
                f"{f.relpath} line {section.start_lines[index]}: PRAGMA {name} between other "
                "statements: SQLite ignores it inside the migration's transaction"
            )
    return found


def check_placement(steps: Iterable[tuple[MigrationFile, Section]], command: str) -> None:
    """Refuse the run if a section sets such a PRAGMA anywhere but its beginning or its end."""
    problems: list[str] = []
    first: MigrationFile | None = None
    for f, section in steps:
        found = misplaced(f, section)
        if found and first is None:
            first = f
        problems.extend(found)
    if first is None:
        return
    names = " / ".join(f"PRAGMA {n}" for n in sorted(IGNORED_IN_TRANSACTION))
    raise MigrationFileError(
        f"Nothing was run ({command}): SQLite silently ignores {names} inside a transaction, and "
        "each migration runs in one:\n"
        + "\n".join(f"  - {p}" for p in problems)
        + "\nPut such a PRAGMA at the very beginning of the section (it then runs before the "
        "transaction) or at its very end (after the commit), or in a file of its own.",
        filename=first.filename,
    )
