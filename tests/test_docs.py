"""The documentation site builds, and what it shows users is checked against the code.

- `mkdocs build --strict` passes (broken links, anchors and missing snippet files fail it).
- Every `AIRFLOW_CONN_*` example of the docs is parsed the way Airflow parses it (URI or JSON) and
  mapped by the provider's own `build_engine_spec`; the resulting URL must match what the page
  says ("Jetbase URL: ...") and the driver/host/database expected here.
- Every Python block of the docs compiles, and its imports of this provider resolve.

Snowflake and Databricks are not contacted: only the URL and connect_args are built.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

CONN_EXPORT = re.compile(r"^export AIRFLOW_CONN_(?P<name>[A-Z0-9_]+)='(?P<value>[^']+)'\s*$", re.MULTILINE)
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\n(?P<body>.*?)^```", re.MULTILINE | re.DOTALL)


def doc_pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


# ------------------------------------------------------------------------------------- mkdocs build
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    site = tmp_path / "site"
    # cwd is the project root because pymdownx.snippets resolves its base paths from there.
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    assert (site / "index.html").is_file()
    # Snippets were really included (not left as `--8<--` lines).
    started = (site / "getting-started" / "index.html").read_text()
    assert "--8&lt;--" not in started and "--8<--" not in started
    assert "JetbaseUpgradeOperator" in started
    for page in doc_pages():
        rel = page.relative_to(DOCS).with_suffix("")
        html = site / rel / "index.html" if rel.name != "index" else site / rel.parent / "index.html"
        assert html.is_file(), f"{page} was not built"


def test_every_page_is_in_the_nav() -> None:
    import yaml

    class _Loader(yaml.SafeLoader):
        pass

    # mkdocs.yml may use !!python tags in other setups; this one must stay plain YAML.
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    listed: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, str):
            listed.add(node)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            for value in node.values():
                walk(value)

    walk(config["nav"])
    pages = {str(p.relative_to(DOCS)) for p in doc_pages()}
    assert listed <= pages, f"nav lists missing pages: {sorted(listed - pages)}"
    # docs/ui/ holds screenshots embedded in other pages; every other page must be reachable.
    unlisted = {p for p in pages - listed if not p.startswith("ui/")}
    assert not unlisted, f"pages missing from the nav in mkdocs.yml: {sorted(unlisted)}"


# ---------------------------------------------------------------------------- connection examples
@dataclass(frozen=True)
class Expected:
    drivername: str
    host: str | None
    database: str | None
    connect_args: dict[str, Any] | None = None  # subset that must be present
    key_pair: bool = False  # connect_args["private_key"] holds DER bytes and the URL has no password


# Every documented example, with what it must map to. A new example without an entry fails
# test_every_connection_example_is_checked, so the docs cannot gain an unchecked example.
EXPECTED: dict[str, Expected] = {
    "WAREHOUSE_PG": Expected(
        "postgresql+psycopg2", "db.example.com", "analytics", {"options": "-csearch_path=staging"}
    ),
    "WAREHOUSE_PG3": Expected(
        "postgresql+psycopg", "db.example.com", "analytics", {"options": "-csearch_path=staging"}
    ),
    "WAREHOUSE_PG_JSON": Expected(
        "postgresql+psycopg2",
        "db.example.com",
        "analytics",
        {"options": "-csearch_path=staging", "sslmode": "require"},
    ),
    "SNOWFLAKE_PW": Expected("snowflake", "xy12345.us-east-1", "ANALYTICS/PUBLIC"),
    "SNOWFLAKE_PW_JSON": Expected("snowflake", "xy12345.us-east-1", "ANALYTICS/PUBLIC"),
    "SNOWFLAKE_KEYFILE": Expected("snowflake", "xy12345", "ANALYTICS/PUBLIC", key_pair=True),
    "SNOWFLAKE_KEYPAIR": Expected("snowflake", "xy12345.eu-west-1", "ANALYTICS/PUBLIC", key_pair=True),
    "SNOWFLAKE_ENVKEY": Expected("snowflake", "xy12345", "ANALYTICS/PUBLIC", key_pair=True),
    "LOCAL_SQLITE": Expected("sqlite", None, "/opt/airflow/data/app.db"),
    "LOCAL_SQLITE_JSON": Expected("sqlite", None, "/opt/airflow/data/app.db"),
    "APP_MYSQL": Expected("mysql+pymysql", "mysql.example.com", "app"),
    "APP_MYSQL_JSON": Expected("mysql+pymysql", "mysql.example.com", "app", {"charset": "utf8mb4"}),
    "DATABRICKS_WH": Expected("databricks", "adb-1234567890123456.7.azuredatabricks.net", None),
    "DATABRICKS_WH_JSON": Expected("databricks", "adb-1234567890123456.7.azuredatabricks.net", None),
    "CLICKHOUSE_DW": Expected("clickhouse", "clickhouse.example.com", "analytics"),
    "CLICKHOUSE_DW_JSON": Expected("clickhouse", "clickhouse.example.com", "analytics"),
    "ANY_DB": Expected("postgresql+psycopg", "db.example.com", "app"),
    "ANY_DB_JSON": Expected(
        "postgresql+psycopg", "db.example.com", "app", {"options": "-csearch_path=staging"}
    ),
}


@dataclass(frozen=True)
class DocExample:
    name: str
    value: str
    page: Path


def documented_examples() -> list[DocExample]:
    found = []
    for page in doc_pages():
        for match in CONN_EXPORT.finditer(page.read_text()):
            found.append(DocExample(match["name"], match["value"], page))
    return found


def test_every_connection_example_is_checked() -> None:
    examples = documented_examples()
    names = [e.name for e in examples]
    for name in set(names):
        values = {e.value for e in examples if e.name == name}
        assert len(values) == 1, f"AIRFLOW_CONN_{name} is documented with different values: {values}"
    assert set(names) == set(EXPECTED), (
        f"unchecked examples: {sorted(set(names) - set(EXPECTED))}; "
        f"expected but gone from the docs: {sorted(set(EXPECTED) - set(names))}"
    )
    pages = {e.page.name for e in examples}
    # One page per database of Jetbase's connection guide, each with a URI and a JSON example.
    for page in ("postgres.md", "snowflake.md", "sqlite.md", "mysql.md", "databricks.md", "clickhouse.md"):
        assert page in pages
        on_page = [e.value for e in examples if e.page.name == page]
        assert any(v.startswith("{") for v in on_page), f"{page} has no JSON example"
        assert any(not v.startswith("{") for v in on_page), f"{page} has no URI example"


def _rsa_pem(passphrase: str | None) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def _airflow_connection(example: DocExample) -> Any:
    from airflow.models.connection import Connection

    conn_id = example.name.lower()
    if example.value.startswith("{"):
        return Connection.from_json(example.value, conn_id=conn_id)
    return Connection(conn_id=conn_id, uri=example.value)


@pytest.mark.parametrize("example", documented_examples(), ids=lambda e: e.name)
def test_connection_example_maps_to_documented_url(example: DocExample, tmp_path: Path) -> None:
    from airflow_provider_jetbase.connection_mapping import ConnectionFields, build_engine_spec

    expected = EXPECTED[example.name]
    conn = _airflow_connection(example)
    extra = dict(conn.extra_dejson)
    environ: dict[str, str] = {}
    # The docs show placeholders for key material; put a real key (encrypted with the documented
    # passphrase) where the example points, so the key-pair path really runs.
    passphrase = extra.get("private_key_passphrase")
    if "private_key_file" in extra:
        key_file = tmp_path / "snowflake_rsa_key.p8"
        key_file.write_bytes(_rsa_pem(passphrase))
        assert extra["private_key_file"].endswith(".p8")
        extra["private_key_file"] = str(key_file)
    if "private_key_content" in extra:
        extra["private_key_content"] = base64.b64encode(_rsa_pem(passphrase)).decode()
    if example.name == "SNOWFLAKE_ENVKEY":
        text = example.page.read_text()
        documented_pw = re.search(r'JETBASE_SNOWFLAKE_PRIVATE_KEY_PASSWORD="([^"]+)"', text)
        assert documented_pw and "export JETBASE_SNOWFLAKE_PRIVATE_KEY=" in text
        environ = {
            "JETBASE_SNOWFLAKE_PRIVATE_KEY": _rsa_pem(documented_pw[1]).decode(),
            "JETBASE_SNOWFLAKE_PRIVATE_KEY_PASSWORD": documented_pw[1],
        }
    fields = ConnectionFields(
        conn_id=conn.conn_id,
        conn_type=conn.conn_type or "",
        host=conn.host,
        login=conn.login,
        password=conn.password,
        schema=conn.schema,
        port=conn.port,
        extra=extra,
    )
    spec = build_engine_spec(fields, environ=environ, check_driver=False)

    assert spec.url.drivername == expected.drivername
    assert (spec.url.host or None) == expected.host
    assert spec.url.database == expected.database
    for key, value in (expected.connect_args or {}).items():
        assert spec.connect_args.get(key) == value, key
    if expected.key_pair:
        from cryptography.hazmat.primitives.serialization import load_der_private_key

        assert spec.url.password is None
        load_der_private_key(spec.connect_args["private_key"], password=None)
    else:
        assert "private_key" not in spec.connect_args
    # The page states the resulting URL; it must be the one the mapping really builds.
    safe = spec.url.render_as_string(hide_password=True)
    assert f"`{safe}`" in _jetbase_url_lines(example.page), (
        f"{example.page.name} does not show the URL {safe!r} for AIRFLOW_CONN_{example.name}"
    )
    # No secret of the example is shown in the documented URL.
    if conn.password:
        assert conn.password not in safe


def _jetbase_url_lines(page: Path) -> str:
    """The 'Jetbase URL ...:' lines of a page (a URL may sit on the line after the label)."""
    text = page.read_text()
    return "\n".join(m.group(0) for m in re.finditer(r"Jetbase URL[^:]*:\s*`[^`]+`", text))


def test_documented_urls_follow_their_examples() -> None:
    """Each example is followed (before the next example) by the URL it maps to."""
    for page in doc_pages():
        text = page.read_text()
        matches = list(CONN_EXPORT.finditer(text))
        for i, match in enumerate(matches):
            end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
            following = text[match.end() : end]
            assert "Jetbase URL" in following, (
                f"{page.name}: AIRFLOW_CONN_{match['name']} has no 'Jetbase URL' line"
            )


# ------------------------------------------------------------------------------------ Python blocks
def python_blocks() -> list[tuple[str, str]]:
    blocks = []
    for page in [*doc_pages(), ROOT / "README.md"]:
        for i, match in enumerate(FENCE.finditer(page.read_text())):
            if match["lang"] == "python" and "--8<--" not in match["body"]:
                where = page.relative_to(DOCS) if page.is_relative_to(DOCS) else page.relative_to(ROOT)
                blocks.append((f"{where}#{i}", match["body"]))
    return blocks


@pytest.mark.parametrize(("where", "code"), python_blocks(), ids=[w for w, _ in python_blocks()])
def test_python_blocks_compile_and_import(where: str, code: str) -> None:
    tree = compile(code, where, "exec", flags=0x400, dont_inherit=True)  # PyCF_ONLY_AST
    import ast

    assert isinstance(tree, ast.Module)
    compile(code, where, "exec")
    # Imports of this provider must name things that exist, so renamed APIs break the docs' test.
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("airflow_provider_jetbase"):
            exec(compile(ast.Module(body=[node], type_ignores=[]), where, "exec"), {})  # noqa: S102
    # A block that defines a DAG is run whole: the DAG must build (operators accept the arguments
    # shown). Nothing connects to a database while a DAG is defined.
    if "@dag" in code or "with DAG(" in code:
        from airflow.sdk import DAG

        namespace: dict[str, Any] = {"__name__": "docs_block"}
        exec(compile(code, where, "exec"), namespace)  # noqa: S102
        dags = [v for v in namespace.values() if isinstance(v, DAG)]
        if not dags:  # @dag functions return the DAG when called at module level
            called = [n for n in tree.body if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)]
            assert called, f"{where}: defines a @dag but never calls it"
            for stmt in called:
                assert isinstance(stmt.value, ast.Call) and isinstance(stmt.value.func, ast.Name)
                result = eval(compile(ast.Expression(stmt.value), where, "eval"), namespace)  # noqa: S307
                dags.append(result)
        assert dags and all(isinstance(d, DAG) and d.task_dict for d in dags), where


# ------------------------------------------------------------------------------ reference tables
def _reference_table(page: str, heading: str) -> dict[str, bool]:
    """{parameter: templated} from the table under ``## `heading` `` of a docs page."""
    text = (DOCS / page).read_text()
    start = text.index(f"## `{heading}`")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end != -1 else len(text)]
    rows = re.findall(r"^\| `(\w+)` \| [^|]* \| (yes|no) \|", section, re.MULTILINE)
    assert rows, f"{page}: no parameter table under {heading}"
    return {name: templated == "yes" for name, templated in rows}


