r"""Discovering and parsing migration files, exactly as Jetbase 0.18.1 reads them.

Jetbase's filename rules, description text and checksum are reused from the ``jetbase`` package.
Its statement parser (``jetbase.engine.file_parser``) only takes a path and re-opens the file with
the locale's encoding several times, so it is ported here to work on text read once as UTF-8 and
to remember where each statement starts; ``tests/test_migration_files.py`` proves the port returns
the same statements as Jetbase's on the same inputs.

Differences from Jetbase, on purpose:
- files that are not ``.sql`` (``.gitkeep``, ``README.md``, ``x.sql~``, ``.x.sql.swp``), hidden
  files and hidden directories (a Kubernetes ConfigMap's ``..data``) are ignored instead of
  crashing the upgrade; a name that looks like a migration but does not end in ``.sql`` is ignored
  with a WARNING, and one ending in ``.SQL`` (any other letter case) is an error;
- a version must be ASCII digits (Jetbase's ``\d`` also takes ``V２``, which then crashes);
- the walk is sorted, so discovery is deterministic;
- invalid UTF-8 is an error that names the file;
- two repeatable files with the same name in different folders are an error (Jetbase would run both
  and keep one row for them).
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from jetbase.constants import (
    DEFAULT_DELIMITER,
    RUNS_ALWAYS_FILE_PREFIX,
    RUNS_ON_CHANGE_FILE_PREFIX,
)
from jetbase.engine.checksum import calculate_checksum
from jetbase.engine.file_parser import (
    get_description_from_filename,
    is_filename_format_valid,
    is_filename_length_valid,
)

from airflow_provider_jetbase.migration.errors import DuplicateVersionError, MigrationFileError
from airflow_provider_jetbase.migration.versions import version_order

VERSIONED = "VERSIONED"
RUNS_ALWAYS = "RUNS_ALWAYS"
RUNS_ON_CHANGE = "RUNS_ON_CHANGE"

_DELIMITER_RE = re.compile(r"^--\s*jetbase:\s*delimiter=(.+)$", re.IGNORECASE)
_LINT_ALLOW_RE = re.compile(r"^--\s*jetbase-lint:\s*allow\s+(.+)$", re.IGNORECASE)
# String literals are masked before looking for hazards, so "SELECT ';'" is not two statements.
_STRING_RE = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")

FILENAME_HELP = (
    "Migration files must be named V<version>__<description>.sql (version: digits separated by '.' "
    "or '_', e.g. V1_2__add_users.sql), RA__<description>.sql or ROC__<description>.sql."
)


@dataclass(frozen=True)
class Section:
    """The statements of one section (upgrade or rollback) and where each starts (1-based line)."""

    statements: tuple[str, ...]
    start_lines: tuple[int, ...]
    hazards: tuple[str, ...]
    # Per statement, the lint rules its ``-- jetbase-lint: allow <rule>`` comments accept (whole-line
    # comments from the end of the previous statement to the end of this one). Comments are not
    # part of a statement, so accepting a finding never changes the checksum.
    lint_allows: tuple[frozenset[str], ...] = ()


@dataclass(frozen=True)
class MigrationFile:
    path: Path
    relpath: str
    filename: str
    migration_type: str
    version: str | None
    description: str
    delimiter: str
    upgrade: Section
    rollback: Section
    has_rollback_marker: bool
    checksum: str

    def upgrade_warnings(self) -> tuple[str, ...]:
        hazards = list(self.upgrade.hazards)
        if not self.upgrade.statements:
            hazards.insert(
                0,
                f"{self.relpath}: the file has no upgrade statements (nothing before '-- rollback' "
                f"ends with the delimiter '{self.delimiter}'); it will be recorded as applied",
            )
        return tuple(hazards)

    def rollback_warnings(self) -> tuple[str, ...]:
        hazards = list(self.rollback.hazards)
        if self.has_rollback_marker and not self.rollback.statements:
            hazards.insert(
                0,
                f"{self.relpath}: the '-- rollback' section has no statements; rolling back only "
                "deletes the version row",
            )
        return tuple(hazards)


@dataclass(frozen=True)
class MigrationSet:
    """Every migration file of a folder, read once. ``versioned`` is in Jetbase's version order;
    repeatables are ordered by path, as Jetbase runs them."""

    directory: Path
    versioned: tuple[MigrationFile, ...]
    runs_always: tuple[MigrationFile, ...]
    runs_on_change: tuple[MigrationFile, ...]

    def by_version(self) -> dict[str, MigrationFile]:
        return {f.version: f for f in self.versioned if f.version is not None}

    def repeatable_filenames(self) -> set[str]:
        return {f.filename for f in (*self.runs_always, *self.runs_on_change)}


def split_lines(text: str) -> list[str]:
    """Lines as Python's text-mode ``open()`` yields them (universal newlines)."""
    return list(io.StringIO(text, newline=None))


def extract_delimiter(lines: Iterable[str]) -> str:
    """``-- jetbase: delimiter=<x>`` before the first non-comment line, else ``;`` (Jetbase's rule)."""
    for raw in lines:
        line = raw.strip()
        match = _DELIMITER_RE.match(line)
        if match:
            return match.group(1).strip()
        if line and not line.startswith("--"):
            break
    return DEFAULT_DELIMITER


def _is_rollback_marker(line: str) -> bool:
    return line.startswith("--") and line[2:].strip().lower() == "rollback"


def _line_hazards(relpath: str, lineno: int, line: str, delimiter: str) -> list[str]:
    masked = _STRING_RE.sub("''", line)
    hazards: list[str] = []
    where = f"{relpath} line {lineno}"
    if "/*" in masked:
        hazards.append(
            f"{where}: '/* */' comment: Jetbase does not understand block comments (a line inside one "
            "that ends with the delimiter ends the statement, and the comment is sent to the database)"
        )
    first = masked.find(delimiter)
    if 0 <= first < len(masked) - len(delimiter):
        rest = masked[first + len(delimiter) :].strip()
        if rest.startswith("--"):
            hazards.append(
                f"{where}: '-- comment' after the delimiter on the same line: Jetbase does not end the "
                "statement here, joins the following lines onto it, and the comment swallows them"
            )
        elif rest:
            hazards.append(
                f"{where}: two statements on one line: Jetbase sends them to the database as a single "
                "statement (most drivers reject that or run only part of it)"
            )
    elif "--" in masked and not masked.endswith(delimiter):
        hazards.append(
            f"{where}: inline '-- comment' inside a statement: Jetbase joins the statement's lines with "
            "spaces, so the comment swallows the rest of the statement"
        )
    return hazards


_LEADING_COMMENTS_RE = re.compile(r"^(?:\s*/\*.*?\*/)*\s*", re.DOTALL)
_WORD_RE = re.compile(r"[A-Za-z_@.]+")
_AUTOCOMMIT_ON_RE = re.compile(r"autocommit\s*(?:=|:=|\s)\s*(?:1|ON|TRUE)\b", re.IGNORECASE)
# First words that end, discard or (re)start the transaction the engine runs each file in. Savepoints
# (SAVEPOINT, RELEASE, ROLLBACK TO) nest inside it and are safe; so is MariaDB's BEGIN NOT ATOMIC.
_TX_FIRST_WORDS = frozenset({"BEGIN", "COMMIT", "END", "ROLLBACK", "ABORT", "START", "PREPARE", "XA", "SET"})


def transaction_control(statement: str) -> str | None:
    """The transaction-control keyword a statement starts with (``"COMMIT"``, ``"START TRANSACTION"``,
    ``"SET autocommit"``...), or None. Only the statement's start counts: a COMMIT inside a procedure
    body that the statement creates does not end the file's transaction."""
    head = _LEADING_COMMENTS_RE.sub("", statement, count=1)
    words = [w.upper() for w in _WORD_RE.findall(head[:80])[:4]]
    if not words or words[0] not in _TX_FIRST_WORDS:
        return None
    first, rest = words[0], words[1:]
    if first in ("COMMIT", "END", "ABORT"):
        return first
    if first == "ROLLBACK":
        return None if "TO" in rest[:2] else "ROLLBACK"
    if first == "BEGIN":
        return None if rest[:2] == ["NOT", "ATOMIC"] else "BEGIN"
    if first in ("START", "PREPARE"):
        return f"{first} TRANSACTION" if rest[:1] == ["TRANSACTION"] else None
    if first == "XA":
        return "XA " + rest[0] if rest else "XA"
    # SET: MySQL's autocommit variable in its spellings (SET [SESSION] autocommit, SET @@autocommit,
    # SET @@session.autocommit). Turning it on commits at once; turning it off is harmless here.
    target = [w for w in rest[:2] if w != "SESSION"]
    if target and target[0].removeprefix("@@").removeprefix("SESSION.") == "AUTOCOMMIT":
        return "SET autocommit" if _AUTOCOMMIT_ON_RE.search(head) else None
    return None


def _transaction_control_hazard(relpath: str, lineno: int, keyword: str) -> str:
    return (
        f"{relpath} line {lineno}: transaction control statement '{keyword}': the engine already runs "
        "each file in one transaction, and this statement commits, discards or restarts it part-way, "
        "so the file is no longer atomic (after a later failure, what ran before it stays applied "
        "without a version row; a ROLLBACK discards it while the version row is still written)"
    )


