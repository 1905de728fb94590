# Quick start: `make migrate` and `make test` work on a fresh clone with Python 3.11.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup migrate test test-server bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

migrate: setup
	$(VENV)/bin/zakaz-schema upgrade head

test: setup
	$(PY) -m pytest

test-server: setup
	$(PY) -m pytest -m server -rs

bench: setup
	$(PY) -m bench

clean:
	rm -rf var .pytest_cache
