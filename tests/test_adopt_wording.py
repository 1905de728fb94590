"""What adopt, status and verify say about an adoption: planned, applied with losses allowed,
failed and resumed; on real chDB (each test fails on the wording before its fix)."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from app import adopt, commands, ledger, replay
from app.cli import main
from app.engine import connect
from legacy_fixtures import build_legacy, run_sql, variants
from test_adopt import ROWS, legacy
from test_adopt import cache  # noqa: F401 - a fixture
from test_adopt_bad_input import _merge_after_listing

VENUE = "ALTER TABLE zakaz.dim_events ADD COLUMN venue String DEFAULT ''"


@pytest.fixture
def cli(cache, monkeypatch):
    """The CLI, reading the module's replay cache."""
    monkeypatch.setattr(replay, "cache_dirs", lambda _=None: [cache])

    def run(*args):
        return CliRunner().invoke(main, list(args))
    return run


def _ahead_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("ahead:")]


def test_ahead_objects_shaped_differently_are_not_said_to_match(db_url, cache, cli):
    """run_id UUID (0006 has String) and a non-Nullable inventory_latest (0009 has Nullable) are
    there ahead of 0004 but not as their revisions define them; 0005's column, added as 0005
    adds it, is."""
    build_legacy(db_url, run_id_uuid=True, fixes=("0005", "0009-not-null"))
    plan = adopt.plan_adoption(db_url, cache_dir=cache)
    assert plan.revision == "0004"
    assert {(a["object"], a["column"]): a["matches"] for a in plan.ahead} == {
        ("zakaz.fact_qtickets_sales", "_loaded_at"): True,
        ("zakaz.meta_job_runs", "run_id"): False,
        ("zakaz.fact_qtickets_inventory_latest", ""): False,
    }
    shown = cli("adopt", "--url", db_url)
    assert shown.exit_code == 0, shown.output
    assert _ahead_lines(shown.output) == [
        "ahead:     zakaz.fact_qtickets_sales._loaded_at from 0005 is already there (as it defines it)",
        "ahead:     zakaz.meta_job_runs.run_id from 0006 is already there (shaped differently: repaired below)",
        "ahead:     zakaz.fact_qtickets_inventory_latest from 0009 is already there "
        "(shaped differently: repaired below)",
    ]
    as_json = json.loads(cli("adopt", "--json", "--url", db_url).output)
    assert [a["matches"] for a in as_json["ahead"]] == [True, False, False]


def test_the_plan_says_each_loss_once_and_counts_rows_as_rows(db_url, cache, cli):
    build_legacy(db_url, extra=[VENUE, "INSERT INTO zakaz.dim_events (event_id, venue, _ver) VALUES ('e1', 'hall', 1)"])
    plan = adopt.plan_adoption(db_url, cache_dir=cache)
    [lossy] = plan.lossy_operations
    assert lossy.reason.endswith("zakaz.dim_events holds 1 row; LOSES zakaz.dim_events.venue in 1 row"), lossy.reason
    shown = cli("adopt", "--url", db_url)
    [line] = [line for line in shown.output.splitlines() if "drop_column zakaz.dim_events.venue" in line]
    assert line.count("LOSES") == 1 and "row(s)" not in line, line
    with pytest.raises(adopt.DataLossRefused, match=r"drop_column zakaz\.dim_events\.venue \(1 row\);"):
        adopt.apply_adoption(db_url, plan, cache_dir=cache)


@pytest.mark.slow
def test_an_adoption_with_losses_allowed_reports_them_at_the_end(db_url, tmp_path, cache, cli):
    """The losses the plan declared happened: the final report repeats them, with their rows,
    and says the checksums were compared on the other columns."""
    narrowing = ["ALTER TABLE zakaz.core_sales_fct MODIFY COLUMN tickets_sold Int64",
                 "INSERT INTO zakaz.core_sales_fct (sale_date, event_id, tickets_sold) VALUES "
                 "('2024-01-01', 'n1', -5), ('2024-01-01', 'n2', 5000000000)"]
    urls = [db_url, f"clickhouse+chdb:///default?path={tmp_path / 'second'}"]
    for url in urls:
        legacy(url, extra=[VENUE])
        run_sql(url, narrowing)
    plan = adopt.plan_adoption(db_url, cache_dir=cache)
    assert {(op.kind, op.target, op.rows_at_risk) for op in plan.lossy_operations} == {
        ("modify_column", "zakaz.core_sales_fct.tickets_sold", 2), ("drop_column", "zakaz.dim_events.venue", ROWS)}

    done = cli("adopt", "--apply", "--allow-data-loss", "--url", db_url)
    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    assert ("LOST (allowed): modify_column zakaz.core_sales_fct.tickets_sold: changed by the conversion to UInt32 "
            "in 2 rows") in lines
    assert f"LOST (allowed): drop_column zakaz.dim_events.venue: lost in {ROWS} rows" in lines
    [ok] = [line for line in lines if line.startswith("OK:")]
    assert "2 loss(es) allowed with --allow-data-loss" in ok
    assert ("(counts and checksums unchanged; checksums compared on every column but "
            "zakaz.core_sales_fct.tickets_sold, zakaz.dim_events.venue, lost as listed)") in ok, ok

    done = cli("adopt", "--apply", "--allow-data-loss", "--json", "--url", urls[1])
    assert done.exit_code == 0, done.output
    data = json.loads(done.output)
    assert data["ok"] and data["checksums_without"] == ["zakaz.core_sales_fct.tickets_sold", "zakaz.dim_events.venue"]
    assert sorted((x["operation"], x["target"], x["rows"]) for x in data["allowed_losses"]) == [
        ("drop_column", "zakaz.dim_events.venue", ROWS), ("modify_column", "zakaz.core_sales_fct.tickets_sold", 2)]


@pytest.mark.slow
def test_a_first_step_that_fails_then_status_verify_and_the_resumed_plan(db_url, cache, cli, monkeypatch):
    table = "zakaz.dm_sales_daily"
    legacy(db_url, extra=variants("key-type"))
    plan = adopt.plan_adoption(db_url, cache_dir=cache)
    assert (plan.operations[0].kind, plan.operations[0].target) == ("rebuild_table", table)
    total = len(plan.operations)
    _merge_after_listing(monkeypatch, table)
    with pytest.raises(adopt.AdoptionStepFailed) as failed:
        adopt.apply_adoption(db_url, plan, cache_dir=cache)
    monkeypatch.undo()
    message = str(failed.value)
    assert "steps 1..0" not in message and "; no step is done;" in message, message
    assert "writes or merges changed its parts" in message and "running it again retries the rebuild" in message
    assert "(it retries this one)" in message
    assert "`zakaz-schema adopt --apply` again to resume" in message

    # status: the only way on is adopt --apply (repair refuses an adoption).
    status = cli("status", "--url", db_url)
    [problem] = [line for line in status.output.splitlines() if line.startswith("PROBLEM:")]
    assert problem.startswith("PROBLEM:   adopt 0004 failed")
    assert "--mark-" not in status.output and "fix the cause, then `zakaz-schema adopt --apply`" in status.output
    refused = cli("upgrade", "--url", db_url)
    assert refused.exit_code == 2 and "--mark-" not in refused.output and "adopt --apply" in refused.output

    # verify: not "behind, run upgrade" (upgrade refuses): the adoption is in progress.
    verified = cli("verify", "--url", db_url)
    assert verified.exit_code == 1
    assert "BEHIND" not in verified.output and "zakaz-schema upgrade" not in verified.output, verified.output
    last = verified.output.splitlines()[-1]
    assert last.startswith("ADOPTING: ") and "the adoption at 0004 is failed" in last
    assert "run `zakaz-schema adopt --apply`" in last
    assert commands.verify(db_url)["adoption"]["state"] == "failed"
    assert json.loads(cli("verify", "--json", "--url", db_url).output)["adoption"]["revision"] == "0004"

    # The plan that resumes it says so, not "no ledger".
    shown = cli("adopt", "--url", db_url)
    assert shown.exit_code == 0, shown.output
    header = shown.output.splitlines()[0]
    assert "no ledger" not in header and f"an adoption in progress (step 0 of {total} done)" in header, header
    data = json.loads(cli("adopt", "--json", "--url", db_url).output)
    assert data["resumed_after"] == {"steps_done": 0, "steps_total": total}


def test_verify_on_a_database_built_by_the_old_files_points_at_adopt(db_url, cli):
    build_legacy(db_url)
    objects = commands.status(db_url).unmanaged_objects
    assert objects > 0
    verified = cli("verify", "--url", db_url)
    assert verified.exit_code == 1
    assert (f"UNMANAGED: no ledger, but zakaz/meta/bi hold {objects} objects: built by the old SQL files? "
            "see `zakaz-schema adopt`") in verified.output.splitlines()
    result = commands.verify(db_url)
    assert result["unmanaged_objects"] == objects and result["adoption"] is None
    as_json = json.loads(cli("verify", "--json", "--url", db_url).output)
    assert as_json["unmanaged_objects"] == objects and as_json["adoption"] is None
    with connect(db_url) as conn:
        assert not conn.exec_driver_sql(
            "SELECT count() FROM system.tables WHERE name = %(t)s", {"t": ledger.LEDGER_TABLE}).scalar()
