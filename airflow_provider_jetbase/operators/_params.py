"""Turning rendered template values into the engine's argument types, and formatting results.

Jinja renders every templated field to a string (unless the DAG renders native objects), so a
params-driven DAG hands the operator ``"3"``, ``"None"`` or ``"false"``. These helpers accept those
forms and reject anything else with an error that names the parameter.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_jetbase.booleans import parse_bool_word
from airflow_provider_jetbase.errors import ParameterError

if TYPE_CHECKING:
    from airflow_provider_jetbase.migration.results import MigrationRun

# What an unset param renders to: `{{ params.count }}` with a None default gives "None".
_EMPTY_STRINGS = {"", "none", "null"}
_ASCII_INT_RE = re.compile(r"^\+?[0-9]+$", re.ASCII)


def is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in _EMPTY_STRINGS)


def to_optional_positive_int(name: str, value: Any) -> int | None:
    """``None``/``""``/``"None"`` -> None; ``3`` or ``"3"`` -> 3; anything else is a ValueError."""
    if is_empty(value):
        return None
    if isinstance(value, bool):
        raise ParameterError(f"Parameter '{name}' must be a positive integer, got the boolean {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _ASCII_INT_RE.match(value.strip()):
        # ASCII only: str.isdigit() and int() also take "２" (and isdigit() "²", which int() rejects).
        number = int(value.strip())
    else:
        raise ParameterError(f"Parameter '{name}' must be a positive integer, got {value!r}")
    if number < 1:
        raise ParameterError(f"Parameter '{name}' must be a positive integer (1 or more), got {number}")
    return number


def to_optional_seconds(name: str, value: Any) -> float | None:
    """``None``/``""``/``"None"`` -> None; ``60``, ``"60"`` or ``"1.5"`` -> seconds (>= 0); anything
    else is a ValueError naming the parameter."""
    if is_empty(value):
        return None
    return to_seconds(name, value)


def to_seconds(name: str, value: Any) -> float:
    """``60``, ``"60"`` or ``"1.5"`` -> a finite number of seconds (>= 0), else a ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ParameterError(f"Parameter '{name}' must be a number of seconds, got {value!r}")
    try:
        seconds = float(value.strip() if isinstance(value, str) else value)
    except ValueError:
        raise ParameterError(f"Parameter '{name}' must be a number of seconds, got {value!r}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ParameterError(f"Parameter '{name}' must be a finite number of seconds >= 0, got {value!r}")
    return seconds


def to_optional_str(value: Any) -> str | None:
    if is_empty(value):
        return None
    return str(value).strip()


def to_bool(name: str, value: Any) -> bool:
    """``True``/``"true"``/``"1"``/``"yes"`` and their opposites; anything else is a ValueError."""
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        parsed = parse_bool_word(value)
        if parsed is not None:
            return parsed
        if value.strip().lower() in _EMPTY_STRINGS:
            return False
    raise ParameterError(f"Parameter '{name}' must be a boolean (true/false), got {value!r}")


def resolve_migrations_dir(migrations_dir: str | os.PathLike[str], dag_fileloc: str | None) -> Path:
    """An absolute path as given; a relative one against the DAG file's folder, never the cwd."""
    path = Path(os.path.expanduser(os.fspath(migrations_dir)))
    if not path.is_absolute():
        if not dag_fileloc:
            raise ParameterError(
                f"Parameter 'migrations_dir' is the relative path {os.fspath(migrations_dir)!r} but the "
                "task has no DAG file to resolve it against: pass an absolute path"
            )
        path = Path(dag_fileloc).resolve().parent / path
    if not path.is_dir():
        raise ParameterError(f"Parameter 'migrations_dir': the folder {str(path)!r} does not exist")
    return path


def dag_fileloc(context: Mapping[str, Any], task_dag: Any) -> str | None:
    dag = context.get("dag") or task_dag
    fileloc = getattr(dag, "fileloc", None)
    return str(fileloc) if fileloc else None


def lock_owner(context: Mapping[str, Any]) -> str:
    """``dag_id/task_id/run_id/try`` so a held lock says which task instance holds it."""
    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?")
    task_id = getattr(ti, "task_id", None) or getattr(context.get("task"), "task_id", "?")
    run_id = getattr(ti, "run_id", None) or context.get("run_id") or "?"
    try_number = getattr(ti, "try_number", None)
    return f"{dag_id}/{task_id}/{run_id}/{try_number if try_number is not None else '?'}"


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Iterable[int] = ()) -> str:
    """A fixed-width table for the task log; columns listed in ``right`` are right-aligned."""
    right_aligned = set(right)
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return " | ".join(
            f"{cell:>{widths[i]}}" if i in right_aligned else f"{cell:<{widths[i]}}"
            for i, cell in enumerate(cells)
        ).rstrip()

    separator = "-+-".join("-" * w for w in widths)
    return "\n".join([line(header), separator, *(line(r) for r in rows)])


