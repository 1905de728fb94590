"""``zakaz-schema new --autogenerate`` and ``alembic revision --autogenerate`` on the project's chain.

Each test works on a copy of the migrations folder (ZAKAZ_MIGRATIONS) and,
where the canonical schema must differ, on an edited copy of app/canonical.py
imported under another name: the repository's files are never touched.  The
expected files and messages are written by hand here.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from app import canonical as canonical_module
from app import commands, revision_files
from app.canonical import CANONICAL
from app.cli import main
from app.config import PROJECT_ROOT
from app.engine import connect
from app.replay import copy_template, scratch_database, upgrade_to
from app.schema import parse_tables

pytestmark = [pytest.mark.slow]

NEW_TABLE = """
zakaz.refunds_log  MergeTree ORDER BY (sale_id) PARTITION BY toYYYYMM(ts)
    sale_id         UInt32
    ts              DateTime DEFAULT now()
    amount          Decimal(12, 2)
"""


def add_table(text: str) -> str:
    return text.replace('TABLES = """\n', 'TABLES = """' + NEW_TABLE + "\n", 1)


def new(*args):
    return CliRunner().invoke(main, ["new", *args], catch_exceptions=False)


def versions(folder) -> set[str]:
    return {p.name for p in (folder / "versions").glob("*.py")}


def test_the_real_chain_has_no_changes(chain):
    before = versions(chain)
    result = new("--autogenerate", "Nothing to do")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("No changes")
    assert versions(chain) == before


def test_a_new_table_becomes_a_revision_that_upgrades_and_then_matches(chain, canonical):
    canonical(add_table)
    result = new("--autogenerate", "Add refunds log", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["path"].endswith("versions/0014_add_refunds_log.py")
    assert data["changes"] == ["create table zakaz.refunds_log (MergeTree)"]
    assert data["downgrade_loses"] == ["zakaz.refunds_log"] and data["upgrade_loses"] == []
    text = (chain / "versions" / "0014_add_refunds_log.py").read_text(encoding="utf-8")
    assert 'down_revision = "0013"' in text and "op.create_table_if_not_exists(" in text
    assert 'DOWNGRADE_LOSES = ["zakaz.refunds_log"]' in text and "op.drop_table_if_exists(" in text

    with scratch_database() as url, connect(url) as conn:
        upgrade_to(conn, url, "head", script_location=str(chain))
        cols = conn.exec_driver_sql(
            "SELECT name, type FROM system.columns WHERE database = 'zakaz' AND table = 'refunds_log' "
            "ORDER BY position").all()
        assert [tuple(c) for c in cols] == [("sale_id", "UInt32"), ("ts", "DateTime"),
                                            ("amount", "Decimal(12, 2)")]
    # The chain now builds the canonical schema: nothing left to generate.
    again = new("--autogenerate", "Again")
    assert again.exit_code == 0 and again.output.startswith("No changes"), again.output


def add_view(query: str):
    """A new DataLens view over the new table: its columns in VIEWS, its SELECT in VIEW_QUERIES."""
    def edit(text: str) -> str:
        text = add_table(text).replace('VIEWS = """\n', 'VIEWS = """\nbi.v_refunds_log: sale_id, amount\n', 1)
        return text + f"\nVIEW_QUERIES = {{'bi.v_refunds_log': {query!r}}}\n"
    return edit


def test_a_new_view_from_its_select_in_the_canonical_schema(chain, canonical):
    # Written lower-case on purpose: compared after ClickHouse's formatQuery, like the chain's.
    canonical(add_view("select sale_id, amount from zakaz.refunds_log where amount > 0"))
    result = new("--autogenerate", "Refunds for DataLens", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["changes"] == [
        "create table zakaz.refunds_log (MergeTree)", "create view bi.v_refunds_log",
        "set bi.v_refunds_log SQL SECURITY DEFINER"]
    text = (chain / "versions" / "0014_refunds_for_datalens.py").read_text(encoding="utf-8")
    assert 'op.grant("SELECT", "bi.v_refunds_log", to="zakaz_reader")' in text
    with scratch_database() as url, connect(url) as conn:
        upgrade_to(conn, url, "head", script_location=str(chain))
        conn.exec_driver_sql("INSERT INTO zakaz.refunds_log (sale_id, amount) VALUES (1, 2.5), (2, 0)")
        assert conn.exec_driver_sql("SELECT sale_id FROM bi.v_refunds_log").all() == [(1,)]
    again = new("--autogenerate", "Again")
    assert again.exit_code == 0 and again.output.startswith("No changes"), again.output


# Revision 0004's SELECT of the materialized view, re-typed by hand in another layout.
MV_LATEST_QUERY = (
    "SELECT event_id, city, max(sale_ts) AS latest_sale_ts, sum(tickets_sold) AS tickets_sold_14d, "
    "sum(revenue) AS revenue_14d FROM zakaz.stg_qtickets_api_orders_raw "
    "WHERE sale_ts >= now() - toIntervalDay(14) GROUP BY event_id, city")


def test_an_unchanged_materialized_view_spelled_out_plans_nothing(chain, canonical):
    canonical(lambda t: t + f"\nVIEW_QUERIES = {{'zakaz.mv_qtickets_sales_latest': {MV_LATEST_QUERY!r}}}\n")
    result = new("--autogenerate", "Nothing to do")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("No changes"), result.output


def test_a_changed_materialized_view_select_is_a_rebuild_keeping_its_rows(chain, canonical):
    changed = MV_LATEST_QUERY.replace("toIntervalDay(14)", "toIntervalDay(28)")
    canonical(lambda t: t + f"\nVIEW_QUERIES = {{'zakaz.mv_qtickets_sales_latest': {changed!r}}}\n")
    before = versions(chain)
    result = new("--autogenerate", "Four weeks of sales")
    assert result.exit_code == 0, result.output
    assert "- rebuild materialized view zakaz.mv_qtickets_sales_latest (its SELECT changed), keeping its rows" \
        in result.output
    (written,) = set(versions(chain)) - set(before)
    text = (chain / "versions" / written).read_text()
    assert text.count("op.rebuild_materialized_view(") == 2 and "UPGRADE_LOSES" not in text
    assert 'copy="event_id, city, latest_sale_ts, tickets_sold_14d, revenue_14d"' in text


def test_a_new_view_over_an_object_that_does_not_exist(chain, canonical):
    canonical(add_view("SELECT sale_id, amount FROM zakaz.refunds_logs"))
    line = refused(chain)
    assert line.startswith("Error: bi.v_refunds_log: reads zakaz.refunds_logs"), line


def refused(chain, *args) -> str:
    before = versions(chain)
    result = new("--autogenerate", "Should not be written", *args)
    assert result.exit_code == 2, result.output
    assert versions(chain) == before
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


def test_a_canonical_schema_that_does_not_parse(chain, canonical):
    canonical(lambda t: t.replace("zakaz.dim_city_alias  ReplacingMergeTree ORDER BY (alias)",
                                  "zakaz.dim_city_alias", 1))
    assert "canonical schema" in refused(chain) and "does not parse" in refused(chain)


def test_a_python_error_in_the_canonical_schema(chain, canonical):
    canonical(lambda t: t.replace("CANONICAL: Schema = {", "CANONICAL: Schema = {{", 1))
    assert "does not parse" in refused(chain)


def test_a_view_over_a_table_that_is_gone(chain, canonical):
    # v_qtickets_inventory reads zakaz.dim_events: drop the table, keep the view.
    canonical(lambda t: t.replace(t[t.index("zakaz.dim_events  "):t.index("zakaz.dm_sales_daily  ")], "", 1))
    line = refused(chain, "--allow-data-loss")
    assert "reads zakaz.dim_events" in line


def test_a_type_clickhouse_does_not_know(chain, canonical):
    canonical(lambda t: add_table(t).replace("amount          Decimal(12, 2)\n", "amount          Decimel(12, 2)\n", 1))
    line = refused(chain)
    assert "zakaz.refunds_log.amount" in line and "Decimel(12, 2)" in line


def test_a_dropped_column_needs_the_flag(chain, canonical):
    canonical(lambda t: t.replace("    _loaded_at      DateTime DEFAULT now()\n\nzakaz.dm_sales_daily",
                                  "\nzakaz.dm_sales_daily", 1))
    line = refused(chain)
    assert "zakaz.dim_events._loaded_at" in line and "--allow-data-loss" in line

    result = new("--autogenerate", "Drop dim_events loaded at", "--allow-data-loss")
    assert result.exit_code == 0, result.output
    text = (chain / "versions" / "0014_drop_dim_events_loaded_at.py").read_text(encoding="utf-8")
    assert 'UPGRADE_LOSES = ["zakaz.dim_events._loaded_at"]' in text


def test_a_new_column_leaves_the_views_over_its_table_alone_both_ways(chain, canonical):
    """Six views read zakaz.dm_sales_daily, none the new column: neither direction recreates one."""
    canonical(lambda t: t.replace("    refunds_amount  UInt64\n", "    refunds_amount  UInt64\n"
                                  "    refunds_count   UInt32 DEFAULT 0\n", 1))
    result = new("--autogenerate", "Count refunds")
    assert result.exit_code == 0, result.output
    text = (chain / "versions" / "0014_count_refunds.py").read_text(encoding="utf-8")
    upgrade, downgrade = text.split("def upgrade() -> None:\n")[1].split("\n\n\ndef downgrade() -> None:\n")
    assert [line.strip() for line in upgrade.strip().splitlines()] == [
        'op.add_column_if_not_exists("zakaz.dm_sales_daily", "refunds_count UInt32 DEFAULT 0",',
        'after="refunds_amount")']
    assert downgrade.strip().splitlines() == ['op.drop_column_if_exists("zakaz.dm_sales_daily", "refunds_count")']


def add_side_head(chain):
    (chain / "versions" / "0099_side.py").write_text(
        '"""A side branch."""\nrevision = "0099"\ndown_revision = "0012"\nbranch_labels = None\n'
        "depends_on = None\nDOWNGRADE_LOSES: list[str] = []\n\n\ndef upgrade():\n    pass\n\n\n"
        "def downgrade():\n    pass\n", encoding="utf-8")


def test_two_heads(chain):
    add_side_head(chain)
    line = refused(chain)
    assert "2 heads" in line


def test_alembic_revision_autogenerate(chain, canonical):
    canonical(add_table)
    from alembic import command

    from app.chain import alembic_config

    cfg = alembic_config(None, script_location=str(chain))
    command.revision(cfg, message="Add refunds log", autogenerate=True)
    assert len(versions(chain)) == 14  # the 13 revisions and this one, not alembic's blank template
    text = (chain / "versions" / "0014_add_refunds_log.py").read_text(encoding="utf-8")
    assert 'down_revision = "0013"' in text and "op.create_table_if_not_exists(" in text
    assert "def upgrade() -> None:\n    pass" not in text


def alembic_cli(chain, *args):
    """Plain ``alembic`` on the command line, with an alembic.ini pointing at ``chain``."""
    ini = chain.parent / "alembic.ini"
    ini.write_text((PROJECT_ROOT / "alembic.ini").read_text(encoding="utf-8").replace(
        "script_location = %(here)s/migrations", f"script_location = {chain}").replace(
        "prepend_sys_path = .", f"prepend_sys_path = {PROJECT_ROOT}"), encoding="utf-8")
    return subprocess.run([sys.executable, "-m", "alembic", "-c", str(ini), *args], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=300)


def test_alembic_revision_autogenerate_from_the_command_line(chain):
    before = versions(chain)
    proc = alembic_cli(chain, "revision", "--autogenerate", "-m", "nothing")
    assert proc.returncode == 0, proc.stderr
    assert "No changes" in proc.stdout
    assert versions(chain) == before


def test_alembic_revision_autogenerate_refuses_two_heads_in_one_line(chain):
    add_side_head(chain)
    before = versions(chain)
    proc = alembic_cli(chain, "revision", "--autogenerate", "-m", "nothing")
    assert proc.returncode != 0 and versions(chain) == before
    # alembic's own one-line error (logged as alembic.ini says), no traceback.
    said = [line for line in (proc.stdout + proc.stderr).splitlines() if "2 heads (0013, 0099)" in line]
    assert said and "Traceback" not in proc.stderr, proc.stdout + proc.stderr


@pytest.fixture
def at_head(tmp_path):
    """An embedded database the chain built, at head."""
    return copy_template("0013", tmp_path / "live")


def verify(url, *args):
    return CliRunner().invoke(main, ["verify", "--url", url, *args], catch_exceptions=False)


def test_verify_tells_a_canonical_schema_ahead_of_the_chain(at_head, monkeypatch):
    extra = parse_tables(NEW_TABLE)[0]
    monkeypatch.setattr(canonical_module, "CANONICAL", {**CANONICAL, extra.name: extra})
    result = verify(at_head)
    assert result.exit_code == 1, result.output
    assert "canonical schema is ahead of the chain: run `zakaz-schema new --autogenerate`" in result.output
    assert "DRIFT" not in result.output
    assert json.loads(verify(at_head, "--json").output)["canonical_ahead"] is True


def test_verify_calls_a_changed_database_drift(at_head):
    with connect(at_head) as conn:
        conn.exec_driver_sql("ALTER TABLE zakaz.dim_events DROP COLUMN _loaded_at")
    result = verify(at_head)
    assert result.exit_code == 1, result.output
    assert "DRIFT: 1 finding(s)" in result.output and "autogenerate" not in result.output
    assert json.loads(verify(at_head, "--json").output)["canonical_ahead"] is False


def test_a_database_path_already_open_in_this_process(chain, tmp_path):
    # chDB holds one path per process: the scratch database cannot open beside a caller's.
    with connect(f"clickhouse+chdb:///default?path={tmp_path / 'held'}"):
        line = refused(chain)
    assert "already has another embedded database open" in line


def test_the_live_database_in_use_elsewhere_does_not_matter(chain, tmp_path):
    """Autogenerate compares the chain with the canonical schema: it never opens the live database."""
    url = f"clickhouse+chdb:///default?path={tmp_path / 'live'}"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom app.engine import connect\n"
         f"with connect({url!r}):\n    print('held', flush=True)\n    sys.stdin.read()\n"],
        cwd=PROJECT_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        env = {**os.environ, "ZAKAZ_MIGRATIONS": str(chain), "ZAKAZ_DATABASE_URL": url}
        busy = subprocess.run([sys.executable, "-m", "app", "status", "--url", url],
                              cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, env=env)
        assert busy.returncode == 2 and "in use by another process" in busy.stderr + busy.stdout
        proc = subprocess.run([sys.executable, "-m", "app", "new", "--autogenerate", "nothing"],
                              cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("No changes")
    finally:
        holder.communicate("", timeout=60)


FACT_TABLE = """
zakaz.fact_refunds  MergeTree ORDER BY (sale_id)
    sale_id         UInt32
    amount          Decimal(12, 2)
