# wdrec: two commands on a fresh machine — `make run` (train on the embedded data and serve) and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?=
ARTIFACTS_DIR ?= artifacts
HOST ?= 127.0.0.1
PORT ?= 8000
GENERATED_DIR := data/generated

.PHONY: setup run data train serve test lint bench clean

setup: $(BIN)/wdrec

$(BIN)/wdrec: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,benchmark]'
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

run: train
	$(BIN)/wdrec serve --artifacts $(ARTIFACTS_DIR) --host $(HOST) --port $(PORT)

lint: setup
	$(BIN)/ruff check training app tests bench
	$(BIN)/ruff format --check training app tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
