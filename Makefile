# irods-ingestd: `make demo` runs it on a local default; `make test` runs the whole test suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: deps venv test lint unit integration e2e demo bench chaos clean

deps:
	bash packaging/ci-deps.sh

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[test]'
	touch $@

venv: deps $(VENV)/.installed
	VENV=$(VENV) bash packaging/ci-deps.sh

lint: venv
	$(VENV)/bin/ruff check irods_ingestd tests bench
	$(VENV)/bin/mypy irods_ingestd

test: venv lint
	$(PY) -m pytest -q -ra tests

unit: venv
	$(PY) -m pytest -q tests/unit

integration: venv
	$(PY) -m pytest -q tests/integration

e2e: venv
	$(PY) -m pytest -q tests/e2e

demo: venv
	$(PY) -m tests.demo

bench: venv
	$(PY) -m bench.run

chaos: venv
	$(PY) -m bench.chaos

clean:
	rm -rf $(VENV) demo .pytest_cache .mypy_cache .ruff_cache