REFERENCE = [
    ("operators.md", "airflow_provider_jetbase.operators.jetbase", "JetbaseUpgradeOperator"),
    ("operators.md", "airflow_provider_jetbase.operators.jetbase", "JetbaseRollbackOperator"),
    ("operators.md", "airflow_provider_jetbase.operators.jetbase", "JetbaseStatusOperator"),
    ("operators.md", "airflow_provider_jetbase.operators.drift", "JetbaseDriftCheckOperator"),
    ("operators.md", "airflow_provider_jetbase.operators.baseline", "JetbaseBaselineOperator"),
    ("sensor.md", "airflow_provider_jetbase.sensors.jetbase", "JetbaseVersionSensor"),
]


@pytest.mark.parametrize(("page", "module", "name"), REFERENCE, ids=[r[2] for r in REFERENCE])
def test_reference_lists_every_parameter_and_template_field(page: str, module: str, name: str) -> None:
    import importlib
    import inspect

    cls = getattr(importlib.import_module(module), name)
    params: set[str] = set()
    # Parameters of the class and of the provider's own bases (BaseOperator's are documented by Airflow).
    for klass in cls.__mro__:
        if not klass.__module__.startswith("airflow_provider_jetbase") or "__init__" not in vars(klass):
            continue
        for pname, param in inspect.signature(klass.__init__).parameters.items():
            if pname != "self" and param.kind not in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
                params.add(pname)
    table = _reference_table(page, name)
    undocumented, unknown = sorted(params - set(table)), sorted(set(table) - params)
    assert not undocumented and not unknown, f"{page} {name}: undocumented {undocumented}, unknown {unknown}"
    templated = {p for p, t in table.items() if t}
    assert templated == set(cls.template_fields), (
        f"{page} {name}: templated per docs {sorted(templated)}, per code {sorted(cls.template_fields)}"
    )


