"""Diff two schema models into precise findings: ``expected`` is what the migrations produce,
``live`` is the database as it is. "added" means present live but not expected."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_jetbase.drift.report import Finding
from airflow_provider_jetbase.drift.schema import SchemaModel

# Per-table facets keyed by name, with the finding-kind stem and the noun used in messages.
_KEYED_FACETS = (
    ("indexes", "index", "index"),
    ("unique_constraints", "unique_constraint", "unique constraint"),
    ("foreign_keys", "foreign_key", "foreign key"),
    ("check_constraints", "check_constraint", "check constraint"),
)


def _column_text(col: Mapping[str, Any]) -> str:
    text = f"{col['type']} {'NULL' if col['nullable'] else 'NOT NULL'}"
    if col.get("default") is not None:
        text += f" DEFAULT {col['default']}"
    return text


def _describe(facet: str, entry: Mapping[str, Any]) -> str:
    if facet == "foreign_keys":
        target = entry["referred_table"]
        if entry.get("referred_schema"):
            target = f"{entry['referred_schema']}.{target}"
        return f"({', '.join(entry['columns'])}) -> {target}({', '.join(entry['referred_columns'])})"
    if facet == "check_constraints":
        return f"CHECK ({entry['sqltext']})"
    columns = entry.get("expressions") or entry.get("columns") or []
    prefix = "UNIQUE " if entry.get("unique") else ""
    return f"{prefix}({', '.join(str(c) for c in columns)})"


def _compare_columns(table: str, expected: Mapping[str, Any], live: Mapping[str, Any]) -> list[Finding]:
    findings: list[Finding] = []
    for name in sorted(live.keys() - expected.keys()):
        findings.append(
            Finding(
                "column_added",
                f"column {name} {_column_text(live[name])} exists live but no migration creates it",
                object=f"{table}.{name}",
                actual=live[name],
            )
        )
    for name in sorted(expected.keys() - live.keys()):
        findings.append(
            Finding(
                "column_dropped",
                f"column {name} {_column_text(expected[name])} is created by the migrations but missing live",
                object=f"{table}.{name}",
                expected=expected[name],
            )
        )
    for name in sorted(expected.keys() & live.keys()):
        exp, act = expected[name], live[name]
        obj = f"{table}.{name}"
        if exp["type"] != act["type"]:
            findings.append(
                Finding(
                    "column_type_changed",
                    f"type is {act['type']} live, {exp['type']} in the migrations",
                    object=obj,
                    expected=exp["type"],
                    actual=act["type"],
                )
            )
        if exp["nullable"] != act["nullable"]:
            findings.append(
                Finding(
                    "nullability_changed",
                    f"{'NULL' if act['nullable'] else 'NOT NULL'} live, "
                    f"{'NULL' if exp['nullable'] else 'NOT NULL'} in the migrations",
                    object=obj,
                    expected=exp["nullable"],
                    actual=act["nullable"],
                )
            )
        if exp.get("default") != act.get("default"):
            findings.append(
                Finding(
                    "default_changed",
                    f"default is {act.get('default') or '(none)'} live, "
                    f"{exp.get('default') or '(none)'} in the migrations",
                    object=obj,
                    expected=exp.get("default"),
                    actual=act.get("default"),
                )
            )
        for extra in ("identity", "computed"):
            if exp.get(extra) != act.get(extra):
                findings.append(
                    Finding(
                        "column_definition_changed",
                        f"{extra} is {act.get(extra)} live, {exp.get(extra)} in the migrations",
                        object=obj,
                        expected=exp.get(extra),
                        actual=act.get(extra),
                    )
                )
    return findings


def _compare_keyed(
    table: str, facet: str, stem: str, noun: str, expected: Mapping[str, Any], live: Mapping[str, Any]
) -> list[Finding]:
    findings: list[Finding] = []
    for key in sorted(live.keys() - expected.keys()):
        findings.append(
            Finding(
                f"{stem}_added",
                f"{noun} {key} {_describe(facet, live[key])} exists live but no migration creates it",
                object=f"{table}.{key}",
                actual=live[key],
            )
        )
    for key in sorted(expected.keys() - live.keys()):
        findings.append(
            Finding(
                f"{stem}_dropped",
                f"{noun} {key} {_describe(facet, expected[key])} is created by the migrations "
                "but missing live",
                object=f"{table}.{key}",
                expected=expected[key],
            )
        )
    for key in sorted(expected.keys() & live.keys()):
        if expected[key] != live[key]:
            findings.append(
                Finding(
                    f"{stem}_changed",
                    f"{noun} {key} is {_describe(facet, live[key])} live, "
                    f"{_describe(facet, expected[key])} in the migrations",
                    object=f"{table}.{key}",
                    expected=expected[key],
                    actual=live[key],
                )
            )
    return findings


def _compare_table(
    name: str, expected: Mapping[str, Any], live: Mapping[str, Any], skip: set[str]
) -> list[Finding]:
    findings: list[Finding] = []
    if "columns" not in skip:
        findings += _compare_columns(name, expected["columns"], live["columns"])
    if "primary_key" not in skip and expected["primary_key"] != live["primary_key"]:

        def pk_text(pk: Mapping[str, Any] | None) -> str:
            return f"({', '.join(pk['columns'])})" if pk else "(none)"

        findings.append(
            Finding(
                "primary_key_changed",
                f"primary key is {pk_text(live['primary_key'])} live, "
                f"{pk_text(expected['primary_key'])} in the migrations",
                object=name,
                expected=expected["primary_key"],
                actual=live["primary_key"],
            )
        )
    for facet, stem, noun in _KEYED_FACETS:
        if facet not in skip:
            findings += _compare_keyed(name, facet, stem, noun, expected[facet], live[facet])
    return findings


def compare_schemas(expected: SchemaModel, live: SchemaModel) -> list[Finding]:
    """All differences between what the migrations produce and the live schema."""
    skip = set(expected.unsupported) | set(live.unsupported)
    findings: list[Finding] = []
    for name in sorted(live.tables.keys() - expected.tables.keys()):
        columns = ", ".join(live.tables[name]["columns"]) or "no columns"
        findings.append(
            Finding(
                "table_added",
                f"table {name} ({columns}) exists live but no migration creates it",
                object=name,
                actual=sorted(live.tables[name]["columns"]),
            )
        )
    for name in sorted(expected.tables.keys() - live.tables.keys()):
        findings.append(
            Finding(
                "table_dropped",
                f"table {name} is created by the migrations but missing live",
                object=name,
                expected=sorted(expected.tables[name]["columns"]),
            )
        )
    for name in sorted(expected.tables.keys() & live.tables.keys()):
        findings += _compare_table(name, expected.tables[name], live.tables[name], skip)

    if "views" not in skip:
        for name in sorted(live.views.keys() - expected.views.keys()):
            findings.append(
                Finding("view_added", f"view {name} exists live but no migration creates it", object=name)
            )
        for name in sorted(expected.views.keys() - live.views.keys()):
            findings.append(
                Finding(
                    "view_dropped", f"view {name} is created by the migrations but missing live", object=name
                )
            )
        for name in sorted(expected.views.keys() & live.views.keys()):
            if expected.views[name] != live.views[name]:
                findings.append(
                    Finding(
                        "view_changed",
                        f"view {name}'s definition differs from the migrations'",
                        object=name,
                        expected=expected.views[name],
                        actual=live.views[name],
                    )
                )

    if "sequences" not in skip:
        for name in sorted(set(live.sequences) - set(expected.sequences)):
            findings.append(
                Finding(
                    "sequence_added", f"sequence {name} exists live but no migration creates it", object=name
                )
            )
        for name in sorted(set(expected.sequences) - set(live.sequences)):
            findings.append(
                Finding(
                    "sequence_dropped",
                    f"sequence {name} is created by the migrations but missing live",
                    object=name,
                )
            )
    return findings
