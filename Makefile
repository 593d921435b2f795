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
# LLM=vllm: `make run` serves the app on a real vLLM (CPU) engine (docs/vllm.md)
LLM ?=
VLLM_VENV := .venv-vllm
VLLM_MODEL := .nalar/models/smollm2-135m
VLLM_PORT ?= 8100
BENCH_VENV := .venv-bench

.PHONY: setup sandbox-tools run test test-unit test-e2e test-faults lint typecheck bench-overhead bench-http bench-agentloop bench-engine bench-control-plane bench-skewed bench-lifetimes bench-env bench bench-full clean vllm test-vllm

$(CURDIR)/.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install -q uv

$(VENV)/.synced: pyproject.toml uv.lock libs/*/pyproject.toml services/*/pyproject.toml | $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

setup: $(VENV)/.synced sandbox-tools

# bubblewrap isolates the code agents write (nalar.sandbox, docs/sandbox.md): root installs
# Debian's package when `bwrap` is missing; otherwise a warning (the sandbox tests then fail)
sandbox-tools:
	@if ! command -v bwrap >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && apt-get install -y -qq --no-install-recommends bubblewrap) \
	      >/dev/null 2>&1 || echo "WARNING: bubblewrap not installable; nalar.sandbox cannot run"; \
	  else \
	    echo "WARNING: bwrap missing (as root: apt-get install bubblewrap); nalar.sandbox cannot run"; \
	  fi; \
	fi

ifeq ($(LLM),vllm)
run: setup vllm
	VLLM_VENV=$(CURDIR)/$(VLLM_VENV) VLLM_MODEL_DIR=$(CURDIR)/$(VLLM_MODEL) VLLM_PORT=$(VLLM_PORT) \
	  deploy/vllm/run_with_vllm.sh $(VENV)/bin/nalar up --app $(APP) --nodes $(NODES) --port $(PORT)
else
run: setup
	$(VENV)/bin/nalar up --app $(APP) --nodes $(NODES) --port $(PORT)
endif

test: setup
	$(VENV)/bin/python -m pytest -q

test-unit: setup
	$(VENV)/bin/python -m pytest -q -m "not e2e"

test-e2e: setup
	$(VENV)/bin/python -m pytest -q -m e2e

# fault injection under load (docs/reliability.md): prints the table; the JSON report and every
# process's log stay under .nalar/test-faults/ (pytest empties it at the start of each run)
test-faults: setup
	mkdir -p $(CURDIR)/.nalar
	$(VENV)/bin/python -m pytest -q -s -m faults --basetemp=$(CURDIR)/.nalar/test-faults tests/faults

lint: setup
	$(VENV)/bin/ruff check libs services tests bench examples

typecheck: setup
	$(VENV)/bin/mypy libs/nalar_common/src libs/nalar/src services/*/src

bench-overhead: setup
	$(VENV)/bin/python bench/overhead.py

# durable runs over HTTP (issue 19): 1 and 32 closed-loop clients, signal-waiting admission;
# BENCH_HTTP_ARGS shortens it (.ci/run)
bench-http: setup
	$(VENV)/bin/python bench/frontdoor.py $(BENCH_HTTP_ARGS)

bench-agentloop: setup
	$(VENV)/bin/python bench/agentloop.py

bench-engine: setup
	$(VENV)/bin/python bench/engine.py

bench-control-plane: setup
	$(VENV)/bin/python bench/control_plane.py

bench-skewed: setup
	$(VENV)/bin/python bench/skewed_analyst.py

# agent-graph lifetimes at scale (issue 21): 10,000 waiting for a person, Plan decisions
# meanwhile, a restart of every service; BENCH_LIFETIMES_ARGS (e.g. --lifetimes 1000) shrinks it
bench-lifetimes: setup
	$(VENV)/bin/python bench/lifetimes.py $(BENCH_LIFETIMES_ARGS)

# the Ray Serve peer of the paper benchmarks (bench/ray_peer/) and the plots, in their own
# environment with the workspace's libraries editable; the stamp makes a second run a no-op
$(BENCH_VENV)/.installed: bench/requirements-bench.txt | $(UV)
	$(UV) venv -q --allow-existing --python $(PYTHON) $(BENCH_VENV)
	$(UV) pip install -q --python $(BENCH_VENV)/bin/python -r bench/requirements-bench.txt \
	  -e libs/nalar_common -e libs/nalar
	touch $@

bench-env: $(BENCH_VENV)/.installed

# the paper's three workloads on Nalar, two baselines and Ray Serve (bench/PAPER.md):
# a reduced sweep (< 10 min) and the whole one
bench: setup bench-env
	$(VENV)/bin/python bench/paper.py --mode quick

bench-full: setup bench-env
	$(VENV)/bin/python bench/paper.py --mode full

# vLLM (CPU) in its own environment plus SmolLM2-135M converted for it (docs/vllm.md); the
# stamps make a second `make vllm` a no-op
$(VLLM_VENV)/.built: deploy/vllm/setup_env.sh
	deploy/vllm/setup_env.sh $(VLLM_VENV)
	touch $@

$(VLLM_MODEL)/.converted: $(VLLM_VENV)/.built deploy/vllm/convert_smollm2.py
	$(VLLM_VENV)/bin/python deploy/vllm/convert_smollm2.py --out $(VLLM_MODEL)
	touch $@

vllm: $(VLLM_MODEL)/.converted

test-vllm: setup vllm
	NALAR_TEST_VLLM=1 VLLM_VENV=$(CURDIR)/$(VLLM_VENV) VLLM_MODEL_DIR=$(CURDIR)/$(VLLM_MODEL) \
	  $(VENV)/bin/python -m pytest -q -rs -m vllm tests/test_vllm_e2e.py

clean:
	rm -rf $(VENV) .tools .nalar .pytest_cache .mypy_cache .ruff_cache