def test_trigger_reference_matches_serialize() -> None:
    from airflow_provider_jetbase.triggers.jetbase import JetbaseVersionTrigger

    path, kwargs = JetbaseVersionTrigger("c", "2").serialize()
    text = (DOCS / "sensor.md").read_text()
    section = text[text.index("## `JetbaseVersionTrigger`") :]
    assert f"from {path.rsplit('.', 1)[0]} import {path.rsplit('.', 1)[1]}" in section
    documented = set(re.findall(r"^\| `(\w+)` \|", section, re.MULTILINE))
    assert documented == set(kwargs)


def test_asset_uri_in_docs_is_the_operators() -> None:
    from airflow_provider_jetbase.operators.jetbase import jetbase_asset_alias, jetbase_asset_uri

    text = (DOCS / "operators.md").read_text()
    assert f"`{jetbase_asset_uri('<jetbase_conn_id>')}`" in text
    assert f"`{jetbase_asset_alias('<jetbase_conn_id>').name}`" in text


def test_snippets_point_at_existing_files() -> None:
    for page in doc_pages():
        for target in re.findall(r'--8<-- "([^"]+)"', page.read_text()):
            path = target.split(":", 1)[0]
            assert (ROOT / "example_dags" / path).is_file() or (ROOT / path).is_file(), (
                f"{page.name}: snippet {target} not found"
            )


