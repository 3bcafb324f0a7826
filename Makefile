# carbonhub: `make run` serves a demo market on http://127.0.0.1:8000; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint format bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

$(BIN)/.dev-installed: $(BIN)/.installed
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

run: $(BIN)/.installed
	$(BIN)/carbonhub serve --demo --host $(HOST) --port $(PORT)

test: $(BIN)/.dev-installed
	$(BIN)/pytest -q

lint: $(BIN)/.dev-installed
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

format: $(BIN)/.dev-installed
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

$(BIN)/.bench-installed: $(BIN)/.dev-installed
	$(BIN)/pip install -q -e '.[bench]'
	-$(BIN)/pip install -q liquibook==2.0.1
	touch $@

bench: $(BIN)/.bench-installed
	$(BIN)/python bench/registry_transfers.py --json
	$(BIN)/python bench/orderbook.py --json

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
