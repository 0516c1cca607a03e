# Two entry points (see README): `make demo` runs the main job on the demo data, `make test` runs
# the checks (lint + tests).
# Each creates or reuses the virtual environment .venv and installs the package into it.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# pytest-xdist workers: files spread over 2 processes (a file's tests and fixtures stay in one).
# The suite spends most of its time compiling (one core each); on 2 cores this halves it
# (954 -> 502 s, 2026-12-05). TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

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
	$(PYTEST)

test-slow: $(STAMP)
	$(PYTEST) -m slow

lint: $(STAMP)
	$(BIN)/ruff check bimix_bayes tests benchmarks
	$(BIN)/ruff format --check bimix_bayes tests benchmarks

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache .hypothesis
