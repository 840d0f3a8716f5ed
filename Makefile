# irods-ingestd: `make demo` runs it on a local default; `make test` runs the whole test suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: deps venv irods test test-standin lint unit integration e2e demo bench chaos clean

# apt packages (redis-server, systemd-nspawn, debootstrap, libsystemd-dev); idempotent
deps:
	bash .ci/deps.sh

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[test,systemd]'
	touch $@

venv: deps $(VENV)/.installed

# a real iRODS 5.0.2 for the tests when one can be had (../shared/irods), else the tests use the stand-in
irods:
	bash .ci/irods.sh

lint: venv
	$(VENV)/bin/ruff check irods_ingestd tests bench
	$(VENV)/bin/mypy irods_ingestd

# the whole suite on the real iRODS (when .ci/irods.sh found one), then the second pass on the test server
test: venv irods lint
	$(PY) -m pytest -q -ra tests
	@if [ -f .irods-test/irods_environment.json ] || [ -n "$$INGESTD_TEST_IRODS_ENV" ]; then \
		INGESTD_SECOND_PASS=1 $(MAKE) --no-print-directory test-standin; fi

unit: venv
	$(PY) -m pytest -q tests/unit

integration: venv irods
	$(PY) -m pytest -q tests/integration

e2e: venv irods
	$(PY) -m pytest -q tests/e2e

# the same suite with every test on the iRODS test server (the stand-in's own second pass; as the second pass of
# `make test`, only the tests that talk to an iRODS server)
test-standin: venv
	INGESTD_TEST_IRODS=standin $(PY) -m pytest -q -ra tests/integration --deselect tests/integration/test_chaos.py

demo: venv
	$(PY) -m tests.demo

bench: venv irods
	$(PY) -m bench.run

chaos: venv irods
	$(PY) -m bench.chaos

clean:
	rm -rf $(VENV) demo .pytest_cache .mypy_cache .ruff_cache