def parse_section(lines: list[str], delimiter: str, section: str, relpath: str = "") -> Section:
    """Jetbase's ``parse_upgrade_statements`` / ``parse_rollback_statements`` (execution form, not
    dry-run form), with the start line of each statement and the hazards Jetbase is silent about."""
    statements: list[str] = []
    starts: list[int] = []
    hazards: list[str] = []
    current: list[str] = []
    allows: list[frozenset[str]] = []
    allowing: set[str] = set()
    start = 0
    in_section = section == "upgrade"
    for lineno, raw in enumerate(lines, 1):
        line = raw.strip()
        if section == "upgrade":
            if _is_rollback_marker(line):
                break
        elif not in_section:
            if _is_rollback_marker(line):
                in_section = True
            continue
        if not line or line.startswith("--"):
            allowing.update(lint_allow_rules(line))
            continue
        if not current:
            start = lineno
        current.append(line)
        hazards.extend(_line_hazards(relpath, lineno, line, delimiter))
        if line.endswith(delimiter):
            statement = " ".join(current).rstrip(delimiter).strip()
            if statement:
                statements.append(statement)
                starts.append(start)
                allows.append(frozenset(allowing))
                keyword = transaction_control(statement)
                if keyword is not None:
                    hazards.append(_transaction_control_hazard(relpath, start, keyword))
            current = []
            allowing = set()
    if current:
        hazards.append(
            f"{relpath} line {start}: the last {section} statement does not end with the delimiter "
            f"'{delimiter}': Jetbase silently drops it, so it will NOT run"
        )
    return Section(tuple(statements), tuple(starts), tuple(hazards), tuple(allows))


def lint_allow_rules(line: str) -> frozenset[str]:
    """The rules a ``-- jetbase-lint: allow <rule>[, <rule>...]`` comment line accepts (else none)."""
    match = _LINT_ALLOW_RE.match(line.strip())
    if match is None:
        return frozenset()
    return frozenset(r.strip().lower() for r in re.split(r"[,\s]+", match.group(1)) if r.strip())


def _bom_hazard(relpath: str) -> str:
    return (
        f"{relpath}: starts with a UTF-8 byte-order mark, which Jetbase sends to the database as part "
        "of statement 1; PostgreSQL and MySQL reject it"
    )


def parse_lines(lines: list[str], relpath: str = "") -> tuple[str, Section, Section, bool]:
    delimiter = extract_delimiter(lines)
    upgrade = parse_section(lines, delimiter, "upgrade", relpath)
    if lines and lines[0].startswith("\ufeff"):
        # Jetbase keeps the mark (str.strip() does not remove it), so the statements and checksum
        # keep it too; only the warning is added.
        upgrade = Section(
            upgrade.statements,
            upgrade.start_lines,
            (_bom_hazard(relpath), *upgrade.hazards),
            upgrade.lint_allows,
        )
    rollback = parse_section(lines, delimiter, "rollback", relpath)
    has_marker = any(_is_rollback_marker(line.strip()) for line in lines)
    return delimiter, upgrade, rollback, has_marker


def _migration_type(filename: str) -> str:
    if filename.startswith(RUNS_ALWAYS_FILE_PREFIX):
        return RUNS_ALWAYS
    if filename.startswith(RUNS_ON_CHANGE_FILE_PREFIX):
        return RUNS_ON_CHANGE
    return VERSIONED


def load_file(path: Path, relpath: str) -> MigrationFile:
    filename = path.name
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MigrationFileError(f"Cannot read migration file {relpath}: {exc}", filename=filename) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise MigrationFileError(
            f"Migration file {relpath} is not valid UTF-8 (line {line}, byte offset {exc.start}): "
            "save it as UTF-8",
            filename=filename,
        ) from exc
    # Drop the bytes and the text as soon as the lines exist: a large file would otherwise be held
    # in memory three times over while it is parsed.
    del data
    lines = split_lines(text)
    del text
    delimiter, upgrade, rollback, has_marker = parse_lines(lines, relpath)
    del lines
    migration_type = _migration_type(filename)
    version = None
    if migration_type == VERSIONED:
        version = filename.split("__")[0][1:].replace("_", ".")
    return MigrationFile(
        path=path,
        relpath=relpath,
        filename=filename,
        migration_type=migration_type,
        version=version,
        description=get_description_from_filename(filename=filename),
        delimiter=delimiter,
        upgrade=upgrade,
        rollback=rollback,
        has_rollback_marker=has_marker,
        checksum=calculate_checksum(sql_statements=list(upgrade.statements)),
    )


# What a migration's name starts with, in any letter case: a file like this that is not read is
# never skipped silently.
_LOOKS_LIKE_MIGRATION_RE = re.compile(r"^(?:v[0-9]|ra__|roc__)", re.IGNORECASE)
_ASCII_VERSION_RE = re.compile(r"^[0-9]+(?:[._][0-9]+)*$", re.ASCII)


