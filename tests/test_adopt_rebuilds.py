"""Adopting legacy databases whose tables differ in what ALTER cannot change: keys, partitions,
key-column types, and tables never created; on real chDB, every table holding rows.

The plan rebuilds such tables with the revisions' own rebuild_table (new
table, copy counted, swap) and creates missing ones empty; adopted() checks
the result like a fresh install and every row against its checksum.
"""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from app import adopt
from app.cli import main
from app.engine import connect
from legacy_fixtures import variants
from test_adopt import ROWS, _kinds, _state, adopted, cache, legacy  # noqa: F401 - cache is a fixture

pytestmark = pytest.mark.slow


def _rebuilt(plan) -> dict[str, str]:
    return {op.target: op.reason for op in plan.operations if op.kind == "rebuild_table"}


@pytest.mark.parametrize("variant, table, why", [
    ("order-by-short", "zakaz.fact_qtickets_sales_daily", "ORDER BY"),
    ("order-by-swapped", "meta.sli_daily", "ORDER BY"),
    ("partition", "zakaz.dm_vk_ads_daily", "PARTITION BY"),
    ("key-type", "zakaz.dm_sales_daily", "type of key column city"),
])
def test_a_key_partition_or_key_column_type_change_is_a_rebuild_keeping_every_row(db_url, cache, variant, table, why):
    before = legacy(db_url, extra=variants(variant))
    plan, _ = adopted(db_url, cache, before)
    assert plan.revision == "0004"
    assert _kinds(plan) == [("rebuild_table", table)]
    reason = _rebuilt(plan)[table]
    assert why in reason and f"{table} holds {ROWS} rows" in reason
    assert not plan.lossy_operations
    with connect(db_url) as conn:
        assert conn.exec_driver_sql("SELECT count() FROM system.tables WHERE name LIKE '%__rebuild'").scalar() == 0


def test_missing_table_key_change_key_type_and_the_known_variants_at_once(db_url, cache):
    """The issue's combined case: a table never created, a sorting key and a partition key of
    another file set, a String key column, run_id UUID, non-Nullable ticket columns, a fix
    applied by hand and integration tables; every other table holds rows."""
    before = legacy(db_url, run_id_uuid=True, fixes=("0005", "0009-not-null"), integrations=True,
                    extra=variants("missing-table", "order-by-short", "partition", "key-type"))
    assert "zakaz.stg_qtickets_sheets_events" not in before["columns"]
    plan = adopt.plan_adoption(db_url, cache_dir=cache)
    assert plan.adoptable, adopt.explain_refusal(plan)
    assert plan.revision == "0004"
    assert _kinds(plan) == [
        ("create_table", "zakaz.stg_qtickets_sheets_events"),
        ("modify_column", "zakaz.fact_qtickets_inventory_latest.tickets_left"),
        ("modify_column", "zakaz.fact_qtickets_inventory_latest.tickets_total"),
        ("modify_column", "zakaz.meta_job_runs.run_id"),
        ("rebuild_table", "zakaz.dm_sales_daily"),
        ("rebuild_table", "zakaz.dm_vk_ads_daily"),
        ("rebuild_table", "zakaz.fact_qtickets_sales_daily"),
    ]
    assert not plan.lossy_operations
    sql = adopt.adoption_sql(plan, db_url)
    for table in ("zakaz.dm_sales_daily", "zakaz.dm_vk_ads_daily", "zakaz.fact_qtickets_sales_daily"):
        assert f"--   {table}: {ROWS} row(s): rebuild_table" in sql
    assert "--   zakaz.core_sales_fct: 20 row(s): unchanged" in sql
    assert "CREATE TABLE IF NOT EXISTS zakaz.stg_qtickets_sheets_events" in sql
    # Then what the upgrade to head runs, as `upgrade --sql` writes it.
    upgrade = sql[sql.index("-- then the upgrade 0004:head"):]
    assert "MATERIALIZE COLUMN _loaded_at" in upgrade and "zakaz.fact_qtickets_inventory_latest" in upgrade
    assert _state(db_url) == before  # neither planning nor --sql changes anything
    adopted(db_url, cache, before)
    with connect(db_url) as conn:
        assert conn.exec_driver_sql("SELECT count() FROM zakaz.stg_qtickets_sheets_events").scalar() == 0
        assert conn.exec_driver_sql(
            "SELECT partition_key, sorting_key FROM system.tables "
            "WHERE database = 'zakaz' AND name = 'dm_vk_ads_daily'").one() == ("toYYYYMM(stat_date)", "stat_date, city")
        assert conn.exec_driver_sql(
            "SELECT type FROM system.columns WHERE database = 'zakaz' AND table = 'dm_sales_daily' AND name = 'city'"
        ).scalar() == "LowCardinality(String)"
    verify = CliRunner().invoke(main, ["verify", "--url", db_url])
    assert verify.exit_code == 0, verify.output


def test_rows_the_old_sorting_key_hid_are_shown_by_the_new_one_and_none_is_lost(db_url, cache):
    """ORDER BY (event_id, sales_date) of a ReplacingMergeTree collapses the cities of one event
    and day into one row as readers see it (FINAL); the revision's key has city too.  The rebuild
    keeps every stored row, so readers now see each city: more rows, none lost, no false alarm."""
    table = "zakaz.fact_qtickets_sales_daily"
    legacy(db_url, extra=variants("order-by-short"))
    from legacy_fixtures import run_sql

    # Two loads, and no merge yet to collapse them (as a table the ETL keeps writing into).
    run_sql(db_url, [f"SYSTEM STOP MERGES {table}",
                     f"INSERT INTO {table} VALUES ('2024-02-01', 'dup', 'moscow', 1, 10, 1)",
                     f"INSERT INTO {table} VALUES ('2024-02-01', 'dup', 'kazan', 2, 20, 2)"])
    before = _state(db_url)
    with connect(db_url) as conn:
        assert conn.exec_driver_sql(f"SELECT count() FROM {table} FINAL WHERE event_id = 'dup'").scalar() == 1
        assert conn.exec_driver_sql(f"SELECT count() FROM {table}").scalar() == ROWS + 2
    plan, result = adopted(db_url, cache, before, changed=(table,))
    assert _kinds(plan) == [("rebuild_table", table)]
    with connect(db_url) as conn:
        assert conn.exec_driver_sql(
            f"SELECT city FROM {table} FINAL WHERE event_id = 'dup' ORDER BY city").scalars().all() == ["kazan", "moscow"]
        stored = conn.exec_driver_sql(f"SELECT count() FROM {table}").scalar()
    assert stored == ROWS + 2
