# On a fresh machine: `make get-data` (the photos, with DVC), `make run` (set up, preflight, then `dvc repro`)
# and `make test`.
# Each creates the virtualenv .venv on first use and re-install when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin

.PHONY: setup get-data run test lint docs

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# The virtualenv alone (`source .venv/bin/activate` then gives `dvc` and `python -m pipeline`).
setup: $(VENV)/.installed

# Microsoft's zip of the Dogs vs. Cats photos (no account) into data/raw by `dvc import-url`, which records its
# URL and checksum in data/raw/<file>.dvc; the zip is checked and paths.raw points at it. Offline: exit 2 and
# the steps by hand.
get-data: $(VENV)/.installed
	PATH="$(BIN):$$PATH" python -m pipeline get-data $(ARGS)

# The preflight (`python -m pipeline doctor`) stops the run only when nothing could run (exit 2: no raw data);
# otherwise `dvc repro --keep-going` computes every branch whose inputs exist, and a failed run ends with
# one list of the stages that did not run and the fix for each.
run: $(VENV)/.installed
	@export PATH="$(BIN):$$PATH"; \
	python -m pipeline doctor; doctor=$$?; \
	if [ $$doctor -ge 2 ]; then exit $$doctor; fi; \
	dvc repro --keep-going $(ARGS); repro=$$?; \
	if [ $$repro -ne 0 ]; then python -m pipeline doctor --pending; exit $$repro; fi

# Two pytest workers: most of the suite's time is single-threaded (Python, TensorFlow and DVC starting in
# subprocesses), so two cores finish it in about 0.6 of the time of one worker.
# Whole files go to the workers (a file's shared fixture, such as one `dvc repro`, runs once), longest first
# (tests/conftest.py's LONGEST_FIRST).
# The docs site is built strictly (a broken link or a missing page fails) into the git-ignored site/.
test: $(VENV)/.installed
	PATH="$(BIN):$$PATH" python -m ruff check pipeline tests
	PATH="$(BIN):$$PATH" python -m ruff format --check pipeline tests
	NO_MKDOCS_2_WARNING=1 PATH="$(BIN):$$PATH" python -m mkdocs build --strict --quiet --site-dir site
	PATH="$(BIN):$$PATH" python -m pytest -q -n 2 --dist loadscope --no-loadscope-reorder $(ARGS)

lint: $(VENV)/.installed
	PATH="$(BIN):$$PATH" python -m ruff check pipeline tests
	PATH="$(BIN):$$PATH" python -m ruff format --check pipeline tests

# The docs site on http://127.0.0.1:8000 while you edit docs/.
docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 PATH="$(BIN):$$PATH" python -m mkdocs serve
