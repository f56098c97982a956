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
# Sweeps: `make reproduce-table1 PROFILE=paper LAUNCHER=slurm SEEDS=1,2,3,4,5`.
PROFILE ?= cpu
LAUNCHER ?= basic
SEEDS ?=
ARGS ?=
RUNS ?= runs
TRAIN := $(PY) -m harmless.experiment.train
comma := ,
LAUNCH = $(if $(filter basic,$(LAUNCHER)),,hydra/launcher=$(LAUNCHER))
# Seeds: SEEDS if given, else the target's default (three, as the paper), one for CPU LM runs.
DEFAULT_SEEDS = 1,2,3
seeds = $(or $(SEEDS),$(DEFAULT_SEEDS))

# $(1): experiment. Runs its sweep; finished jobs are skipped, killed ones resume.
define sweep
	$(TRAIN) -m +experiment=$(1) profile=$(PROFILE) seed=$(seeds) $(LAUNCH) resume=true $(ARGS)
endef
# $(1): table spec name, $(2): run folders. Builds results/<name>_<profile>.{md,tex,csv}.
define table
	$(PY) scripts/make_table.py --spec results/paper/$(1).yaml --runs $(2) \
		--seeds $(subst $(comma), ,$(seeds)) --out results/$(1)_$(PROFILE)
endef
# $(1): experiment, $(2): grouping keys. The plug-in's late-training diagnostics (discriminator
# accuracy, lambda, barrier) per cell and method: results/<experiment>_diagnostics_<profile>.md.
define diagnostics
	$(PY) scripts/run_diagnostics.py --runs $(RUNS)/$(1)/$(PROFILE) --by $(2) \
		--out results/$(1)_diagnostics_$(PROFILE)
endef
CTR_CELL := choices.model params.task.budget choices.method

.DEFAULT_GOAL := help
.PHONY: help setup test test-fast lint format bench clean demo figure3 \
	reproduce-table1 reproduce-table2 reproduce-table3 figure2 reproduce-table6 \
	reproduce-table6-ablation reproduce-table7 reproduce-table8 figures-ctr

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

bench: setup ## Benchmarks: plug-in overhead, CTR and LM throughput, selection at WT103 scale
	$(PIP) install -q -c $(CONSTRAINTS) -r requirements/bench.txt
	$(PY) benchmarks/bench_step.py
	$(PY) benchmarks/bench_ctr.py
	$(PY) benchmarks/bench_lm.py
	$(PY) benchmarks/bench_selection.py
	$(PY) benchmarks/harmlessness.py

# The local MovieLens copy has no complete timestamps (ratings_no_timestamp.dat: six fields, as
# the CPU profile reads); GroupLens's own copy (fetched when none is there) has all seven.
ML1M_DIR = $(HARMLESS_DATA_DIR)/movielens-1m
ML1M_OFFICIAL = task.ratings_file=ratings.dat \
	'task.fields=[timestamp,gender,age,occupation,zip,year,genres]'
demo: setup ## One Table 6 cell (MovieLens-1M, DeepFM, 10k params): B / +T / ours, one seed
	@test -f $(ML1M_DIR)/ratings.dat -o -f $(ML1M_DIR)/ratings_no_timestamp.dat \
		|| $(PY) -m tasks.ctr.download movielens1m --data-dir $(HARMLESS_DATA_DIR)
	$(TRAIN) -m +experiment=demo profile=cpu seed=1 resume=true \
		$(if $(wildcard $(ML1M_DIR)/ratings_no_timestamp.dat),,$(ML1M_OFFICIAL)) $(ARGS)
	$(PY) scripts/make_table.py --spec results/specs/demo.yaml --runs $(RUNS)/demo/cpu \
		--seeds 1 --out results/demo_cpu

