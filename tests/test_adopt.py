"""Adopting databases built by the old SQL files (app.adopt), on real chDB.

Legacy databases are built with plain SQL (tests/legacy_fixtures.py), filled
with sample rows, adopted, and then checked like a fresh install: verify
passes, the ledger is at head, and every table still has every row (counts
and checksums over the columns that existed before).
"""
from __future__ import annotations

import datetime as dt
import json

import pytest
from click.testing import CliRunner

from app import adopt, commands, ledger, replay
from app.canonical import CANONICAL
from app.cli import main
from app.engine import connect
from app.fingerprint import fingerprints
from app.sample_data import base_tables, load_sample
from app.snapshot import snapshot_schema
from app.verify import compare_schema
from legacy_fixtures import build_legacy, run_sql

TODAY = dt.date.today()
ROWS = 20
UNMANAGED_TABLES = ("zakaz.stg_amocrm_deals", "meta.integration_sync_log")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One replay of the chain for the whole module; every plan reads this cache."""
    folder = tmp_path_factory.mktemp("adopt-cache")
    adopt.revision_states(cache_dir=folder)
    return folder


def _state(url):
    """Schema, stored columns and fingerprints of every base table, and whether a ledger exists."""
    with connect(url) as conn:
        columns = {name: [c for c, _, kind in t.columns if kind != "ALIAS"] for name, t in base_tables(conn).items()}
        has_ledger = conn.exec_driver_sql(
            "SELECT count() FROM system.tables WHERE name = %(t)s", {"t": ledger.LEDGER_TABLE}
        ).scalar()
        return {"schema": snapshot_schema(conn), "columns": columns,
                "fingerprints": fingerprints(conn), "ledger": bool(has_ledger)}


def legacy(url, **options):
    """A legacy database at ``url`` with sample rows; returns its state before adoption."""
    build_legacy(url, **options)
    with connect(url) as conn:
        inserted = load_sample(conn, rows_per_table=ROWS, seed=7, today=TODAY)
    assert set(inserted.values()) == {ROWS}
    return _state(url)


def adopted(url, cache, before, *, allow_data_loss=False, changed=()):
    """Plan and apply; assert the result is a verified head with every row kept.

    ``changed``: tables the caller checks itself (a column dropped on purpose).
    """
    plan = adopt.plan_adoption(url, cache_dir=cache)
    assert plan.adoptable, adopt.explain_refusal(plan)
    result = adopt.apply_adoption(url, plan, allow_data_loss=allow_data_loss, cache_dir=cache)
    assert result.ok, (result.data_changes, [str(f) for f in result.findings if f.fatal])
    assert result.checked_tables == len(before["columns"])

    # Verification exactly like a fresh install (the frozen 0011 check ran in the upgrade, too).
    verified = commands.verify(url)
    assert [str(f) for f in verified["findings"] if f.fatal] == []
    status = commands.status(url)
    assert status.heads == ["0013"] and status.pending == [] and status.problem is None
    with connect(url) as conn:
        rows = ledger.read_rows(conn, "default")
    # One ledger step for the adoption: a row per operation, then the stamp.
    adoption = [r for r in rows if r["direction"] == "adopt"]
    assert rows[:len(adoption)] == adoption and {r["step_id"] for r in adoption} == {adoption[0]["step_id"]}
    statuses = [r["status"] for r in adoption]
    assert statuses[-1] == "stamped" and set(statuses[:-1]) <= {"started", "failed"}
    if not plan.resume:
        assert statuses == ["started"] * (len(plan.operations) + 1) + ["stamped"]
    assert adoption[-1]["heads"] == [plan.revision]
    assert [r["revision"] for r in rows if r["status"] == "applied"] == plan.pending

    # Every row is still there: counts and checksums over the columns that existed before.
    kept = {t: cols for t, cols in before["columns"].items() if t not in changed}
    with connect(url) as conn:
        after = fingerprints(conn, kept)
    assert {t: after.get(t) for t in kept} == {t: before["fingerprints"][t] for t in kept}
    return plan, result


def adopted_losing(url, cache, before, table, column):
    """``adopted`` with --allow-data-loss, ``table.column`` lost on purpose: its other columns keep every row."""
    columns = [c for c in before["columns"][table] if c != column]
    with connect(url) as conn:
        kept = fingerprints(conn, {table: columns})[table]
    done = adopted(url, cache, before, allow_data_loss=True, changed=(table,))
    with connect(url) as conn:
        assert fingerprints(conn, {table: columns})[table] == kept
    return done


def _kinds(plan):
    """The operations on tables (views hold no rows; the old files wrote their own queries)."""
    return sorted((op.kind, op.target) for op in plan.operations
                  if op.kind not in ("create_view", "recreate_view", "set_view_security"))


# --- the revision schemas --------------------------------------------------------------

def test_replayed_states_are_the_chain_and_are_cached_by_checksum(cache, tmp_path, versions_copy):
    states = adopt.revision_states(cache_dir=cache)
    assert states.revisions == [f"{i:04d}" for i in range(1, 14)]
    by_rev = {s.revision: s.schema for s in states.states}
    assert "zakaz.fact_qtickets_inventory_latest" not in by_rev["0008"]
    assert "zakaz.fact_qtickets_inventory_latest" in by_rev["0009"]
    assert by_rev["0005"]["zakaz.meta_job_runs"].column("run_id") is None
    assert by_rev["0006"]["zakaz.meta_job_runs"].column("run_id").type == "String"
    assert by_rev["0007"]["zakaz.stg_qtickets_sheets_inventory"].partition_by == ""
    assert by_rev["0008"]["zakaz.stg_qtickets_sheets_inventory"].partition_by == "toYYYYMM(_loaded_at)"
    # The replayed head is the canonical schema.
    assert [str(f) for f in compare_schema(by_rev["0013"], CANONICAL) if f.fatal] == []

    # The cache is what is read: a tampered copy is returned as is (no replay).
    files = list(cache.glob("adopt-*.json"))
    assert [f.name for f in files] == [f"adopt-{states.checksum}.json"]
    copy = tmp_path / "copy"
    copy.mkdir()
    data = json.loads(files[0].read_text())
    del data["states"][3]["objects"]["zakaz.dim_events"]
    (copy / files[0].name).write_text(json.dumps(data))
    assert "zakaz.dim_events" not in adopt.revision_states(cache_dir=copy).states[3].schema

    # A changed revision file is another chain: another key.
    from app.commands import alembic_config, script_directory

    def checksum(location):
        return adopt.chain_checksum(adopt.linear_chain(script_directory(alembic_config(None, script_location=location))))

    assert checksum(str(versions_copy)) == states.checksum
    path = versions_copy / "versions" / "0005_fact_qtickets_sales_loaded_at.py"
    path.write_text(path.read_text() + "\n# edited\n")
    assert checksum(str(versions_copy)) != states.checksum


def test_matching_rule_on_plain_data(cache):
    states = adopt.revision_states(cache_dir=cache).states
    at = {s.revision: i for i, s in enumerate(states)}
    head = states[-1].schema
    # A clean 0004 contains 0001..0004 and nothing later.
    s4 = dict(states[at["0004"]].schema)
    assert [r for r, i in at.items() if not adopt.blocking_differences(s4, states, i)] == ["0001", "0002", "0003", "0004"]
    # A later revision's value counts as contained (a fix applied by hand): head contains every revision.
    assert all(not adopt.blocking_differences(head, states, i) for i in range(len(states)))
    # A different type of a 0002 table blocks 0002 and everything after it.
    changed = dict(s4)
    obj = changed["zakaz.core_sales_fct"]
    changed["zakaz.core_sales_fct"] = type(obj)(**{**obj.__dict__, "columns": tuple(
        type(c)(c.name, "Float64" if c.name == "revenue" else c.type, c.default) for c in obj.columns)})
    assert adopt.blocking_differences(changed, states, at["0002"]) == [
        "column zakaz.core_sales_fct.revenue: expected Decimal(12, 2), found Float64"]


# --- adoptions -------------------------------------------------------------------------

@pytest.mark.slow
def test_plain_pre_lockdown_state_is_adopted_at_0004(db_url, cache):
    before = legacy(db_url)
    plan = adopt.plan_adoption(db_url, cache_dir=cache)
    assert plan.revision == "0004" and plan.pending == [f"{i:04d}" for i in range(5, 14)]
    # 0005 writes rows (MATERIALIZE COLUMN): a plan cannot stand in for it, so it is never stamped.
    assert list(plan.candidates) == ["0001", "0002", "0003", "0004"]
    assert min(plan.candidates.values()) == plan.candidates["0004"]
    assert list(plan.blocked_at) == ["0005"]
    assert plan.ahead == [] and plan.unmanaged == [] and plan.refusals == []
    # Only views differ (the old files wrote their own queries; v_sales_latest lacked FINAL).
    assert _kinds(plan) == []
    assert "zakaz.v_sales_latest" in {op.target for op in plan.operations}
    assert plan.tables["zakaz.dim_events"] == ROWS and len(plan.tables) == len(before["columns"])
    assert _state(db_url) == before  # planning changes nothing
    adopted(db_url, cache, before)


@pytest.mark.slow
def test_inventory_latest_with_non_nullable_columns_is_fixed_before_the_upgrade(db_url, cache):
    before = legacy(db_url, fixes=("0009-not-null",))
    plan, _ = adopted(db_url, cache, before)
    assert plan.revision == "0004"
    assert _kinds(plan) == [("modify_column", "zakaz.fact_qtickets_inventory_latest.tickets_left"),
                            ("modify_column", "zakaz.fact_qtickets_inventory_latest.tickets_total")]
    op = next(op for op in plan.operations if op.target.endswith("tickets_total"))
    assert not op.loses_data and any("REMOVE DEFAULT" in s for s in op.statements)
    with connect(db_url) as conn:
        # The hand-made table had rows, so 0009's backfill did not run over them.
        assert conn.exec_driver_sql("SELECT count() FROM zakaz.fact_qtickets_inventory_latest").scalar() == ROWS


@pytest.mark.slow
def test_partially_hand_fixed_state_0005_0007_and_0008_column_without_0006(db_url, cache):
    before = legacy(db_url, fixes=("0005", "0007", "0008-column"))
    plan, result = adopted(db_url, cache, before)
    # 0005 is re-run over its column (already there: kept, values unchanged).
    assert plan.revision == "0004" and plan.pending[0] == "0005"
    assert plan.ahead == [
        {"object": "zakaz.fact_qtickets_sales", "column": "_loaded_at", "revision": "0005", "matches": True},
        {"object": "zakaz.stg_qtickets_api_orders_raw", "column": "order_id", "revision": "0007", "matches": True},
        # 0008's table with the column but not 0008's partition key: rebuilt below.
        {"object": "zakaz.stg_qtickets_sheets_inventory", "column": "", "revision": "0008", "matches": False},
    ]
    # 0008 would rebuild the table copying only the columns it knows, and
    # the hand-added _loaded_at would lose its values: the plan rebuilds it
    # first with every column.  adopted() compared _loaded_at's checksum too.
    assert _kinds(plan) == [("rebuild_table", "zakaz.stg_qtickets_sheets_inventory")]
    assert "_loaded_at" in before["columns"]["zakaz.stg_qtickets_sheets_inventory"]
    # order_id was added at the end by hand: reported, not fatal.
    assert [f.kind for f in result.findings if f.object == "zakaz.stg_qtickets_api_orders_raw"] == ["column_order"]
    with connect(db_url) as conn:
        assert not conn.exec_driver_sql(
            "SELECT count() FROM system.tables WHERE name LIKE '%__adopt'").scalar()


@pytest.mark.slow
def test_integration_tables_are_left_untouched(db_url, cache):
    before = legacy(db_url, run_id_uuid=True, fixes=("0005", "0009-half"), integrations=True)
    plan, result = adopted(db_url, cache, before)
    assert plan.revision == "0004"
    assert plan.unmanaged == ["bi.v_amocrm_pipeline (view)", "meta.integration_sync_log (table)",
                              "zakaz.stg_amocrm_deals (table)"]
    assert _kinds(plan) == [("modify_column", "zakaz.fact_qtickets_inventory_latest.tickets_left"),
                            ("modify_column", "zakaz.meta_job_runs.run_id")]
    assert sorted(f.object for f in result.findings if f.kind == "unmanaged_object") == [
        "bi.v_amocrm_pipeline", "meta.integration_sync_log", "zakaz.stg_amocrm_deals"]
    after = _state(db_url)
    for name in (*UNMANAGED_TABLES, "bi.v_amocrm_pipeline"):
        assert after["schema"][name] == before["schema"][name]
    for name in UNMANAGED_TABLES:
        assert after["fingerprints"][name] == before["fingerprints"][name]


@pytest.mark.slow
def test_downgrade_never_drops_the_integration_tables_without_the_flag(db_url, cache):
    """Issue 15.1: 0001's downgrade drops whole databases, and with them tables no revision manages.

    adopt leaves the integration tables untouched; a downgrade to base must
    refuse (exit 2, one line naming them and their rows, nothing changed),
    an unmanaged empty table and a view included, unless --allow-data-loss.
    Plain alembic runs the same guard.
    """
    import subprocess
    import sys

    from app.config import PROJECT_ROOT

    before = legacy(db_url, run_id_uuid=True, fixes=("0005", "0009-half"), integrations=True)
    adopted(db_url, cache, before)
    run_sql(db_url, ["CREATE TABLE meta.integration_cursor (source String) ENGINE = MergeTree ORDER BY source"])
    runner = CliRunner()
    # The chain's own tables hold rows too: dropping those is what the flag is for.
    done = runner.invoke(main, ["downgrade", "0001", "--allow-data-loss", "--url", db_url])
    assert done.exit_code == 0, done.output
    state = _state(db_url)
    with connect(db_url) as conn:
        ledger_rows = len(ledger.read_rows(conn, "default"))

    refused = runner.invoke(main, ["downgrade", "base", "--url", db_url])
    assert refused.exit_code == 2, refused.output
    [error] = [line for line in refused.output.splitlines() if line.startswith("Error:")]
    for obj in ("zakaz.stg_amocrm_deals (20 rows)", "meta.integration_sync_log (20 rows)",
                "meta.integration_cursor (empty table)", "bi.v_amocrm_pipeline (view)"):
        assert obj in error, error
    assert "no revision created" in error and "--allow-data-loss" in error and "nothing was changed" in error
    plain = subprocess.run([sys.executable, "-m", "alembic", "-x", f"url={db_url}", "downgrade", "base"],
                           cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert plain.returncode != 0 and "zakaz.stg_amocrm_deals (20 rows)" in plain.stderr, plain.stderr
    assert "Traceback" not in plain.stderr
    assert _state(db_url) == state
    with connect(db_url) as conn:
        assert len(ledger.read_rows(conn, "default")) == ledger_rows
    assert commands.status(db_url).heads == ["0001"]

    done = runner.invoke(main, ["downgrade", "base", "--allow-data-loss", "--url", db_url])
    assert done.exit_code == 0, done.output
    with connect(db_url) as conn:
        assert not conn.exec_driver_sql(
            "SELECT count() FROM system.databases WHERE name IN ('zakaz', 'meta', 'bi')").scalar()


@pytest.mark.slow
def test_unmanaged_column_needs_allow_data_loss_and_lists_rows(db_url, cache):
    before = legacy(db_url, extra=["ALTER TABLE zakaz.dim_events ADD COLUMN venue String DEFAULT ''"])
    plan = adopt.plan_adoption(db_url, cache_dir=cache)
    assert plan.adoptable
    [lossy] = plan.lossy_operations
    assert (lossy.kind, lossy.target, lossy.rows_at_risk) == ("drop_column", "zakaz.dim_events.venue", ROWS)
    with pytest.raises(adopt.DataLossRefused, match=r"zakaz.dim_events.venue \(20 rows\)"):
        adopt.apply_adoption(db_url, plan, cache_dir=cache)
    assert _state(db_url) == before
    adopted_losing(db_url, cache, before, "zakaz.dim_events", "venue")
    with connect(db_url) as conn:
        assert "venue" not in [c for c, _, _ in base_tables(conn)["zakaz.dim_events"].columns]


# --- refusals ------------------------------------------------------------------------------

@pytest.mark.slow
def test_missing_table_of_0002_is_created_empty_and_its_views_again(db_url, cache):
    # The old "final" migration dropped tables; this one is read by views of 0002.
    before = legacy(db_url, extra=["DROP TABLE zakaz.dm_vk_ads_daily SYNC"])
    plan, _ = adopted(db_url, cache, before)
    assert plan.revision == "0004"
    assert _kinds(plan) == [("create_table", "zakaz.dm_vk_ads_daily")]
    [create] = [op for op in plan.operations if op.kind == "create_table"]
    assert "created empty" in create.reason and not create.loses
    # The views reading it could not be selected: created again.
    assert {"zakaz.v_vk_ads_daily", "bi.v_vk_ads_daily"} <= {
        op.target for op in plan.operations if op.kind == "create_view"}
    with connect(db_url) as conn:
        assert conn.exec_driver_sql("SELECT count() FROM zakaz.dm_vk_ads_daily").scalar() == 0
        conn.exec_driver_sql("SELECT * FROM bi.v_marketing_roi_daily").all()


@pytest.mark.slow
def test_widenings_are_repaired_and_every_value_is_kept(db_url, cache):
    """Type changes the old conversion table refused and app.types knows keep every value.

    Float32 -> Float64 keeps each value but prints it differently: the
    content check compares the old values converted to the new type.
    """
    values = ("SELECT count(), toString(sum(cityHash64(toString(toFloat64(net_revenue))))) "
              "FROM zakaz.stg_sales_events")
    before = legacy(db_url, extra=[
        "ALTER TABLE zakaz.fact_qtickets_sales MODIFY COLUMN revenue Decimal(11, 1)",  # -> Decimal(12, 2)
        "ALTER TABLE zakaz.stg_vk_ads_daily MODIFY COLUMN spend Int32",                 # -> Float64
        "ALTER TABLE zakaz.stg_sales_events MODIFY COLUMN net_revenue Float32",          # -> Float64
    ])
    with connect(db_url) as conn:
        was = conn.exec_driver_sql(values).one()
    plan = adopt.plan_adoption(db_url, cache_dir=cache)
    modified = {op.target: op.reason for op in plan.operations if op.kind == "modify_column"}
    assert set(modified) == {"zakaz.fact_qtickets_sales.revenue", "zakaz.stg_vk_ads_daily.spend",
                             "zakaz.stg_sales_events.net_revenue"}, plan.refusals
    assert not plan.lossy_operations and not any(op.loses for op in plan.operations)
    adopted(db_url, cache, before, changed=("zakaz.stg_sales_events",))
    with connect(db_url) as conn:
        assert conn.exec_driver_sql(values).one() == was
        assert conn.exec_driver_sql(
            "SELECT toTypeName(net_revenue) FROM zakaz.stg_sales_events LIMIT 1").scalar() == "Float64"


@pytest.mark.slow
def test_conversion_that_changes_values_is_listed_with_rows_and_needs_the_flag(db_url, cache):
    """Float64 -> Decimal(12, 2): values with more decimals than 2 do not come back the same."""
    before = legacy(db_url, extra=["ALTER TABLE zakaz.fact_qtickets_sales MODIFY COLUMN revenue Float64 DEFAULT 0"])
    run_sql(db_url, ["INSERT INTO zakaz.fact_qtickets_sales (date, event_id, revenue, _ver) VALUES "
                     "('2024-01-01', 'x1', 1.125, 1), ('2024-01-01', 'x2', 3e12, 1), ('2024-01-01', 'x3', 2.5, 1)"])
    with connect(db_url) as conn:
        lost = conn.exec_driver_sql("SELECT countIf(toFloat64(CAST(revenue AS Decimal(12, 2))) != revenue) "
                                    "FROM zakaz.fact_qtickets_sales").scalar()
    assert lost >= 1  # 1.125, and any sample value with more than 2 decimals
    before = _state(db_url)
    plan = adopt.plan_adoption(db_url, cache_dir=cache)
    assert plan.adoptable and plan.revision == "0004"
    [lossy] = plan.lossy_operations
    assert (lossy.kind, lossy.target, lossy.rows_at_risk) == ("modify_column", "zakaz.fact_qtickets_sales.revenue", lost)
    assert f"LOSES zakaz.fact_qtickets_sales.revenue in {lost} row{'s' if lost > 1 else ''}" in lossy.reason
    with pytest.raises(adopt.DataLossRefused, match=rf"zakaz.fact_qtickets_sales.revenue \({lost} rows\)"):
        adopt.apply_adoption(db_url, plan, cache_dir=cache)
    result = CliRunner().invoke(main, ["adopt", "--apply", "--url", db_url])
    assert result.exit_code == 2 and "--allow-data-loss" in result.output
    assert _state(db_url) == before

    # Allowed: converted, the other columns kept row for row, the values rounded as listed.
    adopted_losing(db_url, cache, before, "zakaz.fact_qtickets_sales", "revenue")
    with connect(db_url) as conn:
        assert conn.exec_driver_sql("SELECT toString(revenue) FROM zakaz.fact_qtickets_sales WHERE event_id IN "
                                    "('x1', 'x2', 'x3') ORDER BY event_id").scalars().all() == [
            "1.12", "3000000000000", "2.5"]


def test_empty_warehouse_has_nothing_to_adopt(db_url, cache):
    run_sql(db_url, ["CREATE DATABASE zakaz", "CREATE TABLE zakaz.mine (a UInt8) ENGINE = MergeTree ORDER BY a"])
    plan = adopt.plan_adoption(db_url, cache_dir=cache)
    assert not plan.adoptable and "nothing to adopt" in plan.refusals[0] and "zakaz.mine" in plan.refusals[0]


def test_plan_is_made_again_at_apply_and_must_not_have_changed(db_url, cache):
    before = legacy(db_url)
    plan = adopt.plan_adoption(db_url, cache_dir=cache)
    run_sql(db_url, ["ALTER TABLE zakaz.dim_events ADD COLUMN venue String DEFAULT ''"])
    with pytest.raises(adopt.PlanChanged):
        adopt.apply_adoption(db_url, plan, cache_dir=cache)
    after = _state(db_url)
    assert not after["ledger"]
    with connect(db_url) as conn:
        assert fingerprints(conn, before["columns"]) == before["fingerprints"]


def test_managed_database_is_refused(db_url, cache):
    commands.upgrade(db_url, "0004")
    with pytest.raises(adopt.AlreadyManaged, match="already managed by zakaz-schema \\(at 0004\\)"):
        adopt.plan_adoption(db_url, cache_dir=cache)
    result = CliRunner().invoke(main, ["adopt", "--url", db_url])
    assert result.exit_code == 2 and "already managed" in result.output


# --- the CLI ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_plans_then_applies(db_url, cache, monkeypatch):
    monkeypatch.setattr(replay, "cache_dirs", lambda _=None: [cache])
    before = legacy(db_url, run_id_uuid=True, fixes=("0007",))
    runner = CliRunner()
    shown = runner.invoke(main, ["adopt", "--url", db_url])
    assert shown.exit_code == 0, shown.output
    assert "matches:   0004, the revision needing the fewest operations (head 0013)" in shown.output
    assert "modify_column zakaz.meta_job_runs.run_id: modify column zakaz.meta_job_runs.run_id: UUID -> String" \
        in shown.output
    assert "Nothing changed. Run `zakaz-schema adopt --apply` to do it." in shown.output
    assert _state(db_url) == before
    # --sql: the whole plan as one script for review; nothing changes.
    script = runner.invoke(main, ["adopt", "--sql", "--url", db_url])
    assert script.exit_code == 0, script.output
    assert "ALTER TABLE zakaz.meta_job_runs MODIFY COLUMN run_id String" in " ".join(script.output.split())
    assert "INSERT INTO default.zakaz_schema_ledger" in script.output and "Nothing changed" not in script.output
    both = runner.invoke(main, ["adopt", "--sql", "--apply", "--url", db_url])
    assert both.exit_code == 2 and "give one of them" in both.output
    assert _state(db_url) == before
    as_json = json.loads(runner.invoke(main, ["adopt", "--json", "--url", db_url]).output)
    assert as_json["revision"] == "0004" and as_json["adoptable"] and not as_json["needs_allow_data_loss"]

    applied = runner.invoke(main, ["adopt", "--apply", "--json", "--url", db_url])
    assert applied.exit_code == 0, applied.output
    data = json.loads(applied.output)
    assert data["ok"] and data["revision"] == "0004" and data["data_changes"] == []
    assert [s["revision"] for s in data["steps"]] == [f"{i:04d}" for i in range(5, 14)]
    verify = runner.invoke(main, ["verify", "--url", db_url])
    assert verify.exit_code == 0 and "OK: 41 objects" in verify.output
    # run_id was UUID: now String, every id kept.
    with connect(db_url) as conn:
        after = fingerprints(conn, before["columns"])
        assert {t: after[t] for t in before["columns"]} == before["fingerprints"]
        assert conn.exec_driver_sql(
            "SELECT type FROM system.columns WHERE database = 'zakaz' AND table = 'meta_job_runs' AND name = 'run_id'"
        ).scalar() == "String"
