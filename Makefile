# The two commands of the README. Everything they need is installed from this project's own files.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast lint typecheck unit ui-deps test-airflow test-airflow-matrix

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -e ".[all,test]"
	touch $(STAMP)

install: $(STAMP)

## make ui-deps: Debian's chromium for tests/ui (Playwright drives it; no browser is downloaded).
## Needs root, so it is a step of its own: CI runs it before `make test`; on a laptop without it the
## UI tests skip with a warning naming what is missing.
ui-deps:
	test -x /usr/bin/chromium || (apt-get update && apt-get install -y chromium)

## make demo: run the example DAG that migrates an embedded SQLite database (twice: the second run is "up to date").
demo: install
	$(BIN)/python scripts/demo.py

## make test: ruff, mypy and the whole test suite (real PostgreSQL and MariaDB on 127.0.0.1), on
## TEST_WORKERS pytest-xdist workers. Most of the suite waits (on servers, subprocesses, fsyncs), so
## more workers than the 2 cores of the CI machine pay; tests/conftest.py keeps each module, and the
## deployment tier as a whole, on one worker. TEST_WORKERS=0 runs it in this process.
TEST_WORKERS ?= 4
test: install lint typecheck
	$(BIN)/python -m pytest -ra -n $(TEST_WORKERS)

## make test-fast: the inner loop: pure tests plus real SQLite and the jetbase CLI, no database server
## and no Airflow run (about 25 s on an idle machine). tests/conftest.py marks every test that needs a
## server or Airflow as slow_tier, so only the server-free cases of these files run.
FAST_TESTS := tests/test_planner.py tests/test_migration_files.py tests/test_connection_mapping.py \
	tests/test_snowflake_keys.py tests/test_error_family.py tests/test_transaction_control.py \
	tests/test_sqlite_pragmas.py tests/test_airflow_compat.py tests/test_drift_report.py \
	tests/test_drift_schema.py tests/test_fixtures_smoke.py tests/reliability/test_guarantees_doc.py \
	tests/reliability/test_cancel.py tests/reliability/test_lock_stale_rows.py \
	tests/test_lint.py tests/test_plan_review.py tests/test_databricks.py tests/test_dialect_table.py \
	tests/test_lineage.py tests/test_cli_forkserver.py
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow_tier" $(FAST_TESTS)

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy

# ---------------------------------------------------------------------------------- Airflow versions
# `make test` runs the whole suite on the newest Airflow that `pip install -e .` resolves. These legs
# run the Airflow-facing tests on older supported releases, each in its own virtualenv built from this
# project's files: the floor of `apache-airflow>=3.1.0` and the newest 3.2.
AIRFLOW_LEGS := 3.1.0 3.2.2
# The files that touch Airflow's API: hook, operators, sensor, trigger, example DAGs run by dag.test(),
# provider discovery (ProvidersManager, `airflow providers list`) and the compat layer. The engine,
# drift and mapping tests import no Airflow, so a second Airflow adds nothing to them.
AIRFLOW_TESTS := tests/test_hook.py tests/test_operators.py tests/test_sensor.py tests/test_trigger.py \
	tests/test_example_dags.py tests/example_dags_on_postgres.py tests/test_provider_info.py \
	tests/test_airflow_compat.py tests/test_schema_versions.py
# postgres and mysql drive the real servers; no Snowflake/ClickHouse extra, whose SQLAlchemy 2.0
# ceiling (clickhouse-sqlalchemy's pin, snowflake-sqlalchemy 1.x at runtime) would hide SQLAlchemy 2.1.
AIRFLOW_EXTRAS := postgres,mysql,test

# .ci/constraints-airflow-<version>.txt, where it exists, holds the pins that version needs (and why).
.SECONDEXPANSION:
.venv-airflow-%/.installed: pyproject.toml $$(wildcard .ci/constraints-airflow-$$*.txt)
	rm -rf .venv-airflow-$*
	$(PYTHON) -m venv .venv-airflow-$*
	.venv-airflow-$*/bin/pip install -q --upgrade pip
	.venv-airflow-$*/bin/pip install -q -e ".[$(AIRFLOW_EXTRAS)]" "apache-airflow==$*" \
		$(addprefix -c ,$(wildcard .ci/constraints-airflow-$*.txt))
	touch $@

## make test-airflow AIRFLOW=3.1.0: the Airflow-facing tests on that Airflow, in .venv-airflow-3.1.0.
test-airflow:
	@test -n "$(AIRFLOW)" || { echo "usage: make test-airflow AIRFLOW=<version>, e.g. one of: $(AIRFLOW_LEGS)"; exit 2; }
	$(MAKE) .venv-airflow-$(AIRFLOW)/.installed
	.venv-airflow-$(AIRFLOW)/bin/python -c "import airflow, sqlalchemy; \
		print('Airflow', airflow.__version__, 'SQLAlchemy', sqlalchemy.__version__)"
	.venv-airflow-$(AIRFLOW)/bin/python -m pytest -ra -n $(TEST_WORKERS) $(AIRFLOW_TESTS)

## make test-airflow-matrix: every leg of AIRFLOW_LEGS (what .ci/run runs after `make test`).
test-airflow-matrix:
	set -e; for version in $(AIRFLOW_LEGS); do $(MAKE) test-airflow AIRFLOW=$$version; done
