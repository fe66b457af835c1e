# GourmetGram MLOps lab. `make` builds the notebooks and the book; `make test` runs the tests.
# Every target installs what it needs into .venv first (see `make setup`).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := all

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed

SAMPLE_DATA ?= data/food11-sample
ALIAS ?= development
PORT ?= 8000
SERVE_DIR ?= build/serve

export PYTHONPATH := $(CURDIR):$(CURDIR)/train
export MPLBACKEND := Agg

.PHONY: all setup notebooks book test test-notebooks test-notebooks-kind lint \
	sample-data train serve bench-train bench-serve screenshots words clean \
	report doctor sample-report

all: setup notebooks book ## Install everything if needed, then build the notebooks and the book

## ---- set-up -------------------------------------------------------------

setup: $(STAMP) $(CHECKOV_STAMP) ## Create .venv, install everything (and Chromium via apt)
	tools/install_system_packages.sh

$(STAMP): requirements-dev.txt requirements-book.txt train/requirements.txt app/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m bash_kernel.install --sys-prefix
	touch $@

# checkov pins libraries that clash with the main tools, so it lives in its own venv.
$(CHECKOV_STAMP): requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r requirements-checkov.txt
	touch $@

## ---- notebooks and book -------------------------------------------------

notebooks: $(STAMP) ## Generate notebooks/ from snippets/
	$(PY) tools/make_notebooks.py

words: $(STAMP) ## Count the student prose of the notebooks (at most 12,000 words)
	$(PY) tools/word_count.py

book: notebooks ## Build the Jupyter Book into _build/html (warnings are errors)
	$(BIN)/jupyter-book build . --warningiserror --keep-going --path-output .
	@echo "Open _build/html/index.html in a browser"

## ---- tests --------------------------------------------------------------

test: setup ## Run every test this machine can run
	$(BIN)/pytest
	$(MAKE) --no-print-directory test-notebooks

# Cells tagged chameleon/cluster run only with LAB_HAS_CHAMELEON=1 / LAB_HAS_CLUSTER=1.
test-notebooks: $(STAMP) ## Execute the notebooks with nbval (untagged cells must pass here)
	$(BIN)/pytest --nbval-lax -p tests.nbval_gate -o addopts=-ra notebooks/

test-notebooks-kind: $(STAMP) ## Run notebooks 6-8 against a kind cluster (needs Docker)
	tools/kind_notebooks.sh

lint: $(STAMP) ## Ruff on all Python
	$(BIN)/ruff check .

## ---- the hand-in ----------------------------------------------------------

# The report and the doctor use only Python's standard library and kubectl, so they run on
# the Jupyter server, which has no .venv: the first python3 found unless .venv exists.
REPORT_PYTHON ?= $(if $(wildcard $(PY)),$(PY),$(PYTHON))
REPORT_ARGS ?=

report: ## Write lab-report.json and lab-report.html from your cluster (end of notebook 8)
	$(REPORT_PYTHON) tools/lab_report.py $(REPORT_ARGS)

doctor: ## Say where you are in the lab, what is wrong and what to do next
	$(REPORT_PYTHON) tools/lab_report.py --doctor $(REPORT_ARGS)

sample-report: $(STAMP) ## Rewrite the book's sample report (book/sample/) from the test's run
	UPDATE_SAMPLE_REPORT=1 $(BIN)/pytest tests/test_lab_report.py -k good_story -o addopts=

## ---- training and serving -----------------------------------------------

sample-data: $(STAMP) ## Generate the small synthetic Food-11 sample set
	$(PY) train/sample_data.py $(SAMPLE_DATA)

train: sample-data ## Run the training pipeline locally on the sample set
	FOOD11_DATA_DIR=$(SAMPLE_DATA) $(PY) train/flow.py normal

serve: $(STAMP) ## Serve a model locally (MODEL_PATH, or the ALIAS version in local MLflow)
	@if [ -z "$${MODEL_PATH:-}" ]; then \
	  $(PY) train/ops.py download --alias $(ALIAS) --out $(SERVE_DIR); \
	  export MODEL_PATH=$(SERVE_DIR)/model.onnx VERSIONS_FILE=$(SERVE_DIR)/versions.txt; \
	fi; \
	exec $(BIN)/gunicorn --config app/gunicorn.conf.py --bind 127.0.0.1:$(PORT) app.server:app

bench-train: sample-data ## Time training, old way vs cached, side by side: Food-11-shaped set, then the sample set
	FOOD11_DATA_DIR=$(SAMPLE_DATA) $(PY) train/bench.py

bench-serve: $(STAMP) ## Measure serving throughput and latency against the compute bound
	$(PY) -m app.bench

# Not part of `make test` (a few minutes): the test only checks the committed images.
screenshots: sample-data ## Retake the book's reference screenshots from a real local run
	$(PY) tools/screenshots.py --data-dir $(SAMPLE_DATA)

clean: ## Remove build outputs (keeps .venv)
	rm -rf _build build

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'
