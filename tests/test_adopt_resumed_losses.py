"""A resumed adoption's final report after an earlier, killed run lost data under
--allow-data-loss: it repeats those losses and does not claim every row was kept
since before the adoption; on real chDB."""
from __future__ import annotations

import json

import pytest

from app import adopt, ledger
from app.adopt import running
from app.engine import connect
from legacy_fixtures import run_sql
from test_adopt import ROWS, legacy
from test_adopt import cache  # noqa: F401 - a fixture
from test_adopt_wording import VENUE, cli  # noqa: F401 - a fixture

NEGATIVE = ["ALTER TABLE zakaz.core_sales_fct MODIFY COLUMN tickets_sold Int64",
            "INSERT INTO zakaz.core_sales_fct (sale_date, event_id, tickets_sold) VALUES "
            "('2024-01-01', 'n1', -5), ('2024-01-01', 'n2', -7)"]


def _killed_after_the_losses(db_url, cache, monkeypatch):
    """Apply with losses allowed, killed (KeyboardInterrupt, as -9 leaves it) once every lossy step ran."""
    legacy(db_url, extra=[VENUE])
    run_sql(db_url, NEGATIVE)
    plan = adopt.plan_adoption(db_url, cache_dir=cache)
    lossy = plan.lossy_operations
    assert {(op.target, op.rows_at_risk) for op in lossy} == {
        ("zakaz.core_sales_fct.tickets_sold", 2), ("zakaz.dim_events.venue", ROWS)}
    last = max(plan.operations.index(op) for op in lossy)
    assert last + 1 < len(plan.operations), "a step must follow the lossy ones"
    after = [call for op in plan.operations[last + 1:] for call in op.calls]
    invoke = running.invoke

    def killed(ops, call):
        if call in after and not ops.migration_context.as_sql:
            raise KeyboardInterrupt("killed")
        invoke(ops, call)
    monkeypatch.setattr(running, "invoke", killed)
    with pytest.raises(KeyboardInterrupt):
        adopt.apply_adoption(db_url, plan, allow_data_loss=True, cache_dir=cache)
    monkeypatch.setattr(running, "invoke", invoke)
    return plan


def test_a_resumed_adoption_repeats_the_losses_of_the_killed_run(db_url, cache, cli, monkeypatch):
    _killed_after_the_losses(db_url, cache, monkeypatch)
    resumed = adopt.plan_adoption(db_url, cache_dir=cache)
    assert resumed.resume and not resumed.lossy_operations

    done = cli("adopt", "--apply", "--url", db_url)
    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    earlier = [line for line in lines if line.startswith("LOST (allowed):")]
    assert [line.split(" (step")[0] for line in earlier] == [
        "LOST (allowed): zakaz.core_sales_fct.tickets_sold in 2 rows, by an earlier, interrupted run of this adoption",
        f"LOST (allowed): zakaz.dim_events.venue in {ROWS} rows, by an earlier, interrupted run of this adoption",
    ], done.output
    [ok] = [line for line in lines if line.startswith("OK:")]
    assert "2 loss(es) allowed with --allow-data-loss" in ok, ok
    assert "operation(s), every row kept by them" in done.output, done.output
    assert "since this run started" in ok and "unchanged since before" not in ok, ok

    with connect(db_url) as conn:
        [stamp] = [r for r in ledger.read_rows(conn, "default") if r["status"] == "stamped"]
    assert "LOSES" in stamp["message"] and "interrupted" in stamp["message"], stamp["message"]


def test_a_resumed_adoption_as_json(db_url, cache, cli, monkeypatch):
    _killed_after_the_losses(db_url, cache, monkeypatch)
    done = cli("adopt", "--apply", "--json", "--url", db_url)
    assert done.exit_code == 0, done.output
    data = json.loads(done.output)
    assert sorted((x["loses"], x["rows"], x["earlier_run"]) for x in data["allowed_losses"]) == [
        (["zakaz.core_sales_fct.tickets_sold"], 2, True), (["zakaz.dim_events.venue"], ROWS, True)]
    assert data["checksums_without"] == ["zakaz.core_sales_fct.tickets_sold", "zakaz.dim_events.venue"]
    assert data["compared_from"] == "resumed run"
