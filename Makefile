# The two commands of the README. Everything they need is installed from this project's own files.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint typecheck unit ui-deps

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

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy
