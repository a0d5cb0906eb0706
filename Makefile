# Watcher — the two commands: `make run` (start the service) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test lint format migrate bench bench-burst stack docs clean

$(STAMP): pyproject.toml clients/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e clients/python -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

## Start Watcher on 127.0.0.1:8000 (embedded PostgreSQL unless WATCHER_DATABASE_URL is set).
run: install
	$(BIN)/watcher serve

## Lint, format check and the whole test suite against a real (embedded) PostgreSQL.
test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python scripts/unasync.py --check
	$(BIN)/mypy
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python scripts/unasync.py --check
	$(BIN)/mypy

format: install
	$(BIN)/python scripts/unasync.py
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

migrate: install
	$(BIN)/watcher migrate

## The benchmark (benchmarks/RESULTS.md): embedded PostgreSQL unless WATCHER_DATABASE_URL is
## set; BENCH_ARGS=--quick for a ~3 minute run, --profile to py-spy the server.
bench: install
	$(BIN)/pip install --quiet -e ".[bench]"
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

## The top-of-the-hour burst (benchmarks/burst.py): N starts at once, N ends over a minute.
bench-burst: install
	$(BIN)/pip install --quiet -e ".[bench]"
	$(BIN)/python -m benchmarks.burst $(BURST_ARGS)

## Prometheus (:9090) + Alertmanager (:9093) from the local binaries against a running
## Watcher on 127.0.0.1:8000 (see scripts/stack.py --help for tokens, Slack, intervals).
stack: install
	$(BIN)/python scripts/stack.py $(STACK_ARGS)

## The documentation site (mkdocs.yml, docs/), built offline and strictly (a broken link or
## anchor is an error) into site/.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
