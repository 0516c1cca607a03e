# Two entry points (see README): `make demo` runs the main job on the demo data, `make test` runs
# the checks (lint + tests).
# Each creates or reuses the virtual environment .venv and installs the package into it.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow lint bench example-report clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --quiet -e '.[dev,proxy]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/bimix demo

# The example report in reports/, from the embedded default data (the demo's report).
example-report: $(STAMP)
	$(BIN)/bimix demo --out-dir out/example --report reports/example_report.html

test: $(STAMP)
	$(BIN)/ruff check bimix_bayes tests benchmarks
	$(BIN)/python -m pytest

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

lint: $(STAMP)
	$(BIN)/ruff check bimix_bayes tests benchmarks
	$(BIN)/ruff format --check bimix_bayes tests benchmarks

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache .hypothesis
