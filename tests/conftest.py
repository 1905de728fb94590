"""Shared fixtures: every test gets its own embedded ClickHouse directory.

One process can hold one chDB directory at a time, so helpers here always
close their connection (and engine) before alembic opens the same URL.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.config import PROJECT_ROOT


@pytest.fixture
def db_url(tmp_path) -> str:
    return f"clickhouse+chdb:///default?path={tmp_path / 'db'}"


@pytest.fixture
def query(db_url):
    """Run one statement on the test database and return all rows."""
    from app.engine import connect

    def run(sql: str, params: dict | None = None):
        with connect(db_url) as conn:
            result = conn.exec_driver_sql(sql, params or {})
            return result.all() if result.returns_rows else []
    return run


@pytest.fixture
def versions_copy(tmp_path) -> Path:
    """A writable copy of the migrations folder, for tests that add or break revisions."""
    target = tmp_path / "migrations"
    shutil.copytree(PROJECT_ROOT / "migrations", target,
                    ignore=shutil.ignore_patterns("__pycache__"))
    return target


# --- real servers (tests/server_support.py): one of each per test session ----------

@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """A ClickHouse 24.8 server: compose's where Docker runs, else a local process."""
    import server_support

    with server_support.running_server(tmp_path_factory.mktemp("server")) as srv:
        yield srv


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """Two replicas of one shard and a Keeper (cluster `zakaz`)."""
    import server_support

    with server_support.running_cluster(tmp_path_factory.mktemp("cluster")) as c:
        yield c
