# Two commands do everything on a fresh machine with Python 3.11 and make:
#   make demo   - the whole loop on the embedded simulator
#   make test   - lint, type-check and the full test suite
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-dev

.PHONY: demo test lint typecheck pytest bench bench-quick reliability clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

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

$(VENV)/.installed-bench: $(STAMP)
	$(PY) -m pip install -q -e '.[dev,bench,speed]'
	touch $@

bench: $(VENV)/.installed-bench
	$(PY) -m benchmarks.run

bench-quick: $(VENV)/.installed-bench
	$(PY) -m benchmarks.run --quick

reliability: $(STAMP)
	$(PY) -m benchmarks.reliability

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info
