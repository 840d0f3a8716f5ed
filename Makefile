# irods-ingestd: `make demo` runs it on a local default; `make test` runs the whole test suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: deps venv irods test test-slow test-standin lint unit integration e2e demo bench chaos clean

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

# the whole suite on the real iRODS (when .ci/irods.sh found one), and the second pass on the test server, in two
# lanes at once (.ci/lanes.sh): the suite, then the second pass; the break-it probes
test: venv irods lint
	@second=0; if [ -f .irods-test/irods_environment.json ] || [ -n "$$INGESTD_TEST_IRODS_ENV" ]; then second=1; fi; \
		bash .ci/lanes.sh $(PY) $$second

# the probes too long for `make test` (workers killed for 30 s, Redis away for 20 s, a 200 MiB put cut...)
test-slow: venv irods
	$(PY) -m pytest -q -ra -m slow tests/integration

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

demo: venv irods
	$(PY) -m tests.demo

bench: venv irods
	$(PY) -m bench.run

chaos: venv irods
	$(PY) -m bench.chaos

clean:
	rm -rf $(VENV) demo .pytest_cache .mypy_cache .ruff_cache
