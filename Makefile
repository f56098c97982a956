# harmless: `make help` lists every target.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CONSTRAINTS := requirements/constraints.txt
REQUIREMENTS := requirements/core.txt requirements/experiment.txt requirements/ctr.txt \
	requirements/dev.txt
# Where datasets live; .ci/run points it at ../shared/data.
export HARMLESS_DATA_DIR ?= $(CURDIR)/data
PYTEST_ARGS ?=
# Sweeps: `make reproduce-table6 PROFILE=paper LAUNCHER=slurm SEEDS=1,2,3,4,5`.
PROFILE ?= cpu
LAUNCHER ?= basic
SEEDS ?= 1,2,3
ARGS ?=
RUNS ?= runs
TRAIN := $(PY) -m harmless.experiment.train
comma := ,
LAUNCH := $(if $(filter basic,$(LAUNCHER)),,hydra/launcher=$(LAUNCHER))

# $(1): experiment and table name. Sweep (skipping finished jobs, resuming killed ones), then table.
define reproduce
	$(TRAIN) -m +experiment=$(1) profile=$(PROFILE) seed=$(SEEDS) $(LAUNCH) resume=true $(ARGS)
	$(PY) scripts/make_table.py --spec results/paper/$(1).yaml --runs $(RUNS)/$(1)/$(PROFILE) \
		--seeds $(subst $(comma), ,$(SEEDS)) --out results/$(1)_$(PROFILE)
endef

.DEFAULT_GOAL := help
.PHONY: help setup test test-fast lint format bench clean demo

help: ## List every target with one line each
	@grep -hE '^[a-zA-Z0-9_.-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  %-22s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml $(REQUIREMENTS) $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: it takes the CPU wheel; every later call is constrained to it.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c $(CONSTRAINTS) $(addprefix -r ,$(REQUIREMENTS))
	$(PIP) install -q --no-deps -e .
	$(PY) -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $@

setup: $(VENV)/.installed ## Build .venv (idempotent): torch 2.13.0 first, then pinned requirements

test: setup ## Run the whole test suite (CPU; slow tests included)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup ## Run the tests without the slow marker
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: setup ## ruff lint and format check at width 100
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup ## ruff format and fix imports
	$(VENV)/bin/ruff check --fix --select I .
	$(VENV)/bin/ruff format .

bench: setup ## Benchmarks: lexico step overhead (LM- and CTR-shaped) and selection at WT103 scale
	$(PY) benchmarks/bench_step.py
	$(PY) benchmarks/bench_selection.py

demo: setup ## Baseline vs fixed lambda vs ours on the toy task, one seed, and its table
	$(TRAIN) -m +experiment=demo profile=cpu seed=1 $(ARGS)
	$(PY) scripts/make_table.py --spec results/specs/demo.yaml --runs $(RUNS)/demo/cpu \
		--seeds 1 --out results/demo_cpu

clean: ## Remove caches (keeps .venv and run outputs)
	rm -rf .pytest_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -prune -exec rm -rf {} +