def test_json_examples_are_valid_json() -> None:
    for example in documented_examples():
        if example.value.startswith("{"):
            assert isinstance(json.loads(example.value), dict)


# ------------------------------------------------------------------------------- troubleshooting
def _troubleshooting_messages() -> list[str]:
    text = (DOCS / "troubleshooting.md").read_text()
    return re.findall(r"^\*\*`(.+?)`\*\*", text, re.MULTILINE)


# Messages that come from Airflow or a driver, not from this provider.
_FOREIGN_MESSAGES = ("isn't defined", "no schema has been selected to create in")
# Messages assembled from several pieces: the literal piece of the code that must still exist.
_COMPOSED = {
    "Connection 'x' (": ") failed: {describe_error(exc)}",
    "Parameter 'migrations_dir': the folder": "the folder {str(path)!r} does not exist",
    "Upgrade of ": "{direction.capitalize()} of {f.relpath} failed at {where}",
    "drift found (": 'f"drift found ({len(report.errors)} failing finding(s): {',
    "method='replay'": "method='replay' is not available on {dialect}",
}


def test_troubleshooting_messages_exist_in_the_code() -> None:
    """Each quoted message shares a literal fragment with the provider's source, so renamed or
    reworded errors make this page fail instead of silently going stale."""
    source = "\n".join(p.read_text() for p in (ROOT / "airflow_provider_jetbase").rglob("*.py"))
    source = re.sub(r"\"\s*\n\s*f?\"", "", source)  # join implicitly concatenated string literals
    messages = _troubleshooting_messages()
    assert len(messages) >= 30
    failures = []
    for message in messages:
        if any(foreign in message for foreign in _FOREIGN_MESSAGES):
            continue
        composed = next((code for prefix, code in _COMPOSED.items() if message.startswith(prefix)), None)
        if composed is not None:
            if composed not in source:
                failures.append(f"{message!r}: {composed!r} is not in the code")
            continue
        # Literal parts: what lies between quoted values, numbers, paths and "..." placeholders.
        parts = re.split(r"'[^']*'|\"[^\"]*\"|\.\.\.|\b\d+\b|/\S+|\([^)]*\)|: ", message)
        fragments = [p.strip(" :,.;") for p in parts if len(p.strip(" :,.;")) >= 15]
        if not fragments or not any(f in source for f in fragments):
            failures.append(f"{message!r}: none of {fragments} is in the code")
    assert not failures, "troubleshooting.md quotes messages the code does not have:\n" + "\n".join(failures)


