"""Planning an upgrade or a rollback, without a database: version order, count, to_version,
out-of-order files, validation and strict mode, plus property-based comparisons of our parser and
version order with Jetbase's own (``jetbase.engine.file_parser``, ``checksum``, ``version``)."""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jetbase.engine.checksum import calculate_checksum
from jetbase.engine.file_parser import parse_rollback_statements, parse_upgrade_statements
from jetbase.engine.version import get_migration_filepaths_by_version
from packaging.version import parse as parse_version

from airflow_provider_jetbase.migration import (
    InvalidArgumentError,
    MigrationFileError,
    ParsingHazardError,
    ValidationFailedError,
    VersionNotFoundError,
)
from airflow_provider_jetbase.migration.files import (
    RUNS_ALWAYS,
    RUNS_ON_CHANGE,
    VERSIONED,
    MigrationFile,
    MigrationSet,
    discover,
    load_file,
)
from airflow_provider_jetbase.migration.planner import (
    PlannedFile,
    RollbackOptions,
    UpgradeOptions,
    find_problems,
    pending,
    plan_rollback,
    plan_upgrade,
    rollback_options,
    upgrade_options,
)
from airflow_provider_jetbase.migration.results import AppliedMigration
from airflow_provider_jetbase.migration.versions import version_order

LOG = logging.getLogger("test_planner")
BODY = "CREATE TABLE t (id INT);\n-- rollback\nDROP TABLE t;\n"

# No deadline: the machine is shared and noisy, and a slow example is not a wrong one.
PROPERTY = settings(deadline=None, database=None, max_examples=150)


def folder(root: Path, files: dict[str, str] | Iterable[str]) -> MigrationSet:
    items = files.items() if isinstance(files, dict) else ((name, BODY) for name in files)
    for name, body in items:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body.encode("utf-8"))
    return discover(root, LOG)


def row(f: MigrationFile, order: int = 1, checksum: str | None = None) -> AppliedMigration:
    return AppliedMigration(
        order_executed=order,
        version=f.version,
        description=f.description,
        filename=f.filename,
        migration_type=f.migration_type,
        applied_at=None,
        checksum=f.checksum if checksum is None else checksum,
    )


def rows(files: MigrationSet, *versions: str) -> list[AppliedMigration]:
    by_version = files.by_version()
    return [row(by_version[v], n) for n, v in enumerate(versions, 1)]


def versions_of(steps: Sequence[PlannedFile]) -> list[str | None]:
    return [s.file.version for s in steps]


# ------------------------------------------------------------------------------------ options
@pytest.mark.parametrize("count", [0, -1, True, False, "3", 1.5])
def test_upgrade_and_rollback_count_must_be_a_positive_integer(count: object) -> None:
    for build in (upgrade_options, rollback_options):
        with pytest.raises(InvalidArgumentError, match="'count' must be a positive integer"):
            build(count)


def test_count_and_to_version_are_exclusive_and_to_version_is_normalised() -> None:
    with pytest.raises(InvalidArgumentError, match="Cannot specify both 'count' .* for upgrade"):
        upgrade_options(2, "3")
    with pytest.raises(InvalidArgumentError, match="for rollback"):
        rollback_options(1, "3")
    assert upgrade_options(to_version="V1_2").to_version == "1.2"
    assert rollback_options(to_version=" 2_0_1 ").to_version == "2.0.1"
    with pytest.raises(InvalidArgumentError, match="Invalid 'to_version' 'abc'"):
        upgrade_options(to_version="abc")


def test_rollback_without_count_or_to_version_rolls_back_one() -> None:
    assert rollback_options() == RollbackOptions(count=1, to_version=None)
    assert rollback_options(to_version="2").count is None


# ------------------------------------------------------------------------------------ upgrade
def test_upgrade_plan_on_an_empty_database_runs_every_file_in_version_order(tmp_path: Path) -> None:
    files = folder(tmp_path, ["V10__a.sql", "V1_9__b.sql", "V1.10__c.sql", "sub/V2__d.sql", "V1__e.sql"])
    plan = plan_upgrade(files, [], UpgradeOptions())
    assert versions_of(plan.steps) == ["1", "1.9", "1.10", "2", "10"]
    assert (plan.version_before, plan.version_after) == (None, "10")
    assert [s.statements for s in plan.steps] == [("CREATE TABLE t (id INT)",)] * 5
    assert plan.warnings == () and plan.findings == () and not plan.empty


