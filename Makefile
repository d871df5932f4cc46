# Two commands from a fresh clone:  make run  |  make test
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test gen bench lint clean

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

gen: $(STAMP)
	$(PY) -m gateway.codegen

run: gen
	$(VENV)/bin/gateway serve --demo

test: gen
	@if command -v npm >/dev/null 2>&1; then npm ci --prefix tests/browser --no-audit --no-fund --silent; fi  # axe-core
	$(PY) -m pytest $(PYTEST_ARGS)

bench: gen
	$(PY) -m bench

lint: gen
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) gateway/_pb .gateway-demo
