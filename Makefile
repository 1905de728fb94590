# Quick start: `make migrate` and `make test` work on a fresh clone with Python 3.11.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# The ClickHouse 24.8 venv for test-compat (see there).
COMPAT_VENV ?= .venv-compat
COMPAT_PY := $(COMPAT_VENV)/bin/python
COMPAT_STAMP := $(COMPAT_VENV)/.installed

.PHONY: setup setup-compat migrate test test-compat test-server bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

migrate: setup
	$(VENV)/bin/zakaz-schema upgrade head

# ZAKAZ_EXPECT_CLICKHOUSE: tests/test_compat.py checks that the suite really
# ran on this ClickHouse line (a prefix of SELECT version()).
test: setup
	ZAKAZ_EXPECT_CLICKHOUSE=26. $(PY) -m pytest

# The whole embedded suite again on ClickHouse 24.8 (production's line),
# through PyPI chdb 2.1.1 in a venv of its own: chdb 2.1.1 and pyproject's
# chdb-core both install the `chdb` import package, so one venv cannot hold
# both.  setup-compat installs the project with --no-deps, then pyproject's
# own dependencies and test extra (read from pyproject.toml, so the two venvs
# never drift) without chdb-core, then requirements-compat.txt (chdb==2.1.1).
# Server and cluster tests are left to `make test`: they do not use chDB.
setup-compat: $(COMPAT_STAMP)

$(COMPAT_STAMP): pyproject.toml requirements-compat.txt
	$(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_PY) -m pip install --quiet --upgrade pip
	$(COMPAT_PY) -c 'import re, tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
	    deps = p["dependencies"] + p["optional-dependencies"]["test"]; \
	    print("\n".join(d for d in deps if re.split(r"[^A-Za-z0-9._-]", d)[0].lower() != "chdb-core"))' \
	    > $(COMPAT_VENV)/pyproject-requirements.txt
	$(COMPAT_PY) -m pip install --quiet -r $(COMPAT_VENV)/pyproject-requirements.txt -r requirements-compat.txt
	$(COMPAT_PY) -m pip install --quiet --no-deps -e .
	touch $(COMPAT_STAMP)

test-compat: setup-compat
	ZAKAZ_EXPECT_CLICKHOUSE=24.8 $(COMPAT_PY) -m pytest -m "not server and not cluster"

test-server: setup
	$(PY) -m pytest -m server -rs

bench: setup
	$(PY) -m bench

clean:
	rm -rf var .pytest_cache
