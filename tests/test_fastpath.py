"""The fast path of `status` and of an `upgrade` with nothing to do (app/fastpath.py).

It must give the full path's answer or none at all: every case where the
database is not plainly at head (or the fast path cannot vouch for what it
read) falls back to the full path, whose answer the CLI then prints.  Real
engines only: embedded chDB here, a real 24.8 server (native and HTTP) in the
`server` tests.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest

from app import commands, fastpath, ledger
from app.config import PROJECT_ROOT
from app.engine import connect

HEAVY = ("sqlalchemy", "alembic", "chdb", "clickhouse_sqlalchemy", "requests", "mako")


def full_status(url: str) -> dict:
    return json.loads(json.dumps(commands.status(url).to_dict(), default=str))


def run_cli(*args: str, fast: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "ZAKAZ_DATABASE_URL"}
    environ.update(env or {})
    if not fast:
        environ["ZAKAZ_FAST_PATH"] = "0"
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, env=environ, timeout=300)


def assert_full_path_answer(url: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The CLI says exactly what it says with the fast path switched off."""
    fast = run_cli(*args, "--url", url, env=env)
    full = run_cli(*args, "--url", url, fast=False, env=env)
    assert (fast.returncode, fast.stdout, fast.stderr) == (full.returncode, full.stdout, full.stderr)
    return fast


def write_rows(url: str, *rows: ledger.Row) -> None:
    with connect(url) as conn:
        ledger.write(conn, conn.dialect.default_schema_name or "default", *rows)


def sql(url: str, statement: str) -> None:
    with connect(url) as conn:
        conn.exec_driver_sql(statement)


@pytest.fixture
def at_head(db_url) -> str:
    commands.upgrade(db_url, "head")
    return db_url


# --- the same answer -------------------------------------------------------------------

def test_embedded_answer_equals_the_full_path(at_head):
    fast = fastpath.status(at_head)
    assert fast is not None, "the fast path should answer at head"
    full = full_status(at_head)
    assert fast == full and list(fast) == list(full)
    assert fast["skipped"], "embedded: 0010's and 0012's access statements are reported"
    assert fastpath.nothing_to_upgrade(at_head) == full["heads"] == ["0013"]


@pytest.mark.slow
def test_embedded_cli_output_equals_the_full_path(at_head):
    for args in (["status"], ["status", "--json"], ["upgrade"]):
        done = assert_full_path_answer(at_head, *args)
        assert done.returncode == 0
    assert "Nothing to do: the database is at 0013 (head)." in done.stdout


@pytest.mark.fast
def test_parse_reads_urls_as_sqlalchemy_does():
    from sqlalchemy.engine import make_url

    for url in ("clickhouse+native://deploy:p%40ss%3Aw%2Fd@db.example:9440/default",
                "clickhouse+http://u:pa:ss@10.0.0.1/warehouse",
                "clickhouse+native://u@db/default"):
        ours, theirs = fastpath.parse(url), make_url(url)
        assert (ours.host, ours.database, ours.user, ours.password or None) == \
               (theirs.host, theirs.database, theirs.username, theirs.password)
    assert fastpath.parse("clickhouse+http://u:p@db:8123/default").port == 8123
    assert fastpath.parse("clickhouse+native://u:p@db/default").port == 9000
    # Anything the drivers read from the URL is the full path's business.
    assert fastpath.parse("clickhouse+native://u:p@db/default?secure=True") is None
    assert fastpath.parse("clickhouse+native://u:p@db") is None
    assert fastpath.parse("clickhouse+chdb:///default?path=:memory:") is None
    assert fastpath.parse("postgresql://u:p@db/x") is None


def fast_answers_loading(url: str) -> list[str]:
    """The stderr of `status` and of a no-op `upgrade` on ``url``, each ending with the
    modules the process had loaded (``LOADED [...]``: packages, and chDB's engine module with
    the sub-module it registers, as ``chdb._chdb``)."""
    code = ("import atexit, sys\n"
            "atexit.register(lambda: print('LOADED', sorted({'chdb._chdb' if m.startswith('chdb._chdb')"
            " else m.split('.')[0] for m, v in sys.modules.items() if v}), file=sys.stderr))\n"
            "from app.cli import main\nmain()\n")
    environ = {k: v for k, v in os.environ.items() if k != "ZAKAZ_DATABASE_URL"}
    out = []
    for args, expect in ((["status"], "pending:   none"), (["upgrade"], "Nothing to do")):
        done = subprocess.run([sys.executable, "-c", code, *args, "--url", url], cwd=PROJECT_ROOT,
                              capture_output=True, text=True, env=environ, timeout=120)
        assert done.returncode == 0 and expect in done.stdout, done.stderr
        out.append(done.stderr)
    return out


def loaded(stderr: str) -> set[str]:
    return set(json.loads(stderr.rsplit("LOADED ", 1)[1].strip().replace("'", '"')))