# LM sweeps on the CPU: one seed (a reduced AWD-LSTM job is ~15 min on two cores).
LM_TARGETS := reproduce-table1 reproduce-table2 figure2
$(LM_TARGETS): DEFAULT_SEEDS = $(if $(filter cpu,$(PROFILE)),1,1$(comma)2$(comma)3)
# The paper profile's WT2 runs then go through awd-lstm-lm's finetune stage (one job per run,
# into <root>-finetune/), and Table 1 is built from the finetuned models, as the paper reports.
FINETUNE = $(PY) scripts/finetune_runs.py --runs $(1) -- $(LAUNCH)
reproduce-table1: setup ## Table 1 (LM perplexity): WT2 AWD-LSTM +FRAGE; paper profile adds CosReg, WT103
	$(call sweep,table1)
	$(if $(filter paper,$(PROFILE)),$(call sweep,table1_cosreg))
	$(if $(filter paper,$(PROFILE)),$(call sweep,table1_wt103))
	$(if $(filter paper,$(PROFILE)),$(call FINETUNE,$(RUNS)/table1/paper $(RUNS)/table1_cosreg/paper))
	$(call table,table1,$(if $(filter paper,$(PROFILE)),$(RUNS)/table1/paper-finetune \
		$(RUNS)/table1_cosreg/paper-finetune,$(RUNS)/table1/$(PROFILE)) \
		$(if $(filter paper,$(PROFILE)),$(RUNS)/table1_wt103/paper))

reproduce-table3: setup ## Table 3 (WT103 QRNN, head/tail perplexity): the WT103 runs of Table 1
	$(call sweep,table1_wt103)
	$(call table,table3,$(RUNS)/table1_wt103/$(PROFILE))

# The paper profile reads finetuned models (its WT2 numbers are after awd-lstm-lm's finetune).
lm_runs = $(if $(filter paper,$(PROFILE)),$(addsuffix -finetune,$(1)),$(1))
reproduce-table2: setup ## Table 2 (ablation on FRAGE, WT2): select, lexico, ours, scale-only
	$(call sweep,table2)
	$(if $(filter paper,$(PROFILE)),$(call sweep,table2_wt103))
	$(if $(filter paper,$(PROFILE)),$(call FINETUNE,$(RUNS)/table2/paper))
	$(call table,table2,$(call lm_runs,$(RUNS)/table2/$(PROFILE) $(RUNS)/table1/$(PROFILE)) \
		$(if $(filter paper,$(PROFILE)),$(RUNS)/table2_wt103/paper $(RUNS)/table1_wt103/paper))
	$(call diagnostics,table2,choices.task choices.method)

figure2: setup ## Figure 2: fixed-lambda grid against ours (needs Table 1's runs of the profile)
	$(call sweep,figure2)
	$(if $(filter paper,$(PROFILE)),$(call FINETUNE,$(RUNS)/figure2/paper))
	$(PY) scripts/plot_figures.py tradeoff --runs $(call lm_runs,$(RUNS)/figure2/$(PROFILE) \
		$(RUNS)/table1/$(PROFILE)) --metric test/ppl --out results/figures

# CTR sweeps on the CPU: two one-thread jobs side by side (see configs/task_profile/ctr_*_cpu).
CTR_TARGETS := reproduce-table6 reproduce-table6-ablation reproduce-table7 reproduce-table8 \
	figures-ctr
$(CTR_TARGETS): LAUNCHER = $(if $(filter cpu,$(PROFILE)),parallel,basic)
# Figures 4-5 on the CPU: one seed (their learning curves run without early stopping).
figures-ctr: DEFAULT_SEEDS = $(if $(filter cpu,$(PROFILE)),1,1$(comma)2$(comma)3)

reproduce-table6: setup ## Table 6 (MovieLens-1M AUC): DeepFM/AutoInt x 10k/20k/30k x B/+T/ours
	$(call sweep,table6)
	$(call table,table6,$(RUNS)/table6/$(PROFILE))
	$(PY) scripts/make_table.py --spec results/specs/table6_head_tail.yaml \
		--runs $(RUNS)/table6/$(PROFILE) --seeds $(subst $(comma), ,$(seeds)) \
		--out results/table6_head_tail_$(PROFILE)
	$(call diagnostics,table6,$(CTR_CELL))

