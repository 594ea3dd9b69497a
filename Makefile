# Two entry points: `make demo` (the main job) and `make test` (everything CI checks).
# Each one sets itself up: a bootstrap uv if none is on PATH, then `uv sync --frozen` from uv.lock,
# then the ledger engine compiled and cached (so that no command compiles it on first use).
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.8
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
VENV := .venv
RUN := $(UV) run --frozen --no-sync
SYNC_STAMP := $(VENV)/.synced
# The compiled ledger engine and forecast kernel, cached on disk by numba: built once during
# set-up, again only when a source they are built from changes (`python -m
# pricing_lab.ledger.compile`, which also drops caches built from other sources).
COMPILED_STAMP := $(VENV)/.ledger-compiled
# Trust the platform's certificate store (corporate proxies add their own authority there).
export UV_SYSTEM_CERTS ?= 1
# Every command starts Python processes (the CLI, test subprocesses, notebook kernels, Ray
# workers): the environment's modules are compiled to bytecode once at set-up, and Python may
# cache the project's own, so no process compiles them again (some machines set
# PYTHONDONTWRITEBYTECODE).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo test check lint typecheck unit bench long fmt clean setup browser lab notebooks

setup: $(COMPILED_STAMP)
	@echo "set up: run \`source .venv/bin/activate\` to put pricing-lab on the PATH (README)"

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

$(SYNC_STAMP): uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --all-extras --compile-bytecode
	@touch $(SYNC_STAMP)

$(COMPILED_STAMP): $(SYNC_STAMP) $(wildcard pricing_lab/ledger/*.py pricing_lab/forecast/*.py pricing_lab/activity/*.py) pricing_lab/timeutil.py pricing_lab/limits.py pricing_lab/money.py
	$(RUN) python -m pricing_lab.ledger.compile
	@touch $(COMPILED_STAMP)

demo: $(COMPILED_STAMP)
	$(RUN) pricing-lab demo

test: check browser unit

# Headless Chromium (Debian's package) for the HTML report tests; installed when missing.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the report tests"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

check: lint typecheck

lint: $(SYNC_STAMP)
	$(RUN) ruff check pricing_lab connectors tests benchmarks notebooks
	$(RUN) ruff format --check pricing_lab connectors tests benchmarks notebooks

typecheck: $(SYNC_STAMP)
	$(RUN) mypy

# Tests run in parallel workers (pytest-xdist), one per CPU by default; `make unit
# PYTEST_WORKERS=0` runs them in one process. Each test module runs whole on one worker
# (`loadfile`): a module's fixtures (a replay, a local Ray node, Snowflake reference tables) are
# built once, never twice at the same time.
PYTEST_WORKERS ?= auto
unit: $(COMPILED_STAMP)
	$(RUN) pytest -q -n $(PYTEST_WORKERS) --dist loadfile

fmt: $(SYNC_STAMP)
	$(RUN) ruff format pricing_lab connectors tests benchmarks notebooks
	$(RUN) ruff check --fix pricing_lab connectors tests benchmarks notebooks

# JupyterLab on the analyst notebooks (Jupytext keeps each .ipynb and its .py script in step).
lab: $(SYNC_STAMP)
	$(RUN) jupyter lab notebooks/

# After editing a notebook's percent script (notebooks/NN_*.py) outside JupyterLab: update its .ipynb.
notebooks: $(SYNC_STAMP)
	$(RUN) jupytext --sync notebooks/[0-9]*.py

# Long property runs (20,000 ledger scenarios and more formula examples).
long: $(COMPILED_STAMP)
	PRICING_LAB_LONG=1 $(RUN) pytest -q -m slow

bench: $(COMPILED_STAMP)
	$(RUN) python -m benchmarks

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache
