# Two commands do all set-up: `make run` and `make test`. Both bootstrap .venv from python3 alone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXAMPLE ?= examples/sequential.yaml

.PHONY: run test lint fmt bench bench-accounting clean venv bytecode

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# Bytecode for the workflow modules: Temporal's sandbox imports them afresh for every workflow run,
# and without .pyc files (PYTHONDONTWRITEBYTECODE) each run compiles them from source again.
bytecode: $(STAMP)
	@$(BIN)/python -m compileall -q workflows > /dev/null

venv: $(STAMP)

run: $(STAMP) bytecode
	$(BIN)/harness run $(EXAMPLE)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: $(STAMP) bytecode lint
	$(BIN)/pytest -q

bench: $(STAMP) bytecode
	$(BIN)/python bench/overhead.py

bench-accounting: $(STAMP) bytecode
	$(BIN)/python bench/accounting.py

clean:
	rm -rf $(VENV) .harness .pytest_cache .mypy_cache .ruff_cache
