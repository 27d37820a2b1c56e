# saynad — one Makefile, two front doors: `make run` and `make test`.
#
# Every environment is installed from a hash-pinned lock in requirements/ (pip-tools):
#   requirements/run.txt    what `saynad run` needs (make run)
#   requirements/dev.txt    run + tests, lint, types (make test, .ci/run)
#   requirements/bench.txt  dev + the benchmark extras (make bench)
# `make lock` re-resolves them from pyproject.toml keeping today's versions where they
# still fit; `make upgrade` moves everything to the newest releases and runs the tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
LOCKS  := requirements/run.txt requirements/dev.txt requirements/bench.txt

# Only the lock decides what is installed: hashes required, nothing resolved at install
# time; saynad itself goes in editable, built by the pinned setuptools.
PIP_SYNC = $(BIN)/python -m pip install --quiet --require-hashes -r
PIP_SELF = $(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .

.PHONY: run test lint typecheck unit bench soak fmt clean lock upgrade wheel install

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.run: $(BIN)/python requirements/run.txt pyproject.toml
	$(PIP_SYNC) requirements/run.txt
	$(PIP_SELF)
	touch $@

$(VENV)/.dev: $(VENV)/.run requirements/dev.txt
	$(PIP_SYNC) requirements/dev.txt
	touch $@

$(VENV)/.bench: $(VENV)/.dev requirements/bench.txt
	$(PIP_SYNC) requirements/bench.txt
	touch $@

# The embedded demo, named explicitly: a host's /etc/saynad/saynad.yaml (what a bare
# `saynad run` would prefer) belongs to its service, not to `make run`.
run: $(VENV)/.run
	$(BIN)/saynad run --config config/saynad.yaml

test: lint typecheck unit

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.dev
	$(BIN)/mypy

unit: $(VENV)/.dev
	$(BIN)/pytest

bench: $(VENV)/.bench
	$(BIN)/python -m tests.bench

# The full soak scenario (~12 min): 100 sessions, the emulator SIGKILLed every 30 s,
# faults on 10 % of connections; the pass-criteria table goes to docs/benchmarks-soak.md.
# (make test runs its 2-minute, 50-session variant: tests/soak/test_soak.py.)
soak: $(VENV)/.dev
	$(BIN)/python -m tests.soak.scenario --sessions 100 --duration-s 600 \
		--report docs/benchmarks-soak.md

fmt: $(VENV)/.dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Re-resolve the locks (after a change to the dependencies in pyproject.toml): versions
# already locked stay unless the new constraints exclude them.
lock:
	requirements/compile

# Take the newest release of everything, then prove it with the whole test suite.
upgrade:
	requirements/compile --upgrade
	$(MAKE) test

# The wheel (dist/saynad-VERSION-py3-none-any.whl), built by the locked setuptools.
wheel: $(VENV)/.run
	rm -rf dist build
	$(BIN)/python -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir dist .

# saynad as a systemd service on this host (as root): /opt/saynad from the wheel and
# requirements/run.txt, /etc/saynad, /etc/credstore, the unit (deploy/install.sh).
install: wheel
	deploy/install.sh dist/saynad-*.whl

clean:
	rm -rf $(VENV) .venv-lock build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