"""


@pytest.mark.server
def test_on_a_server_a_generated_fact_table_is_granted_verified_and_revoked_on_downgrade(
        server, chain, canonical, monkeypatch):
    import server_support as support

    support.reset(server)
    try:
        url = server.url("native", support.fresh_database(server))
        canonical(lambda t: t.replace('TABLES = """\n', 'TABLES = """' + FACT_TABLE + "\n", 1))
        result = new("--autogenerate", "Add fact refunds")
        assert result.exit_code == 0, result.output
        commands.upgrade(url, "head")
        etl_grants = "SHOW GRANTS FOR zakaz_etl"
        assert ("GRANT SELECT, INSERT ON zakaz.fact_refunds TO zakaz_etl",) in support.run_sql(url, etl_grants)[0]
        monkeypatch.setattr(canonical_module, "CANONICAL", revision_files.load_canonical())
        assert [str(f) for f in commands.verify(url)["findings"] if f.fatal] == []

        commands.downgrade(url, "0013", allow_data_loss=True)
        assert not [g for (g,) in support.run_sql(url, etl_grants)[0] if "fact_refunds" in g]
        assert support.run_sql(url, "EXISTS TABLE zakaz.fact_refunds")[0] == [(0,)]
    finally:
        support.reset(server)


def status(url, *args):
    return CliRunner().invoke(main, ["status", "--url", url, *args], catch_exceptions=False)


def test_status_tells_a_canonical_schema_ahead_of_the_chain(chain, canonical, at_head, tmp_path, monkeypatch):
    from app import canonical_verdict

    # A fresh checkout keeps no verdict: status says nothing of the canonical schema (and replays nothing).
    assert json.loads(status(at_head, "--json").output)["canonical_ahead"] is None
    assert new("--autogenerate", "Nothing to do").output.startswith("No changes")  # keeps one
    assert json.loads(status(at_head, "--json").output)["canonical_ahead"] is False
    canonical(add_table)
    # The copy stands for app/canonical.py, the file the verdict is keyed by.
    monkeypatch.setattr(canonical_verdict, "CANONICAL_FILE", tmp_path / f"{revision_files.CANONICAL_MODULE}.py")
    for _ in range(2):  # the full status compares and keeps the verdict; the fast path reads it
        result = status(at_head)
        assert result.exit_code == 0, result.output
        assert "AHEAD:     the canonical schema (app/canonical.py) is ahead of the chain: " \
               "run `zakaz-schema new --autogenerate`" in result.output
        assert json.loads(status(at_head, "--json").output)["canonical_ahead"] is True
    # A revision written for it: the chain catches up, and status says so at once.
    assert new("--autogenerate", "Add refunds log").exit_code == 0
    assert "AHEAD" not in status(at_head).output
    assert json.loads(status(at_head, "--json").output)["canonical_ahead"] is False
