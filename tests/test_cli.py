"""The operator CLI through click's runner, on real chDB."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from app.cli import main


@pytest.fixture
def cli(db_url):
    runner = CliRunner()

    def invoke(*args, url=db_url):
        extra = ["--url", url] if url and args and args[0] not in ("new",) else []
        return runner.invoke(main, [*args, *extra], catch_exceptions=False)
    return invoke


def test_upgrade_prints_each_revision_and_a_summary(cli):
    result = cli("upgrade")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert sum(1 for line in lines if line.startswith("  + ")) == 13
    assert "0008" in result.output and "stmt" in result.output and " ms" in result.output
    assert "access statements checked and skipped" in result.output
    assert lines[-1].startswith("13 step(s) in") and "at 0013 (head)" in lines[-1]
    again = cli("upgrade")
    assert again.exit_code == 0 and "Nothing to do" in again.output


def test_status_history_and_json(cli):
    cli("upgrade", "0004")
    status = cli("status", "--json")
    data = json.loads(status.output)
    assert data["heads"] == ["0004"]
    assert [p["revision"] for p in data["pending"]] == [f"{i:04d}" for i in range(5, 14)]
    assert data["engine"] == "chdb" and data["server_version"].split(".")[0].isdigit()
    human = cli("status")
    assert "pending:   9 revision(s)" in human.output
    history = json.loads(cli("history", "--json").output)
    assert [h["revision"] for h in history] == ["0001", "0002", "0003", "0004"]
    assert all(h["status"] == "applied" and h["file_matches"] for h in history)


def test_verify_clean_then_drift_then_unmanaged(cli, query):
    cli("upgrade")
    ok = cli("verify")
    assert ok.exit_code == 0 and "OK: 41 objects" in ok.output
    query("ALTER TABLE zakaz.dim_events DROP COLUMN end_date")
    drift = cli("verify")
    assert drift.exit_code == 1
    assert "missing column zakaz.dim_events.end_date" in drift.output
    as_json = json.loads(cli("verify", "--json").output)
    assert as_json["ok"] is False
    assert [f["column"] for f in as_json["findings"] if f["kind"] == "missing_column"] == ["end_date"]
    query("CREATE TABLE zakaz.integration_extra (a UInt8) ENGINE = MergeTree ORDER BY a")
    extra = cli("verify")
    assert ("table zakaz.integration_extra is not in app/canonical.py; if a revision creates it, "
            "add it to TABLES there") in extra.output


def test_verify_answers_in_constant_queries(db_url):
    import sqlalchemy as sa

    from app import commands
    from app.engine import create_engine

    commands.upgrade(db_url, "head")
    counts = []
    for extra in (0, 30):
        if extra:
            from app.engine import connect
            with connect(db_url) as conn:
                for i in range(extra):
                    conn.exec_driver_sql(f"CREATE TABLE zakaz.extra_{i} (a UInt8) ENGINE = MergeTree ORDER BY a")
        seen = []
        listener = lambda *a, **k: seen.append(a[2])  # noqa: E731
        sa.event.listen(sa.engine.Engine, "before_cursor_execute", listener)
        try:
            commands.verify(db_url)
        finally:
            sa.event.remove(sa.engine.Engine, "before_cursor_execute", listener)
        counts.append(len(seen))
    # The listener saw verify's queries (else two zeros would be "equal"), and
    # they go through the engine factory the CLI uses.
    assert counts[0] > 0
    assert counts[0] == counts[1]
    engine = create_engine(db_url)
    try:
        assert isinstance(engine, sa.engine.Engine)
    finally:
        engine.dispose()


@pytest.mark.fast
def test_password_never_printed(cli):
    url = "clickhouse+native://deploy:Sup3rS3cret@127.0.0.1:1/default"
    for args in (("status",), ("upgrade",), ("verify",), ("history",)):
        result = cli(*args, url=url)
        assert result.exit_code == 2, result.output
        assert "Sup3rS3cret" not in result.output
        assert "***" in result.output
        errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1 and "Traceback" not in result.output
    sql = cli("sql", "head", url=url)
    assert sql.exit_code == 0 and "Sup3rS3cret" not in sql.output


@pytest.mark.fast
def test_sql_renders_ranges(cli):
    full = cli("sql", "head")
    assert full.exit_code == 0
    assert "CREATE DATABASE IF NOT EXISTS zakaz" in full.output
    assert full.output.count("INSERT INTO default.zakaz_schema_ledger") == 13
    part = cli("sql", "0007:0009")
    assert "CREATE DATABASE" not in part.output
    assert "EXCHANGE TABLES zakaz.stg_qtickets_sheets_inventory AND zakaz.stg_qtickets_sheets_inventory__rebuild" in part.output
    down = cli("sql", "0009:0008")
    assert "DROP TABLE IF EXISTS zakaz.fact_qtickets_inventory_latest" in down.output


def test_downgrade_refuses_to_drop_rows_without_flag(cli, query):
    cli("upgrade")
    query("INSERT INTO zakaz.fact_qtickets_inventory_latest (snapshot_ts, event_id, event_name, city, _ver) "
          "VALUES (now(), 'e1', 'x', 'msk', 1), (now(), 'e2', 'y', 'msk', 1)")
    refused = cli("downgrade", "0008")
    assert refused.exit_code == 2
    assert "zakaz.fact_qtickets_inventory_latest (holding 2 rows)" in refused.output
    assert "--allow-data-loss" in refused.output
    assert query("SELECT count() FROM zakaz.fact_qtickets_inventory_latest") == [(2,)]
    done = cli("downgrade", "0008", "--allow-data-loss")
    assert done.exit_code == 0, done.output
    assert "  - 0013" in done.output and "  - 0009" in done.output


@pytest.mark.fast
def test_new_revision_from_template(versions_copy, monkeypatch):
    from app import commands

    path = commands.new_revision("Add zakaz.fact_refunds table", script_location=str(versions_copy))
    assert path.endswith("0014_add_zakaz_fact_refunds_table.py")
    text = open(path).read()
    assert 'down_revision = \'0013\'' in text
    assert "from alembic import op" in text and "DOWNGRADE_LOSES" in text
    assert "def upgrade()" in text and "def downgrade()" in text
    with pytest.raises(commands.RevisionRefused, match="second head"):
        commands.new_revision("side", head="0005", script_location=str(versions_copy))
    side = commands.new_revision("side", head="0005", branch=True, script_location=str(versions_copy))
    assert "0015_side.py" in side
    with pytest.raises(commands.RevisionRefused, match="2 heads"):
        commands.new_revision("third", script_location=str(versions_copy))


@pytest.mark.fast
def test_help_is_fast_to_import():
    code = ("import sys, app.cli; "
            "bad = [m for m in ('sqlalchemy', 'chdb', 'alembic') if m in sys.modules]; "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