def test_upgrade_plan_pending_means_no_row_not_after_the_newest_row(tmp_path: Path) -> None:
    files = folder(tmp_path, ["V1__a.sql", "V2__b.sql", "V3__c.sql", "V4__d.sql"])
    # Rows for 1 and 3 only: 2 is below the latest applied version, so validation stops the upgrade.
    with pytest.raises(ValidationFailedError) as caught:
        plan_upgrade(files, rows(files, "1", "3"), UpgradeOptions())
    assert [f.kind for f in caught.value.report.findings] == ["out_of_order"]
    assert "V2__b.sql has version 2, lower than the latest applied version 3" in str(caught.value)
    plan = plan_upgrade(files, rows(files, "1", "3"), UpgradeOptions(skip_file_validation=True))
    assert versions_of(plan.steps) == ["2", "4"]
    assert (plan.version_before, plan.version_after) == ("3", "4")
    assert (
        len(plan.warnings) == 1
        and "V2__b.sql: version 2 is below the latest applied version 3" in (plan.warnings[0])
    )
    assert [f.kind for f in plan.findings] == ["out_of_order"]


def test_upgrade_plan_count_limits_versioned_files_only(tmp_path: Path) -> None:
    files = folder(tmp_path, ["V1__a.sql", "V2__b.sql", "V3__c.sql", "RA__always.sql", "ROC__view.sql"])
    plan = plan_upgrade(files, rows(files, "1"), UpgradeOptions(count=1))
    assert versions_of(plan.steps) == ["2", None, None]
    assert [s.file.migration_type for s in plan.steps] == [VERSIONED, RUNS_ALWAYS, RUNS_ON_CHANGE]
    assert plan.version_after == "2"


def test_upgrade_plan_to_version_is_inclusive_and_must_have_a_file(tmp_path: Path) -> None:
    files = folder(tmp_path, ["V1__a.sql", "V1_1__b.sql", "V1_10__c.sql", "V2__d.sql"])
    plan = plan_upgrade(files, [], UpgradeOptions(to_version="1.10"))
    assert versions_of(plan.steps) == ["1", "1.1", "1.10"]
    with pytest.raises(VersionNotFoundError, match=r"to_version 1\.5 has no migration file in "):
        plan_upgrade(files, [], UpgradeOptions(to_version="1.5"))
    done = plan_upgrade(files, rows(files, "1", "1.1"), UpgradeOptions(to_version="1.1"))
    assert done.empty and done.version_after == "1.1"
    assert done.notes == ("Version 1.1 is already applied: no versioned migration to run.",)


def test_v1_runs_before_v1_0_and_neither_is_below_the_other(tmp_path: Path) -> None:
    files = folder(tmp_path, ["V1.0__b.sql", "V1__a.sql"])
    assert versions_of(plan_upgrade(files, [], UpgradeOptions()).steps) == ["1", "1.0"]
    # Jetbase compares with packaging, where 1 == 1.0: a pending V1 is not out of order after 1.0.
    plan = plan_upgrade(files, rows(files, "1.0"), UpgradeOptions())
    assert versions_of(plan.steps) == ["1"] and plan.warnings == ()
    assert plan.version_after == "1.0"


def test_changed_checksum_blocks_unless_checksum_validation_is_skipped(tmp_path: Path) -> None:
    files = folder(tmp_path, ["V1__a.sql", "V2__b.sql"])
    applied = [row(files.by_version()["1"], checksum="0" * 64)]
    with pytest.raises(ValidationFailedError, match=r"V1__a.sql \(version 1\) has changed"):
        plan_upgrade(files, applied, UpgradeOptions())
    with pytest.raises(ValidationFailedError):
        plan_upgrade(files, applied, UpgradeOptions(skip_file_validation=True))
    for options in (UpgradeOptions(skip_checksum_validation=True), UpgradeOptions(skip_validation=True)):
        plan = plan_upgrade(files, applied, options)
        assert versions_of(plan.steps) == ["2"]
        assert [f.kind for f in plan.findings] == ["checksum_mismatch"]


