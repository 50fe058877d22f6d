# One-line entry points. `make serve` and `make test` set everything up from scratch on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# CI and the dev machines keep MNIST in ../shared/data; elsewhere torchvision downloads it into data/.
MNIST_ROOT ?= $(if $(wildcard ../shared/data/MNIST/raw),$(abspath ../shared/data),data)
export MNIST_ROOT
MODEL ?= default
PORT ?= 3000

.PHONY: help serve test test-quick mutation lint format audit models bench-training loadtest clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.serve: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[serve]"
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@ $(VENV)/.serve

serve: $(VENV)/.serve  ## set up, then serve models/$(MODEL) on port $(PORT)
	MNIST_MODEL=$(MODEL) $(BIN)/bentoml serve service.service:MNISTService --port $(PORT)

test: $(VENV)/.dev  ## set up, then run the whole test suite
	$(BIN)/python -m pytest

test-quick: $(VENV)/.dev  ## the quick tier: no server processes, no long training
	$(BIN)/python -m pytest -m "not slow"

mutation: $(VENV)/.dev  ## mutation score of the quick tier -> docs/testing.md (about 50 minutes on 2 cores)
	rm -rf mutants
	$(BIN)/python -m benchmarks.mutation

lint: $(VENV)/.dev  ## ruff lint and format check
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(VENV)/.dev
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

audit: $(VENV)/.serve  ## pip-audit of the installed dependencies (needs PyPI's vulnerability data)
	$(BIN)/python -m pip install -q pip-audit==2.10.1
	$(BIN)/pip-audit --progress-spinner off

models: $(VENV)/.dev  ## retrain and re-export the shipped models (default, pigeon, mnist-nn)
	for preset in default pigeon mnist-nn; do \
		$(BIN)/python -m training.train --preset $$preset --device cpu && \
		$(BIN)/python -m training.export --run runs/$$preset || exit 1; \
	done

bench-training: $(VENV)/.dev  ## training benchmarks -> docs/benchmarks.md
	$(BIN)/python -m benchmarks.training

loadtest: $(VENV)/.dev  ## start the service and load it with Locust (1 image per request, 64 users)
	$(BIN)/python -m loadtests.run --scenario json-1

clean:
	rm -rf $(VENV) runs mutants .pytest_cache .ruff_cache .hypothesis *.egg-info
