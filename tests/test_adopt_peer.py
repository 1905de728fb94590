"""A database migrated by clickhouse-migrations (PyPI, pinned below) adopted with its history, on the 24.8 server.

The warehouse is built the old way by that tool itself: the old SQL files
(tests/legacy_fixtures.py) as its numbered migration files, applied by its
own command line, which keeps its ``schema_versions`` table.  Adopt keeps that
table untouched and records each applied file in the ledger as imported,
before the adoption; from then on the chain manages the database.

The tool is installed on first use into its own virtualenv under var/ (the
one bench/peer.py uses), so the test needs nothing installed beforehand.
"""
from __future__ import annotations

import subprocess
import sys
from urllib.parse import quote

import pytest

import server_support
from app import adopt, commands
from app.config import PROJECT_ROOT
from app.engine import connect
from app.fingerprint import fingerprints
from app.sample_data import base_tables, load_sample
from legacy_fixtures import API, CORE_VIEWS, DATABASES, META, SALES_CORE, SHEETS, SHEETS_VIEWS, meta_job_runs

pytestmark = [pytest.mark.server, pytest.mark.slow]

PEER, PEER_VERSION = "clickhouse-migrations", "0.16.0"
PEER_VENV = PROJECT_ROOT / "var" / "bench-peer"
FILES = {
    "001_databases.sql": DATABASES,
    "002_sales_core.sql": SALES_CORE + META + CORE_VIEWS,
    "003_qtickets_sheets.sql": SHEETS + [meta_job_runs(True)] + SHEETS_VIEWS,
    "004_qtickets_api.sql": API,
}


@pytest.fixture(scope="session")
def peer_cli():
    """The tool's console script, pip-installed into var/bench-peer unless it is there at the pinned version."""
    script, python = PEER_VENV / "bin" / PEER, PEER_VENV / "bin" / "python"
    probe = [str(python), "-c", f"from importlib.metadata import version; print(version({PEER!r}))"]
    if not (script.exists() and subprocess.run(probe, capture_output=True, text=True).stdout.strip() == PEER_VERSION):
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", f"{PEER}=={PEER_VERSION}"],
                              capture_output=True, text=True)
        assert done.returncode == 0 and script.exists(), done.stderr[-800:]
    return script


@pytest.fixture
def peer_database(server):
    server_support.reset(server)
    yield server_support.fresh_database(server)
    server_support.reset(server)


def test_a_database_migrated_by_clickhouse_migrations_is_adopted_with_its_history(
        server, peer_database, peer_cli, tmp_path):
    db = peer_database
    files = tmp_path / "migrations"
    files.mkdir()
    for name, statements in FILES.items():
        (files / name).write_text("".join(f"{sql};\n\n" for sql in statements))
    peer_url = (f"clickhouse://{quote(server.user, safe='')}:{quote(server.password, safe='')}"
                f"@127.0.0.1:{server.native_port}/{db}")
    done = subprocess.run([str(peer_cli), "--db-url", peer_url, "--migrations-dir", str(files)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    url = server.url("native", db)
    history_table = f"{db}.schema_versions"
    read_history = f"SELECT version, md5, script, created_at FROM {history_table} ORDER BY version"
    with connect(url) as conn:
        theirs = conn.exec_driver_sql(read_history).all()
        assert [r[0] for r in theirs] == [1, 2, 3, 4]
        load_sample(conn, rows_per_table=20, seed=7)
        columns = {n: [c for c, _, kind in t.columns if kind != "ALIAS"] for n, t in base_tables(conn).items()}
        before = fingerprints(conn, columns)

    plan = adopt.plan_adoption(url)
    assert plan.adoptable, adopt.explain_refusal(plan)
    assert plan.revision == "0004"
    assert [e["version"] for e in plan.imported[history_table]] == [1, 2, 3, 4]
    assert any(f"{history_table} is the history of clickhouse-migrations (4 applied file(s))" in n for n in plan.notes)
    sql = adopt.adoption_sql(plan)
    assert server.password not in sql and "zakaz.core_sales_fct: 20 row(s): unchanged" in sql
    result = adopt.apply_adoption(url, plan)
    assert result.ok, (result.data_changes, [str(f) for f in result.findings if f.fatal])

    with connect(url) as conn:
        assert conn.exec_driver_sql(read_history).all() == theirs  # kept untouched
        after = fingerprints(conn, columns)
    assert {t: after[t] for t in columns} == before
    history = commands.history(url)
    imported = [(h["revision"], h["direction"], h["status"], h["checksum"]) for h in history[:4]]
    assert imported == [(f"cm-{v}", "import", "imported", md5[:12]) for v, md5, _, _ in theirs]
    assert (history[4]["direction"], history[4]["status"], history[4]["revision"]) == ("adopt", "stamped", "0004")
    assert [h["revision"] for h in history[5:]] == [f"{i:04d}" for i in range(5, 14)]
    status = commands.status(url)
    assert status.heads == ["0013"] and status.problem is None
    assert [str(f) for f in commands.verify(url)["findings"] if f.fatal] == []
    # The chain manages it now: a later upgrade has nothing to do.
    assert commands.upgrade(url, "head") == []


def test_the_combined_legacy_database_is_adopted_on_the_server_too(server, peer_database):
    """A missing table, a sorting key, a partition key and a key-column type of other file sets,
    plus the known variants: the rebuilds run on the 24.8 server (mutations, deploy lock)."""
    from legacy_fixtures import build_legacy, variants

    url = server.url("native", peer_database)
    build_legacy(url, run_id_uuid=True, fixes=("0005", "0009-not-null"), integrations=True,
                 extra=variants("missing-table", "order-by-short", "partition", "key-type"))
    with connect(url) as conn:
        load_sample(conn, rows_per_table=20, seed=7)
        columns = {n: [c for c, _, kind in t.columns if kind != "ALIAS"] for n, t in base_tables(conn).items()}
        before = fingerprints(conn, columns)
    plan = adopt.plan_adoption(url)
    assert plan.adoptable, adopt.explain_refusal(plan)
    assert sorted(op.target for op in plan.operations if op.kind == "rebuild_table") == [
        "zakaz.dm_sales_daily", "zakaz.dm_vk_ads_daily", "zakaz.fact_qtickets_sales_daily"]
    result = adopt.apply_adoption(url, plan)
    assert result.ok, (result.data_changes, [str(f) for f in result.findings if f.fatal])
    with connect(url) as conn:
        after = fingerprints(conn, columns)
    assert {t: after[t] for t in columns} == before
    assert commands.status(url).heads == ["0013"]