def runs_table(runs: Iterable[MigrationRun]) -> str:
    """A fixed-width table: version, file, statements, milliseconds."""
    rows = [
        (
            run.version or f"({run.migration_type})",
            run.filename,
            str(len(run.statements)),
            f"{run.duration_ms:.1f}",
        )
        for run in runs
    ]
    return text_table(("version", "file", "statements", "ms"), rows, right=(2, 3))


def runs_totals(runs: Sequence[MigrationRun], slowest: int = 5) -> str:
    """One line for a long run's summary: total and median milliseconds, and the slowest files."""
    durations = sorted(run.duration_ms for run in runs)
    middle = len(durations) // 2
    # Not statistics.median: this module is imported at every DAG parse, and statistics is not cheap.
    median = durations[middle] if len(durations) % 2 else (durations[middle - 1] + durations[middle]) / 2
    top = sorted(runs, key=lambda run: run.duration_ms, reverse=True)[:slowest]
    return (
        f"{len(durations)} file(s) in {sum(durations) / 1000:.1f} s, median "
        f"{median:.1f} ms per file; slowest: "
        + ", ".join(f"{run.filename} ({run.duration_ms:.1f} ms)" for run in top)
    )


def runs_sql(runs: Iterable[MigrationRun]) -> str:
    """The SQL a dry run would execute, file by file, one statement per line ending in ';'."""
    parts = []
    for run in runs:
        parts.append(f"-- {run.filename}")
        parts.extend(f"{statement};" for statement in run.statements)
    return "\n".join(parts)


def run_summary(run: MigrationRun) -> dict[str, Any]:
    """The XCom form of one run: no SQL text (that is in the log), only what a report needs."""
    return {
        "version": run.version,
        "filename": run.filename,
        "migration_type": run.migration_type,
        "statements": len(run.statements),
        "checksum": run.checksum,
        "duration_ms": round(run.duration_ms, 3),
    }


def to_lint_mode(value: Any) -> str:
    """``"warn"`` (also for an unset value), ``"fail"`` or ``"off"``."""
    mode = "warn" if is_empty(value) else str(value).strip().lower()
    if mode not in ("warn", "fail", "off"):
        raise ParameterError(f"Parameter 'lint' must be 'warn', 'fail' or 'off', got {value!r}")
    return mode


def to_plan_expectation(value: Any) -> tuple[str | None, Mapping[str, Any] | None]:
    """``plan_hash`` as (hash, approved plan): the hash alone (``"{{ ti.xcom_pull('plan')['plan_hash']
    }}"``), or the dry run's whole ``plan`` (a dict, its JSON, or the Python repr Jinja renders a dict
    to), whose differences from the recomputed plan the error then lists. ``None``: no check; a
    template that rendered to nothing (``""``, ``"None"``: the plan task's XCom is missing) is an
    error, never a silent "no check"."""
    if value is None:
        return None, None
    if is_empty(value):
        raise ParameterError(
            f"Parameter 'plan_hash' rendered to {value!r}: no approved plan to check against (is the "
            "plan task's XCom missing?). Leave plan_hash unset (None) to apply without a check"
        )
    plan: Any = value
    if isinstance(value, str) and value.strip().startswith("{"):
        text = value.strip()
        try:
            plan = json.loads(text)
        except ValueError:
            try:
                plan = ast.literal_eval(text)  # a literal only: never evaluates code
            except (ValueError, SyntaxError):
                raise ParameterError(
                    "Parameter 'plan_hash' looks like a plan but is neither JSON nor a Python literal"
                ) from None
    if isinstance(plan, Mapping):
        inner = plan.get("plan")
        if isinstance(inner, Mapping) and "plan_hash" in inner:
            plan = inner  # the dry run's whole XCom
        found = plan.get("plan_hash")
        if not isinstance(found, str):
            raise ParameterError("Parameter 'plan_hash' is a mapping without a 'plan_hash' string")
        return found.strip(), plan
    if isinstance(value, str):
        return value.strip(), None
    raise ParameterError(f"Parameter 'plan_hash' must be a plan's hash or the plan itself, got {value!r}")
