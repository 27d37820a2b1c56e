# saynad — one Makefile, two front doors: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck unit bench soak fmt clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/saynad run --config config/saynad.yaml

test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

# Benchmarks need the `bench` extra (matplotlib for the plot, py-spy for --profiles).
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m tests.bench

# The full soak scenario (~12 min): 100 sessions, the emulator SIGKILLed every 30 s,
# faults on 10 % of connections; the pass-criteria table goes to docs/benchmarks-soak.md.
# (make test runs its 2-minute, 50-session variant: tests/soak/test_soak.py.)
soak: $(STAMP)
	$(BIN)/python -m tests.soak.scenario --sessions 100 --duration-s 600 \
		--report docs/benchmarks-soak.md

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
