# Nalar: `make run` serves the example app; `make test` runs the whole suite.
# Everything is installed by this file: uv (into .tools/), then the workspace (into .venv/).

SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := copy
PYTHON ?= python3.11
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)
VENV := .venv
APP ?= examples/financial_analyst
NODES ?= 2
PORT ?= 8080

.PHONY: setup run test test-unit test-e2e lint typecheck bench-overhead clean

$(CURDIR)/.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install -q uv

$(VENV)/.synced: pyproject.toml uv.lock libs/*/pyproject.toml services/*/pyproject.toml | $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

setup: $(VENV)/.synced

run: setup
	$(VENV)/bin/nalar up --app $(APP) --nodes $(NODES) --port $(PORT)

test: setup
	$(VENV)/bin/python -m pytest -q

test-unit: setup
	$(VENV)/bin/python -m pytest -q -m "not e2e"

test-e2e: setup
	$(VENV)/bin/python -m pytest -q -m e2e

lint: setup
	$(VENV)/bin/ruff check libs services tests bench examples

typecheck: setup
	$(VENV)/bin/mypy libs/nalar_common/src libs/nalar/src services/*/src

bench-overhead: setup
	$(VENV)/bin/python bench/overhead.py

clean:
	rm -rf $(VENV) .tools .nalar .pytest_cache .mypy_cache .ruff_cache