def test_applied_version_without_a_file_blocks_unless_file_validation_is_skipped(tmp_path: Path) -> None:
    files = folder(tmp_path, ["V2__b.sql"])
    ghost = AppliedMigration(1, "1", "a", "V1__a.sql", VERSIONED, None, "x")
    with pytest.raises(ValidationFailedError, match=r"Version 1 \(V1__a.sql\) has been applied but its file"):
        plan_upgrade(files, [ghost], UpgradeOptions())
    plan = plan_upgrade(files, [ghost], UpgradeOptions(skip_file_validation=True))
    assert versions_of(plan.steps) == ["2"] and [f.kind for f in plan.findings] == ["missing_file"]


def test_missing_repeatable_file_is_found_but_alone_does_not_block_an_upgrade(tmp_path: Path) -> None:
    files = folder(tmp_path, ["V1__a.sql"])
    gone = AppliedMigration(1, None, "x", "RA__gone.sql", RUNS_ALWAYS, None, "x")
    assert [f.kind for f in find_problems(files, [gone])] == ["missing_repeatable_file"]
    assert versions_of(plan_upgrade(files, [gone], UpgradeOptions()).steps) == ["1"]
    with pytest.raises(ValidationFailedError, match="Repeatable migration RA__gone.sql"):
        plan_upgrade(files, [gone, *rows(files, "1")], UpgradeOptions())


def test_repeatables_runs_always_every_time_runs_on_change_only_when_changed(tmp_path: Path) -> None:
    files = folder(tmp_path, ["RA__a.sql", "ROC__same.sql", "ROC__changed.sql", "ROC__new.sql", "V1__v.sql"])
    by_name = {f.filename: f for f in (*files.runs_always, *files.runs_on_change)}
    applied = [
        *rows(files, "1"),
        row(by_name["RA__a.sql"], 2),
        row(by_name["ROC__same.sql"], 3),
        row(by_name["ROC__changed.sql"], 4, checksum="old"),
    ]
    plan = plan_upgrade(files, applied, UpgradeOptions())
    assert [(s.file.filename, s.row_exists) for s in plan.steps] == [
        ("RA__a.sql", True),
        ("ROC__changed.sql", True),
        ("ROC__new.sql", False),
    ]
    assert (plan.version_before, plan.version_after) == ("1", "1")
    assert [(p.filename, p.migration_type) for p in pending(files, applied)] == [
        ("RA__a.sql", RUNS_ALWAYS),
        ("ROC__changed.sql", RUNS_ON_CHANGE),
        ("ROC__new.sql", RUNS_ON_CHANGE),
    ]


def test_parsing_hazards_are_warnings_and_strict_mode_makes_them_an_error(tmp_path: Path) -> None:
    files = folder(tmp_path, {"V1__a.sql": BODY, "V2__b.sql": "SELECT 1; SELECT 2;\n", "V3__c.sql": ""})
    plan = plan_upgrade(files, rows(files, "1"), UpgradeOptions())
    assert len(plan.hazards) == 2 and plan.warnings == plan.hazards
    assert "V2__b.sql line 1: two statements on one line" in plan.hazards[0]
    assert "V3__c.sql: the file has no upgrade statements" in plan.hazards[1]
    with pytest.raises(ParsingHazardError) as caught:
        plan_upgrade(files, rows(files, "1"), UpgradeOptions(strict=True))
    assert caught.value.hazards == plan.hazards
    # Only the files the plan runs count: V2 applied and limited away, no hazard in the plan.
    assert plan_upgrade(files, rows(files, "1", "2", "3"), UpgradeOptions(strict=True)).empty


def test_plans_are_frozen_values() -> None:
    plan = plan_rollback(MigrationSet(Path("/m"), (), (), ()), [], RollbackOptions())
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.steps = ()  # type: ignore[misc]


# ----------------------------------------------------------------------------------- rollback
def test_rollback_plan_is_newest_first_by_version_order(tmp_path: Path) -> None:
    files = folder(tmp_path, ["V1__a.sql", "V1_9__b.sql", "V1_10__c.sql", "V2__d.sql"])
    # Rows inserted out of version order: order_executed must not matter.
    applied = rows(files, "1.10", "1", "1.9")
    plan = plan_rollback(files, applied, rollback_options())
    assert versions_of(plan.steps) == ["1.10"]
    assert (plan.version_before, plan.version_after) == ("1.10", "1.9")
    assert plan.steps[0].statements == ("DROP TABLE t",)
    plan = plan_rollback(files, applied, rollback_options(count=5))
    assert versions_of(plan.steps) == ["1.10", "1.9", "1"] and plan.version_after is None


def test_rollback_to_version_keeps_that_version(tmp_path: Path) -> None:
    files = folder(tmp_path, ["V1__a.sql", "V2__b.sql", "V3__c.sql", "V4__d.sql"])
    applied = rows(files, "1", "2", "3")
    plan = plan_rollback(files, applied, rollback_options(to_version="1"))
    assert versions_of(plan.steps) == ["3", "2"] and plan.version_after == "1"
    nothing = plan_rollback(files, applied, rollback_options(to_version="3"))
    assert nothing.empty and (nothing.version_before, nothing.version_after) == ("3", "3")
    with pytest.raises(VersionNotFoundError, match="4: it has a file but has not been applied"):
        plan_rollback(files, applied, rollback_options(to_version="4"))
    with pytest.raises(VersionNotFoundError, match="9: it has no row in jetbase_migrations and no file"):
        plan_rollback(files, applied, rollback_options(to_version="9"))


def test_rollback_refuses_a_missing_file_or_section_before_planning_anything(tmp_path: Path) -> None:
    files = folder(tmp_path, {"V1__a.sql": BODY, "V2__b.sql": "CREATE TABLE b (id INT);\n"})
    ghost = AppliedMigration(3, "3", "c", "V3__c.sql", VERSIONED, None, "x")
    with pytest.raises(MigrationFileError, match=r"version 3: its file \(V3__c.sql\) is missing") as e:
        plan_rollback(files, [*rows(files, "1", "2"), ghost], rollback_options(count=3))
    assert e.value.filename == "V3__c.sql"
    with pytest.raises(MigrationFileError, match="V2__b.sql has no '-- rollback' section"):
        plan_rollback(files, rows(files, "1", "2"), rollback_options())


def test_rollback_hazards_are_warnings_and_strict_mode_makes_them_an_error(tmp_path: Path) -> None:
    files = folder(tmp_path, {"V1__a.sql": "SELECT 1;\n-- rollback\n"})
    plan = plan_rollback(files, rows(files, "1"), rollback_options())
    assert plan.warnings == (
        "V1__a.sql: the '-- rollback' section has no statements; rolling back only deletes the version row",
    )
    assert plan.steps[0].statements == ()
    with pytest.raises(ParsingHazardError, match=r"strict mode: 1 parsing hazard\(s\) found.*\(rollback\)"):
        plan_rollback(files, rows(files, "1"), rollback_options(strict=True))


# ------------------------------------------------------------ properties, against Jetbase's own
segments = st.lists(st.integers(min_value=0, max_value=120).map(str), min_size=1, max_size=4)
version_names = st.tuples(segments, st.sampled_from([".", "_"])).map(lambda t: t[1].join(t[0]))


def _distinct_versions(names: list[str]) -> list[str]:
    seen: dict[str, str] = {}
    for name in names:
        seen.setdefault(name.replace("_", "."), name)
    return list(seen.values())


