# Developer tasks. A fresh machine needs only Python >= 3.11: `make dev` creates .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: dev demo test lint format typecheck check bench bench-compare chaos clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

dev: $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'

demo: $(BIN)/python
	$(BIN)/pip install -q -e .
	$(BIN)/aethergraph demo

test: dev
	$(BIN)/python -m pytest

lint: dev
	$(BIN)/ruff check aethergraph tests examples bench
	$(BIN)/ruff format --check aethergraph tests examples bench

format: dev
	$(BIN)/ruff format aethergraph tests examples bench
	$(BIN)/ruff check --fix aethergraph tests examples bench

typecheck: dev
	$(BIN)/mypy aethergraph

check: lint typecheck test

bench: dev
	$(BIN)/python -m bench

# every chaos scenario 10 times, then the table (not in CI: ~15 min); TRIALS=N ONLY=substring
TRIALS ?= 10
chaos: dev
	$(BIN)/python tests/chaos/table.py --trials $(TRIALS) --only "$(ONLY)"

# this tree against REV, interleaved: make bench-compare REV=main~1 [PAIRS=5] [ONLY=inprocess,celery]
REV ?= main
PAIRS ?= 5
ONLY ?= inprocess,celery
bench-compare: dev
	$(BIN)/python -m bench.compare $(REV) --pairs $(PAIRS) --only $(ONLY)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache bench/results

.PHONY: ops-check ops-image-check

# the deployment files (workers/, broker/, ops/, docker-compose.yml), validated offline
ops-check: dev
	$(BIN)/python -m pytest tests/ops -q

# the same plus the worker image's build steps replayed in a fresh venv (~30 s, needs PyPI)
ops-image-check: dev
	AETHERGRAPH_OPS_IMAGE=1 $(BIN)/python -m pytest tests/ops -q