def test_embedded_fast_path_loads_the_engine_alone(at_head):
    """No alembic or SQLAlchemy, and chDB's engine without its package (numpy, pyarrow: ~0.2 s)."""
    for stderr in fast_answers_loading(at_head):
        # "chdb" would be the package (or any module of it besides the engine).
        assert loaded(stderr) & {"chdb._chdb", "numpy", "pyarrow", *HEAVY} == {"chdb._chdb"}, stderr


# --- every unsafe case falls back -----------------------------------------------------------

@pytest.mark.slow
def test_a_pending_revision_falls_back(db_url):
    commands.upgrade(db_url, "0012")
    assert fastpath.status(db_url) is None and fastpath.nothing_to_upgrade(db_url) is None
    done = assert_full_path_answer(db_url, "status")
    assert "pending:   1 revision(s)" in done.stdout


@pytest.mark.parametrize("state", ["failed", "started"])
@pytest.mark.slow
def test_a_failed_or_interrupted_step_falls_back(at_head, state):
    # A downgrade of 0013 that failed (or died): the heads are still the chain's.
    write_rows(at_head, ledger.Row(str(uuid.uuid4()), "0013", "downgrade", state, ["0013"], "by hand",
                                   failed_statement=1 if state == "failed" else 0,
                                   error="Code: 999. boom" if state == "failed" else ""))
    assert fastpath.status(at_head) is None and fastpath.nothing_to_upgrade(at_head) is None
    done = assert_full_path_answer(at_head, "status")
    assert done.returncode == 1 and "PROBLEM:" in done.stdout
    assert ("failed" if state == "failed" else "interrupted") in done.stdout


@pytest.mark.slow
def test_an_altered_ledger_falls_back(at_head):
    sql(at_head, f"ALTER TABLE default.{ledger.LEDGER_TABLE} ADD COLUMN note String")
    assert fastpath.status(at_head) is None and fastpath.nothing_to_upgrade(at_head) is None
    done = assert_full_path_answer(at_head, "status")
    assert done.returncode == 2 and "altered by hand" in done.stderr


def test_an_altered_version_view_falls_back(at_head):
    sql(at_head, f"CREATE OR REPLACE VIEW default.{ledger.VERSION_VIEW} AS SELECT '0013' AS version_num")
    assert fastpath.nothing_to_upgrade(at_head) is None  # upgrade re-creates it: the full path's job
    assert fastpath.status(at_head) is None


@pytest.mark.slow
def test_a_seq_the_ledger_cannot_continue_falls_back(at_head):
    write_rows(at_head, ledger.Row(str(uuid.uuid4()), "0013", "stamp", "stamped", ["0013"], "by hand",
                                   seq=ledger.SEQ_LIMIT))
    assert fastpath.status(at_head) is None and fastpath.nothing_to_upgrade(at_head) is None
    done = assert_full_path_answer(at_head, "status")
    assert done.returncode == 2 and "beyond what zakaz-schema writes" in done.stderr


def test_cluster_mode_falls_back(at_head, monkeypatch):
    assert fastpath.nothing_to_upgrade(at_head, "zakaz") is None
    monkeypatch.setenv("ZAKAZ_CLUSTER", "zakaz")
    assert fastpath.status(at_head) is None and fastpath.nothing_to_upgrade(at_head) is None


@pytest.mark.fast
def test_no_ledger_falls_back(db_url):
    assert fastpath.status(db_url) is None and fastpath.nothing_to_upgrade(db_url) is None


