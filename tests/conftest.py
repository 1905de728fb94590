"""Shared fixtures: every test gets its own embedded ClickHouse directory.

One process can hold one chDB directory at a time, so helpers here always
close their connection (and engine) before alembic opens the same URL.

`make test` runs the suite on pytest-xdist workers (``-n 2 --dist loadgroup``):
each worker is a process of its own, with its own chDB engine, temporary
directories, template databases and (when a test asks for one) local server;
the cluster suite shares one cluster, so it runs on one worker.
"""
from __future__ import annotations

import os
import shutil
import sys
import uuid
from pathlib import Path

import pytest

from app.config import PROJECT_ROOT
from chain_templates import ChainTemplates


# --- pytest-xdist: one cluster and one server for the run ------------------------------

# Test files whose tests share a session-scoped cluster or server: each runs on
# one worker (`make test` passes --dist loadgroup).  By file, since xdist's own
# grouping by the xdist_group mark rewrites node ids, which pytest >= 9.2 ignores
# (pytest-xdist issue 1386): every test then went anywhere and both workers
# started a cluster.  A server test elsewhere may start a second server (~1 s).
SUITE_FILES = {"tests/test_cluster.py": "cluster", "tests/test_server.py": "server"}


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: absent without it
def pytest_xdist_make_scheduler(config, log):
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling  # only where xdist runs

    class SuiteScheduling(LoadGroupScheduling):
        """The largest scope goes out first, so the two suites start on different
        workers and the embedded tests, one scope each, fill in around them."""

        def _split_scope(self, nodeid: str) -> str:
            return SUITE_FILES.get(nodeid.split("::", 1)[0]) or super()._split_scope(nodeid)

    return SuiteScheduling(config, log)


@pytest.fixture
def db_url(tmp_path) -> str:
    return f"clickhouse+chdb:///default?path={tmp_path / 'db'}"


@pytest.fixture(scope="session")
def chain_templates(tmp_path_factory) -> ChainTemplates:
    """Template databases per revision, built once per session and shared by its
    xdist workers (each worker's basetemp is a folder of the session's)."""
    base = tmp_path_factory.getbasetemp()
    return ChainTemplates((base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "templates")


@pytest.fixture
def database_at(chain_templates, tmp_path):
    """``database_at(revision, sample_rows=0)``: this test's own copy of the template
    database at ``revision`` (``base``: empty), with app.sample_data's rows if asked; its URL."""
    made = []

    def make(revision: str, *, sample_rows: int = 0, seed: int = 7) -> str:
        made.append(revision)
        return chain_templates.copy(revision, tmp_path / f"db-{len(made)}-{revision}",
                                    sample_rows=sample_rows, seed=seed)
    return make


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


@pytest.fixture
def chain(versions_copy, monkeypatch) -> Path:
    """A scratch copy of the migrations folder that every command uses."""
    monkeypatch.setenv("ZAKAZ_MIGRATIONS", str(versions_copy))
    return versions_copy


@pytest.fixture
def canonical(tmp_path, monkeypatch):
    """Install an edited copy of app/canonical.py: ``canonical(edit)`` with ``edit(text) -> text``."""
    from app import revision_files

    def install(edit):
        name = f"canonical_copy_{uuid.uuid4().hex[:8]}"
        text = (PROJECT_ROOT / "app" / "canonical.py").read_text(encoding="utf-8")
        edited = edit(text)
        assert edited != text
        (tmp_path / f"{name}.py").write_text(edited, encoding="utf-8")
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.setattr(revision_files, "CANONICAL_MODULE", name)
        monkeypatch.delitem(sys.modules, name, raising=False)
    return install


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


@pytest.fixture(params=["embedded", pytest.param("server", marks=pytest.mark.server)])
def line_url(request, db_url):
    """Both ClickHouse lines: the embedded engine (26.x), or the 24.8 server without the
    test module's ``LINE_DATABASE`` (dropped before and after: the server is shared)."""
    if request.param == "embedded":
        yield db_url
        return
    from app.engine import connect

    url = request.getfixturevalue("server").url("native")
    drop = f"DROP DATABASE IF EXISTS {request.module.LINE_DATABASE} SYNC"
    with connect(url) as conn:
        conn.exec_driver_sql(drop)
    yield url
    with connect(url) as conn:
        conn.exec_driver_sql(drop)