@PROPERTY
@given(st.lists(version_names, min_size=1, max_size=12).map(_distinct_versions))
def test_version_order_matches_jetbase_on_generated_versions(names: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        files = folder(Path(tmp), [f"V{name}__m{i}.sql" for i, name in enumerate(names)])
        ours = [f.version for f in files.versioned]
        theirs = list(get_migration_filepaths_by_version(directory=tmp))
    assert sorted(ours, key=str) == sorted(theirs, key=str)
    # Jetbase sorts by packaging alone (ties in walk order); ours agrees and breaks ties by the string.
    assert [parse_version(str(v)) for v in ours] == [parse_version(v) for v in theirs]
    assert ours == sorted(theirs, key=version_order)


@PROPERTY
@given(
    st.lists(version_names, min_size=1, max_size=10).map(_distinct_versions),
    st.data(),
)
def test_upgrade_and_rollback_plans_follow_version_order_on_generated_histories(
    names: list[str], data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        files = folder(Path(tmp), [f"V{name}__m{i}.sql" for i, name in enumerate(names)])
    ordered = [str(f.version) for f in files.versioned]
    applied_versions = data.draw(st.lists(st.sampled_from(ordered), unique=True), label="applied")
    applied = rows(files, *applied_versions)
    unapplied = [v for v in ordered if v not in applied_versions]
    everything = plan_upgrade(files, applied, UpgradeOptions(skip_validation=True))
    assert versions_of(everything.steps) == unapplied
    count = data.draw(st.integers(min_value=1, max_value=len(ordered) + 1), label="count")
    limited = plan_upgrade(files, applied, UpgradeOptions(count=count, skip_validation=True))
    assert versions_of(limited.steps) == unapplied[:count]
    target = data.draw(st.sampled_from(ordered), label="to_version")
    upto = plan_upgrade(files, applied, UpgradeOptions(to_version=target, skip_validation=True))
    expected = (
        []
        if target in applied_versions
        else [v for v in unapplied if ordered.index(v) <= ordered.index(target)]
    )
    assert versions_of(upto.steps) == expected
    latest = max(applied_versions, key=version_order, default=None)
    below = [v for v in unapplied if latest is not None and parse_version(v) < parse_version(latest)]
    if below:
        with pytest.raises(ValidationFailedError):
            plan_upgrade(files, applied, UpgradeOptions())
    else:
        assert versions_of(plan_upgrade(files, applied, UpgradeOptions()).steps) == unapplied
    newest_first = [v for v in reversed(ordered) if v in applied_versions]
    back = plan_rollback(files, applied, rollback_options(count=count))
    assert versions_of(back.steps) == newest_first[:count]
    assert back.version_before == latest
    assert back.version_after == (newest_first[count] if len(newest_first) > count else None)


_LINES = st.one_of(
    st.sampled_from(
        [
            "",
            "   ",
            "-- rollback",
            "--ROLLBACK  ",
            "  -- Rollback",
            "-- jetbase: delimiter=$$",
            "--jetbase:delimiter=//",
            "-- a comment ;",
            "SELECT 1;",
            "SELECT 'a;b';",
            "CREATE TABLE t (",
            "  id INT",
            ");",
            "SELECT 2$$",
            "SELECT 3 //",
            "SELECT 4; -- note",
            "SELECT 5; SELECT 6;",
            "/* block ; */",
            ";;",
            "\tSELECT\t7 ;\t",
        ]
    ),
    st.text(alphabet="ab ;$/-'\t\x0b\x0c()*", max_size=16),
)


@PROPERTY
@given(st.lists(_LINES, max_size=14), st.sampled_from(["\n", "\r\n", "\r"]), st.booleans())
def test_parser_matches_jetbase_on_generated_files(lines: list[str], newline: str, final: bool) -> None:
    text = newline.join(lines) + (newline if final else "")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "V1__generated.sql"
        path.write_bytes(text.encode("utf-8"))
        ours = load_file(path, path.name)
        upgrade = parse_upgrade_statements(file_path=str(path))
        rollback = parse_rollback_statements(file_path=str(path))
    assert list(ours.upgrade.statements) == upgrade
    assert list(ours.rollback.statements) == rollback
    assert ours.checksum == calculate_checksum(sql_statements=upgrade)
    assert len(ours.upgrade.start_lines) == len(upgrade)
