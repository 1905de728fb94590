# Quick start: `make migrate` and `make test` work on a fresh clone with Python 3.11.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# The ClickHouse 24.8 server library for the server and cluster suites.
SERVER_VENV ?= .venv-server
SERVER_STAMP := $(SERVER_VENV)/.installed
ZOOKEEPER_JAR := /usr/share/java/zookeeper.jar

.PHONY: setup setup-servers migrate test test-fast test-embedded test-server bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

migrate: setup
	$(VENV)/bin/zakaz-schema upgrade head

# Test workers (pytest-xdist).  Each is a process with its own chDB engine,
# template databases and local server; the cluster suite stays on one worker
# (--dist loadgroup, tests/conftest.py).  WORKERS=0 runs in one process.
WORKERS ?= 2
XDIST = $(if $(filter 0,$(WORKERS)),,-n $(WORKERS) --dist loadgroup)

# The whole suite: embedded (chdb-core, current ClickHouse), a real 24.8
# server and a 2-replica cluster over native and HTTP (tests/server_support.py):
# compose's where a Docker engine runs, else local processes (setup-servers).
# Test databases and servers are thrown away after the run: they live in
# /dev/shm where it has room (the suite waits less on a shared disk), as the
# tools' own scratch databases do (app/replay.py scratch_root).
TEST_TMPDIR ?= $(shell python3 -c "import os; s = os.statvfs('/dev/shm'); print('/dev/shm' if os.access('/dev/shm', os.W_OK) and s.f_bavail * s.f_frsize >= 4 << 30 else '')" 2>/dev/null)
test: setup setup-servers
	$(if $(TEST_TMPDIR),TMPDIR=$(TEST_TMPDIR) )$(PY) -m pytest $(XDIST)

# Pure and unit tests only (marker `fast`: no chain replayed, no server), in
# seconds.  A test is in this tier only if marked `fast`, so an unmarked test
# can make it incomplete but never slow; `make test` runs everything.
test-fast: setup
	$(PY) -m pytest -m "fast and not replay and not slow and not server and not cluster"

# The tiers of `make test` one at a time: embedded (chDB only), then the
# server and cluster suites.
test-embedded: setup
	$(PY) -m pytest $(XDIST) -m "not server and not cluster"

# What the server and cluster suites need where there is no Docker engine:
# the chdb 2.1.1 wheel (clickhouse-server 24.8.4.1) in a directory of its own,
# since it and chdb-core both ship the `chdb` package, and Debian's ZooKeeper.
setup-servers: $(SERVER_STAMP)
	@if [ ! -f $(ZOOKEEPER_JAR) ] && ! docker info >/dev/null 2>&1; then \
	    if [ "$$(id -u)" = 0 ]; then \
	        echo "Installing ZooKeeper (Debian) for the cluster test suite"; \
	        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends zookeeper >/dev/null; \
	    else \
	        echo "ZooKeeper is missing: run 'sudo apt-get install zookeeper', or the cluster suite skips"; \
	    fi; \
	fi

$(SERVER_STAMP): requirements-server.txt
	$(PYTHON) -m pip install --quiet --no-deps --target $(SERVER_VENV) -r requirements-server.txt
	touch $(SERVER_STAMP)

test-server: setup setup-servers
	$(PY) -m pytest $(XDIST) -m "server or cluster" -rs

bench: setup
	$(PY) -m bench

clean:
	rm -rf var .pytest_cache
