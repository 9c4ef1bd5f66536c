# Two commands for a newcomer: `make run` and `make test`. Both set up what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test setup system-deps-run system-deps-test lint typecheck pytest bench clean

run: system-deps-run setup
	$(BIN)/vcall demo

test: system-deps-test setup lint typecheck pytest

system-deps-run:
	@PYTHON=$(PYTHON) bash scripts/system-deps.sh run

system-deps-test:
	@PYTHON=$(PYTHON) bash scripts/system-deps.sh test

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	PYTHONWARNINGS=ignore $(BIN)/python -m pip install --quiet -e '.[test]'  # no build-backend banners
	@touch $(STAMP)

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy

pytest:
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python -m benchmarks.discovery
	$(BIN)/vcall bench e2e

clean:
	rm -rf $(VENV) artifacts .mypy_cache .ruff_cache .pytest_cache .hypothesis
