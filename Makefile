# The two commands of the README. Everything they need is installed from this project's own files.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast lint typecheck unit ui-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -e ".[all,test]"
	touch $(STAMP)

install: $(STAMP)

## make ui-deps: Debian's chromium for tests/ui (Playwright drives it; no browser is downloaded).
ui-deps:
	test -x /usr/bin/chromium || (apt-get update && apt-get install -y chromium)

## make demo: run the example DAG that migrates an embedded SQLite database (twice: the second run is "up to date").
demo: install
	$(BIN)/python scripts/demo.py

## make test: ruff, mypy and the whole test suite (real PostgreSQL and MariaDB on 127.0.0.1).
test: install ui-deps lint typecheck
	$(BIN)/python -m pytest -ra

## make test-fast: the inner loop: pure tests plus real SQLite and the jetbase CLI, no database server
## and no Airflow run (about 25 s on an idle machine). tests/conftest.py marks every test that needs a
## server or Airflow as slow_tier, so only the server-free cases of these files run.
FAST_TESTS := tests/test_planner.py tests/test_migration_files.py tests/test_connection_mapping.py \
	tests/test_snowflake_keys.py tests/test_error_family.py tests/test_transaction_control.py \
	tests/test_sqlite_pragmas.py tests/test_airflow_compat.py tests/test_drift_report.py \
	tests/test_drift_schema.py tests/test_fixtures_smoke.py tests/reliability/test_guarantees_doc.py \
	tests/reliability/test_cancel.py tests/reliability/test_lock_stale_rows.py
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow_tier" $(FAST_TESTS)

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy
