# One-line entry points. `make serve` and `make test` set everything up from scratch on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# CI and the dev machines keep MNIST in ../shared/data; elsewhere torchvision downloads it into data/.
MNIST_ROOT ?= $(if $(wildcard ../shared/data/MNIST/raw),$(abspath ../shared/data),data)
export MNIST_ROOT
MODEL ?= default
PORT ?= 3000
# `make image`: the CUDA image (serves on the CPU too when no GPU is there) or VARIANT=cpu, the CPU-only one.
VARIANT ?= cuda
BENTOFILE = $(if $(filter cpu,$(VARIANT)),bentofile.cpu.yaml,bentofile.yaml)
# The OCI builder: docker where its daemon answers, else podman, else buildah (evaluated only when used).
OCI_BACKEND ?= $(shell if docker info >/dev/null 2>&1; then echo docker; \
	elif command -v podman >/dev/null 2>&1; then echo podman; elif command -v buildah >/dev/null 2>&1; then echo buildah; fi)

.PHONY: help serve test test-quick mutation lint format audit models bench-training loadtest clean image image-test image-lock deploy-check

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
	@# Triton's perf_analyzer for the v2 interop tests (loadtests/perf_analyzer.py); where it cannot be had,
	@# its test says why (and fails in CI)
	$(BIN)/python -m loadtests.perf_analyzer fetch || echo "perf_analyzer not fetched: its interop test will say why"
	touch $@ $(VENV)/.serve

serve: $(VENV)/.serve  ## set up, then serve models/$(MODEL) on port $(PORT)
	MNIST_MODEL=$(MODEL) $(BIN)/bentoml serve service.app:MNISTService --port $(PORT)

test: $(VENV)/.dev  ## set up, then run the whole test suite
	$(BIN)/python -m pytest

test-quick: $(VENV)/.dev  ## the quick tier: no server processes, no long training
	$(BIN)/python -m pytest -m "not slow"

mutation: $(VENV)/.dev  ## mutation score of the quick tier -> docs/testing.md (about 3 hours on 2 cores)
	rm -rf mutants
	$(BIN)/python -m benchmarks.mutation

lint: $(VENV)/.dev  ## ruff lint and format check
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(VENV)/.dev
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

audit: $(VENV)/.serve  ## pip-audit of the installed dependencies (needs PyPI's vulnerability data)
	$(BIN)/python -m pip install -q pip-audit==2.10.1
	$(BIN)/pip-audit --progress-spinner off

models: $(VENV)/.dev  ## retrain and re-export the quick shipped models (fast, pigeon, mnist-nn; default: make model-default)
	for preset in fast pigeon mnist-nn; do \
		$(BIN)/python -m training.train --preset $$preset --device cpu && \
		$(BIN)/python -m training.export --run runs/$$preset || exit 1; \
	done

.PHONY: model-default
model-default: $(VENV)/.dev  ## retrain models/default from the distorted preset (99.46%; about 8 minutes on 2 cores, one thread)
	$(BIN)/python -m training.train --preset distorted --threads 1 --device cpu
	$(BIN)/python -m training.export --run runs/distorted --name default

bench-training: $(VENV)/.dev  ## training benchmarks -> docs/benchmarks.md
	$(BIN)/python -m benchmarks.training

loadtest: $(VENV)/.dev  ## start the service and load it with Locust (1 image per request, 64 users)
	$(BIN)/python -m loadtests.run --scenario json-1

deploy-check: $(VENV)/.dev  ## render deploy/k8s with kubectl kustomize and validate it, no cluster needed
	$(BIN)/python -m pytest tests/deploy

image: $(VENV)/.serve  ## build the bento and its image mnist-serve:$(VARIANT) (VARIANT=cuda or cpu)
	@case "$(VARIANT)" in cpu|cuda) ;; *) echo "make image: VARIANT must be cpu or cuda, got '$(VARIANT)'" >&2; exit 2;; esac
	@test -n "$(OCI_BACKEND)" || { echo "make image: no docker daemon, podman or buildah found" >&2; exit 2; }
	@# containerize runs in build/containerize with its temporary build context there too: BentoML 1.4.39 refuses
	@# a dockerfile_template outside the working directory, and its context is a temporary folder (BentoML #5566).
	mkdir -p build/containerize
	tag=$$($(BIN)/bentoml build -f $(BENTOFILE) --output tag | sed -n 's/^__tag__://p') && \
	cd build/containerize && TMPDIR=$$PWD $(abspath $(BIN))/bentoml containerize "$$tag" \
		--backend $(OCI_BACKEND) --image-tag mnist-serve:$(VARIANT)

image-test: $(VENV)/.dev  ## build both images and smoke-test them (needs podman as root, or docker)
	$(BIN)/python -m pytest tests/image -m slow

image-lock: $(VENV)/.dev  ## re-lock the images' Python packages (deploy/image/*.lock.txt, with hashes)
	for variant in cpu cuda; do \
		$(BIN)/uv pip compile deploy/image/requirements-$$variant.in --python-version 3.11 \
			--python-platform x86_64-manylinux_2_28 --generate-hashes --no-header --quiet \
			-o deploy/image/requirements-$$variant.lock.txt || exit 1; \
	done

clean:
	rm -rf $(VENV) runs mutants .pytest_cache .ruff_cache .hypothesis *.egg-info
