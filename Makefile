# Two commands do everything on a fresh machine with Python >= 3.11 and make:
#   make demo   - the whole loop on the embedded simulator
#   make test   - lint, type-check and the full test suite
#   make docs   - the API reference from the docstrings, built strictly into site/

# The newest Python >= 3.11 on PATH (python3 too, if it is new enough); `make PYTHON=...` overrides.
PYTHON_CANDIDATES := python3.14 python3.13 python3.12 python3.11 python3
# Looked up once, and only when a recipe needs it (the eval memoizes the shell's answer).
PYTHON ?= $(eval PYTHON := $(shell for p in $(PYTHON_CANDIDATES); do \
	"$$p" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 \
	&& { echo "$$p"; break; }; done))$(PYTHON)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-dev

.PHONY: demo test lint typecheck pytest docs bench bench-quick reliability clean print-python

$(VENV)/bin/python:
	@if [ -z "$(PYTHON)" ]; then \
	  echo "make: no Python >= 3.11 found (tried $(PYTHON_CANDIDATES))." >&2; \
	  echo "      Install Python 3.11 or newer, or name one: make PYTHON=/path/to/python3.12" >&2; \
	  exit 1; \
	fi
	@"$(PYTHON)" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
	  echo "make: $(PYTHON) is older than Python 3.11, which ultimate_async needs." >&2; exit 1; }
	"$(PYTHON)" -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Which interpreter a new .venv would be made with (empty: none found).
print-python:
	@echo "$(PYTHON)"

$(VENV)/.installed: $(VENV)/bin/python pyproject.toml
	$(PY) -m pip install -q -e .
	touch $@

$(STAMP): $(VENV)/bin/python pyproject.toml
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(PY) -m ultimate_async demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check ultimate_async

typecheck: $(STAMP)
	$(VENV)/bin/mypy --strict ultimate_async

pytest: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

test: lint typecheck pytest

$(VENV)/.installed-docs: $(VENV)/bin/python pyproject.toml
	$(PY) -m pip install -q -e '.[docs]'
	touch $@

# Strict: a docstring the reference cannot render or a broken link fails the build (CI runs it).
docs: $(VENV)/.installed-docs
	$(VENV)/bin/mkdocs build --strict --quiet --site-dir site

$(VENV)/.installed-bench: $(STAMP)
	$(PY) -m pip install -q -e '.[dev,bench,speed]'
	touch $@

bench: $(VENV)/.installed-bench
	$(PY) -m benchmarks.run

bench-quick: $(VENV)/.installed-bench
	$(PY) -m benchmarks.run --quick

reliability: $(STAMP)
	$(PY) -m benchmarks.reliability $(RELIABILITY_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info site