def test_readme_links_and_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(((?!https?://)[^)#]+)(?:#[^)]*)?\)", readme):
        assert (ROOT / target).exists(), f"README links to missing {target}"
    # The two commands the README promises exist in the Makefile.
    makefile = (ROOT / "Makefile").read_text()
    for command in ("demo", "test"):
        assert f"make {command}" in readme and re.search(rf"^{command}:", makefile, re.MULTILINE)
    import airflow

    assert f"| Apache Airflow | {airflow.__version__} (whole suite, in CI)" in readme


def _make_variable(name: str) -> list[str]:
    """The words of ``NAME := ...`` in the Makefile (continuation lines joined)."""
    makefile = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    match = re.search(rf"^{name} := (.*)$", makefile, re.MULTILINE)
    assert match, f"Makefile has no {name}"
    return match[1].split()


def test_compatibility_table_and_airflow_versions_list_exactly_the_legs_ci_runs() -> None:
    """README's Airflow row and getting-started's "Airflow versions" name each Airflow that .ci/run
    tests, read from the Makefile, so the docs cannot claim a leg CI does not run, or miss one."""
    ci_run = (ROOT / ".ci" / "run").read_text()
    commands = [line.strip() for line in ci_run.splitlines() if line.strip().startswith("make ")]
    assert commands == ["make ui-deps", "make test", "make test-airflow-matrix"]
    legs = _make_variable("AIRFLOW_LEGS")
    assert legs, "AIRFLOW_LEGS is empty"
    readme = (ROOT / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| Apache Airflow |"))
    tested = row.split(" | ")[1]
    section = (DOCS / "getting-started.md").read_text().split("### Airflow versions", 1)[1]
    section = section.split("\n## ", 1)[0]
    for leg in legs:
        assert f"{leg} (Airflow-facing tests, in CI)" in tested, leg
        assert f"- Airflow {leg} (in CI, `make test-airflow AIRFLOW={leg}`)" in section, leg
    versions_named = set(re.findall(r"\b3\.\d+\.\d+\b", tested))
    import airflow

    assert versions_named == {airflow.__version__, *legs}
    # The section names every test file the legs run.
    for path in _make_variable("AIRFLOW_TESTS"):
        assert f"`{Path(path).name}`" in section, path


# ------------------------------------------------------------------------------------ XCom shapes
def _json_blocks(page: str) -> list[dict[str, Any]]:
    text = (DOCS / page).read_text()
    return [json.loads(m["body"]) for m in FENCE.finditer(text) if m["lang"] == "json" and m["body"].strip()]


def _execute_return_keys(cls: Any) -> set[str]:
    """Keys of the dict literal that ``cls.execute`` returns (read from its source)."""
    import ast
    import inspect
    import textwrap

    tree = ast.parse(textwrap.dedent(inspect.getsource(cls.execute)))
    returns = [n.value for n in ast.walk(tree) if isinstance(n, ast.Return) and isinstance(n.value, ast.Dict)]
    assert len(returns) == 1, cls
    return {k.value for k in returns[0].keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}


def test_documented_xcom_shapes_match_the_code() -> None:
    from airflow_provider_jetbase.migration.results import (
        AppliedMigration,
        LockInfo,
        MigrationRun,
        PendingMigration,
        StatusReport,
        ValidationReport,
    )
    from airflow_provider_jetbase.operators import _params
    from airflow_provider_jetbase.operators.jetbase import JetbaseRollbackOperator, JetbaseUpgradeOperator

    blocks = {frozenset(b): b for b in _json_blocks("operators.md")}
    upgrade = next(b for b in blocks.values() if "versions_applied" in b)
    rollback = next(b for b in blocks.values() if "versions_rolled_back" in b)
    status = next(b for b in blocks.values() if "pending" in b)
    assert set(upgrade) == _execute_return_keys(JetbaseUpgradeOperator)
    assert set(rollback) == _execute_return_keys(JetbaseRollbackOperator)
    run = MigrationRun("V1__a.sql", "1", "VERSIONED", ("SELECT 1",), "abc", 1.0)
    for entry in [*upgrade["applied"], *rollback["rolled_back"]]:
        assert set(entry) == set(_params.run_summary(run))
    report = StatusReport((), (), None).to_dict()
    assert set(status) == set(report) | {"lock", "validation"}
    applied = AppliedMigration(1, "1", "a", "V1__a.sql", "VERSIONED", None, "abc").to_dict()
    assert set(status["applied"][0]) == set(applied)
    assert set(status["pending"][0]) == set(PendingMigration("1", "V1__a.sql", "VERSIONED").to_dict())
    assert set(status["lock"]) == set(LockInfo(False, None, None, True).to_dict())
    assert set(status["validation"]) == set(ValidationReport(()).to_dict())


def test_documented_drift_report_matches_the_code() -> None:
    from airflow_provider_jetbase.drift.report import DriftReport, Finding

    (report,) = _json_blocks("drift.md")
    real = DriftReport("sqlite", "replay", "", (Finding("column_added", "m"),), None, 0, 0, (), "", 0.0)
    assert set(report) == set(real.to_dict())
    assert set(report["findings"][0]) == set(Finding("column_added", "m").to_dict())


def test_documented_sensor_and_trigger_events_match_the_code() -> None:
    from airflow_provider_jetbase.sensors.jetbase import JetbaseVersionSensor

    (xcom,) = _json_blocks("sensor.md")
    sensor = JetbaseVersionSensor(task_id="t", target_version="2")
    assert set(xcom) == set(sensor._xcom("2"))