reproduce-table6-ablation: setup ## Table 6's 10k DeepFM cell: select / lexico / scale-only
	$(call sweep,table6_ablation)
	$(PY) scripts/make_table.py --spec results/specs/table6_ablation.yaml \
		--runs $(RUNS)/table6/$(PROFILE) $(RUNS)/table6_ablation/$(PROFILE) \
		--seeds $(subst $(comma), ,$(seeds)) --out results/table6_ablation_$(PROFILE)

reproduce-table7: setup ## Table 7 (Criteo AUC): DeepFM/AutoInt x 20k/50k x B/+T/ours
	$(call sweep,table7)
	$(call table,table7,$(RUNS)/table7/$(PROFILE))
	$(PY) scripts/make_table.py --spec results/specs/table7_head_tail.yaml \
		--runs $(RUNS)/table7/$(PROFILE) --seeds $(subst $(comma), ,$(seeds)) \
		--out results/table7_head_tail_$(PROFILE)
	$(call diagnostics,table7,$(CTR_CELL))

reproduce-table8: setup ## Table 8 (MovieLens-1M, DeepFM): SGD and SGD+momentum x 10k/20k
	$(call sweep,table8)
	$(call table,table8,$(RUNS)/table8/$(PROFILE))
	$(call diagnostics,table8,choices.optimizer params.task.budget choices.method)

# Figure 3's data: the CPU profile reads the local copies (six MovieLens fields, the Criteo sample).
FIG3_ML1M = $(if $(filter cpu smoke,$(PROFILE)),--ratings-file ratings_no_timestamp.dat \
	--fields gender age occupation zip year genres)
FIG3_CRITEO = $(if $(filter cpu smoke,$(PROFILE)),--criteo-path \
	criteo-sample/criteo_head10000_train.tsv --min-count 2)
figure3: setup ## Figure 3: value frequency against rank (MovieLens-1M zip, Criteo C3)
	$(PY) scripts/ctr_value_counts.py movielens1m zip --out $(RUNS)/figure3/$(PROFILE)/ml1m_zip.npy \
		$(FIG3_ML1M)
	$(PY) scripts/ctr_value_counts.py criteo C3 --out $(RUNS)/figure3/$(PROFILE)/criteo_c3.npy \
		$(FIG3_CRITEO)
	$(PY) scripts/plot_figures.py frequency --out results/figures --name figure3_$(PROFILE) \
		--counts "MovieLens-1M zip=$(RUNS)/figure3/$(PROFILE)/ml1m_zip.npy" \
		"Criteo C3=$(RUNS)/figure3/$(PROFILE)/criteo_c3.npy"

# Figure 4 on the CPU: 45 epochs, not the paper's 90 (DeepFM 10k takes ~7 s an epoch here).
FIG4_CPU = $(if $(filter cpu,$(PROFILE)),train.max_epochs=45)
figures-ctr: figure3 ## Figures 3, 4 and 5 (frequencies; learning curves, baseline vs ours)
	$(call sweep,figure4) $(FIG4_CPU)
	$(call sweep,figure5)
	$(PY) scripts/plot_figures.py curves --runs $(RUNS)/figure4/$(PROFILE) \
		--metric test/logloss --metric test/auc --every 5 --out results/figures --name figure4_$(PROFILE)
	$(PY) scripts/plot_figures.py curves --runs $(RUNS)/figure5/$(PROFILE) \
		--metric test/auc --panel-by choices.optimizer --out results/figures --name figure5_$(PROFILE)

clean: ## Remove caches (keeps .venv and run outputs)
	rm -rf .pytest_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -prune -exec rm -rf {} +
