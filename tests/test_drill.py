"""Rollback drills (app.drill) on real chDB: the whole chain survives
up/down/up with data, and broken downgrades are caught and named."""
from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from app import commands
from app.canonical import CANONICAL
from app.cli import main
from app.drill import DrillError, run_drill
from app.engine import connect
from app.losses import DOWNGRADE, declared
from app.sample_data import load_sample


def chain(script_location: str | None = None) -> list:
    script = commands.script_directory(commands.alembic_config(None, script_location=script_location))
    return list(reversed(list(script.walk_revisions())))


def edit_revision(versions_copy: Path, prefix: str, *replacements: tuple[str, str]) -> None:
    path = next((versions_copy / "versions").glob(f"{prefix}_*.py"))
    text = path.read_text()
    for old, new in replacements:
        assert old in text, (path.name, old)
        text = text.replace(old, new)
    path.write_text(text)


@pytest.mark.slow
def test_stairway_whole_chain_with_data():
    t0 = time.perf_counter()
    report = run_drill(with_data=True)
    wall_ms = (time.perf_counter() - t0) * 1000
    assert report.ok, report.failures
    revisions = chain()
    assert [r.revision for r in report.results] == [r.revision for r in revisions]
    assert report.scratch and report.start == "base" and report.end == revisions[-1].revision
    for result, rev in zip(report.results, revisions):
        assert result.schema_restored is True and result.rows_kept is True, result
        # Every declared loss really happened, with the sample rows in it:
        # proof that data went through every table the chain drops.
        assert sorted(result.declared_losses) == sorted(f"{x} (20 rows)" for x in declared(rev.module, DOWNGRADE))
    assert sum(len(r.declared_losses) for r in report.results) == 29
    # The step timings are measured, in milliseconds: each direction of the
    # chain takes some time, and all of them fit in the drill's wall time.
    for step in ("up_ms", "down_ms", "reup_ms"):
        assert sum(getattr(r, step) for r in report.results) > 0, step
    assert sum(r.up_ms + r.down_ms + r.reup_ms for r in report.results) <= wall_ms


