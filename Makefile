# Two entry points a new user needs; both build .venv from pyproject.toml themselves.
#   make run    the service on its embedded default (SQLite, demo feed)
#   make test   lint, type-check and the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: run test lint pytest bench bench-candles clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/mds run --demo $(ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests benchmarks dashboards
	$(BIN)/ruff format --check src tests benchmarks dashboards
	$(BIN)/mypy

pytest: $(VENV)/.installed
	$(BIN)/pytest $(ARGS)

test: lint pytest

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/dom.py

bench-candles: $(VENV)/.installed
	$(BIN)/python benchmarks/candles.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