@pytest.mark.slow
def test_a_revision_file_edited_in_place_falls_back(db_url, versions_copy, monkeypatch):
    monkeypatch.setenv("ZAKAZ_MIGRATIONS", str(versions_copy))
    env = {"ZAKAZ_MIGRATIONS": str(versions_copy)}
    commands.upgrade(db_url, "head")
    assert fastpath.status(db_url) == full_status(db_url)  # the copy's own cache works
    edited = next((versions_copy / "versions").glob("0005_*.py"))
    stat = edited.stat()

    # Any change to the folder makes the cache stale: a touch...
    os.utime(edited, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert fastpath.load_chain() is None and fastpath.status(db_url) is None
    commands.status(db_url)  # the full path caches the folder as it is now
    assert fastpath.load_chain() is not None and fastpath.status(db_url) is not None
    # ... or a new file.
    (versions_copy / "versions" / "notes.txt").write_text("x")
    assert fastpath.load_chain() is None
    (versions_copy / "versions" / "notes.txt").unlink()

    # Edited without renaming, same size and mtime: the cache's checksums see it.
    cached = edited.stat()
    edited.write_text(edited.read_text().replace("Add", "add", 1))
    os.utime(edited, ns=(cached.st_atime_ns, cached.st_mtime_ns))
    assert (edited.stat().st_size, edited.stat().st_mtime_ns) == (cached.st_size, cached.st_mtime_ns)
    assert fastpath.load_chain() is None and fastpath.status(db_url) is None
    commands.status(db_url)  # cached again, with the edited file's checksum...
    assert fastpath.load_chain() is not None
    # ... which is not the one its ledger row recorded: the full path warns.
    assert fastpath.status(db_url) is None and fastpath.nothing_to_upgrade(db_url) is None
    done = assert_full_path_answer(db_url, "status", env=env)
    assert "WARNING:   0005:" in done.stdout and "changed since it was applied" in done.stdout


def test_a_held_embedded_connection_lets_the_full_path_join_it(db_url):
    commands.upgrade(db_url, "0012")
    try:
        assert fastpath.status(db_url, hold=True) is None
        assert fastpath._held, "declined embedded connection kept for the full path"
        assert commands.status(db_url).heads == ["0012"]  # same process, same directory: shared
    finally:
        fastpath.release()
    assert not fastpath._held


@pytest.mark.fast
def test_unselectable_views_are_checked_in_one_statement_and_named(db_url):
    """0011's and 0013's view checks: one UNION ALL, then one per view only to name a failure."""
    from app.schema_check import assert_schema
    from app.snapshot import snapshot_schema
    from app.verify import SchemaMismatch

    with connect(db_url) as conn:
        for statement in ("CREATE DATABASE t", "CREATE TABLE t.x (a UInt8, b String) ENGINE = MergeTree ORDER BY a",
                          "CREATE VIEW t.v AS SELECT a, b, concat(b, '!') AS c FROM t.x",
                          "CREATE VIEW t.ok AS SELECT a FROM t.x"):
            conn.exec_driver_sql(statement)
        expected = snapshot_schema(conn, ["t"])
        assert_schema(conn, expected)  # all selectable
        conn.exec_driver_sql("ALTER TABLE t.x DROP COLUMN b")
        with pytest.raises(SchemaMismatch) as err:
            assert_schema(conn, expected)
    unselectable = [f.object for f in err.value.findings if f.kind == "unselectable"]
    assert unselectable == ["t.v"]


# --- on a server ------------------------------------------------------------------------------

@pytest.fixture
def server_at_head(server, request):
    import server_support as support

    support.reset(server)
    url = server.url(request.param, support.fresh_database(server))
    commands.upgrade(url, "head")
    yield url
    support.reset(server)


@pytest.mark.server
@pytest.mark.parametrize("server_at_head", ["native", "http"], indirect=True)
@pytest.mark.slow
def test_server_answer_equals_the_full_path(server_at_head):
    url = server_at_head
    fast = fastpath.status(url)
    assert fast is not None, "the fast path should answer at head"
    full = full_status(url)
    assert fast == full and list(fast) == list(full)
    assert fastpath.nothing_to_upgrade(url) == ["0013"]
    for args in (["status"], ["status", "--json"], ["upgrade"]):
        assert assert_full_path_answer(url, *args).returncode == 0


@pytest.mark.server
@pytest.mark.parametrize("server_at_head", ["native", "http"], indirect=True)
def test_server_fast_path_imports_no_alembic_sqlalchemy_or_chdb(server_at_head):
    for stderr in fast_answers_loading(server_at_head):
        assert loaded(stderr) & {"chdb._chdb", *HEAVY} == set(), stderr


@pytest.mark.server
@pytest.mark.parametrize("server_at_head", ["native"], indirect=True)
def test_server_deploy_lock_held_falls_back(server_at_head):
    from app.lock import _insert

    url = server_at_head
    with connect(url) as conn:
        _insert(conn, conn.dialect.default_schema_name, str(uuid.uuid4()), "another deploy", "claim", 600)
    assert fastpath.nothing_to_upgrade(url) is None  # a deploy is running: the full path waits for it
    assert fastpath.status(url) == full_status(url)  # status does not look at the lock, either way
    done = run_cli("upgrade", "--url", url, "--lock-wait", "0.2")
    assert done.returncode == 2 and "holds the deploy lock" in done.stderr


@pytest.mark.server
@pytest.mark.parametrize("server_at_head", ["http"], indirect=True)
def test_server_pending_and_altered_ledger_fall_back(server_at_head):
    url = server_at_head
    commands.downgrade(url, "0012")
    assert fastpath.status(url) is None and fastpath.nothing_to_upgrade(url) is None
    commands.upgrade(url, "head")
    assert fastpath.nothing_to_upgrade(url) == ["0013"]
    sql(url, f"ALTER TABLE {url.rsplit('/', 1)[-1]}.{ledger.LEDGER_TABLE} ADD COLUMN note String")
    assert fastpath.status(url) is None and fastpath.nothing_to_upgrade(url) is None


@pytest.mark.fast
def test_the_cache_lives_with_the_folder_it_describes(versions_copy, monkeypatch, db_url):
    monkeypatch.setenv("ZAKAZ_MIGRATIONS", str(versions_copy))
    commands.status(db_url)
    assert (versions_copy / "versions" / "__pycache__" / fastpath.CACHE_NAME).is_file()
    shutil.rmtree(versions_copy / "versions" / "__pycache__")
    assert fastpath.load_chain() is None
