# kiemdich — two commands do all the set-up on a fresh Debian/Ubuntu machine:
#   make demo   the whole system on one machine, dashboards on http://127.0.0.1:8000
#   make test   the test suite against real mosquitto, SQLite, PostgreSQL, VictoriaMetrics, Chromium
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help system venv test lint fmt demo bench soak screenshots reliability clean

help:
	@echo "make demo    run broker, aggregator, simulated gates (http://127.0.0.1:8000)"
	@echo "make test    lint + the full test suite"
	@echo "make bench   benchmarks (prints our figures beside their baselines)"
	@echo "make soak    10 minutes of sustained ingest load: memory flat, lag bounded, nothing lost"
	@echo "make reliability   fault scenarios: sent / stored / duplicates / lost (docs/reliability.md)"
	@echo "make screenshots   refresh docs/screenshots/ from the browser tests"
	@echo "make lint | fmt | clean"

system:
	@PYTHON=$(PYTHON) ./scripts/ensure-system.sh

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "kiemdich needs Python 3.11+")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

venv: system $(STAMP)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: venv
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: venv
	$(BIN)/kiemdich demo

reliability: venv
	$(BIN)/python scripts/reliability.py

screenshots: venv
	KIEMDICH_SCREENSHOTS=1 $(BIN)/python -m pytest -m browser -q

bench: venv
	$(BIN)/python -m benchmarks

soak: venv
	$(BIN)/python -m benchmarks.soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .hypothesis
