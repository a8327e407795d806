# wdrec: two commands on a fresh machine — `make run` (train on the embedded data and serve) and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?=
ARTIFACTS_DIR ?= artifacts
HOST ?= 127.0.0.1
PORT ?= 8000
GENERATED_DIR := data/generated

.PHONY: setup run data train retrain serve test lint bench clean docker-base docker-context docker-build docker-up

setup: $(BIN)/wdrec

# PIP_ARGS: extra pip options, e.g. --extra-index-url https://download.pytorch.org/whl/cpu where no torch
# CPU wheel lies on disk (PyPI's own torch 2.13.0 for Linux is the CUDA build, several GB).
PIP_ARGS ?=
$(BIN)/wdrec: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(PIP_ARGS) -e '.[dev,benchmark]'
	touch $@

# The embedded default data set, generated once (same seed, same bytes).
$(GENERATED_DIR)/Product.csv: | setup
	$(BIN)/wdrec generate $(GENERATED_DIR)

data: $(GENERATED_DIR)/Product.csv

# Train unless a current artifact set exists; DATA_DIR points at a real L.POINT folder.
train: setup $(if $(DATA_DIR),,data)
	@if [ -e $(ARTIFACTS_DIR)/current ]; then echo "artifacts: reusing $(ARTIFACTS_DIR)/current (rm it or run 'make retrain')"; \
	else $(BIN)/wdrec train --data $(if $(DATA_DIR),$(DATA_DIR),$(GENERATED_DIR)) --artifacts $(ARTIFACTS_DIR); fi

retrain: setup $(if $(DATA_DIR),,data)
	$(BIN)/wdrec train --data $(if $(DATA_DIR),$(DATA_DIR),$(GENERATED_DIR)) --artifacts $(ARTIFACTS_DIR)

SERVE = $(BIN)/wdrec serve --artifacts $(ARTIFACTS_DIR) --host $(HOST) --port $(PORT)

run: train
	$(SERVE)

serve: setup
	$(SERVE)

lint: setup
	$(BIN)/ruff check training app tests bench
	$(BIN)/ruff format --check training app tests bench
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile docker/postgres/Dockerfile
	$(BIN)/docker-compose config --quiet

# The whole suite: lint, types, unit, end-to-end, browser, and the Docker smoke test (skipped, with the
# reason, when no Docker engine is reachable).
test: lint
	$(BIN)/pytest

# --- Docker -------------------------------------------------------------------------------------------
# BASE_IMAGE: empty builds on the Dockerfile's default (python:3.11-slim-bookworm from Docker Hub);
# `local` builds a bookworm base here with debootstrap (root) for machines that cannot reach Docker Hub.
BASE_IMAGE ?=
LOCAL_BASE_IMAGE ?= wdrec-base:bookworm
# Folders holding a torch CPU wheel for the image (default: pip's own find-links on this machine); with one
# found, pip in the build needs no PyTorch index (TORCH_INDEX_URL, the build's PIP_EXTRA_INDEX_URL).
DOCKER_WHEELS ?= $(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null)
TORCH_WHEELS = $(wildcard $(addsuffix /torch-*+cpu-cp311-*.whl,$(DOCKER_WHEELS)))
TORCH_INDEX_URL ?= $(if $(TORCH_WHEELS),,https://download.pytorch.org/whl/cpu)
# The CA bundle pip trusts inside the build: this machine's, for networks that intercept TLS.
DOCKER_CA_BUNDLE ?= $(wildcard /etc/ssl/certs/ca-certificates.crt)
DOCKER_LOCAL := docker/local
COMPOSE ?= docker compose
COMPOSE_BUILD_ENV = DOCKER_BUILDKIT=0 PIP_EXTRA_INDEX_URL='$(TORCH_INDEX_URL)' \
	BASE_IMAGE='$(if $(filter local,$(BASE_IMAGE)),$(LOCAL_BASE_IMAGE),$(BASE_IMAGE))'

docker-base:
	docker/build-base-image.sh $(LOCAL_BASE_IMAGE)

# Machine-specific build inputs (gitignored): hard links to the torch wheel, a copy of the CA bundle.
# Nothing is deleted first, so a build reading the folder at the same time sees whole files.
docker-context:
	mkdir -p $(DOCKER_LOCAL)/wheels
	$(foreach whl,$(TORCH_WHEELS),ln -f $(whl) $(DOCKER_LOCAL)/wheels/ 2>/dev/null || cp $(whl) $(DOCKER_LOCAL)/wheels/;)
	$(if $(DOCKER_CA_BUNDLE),cp $(DOCKER_CA_BUNDLE) $(DOCKER_LOCAL)/.ca.tmp && mv $(DOCKER_LOCAL)/.ca.tmp $(DOCKER_LOCAL)/ca-certificates.crt)

# The classic builder: the Dockerfile needs no BuildKit feature, and Debian's engine ships no buildx.
docker-build: docker-context $(if $(filter local,$(BASE_IMAGE)),docker-base)
	$(COMPOSE_BUILD_ENV) $(COMPOSE) build

docker-up: docker-build
	$(COMPOSE) up --wait

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache $(DOCKER_LOCAL)/wheels $(DOCKER_LOCAL)/ca-certificates.crt
