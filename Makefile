# Two commands on a fresh machine: `make run` (set up, then `dvc repro`) and `make test`.
# Both create the virtualenv .venv on first use and re-install when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin

.PHONY: run test lint

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

run: $(VENV)/.installed
	PATH="$(BIN):$$PATH" dvc repro $(ARGS)

test: $(VENV)/.installed
	PATH="$(BIN):$$PATH" python -m ruff check pipeline tests
	PATH="$(BIN):$$PATH" python -m ruff format --check pipeline tests
	PATH="$(BIN):$$PATH" python -m pytest -q $(ARGS)

lint: $(VENV)/.installed
	PATH="$(BIN):$$PATH" python -m ruff check pipeline tests
	PATH="$(BIN):$$PATH" python -m ruff format --check pipeline tests