BROKEN = {
    "0005 downgrade forgets to drop the column": (
        "0005", [('op.drop_column_if_exists("zakaz.fact_qtickets_sales", "_loaded_at")', "pass")],
        "schema not restored: column zakaz.fact_qtickets_sales._loaded_at (DateTime DEFAULT now()) "
        "is left over after the downgrade",
    ),
    # The view's output columns are the same either way: only its query shows it.
    "0009 downgrade forgets to repoint a view": (
        "0009", [('    op.create_view("zakaz.v_qtickets_inventory", INVENTORY_BEFORE)\n', '')],
        "schema not restored: view zakaz.v_qtickets_inventory reads zakaz.fact_qtickets_inventory_latest "
        "after the downgrade, was zakaz.fact_qtickets_inventory",
    ),
    "0006 drops a column it does not declare": (
        "0006", [('DOWNGRADE_LOSES = ["zakaz.meta_job_runs.run_id"]', "DOWNGRADE_LOSES: list[str] = []")],
        "undeclared data loss: the downgrade drops column zakaz.meta_job_runs.run_id (20 rows)",
    ),
    "0009 drops a table it does not declare": (
        "0009", [('DOWNGRADE_LOSES = ["zakaz.fact_qtickets_inventory_latest"]', "DOWNGRADE_LOSES = []")],
        "undeclared data loss: the downgrade drops zakaz.fact_qtickets_inventory_latest (20 rows)",
    ),
    # Schema restored exactly; only the data shows the loss.
    "0007 downgrade empties a table": (
        "0007", [('    op.drop_column_if_exists("zakaz.stg_qtickets_api_orders_raw", "order_id")',
                  '    op.drop_column_if_exists("zakaz.stg_qtickets_api_orders_raw", "order_id")\n'
                  '    op.run("TRUNCATE TABLE zakaz.stg_qtickets_api_orders_raw")')],
        "rows of zakaz.stg_qtickets_api_orders_raw changed by upgrade + downgrade: 20 -> 0 "
        "(before the step vs after the downgrade)",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
@pytest.mark.slow
def test_broken_downgrade_is_caught_and_named(case, versions_copy):
    revision, edits, expected = BROKEN[case]
    edit_revision(versions_copy, revision, *edits)
    report = run_drill(from_rev=revision, to_rev=revision, with_data=True,
                       script_location=str(versions_copy))
    assert not report.ok
    assert [r.revision for r in report.results] == [revision]
    assert report.failures[0].startswith(f"{revision}: {expected}"), report.failures
    result = report.results[0]
    schema_case = expected.startswith("schema not restored")
    assert result.schema_restored is not schema_case
    assert result.rows_kept is schema_case  # the data cases lose rows; the schema cases keep them


def test_undeclared_drop_fails_without_data_too(versions_copy):
    # Without rows there is nothing to count, but the runtime's data-loss
    # guard would not protect an undeclared column in production either.
    edit_revision(versions_copy, "0006", *BROKEN["0006 drops a column it does not declare"][1])
    report = run_drill(from_rev="0006", to_rev="0007", script_location=str(versions_copy))
    assert report.failures == [
        "0006: undeclared data loss: the downgrade drops column zakaz.meta_job_runs.run_id; "
        "declare it in DOWNGRADE_LOSES if that is intended"]
    assert [r.rows_kept for r in report.results] == [None, None]
    assert report.results[1].ok and report.results[1].declared_losses == ["zakaz.stg_qtickets_api_orders_raw.order_id"]


NOISE = '''"""Add meta.etl_runs.noise UInt32 DEFAULT rand(), not materialized.

Downgrade drops it.
"""
from app.operations import add_column, drop_column, create_view, drop_view

revision = "{rev}"
down_revision = "{down}"
branch_labels = None
depends_on = None

DOWNGRADE_LOSES = {loses}


def upgrade() -> None:
    {up}


def downgrade() -> None:
    {down_op}
'''


@pytest.mark.slow
def test_column_read_from_a_volatile_default_is_flagged_not_failed(versions_copy):
    """Rows already in a table read an added column's DEFAULT anew at each read;
    rand() makes that visible on every read, not just when a second passes."""
    versions = versions_copy / "versions"
    (versions / "0014_noise.py").write_text(NOISE.format(
        rev="0014", down="0013", loses='["meta.etl_runs.noise"]',
        up='add_column("meta.etl_runs", "noise UInt32 DEFAULT rand()")',
        down_op='drop_column("meta.etl_runs", "noise")'))
    (versions / "0015_view.py").write_text(NOISE.format(
        rev="0015", down="0014", loses="[]",
        up='create_view("meta.v_one", "SELECT 1 AS one")', down_op='drop_view("meta.v_one")'))
    report = run_drill(from_rev="0014", with_data=True, script_location=str(versions_copy))
    assert report.ok, report.failures
    assert [r.revision for r in report.results] == ["0014", "0015"]
    assert any(n.startswith("warning: meta.etl_runs.noise is not stored") and "rand()" in n
               for n in report.results[0].notes)


@pytest.mark.slow
def test_drill_on_a_given_database_starts_where_it_is(database_at):
    db_url = database_at("0011")
    with pytest.raises(DrillError, match="the database is at 0011, past the start of the drill"):
        run_drill(db_url, from_rev="0005")
    report = run_drill(db_url, with_data=True)
    assert report.ok, report.failures
    assert report.start == "0011" and [r.revision for r in report.results] == ["0012", "0013"]
    with connect(db_url) as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM default.alembic_version").all() == [("0013",)]
        # No sample rows are written into a given database (tests/test_drill_given_database.py).
        assert conn.exec_driver_sql("SELECT count() FROM zakaz.dim_events").all() == [(0,)]
    assert report.sample_tables == [] and report.sample_rows.startswith("none written")
    with pytest.raises(DrillError, match="nothing to drill: the database is already at 0013"):
        run_drill(db_url)


@pytest.mark.slow
def test_drill_on_a_given_database_deletes_its_rows_only_when_allowed(database_at):
    """0009's downgrade drops the table its upgrade filled from the rows already there (declared):
    on a real database, the drill is refused there unless --allow-data-loss."""
    db_url = database_at("0008")
    with connect(db_url) as conn:
        load_sample(conn, rows_per_table=5, seed=1, today=dt.date(2026, 11, 1))
    report = run_drill(db_url, to_rev="0009")
    assert not report.ok
    assert "would drop data from: zakaz.fact_qtickets_inventory_latest" in report.failures[0]
    assert "--allow-data-loss" in report.failures[0]
    with connect(db_url) as conn:  # the refused downgrade dropped nothing
        assert conn.exec_driver_sql("SELECT count() FROM zakaz.fact_qtickets_inventory_latest").scalar() > 0
    commands.downgrade(db_url, "0008", allow_data_loss=True)
    allowed = run_drill(db_url, to_rev="0009", allow_data_loss=True)
    assert allowed.ok, allowed.failures


# --- CLI -------------------------------------------------------------------------------

@pytest.fixture
def runner():
    return CliRunner()


@pytest.mark.slow
def test_cli_drill_uses_a_scratch_database_not_the_configured_one(runner, db_url, monkeypatch):
    monkeypatch.setenv("ZAKAZ_DATABASE_URL", db_url)
    result = runner.invoke(main, ["drill", "--from", "0012", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["ok"] and data["scratch"] and data["url"] == "scratch" and data["failures"] == []
    assert [r["revision"] for r in data["results"]] == ["0012", "0013"]
    assert all(r["schema_restored"] and r["rows_kept"] is None for r in data["results"])
    assert not Path(db_url.split("path=", 1)[1]).exists()


@pytest.mark.fast
def test_cli_drill_refuses_a_url_without_yes(runner, db_url):
    result = runner.invoke(main, ["drill", "--url", db_url, "--with-data"], catch_exceptions=False)
    assert result.exit_code == 2
    assert "add --yes to drill it" in result.output
    assert not Path(db_url.split("path=", 1)[1]).exists()


@pytest.mark.slow
def test_cli_drill_on_a_url_with_yes_prints_the_table(runner, database_at):
    db_url = database_at("0012")
    result = runner.invoke(main, ["drill", "--url", db_url, "--yes", "--with-data"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1].split() == ["revision", "up", "ms", "down", "ms", "schema", "restored", "rows", "kept", "notes"]
    assert lines[2].split()[0] == "0013" and lines[2].split()[3:5] == ["yes", "yes"]
    assert lines[-1].startswith("OK: 1 revision(s) 0013..0013")


def test_cli_drill_exits_1_naming_the_broken_revision(runner, versions_copy, monkeypatch):
    edit_revision(versions_copy, "0005", *BROKEN["0005 downgrade forgets to drop the column"][1])
    monkeypatch.setenv("ZAKAZ_MIGRATIONS", str(versions_copy))
    result = runner.invoke(main, ["drill", "--from", "0005", "--to", "0006"], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    assert "  FAIL schema not restored: column zakaz.fact_qtickets_sales._loaded_at" in result.output
    assert result.output.splitlines()[-1].startswith(
        "FAILED: 0005: schema not restored: column zakaz.fact_qtickets_sales._loaded_at")
    row = next(line for line in result.output.splitlines() if line.startswith("0005"))
    assert row.split()[3] == "NO"


@pytest.mark.fast
def test_cli_drill_bad_range_is_a_usage_error(runner):
    result = runner.invoke(main, ["drill", "--from", "nope"], catch_exceptions=False)
    assert result.exit_code == 2 and "unknown revision 'nope'" in result.output
    result = runner.invoke(main, ["drill", "--from", "0009", "--to", "0005"], catch_exceptions=False)
    assert result.exit_code == 2 and "--from 0009 is not on the chain up to 0005" in result.output


TTL_ADDED = '''"""Keep meta.etl_runs 30 days: TTL on started_at.

Rows already older are deleted when the TTL is set (declared).
"""
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

UPGRADE_LOSES = ["meta.etl_runs"]


def upgrade() -> None:
    op.modify_ttl("meta.etl_runs", "{column} + INTERVAL 30 DAY")


def downgrade() -> None:
    op.remove_ttl("meta.etl_runs")
'''


@pytest.mark.slow
def test_an_upgrade_that_declares_a_loss_is_drilled_with_data(versions_copy):
    """A declared upgrade loss (a TTL set on a table holding rows) is rehearsed, not refused;
    the data checks still hold the step to what it declares."""
    column = next(c.name for c in CANONICAL["meta.etl_runs"].columns if c.type.startswith("DateTime"))
    (versions_copy / "versions" / "0014_ttl.py").write_text(TTL_ADDED.replace("{column}", column))
    report = run_drill(from_rev="0014", with_data=True, script_location=str(versions_copy))
    assert report.ok, report.failures
    assert [r.revision for r in report.results] == ["0014"] and report.results[0].rows_kept