def _ignore_non_sql(filename: str, relpath: str, logger: logging.Logger) -> None:
    if filename.lower().endswith(".sql"):
        # The jetbase CLI skips such a file without a word (it only reads names ending in ".sql"),
        # so applying it here would record a version the CLI cannot find: refuse it instead.
        raise MigrationFileError(
            f"{relpath} looks like a migration file but its extension is {filename[-4:]!r}: Jetbase only "
            "reads files ending in lower-case '.sql' (the jetbase CLI would skip it silently). Rename it "
            f"to {filename[:-4]}.sql",
            filename=filename,
        )
    if _LOOKS_LIKE_MIGRATION_RE.match(filename) and "__" in filename:
        logger.warning(
            "Ignoring %s in the migrations folder: its name looks like a migration but it does not end "
            "in '.sql', so it will NOT run",
            relpath,
        )
        return
    logger.debug("Ignoring %s in the migrations folder: not a .sql file", relpath)


def _check_ascii_version(filename: str, relpath: str) -> None:
    if not filename.startswith("V"):
        return
    version = filename.split("__")[0][1:]
    if not _ASCII_VERSION_RE.match(version):
        raise MigrationFileError(
            f"Invalid migration filename: {relpath}: the version {version!r} must be ASCII digits 0-9 "
            f"separated by '.' or '_'. {FILENAME_HELP}",
            filename=filename,
        )


def _unreadable_directory(error: OSError) -> None:
    # os.walk skips a directory it cannot list unless told otherwise: its migrations would then be
    # silently "not there", and an upgrade would report "up to date".
    where = error.filename if error.filename is not None else "the migrations folder"
    raise MigrationFileError(
        f"Cannot read the migrations folder {str(where)!r}: {error.strerror or error}"
    ) from error


def discover(directory: str | os.PathLike[str], logger: logging.Logger) -> MigrationSet:
    """Walk ``directory`` recursively (sorted) and read every migration file once."""
    root = Path(directory)
    if not root.is_dir():
        raise MigrationFileError(f"The migrations folder {str(root)!r} does not exist or is not a folder")
    versioned: dict[str, MigrationFile] = {}
    repeatables: dict[str, MigrationFile] = {}
    for dirpath, dirnames, filenames in os.walk(root, onerror=_unreadable_directory):
        # Hidden directories are skipped like hidden files: a Kubernetes ConfigMap volume holds each
        # file twice, as a symlink and inside a hidden timestamped directory (..2026_01_01_...), and
        # walking that directory would read every migration twice.
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for dirname in dirnames:
            if dirname.endswith(".sql"):
                relpath = (Path(dirpath) / dirname).relative_to(root).as_posix()
                raise MigrationFileError(
                    f"{relpath} in the migrations folder is a directory, not a migration file: rename it",
                    filename=dirname,
                )
        # Plain strings here: building pathlib objects for every file was a measurable share of
        # discovery time on large folders.
        reldir = os.path.relpath(dirpath, root)
        prefix = "" if reldir == os.curdir else reldir.replace(os.sep, "/") + "/"
        for filename in sorted(filenames):
            relpath = prefix + filename
            if filename.startswith("."):
                logger.debug("Ignoring %s in the migrations folder: hidden file", relpath)
                continue
            if not filename.endswith(".sql"):
                _ignore_non_sql(filename, relpath, logger)
                continue
            if not is_filename_format_valid(filename=filename):
                raise MigrationFileError(
                    f"Invalid migration filename: {relpath}. {FILENAME_HELP}", filename=filename
                )
            _check_ascii_version(filename, relpath)
            if not is_filename_length_valid(filename=filename):
                raise MigrationFileError(
                    f"Migration filename too long ({len(filename)} characters, at most 512): {relpath}",
                    filename=filename,
                )
            migration = load_file(Path(dirpath, filename), relpath)
            if migration.version is not None:
                other = versioned.get(migration.version)
                if other is not None:
                    raise DuplicateVersionError(
                        f"Duplicate migration version {migration.version}: {other.relpath} and "
                        f"{relpath} (versions are compared after '_' becomes '.')",
                        filename=filename,
                    )
                versioned[migration.version] = migration
            else:
                other = repeatables.get(filename)
                if other is not None:
                    raise DuplicateVersionError(
                        f"Duplicate repeatable migration name {filename}: {other.relpath} and {relpath} "
                        "(Jetbase tracks repeatable migrations by file name)",
                        filename=filename,
                    )
                repeatables[filename] = migration
    ordered = tuple(sorted(versioned.values(), key=lambda m: version_order(str(m.version))))
    by_path = sorted(repeatables.values(), key=lambda m: str(m.path))
    return MigrationSet(
        directory=root,
        versioned=ordered,
        runs_always=tuple(m for m in by_path if m.migration_type == RUNS_ALWAYS),
        runs_on_change=tuple(m for m in by_path if m.migration_type == RUNS_ON_CHANGE),
    )
