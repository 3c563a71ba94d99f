# `make run` and `make test` set up everything on a fresh Debian machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.installed-runtime
DEV_STAMP := $(VENV)/.installed-dev
PYTEST_ARGS ?=
export QT_QPA_PLATFORM ?= offscreen

.PHONY: run test test-slow lint typecheck contracts unit bench bench-store screenshots vectors clean

$(VENV)/bin/python:
	@PYTHON=$(PYTHON) bash packaging/system-deps.sh
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "Kithnet needs Python 3.11 or newer: run with PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(RUNTIME_STAMP): pyproject.toml | $(VENV)/bin/python
	@echo "installing Kithnet into $(VENV) (log: $(VENV)/install.log)"
	@$(BIN)/python -m pip install -e . >$(VENV)/install.log 2>&1 || \
	  { tail -n 40 $(VENV)/install.log; exit 1; }
	@touch $@

$(DEV_STAMP): pyproject.toml $(RUNTIME_STAMP)
	@echo "installing test tools into $(VENV) (log: $(VENV)/install.log)"
	@$(BIN)/python -m pip install -e '.[dev]' >>$(VENV)/install.log 2>&1 || \
	  { tail -n 40 $(VENV)/install.log; exit 1; }
	@touch $@

# The desktop app on a demo: a fresh member and three local peers (kithnet/node/demo.py).
run: $(RUNTIME_STAMP)
	env -u QT_QPA_PLATFORM $(BIN)/kithnet --demo

lint: $(DEV_STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

contracts: $(DEV_STAMP)
	$(BIN)/lint-imports

unit: $(DEV_STAMP)
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

test: lint typecheck contracts unit

test-slow: $(DEV_STAMP)
	$(BIN)/pytest -m slow $(PYTEST_ARGS)

bench: $(RUNTIME_STAMP)
	$(BIN)/python bench/bench_records.py
	$(BIN)/python bench/bench_ingest.py
	$(BIN)/python bench/bench_ingest.py --threads 2
	$(BIN)/python bench/bench_sync.py
	$(BIN)/python bench/bench_propagation.py
	$(BIN)/python bench/bench_throughput.py --processes 1
	$(BIN)/python bench/bench_throughput.py --processes 2
	$(BIN)/python bench/bench_throughput.py --processes 2 --writers 8
	$(BIN)/python bench/bench_memory.py
	$(BIN)/python bench/bench_trust.py
	$(BIN)/python bench/bench_ask.py
	$(BIN)/python bench/bench_blobs.py
	QT_QPA_PLATFORM=offscreen $(BIN)/python bench/bench_gui_stall.py
	QT_QPA_PLATFORM=offscreen $(BIN)/python bench/bench_gui_feed.py
	QT_QPA_PLATFORM=offscreen $(BIN)/python bench/bench_gui_start.py

# PNGs of the app's main screens in docs/screenshots/, taken of real windows on the demo
# under Xvfb (packaging/screenshots.py lists the screens).
screenshots: $(RUNTIME_STAMP)
	@PYTHON=$(PYTHON) bash packaging/system-deps.sh --screen
	QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1280x800x24" $(BIN)/python packaging/screenshots.py

bench-store: $(RUNTIME_STAMP)
	$(BIN)/python bench/bench_store_queries.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
