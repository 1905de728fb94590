"""app.sample_data on real chDB: every base table gets realistic rows at any
revision, loads are deterministic per seed, and fingerprints see content."""
from __future__ import annotations

import datetime as dt

import pytest
from alembic import command
from alembic.config import Config

from app.config import ALEMBIC_INI
from app.engine import connect
from app.fingerprint import fingerprints, table_fingerprint
from app.sample_data import load_sample

TODAY = dt.date.today()  # one date for the whole run, so loads compare equal
BASE_TABLES_SQL = """
    SELECT database || '.' || name FROM system.tables
    WHERE database IN ('zakaz', 'meta', 'bi') AND engine NOT IN ('View', 'MaterializedView')
      AND NOT startsWith(name, '.inner') ORDER BY 1
"""
VIEWS_SQL = """
    SELECT database || '.' || name FROM system.tables
    WHERE database IN ('zakaz', 'meta', 'bi') AND engine IN ('View', 'MaterializedView') ORDER BY 1
"""


def migrated(tmp_path, name: str, revision: str = "head") -> str:
    """A fresh embedded database at ``revision``; returns its URL."""
    url = f"clickhouse+chdb:///default?path={tmp_path / name}"
    cfg = Config(str(ALEMBIC_INI))
    cfg.attributes["url"] = url
    command.upgrade(cfg, revision)
    return url


def alembic(url: str, action: str, revision: str) -> None:
    cfg = Config(str(ALEMBIC_INI))
    cfg.attributes["url"] = url
    getattr(command, action)(cfg, revision)


def rows(conn, sql: str):
    return conn.exec_driver_sql(sql).fetchall()


def scalar(conn, sql: str):
    return rows(conn, sql)[0][0]


def tables_with(conn, *columns: str) -> list[str]:
    """Base tables that have all of ``columns``."""
    names = ", ".join(f"'{c}'" for c in columns)
    return [t for (t,) in rows(conn, f"""
        SELECT database || '.' || table FROM system.columns
        WHERE database IN ('zakaz', 'meta', 'bi') AND name IN ({names})
          AND (database, table) IN (SELECT database, name FROM system.tables
                                    WHERE engine LIKE '%MergeTree' AND NOT startsWith(name, '.inner'))
        GROUP BY database, table HAVING count() = {len(columns)} ORDER BY 1
    """)]


def test_head_every_base_table_gets_rows_and_every_view_sees_them(tmp_path):
    url = migrated(tmp_path, "db")
    with connect(url) as conn:
        inserted = load_sample(conn, rows_per_table=30, seed=1, today=TODAY)
        base = [t for (t,) in rows(conn, BASE_TABLES_SQL)]
        assert len(base) == 24 and sorted(inserted) == base
        assert set(inserted.values()) == {30}
        # No row collapsed in a ReplacingMergeTree: sample sorting keys are unique.
        for table in base:
            assert scalar(conn, f"SELECT count() FROM {table}") == 30, table
        for table in tables_with(conn, "_ver"):  # ReplacingMergeTree(_ver) tables
            assert scalar(conn, f"SELECT count() FROM {table} FINAL") == 30, table
        assert scalar(conn, "SELECT count() FROM zakaz.dim_city_alias FINAL") == 30  # > curated aliases

        for (view,) in rows(conn, VIEWS_SQL):
            assert scalar(conn, f"SELECT count() FROM {view}") > 0, view
        # At head the inventory view reads fact_qtickets_inventory_latest.
        assert scalar(conn, "SELECT count() FROM zakaz.v_qtickets_inventory") == 30
        assert scalar(conn, "SELECT countIf(tickets_sold < 0) FROM zakaz.v_qtickets_inventory") == 0
        assert rows(conn, "SELECT sales_rows > 0, vk_rows > 0 FROM meta.v_quality_last_day") == [(1, 1)]
        assert scalar(conn, "SELECT count() FROM zakaz.v_qtickets_sales_dashboard "
                            "WHERE tickets_sold_today > 0 AND tickets_total IS NOT NULL") > 0
        # Odd spellings (' Moscow', 'MSK') come out normalised through dim_city_alias.
        cities = {c for (c,) in rows(conn, "SELECT DISTINCT city FROM bi.v_sales_daily")}
        assert cities and all(c == c.strip().lower() for c in cities)
        assert "msk" not in cities and "spb" not in cities
        raw = {c for (c,) in rows(conn, "SELECT DISTINCT city FROM zakaz.dm_sales_daily")}
        assert any(c != c.strip().lower() for c in raw)
        # Zero spend rows exist, and ROI views divide safely.
        assert scalar(conn, "SELECT countIf(spend = 0) FROM zakaz.dm_vk_ads_daily") > 0
        assert scalar(conn, "SELECT countIf(NOT isFinite(roas)) FROM zakaz.v_marketing_roi_daily") == 0


def test_values_are_realistic_and_consistent(tmp_path):
    url = migrated(tmp_path, "db")
    with connect(url) as conn:
        load_sample(conn, rows_per_table=40, seed=3, today=TODAY)
        for table in tables_with(conn, "tickets_total", "tickets_left"):
            assert scalar(conn, f"SELECT countIf(tickets_total < tickets_left) FROM {table}") == 0, table
            assert scalar(conn, f"SELECT countIf(tickets_total >= tickets_left) FROM {table}") > 0, table
        # Nullable ticket counts are occasionally NULL, and then both at once.
        assert scalar(conn, "SELECT countIf(tickets_total IS NULL) FROM zakaz.fact_qtickets_inventory_latest") > 0
        assert scalar(conn, "SELECT countIf(isNull(tickets_total) != isNull(tickets_left)) "
                            "FROM zakaz.fact_qtickets_inventory_latest") == 0
        oldest = TODAY - dt.timedelta(days=9)
        for table in tables_with(conn, "event_date"):
            assert rows(conn, f"SELECT min(event_date), max(event_date) FROM {table}") == [(oldest, TODAY)]
        assert rows(conn, "SELECT min(_ver) < max(_ver), countIf(NOT match(_dedup_key, '^[0-9a-f]{32}$')) "
                          "FROM zakaz.stg_qtickets_api_orders_raw") == [(1, 0)]
        assert scalar(conn, "SELECT countIf(NOT match(event_id, '^evt-[0-9]{4}$')) FROM zakaz.dim_events") == 0
        assert scalar(conn, "SELECT countIf(revenue <= 0) FROM zakaz.fact_qtickets_sales") == 0
        assert scalar(conn, "SELECT countIf(finished_at < started_at OR started_at > now()) FROM meta.etl_runs") == 0
        assert scalar(conn, "SELECT uniqExact(run_id) FROM meta.etl_runs") == 40
        assert {s for (s,) in rows(conn, "SELECT DISTINCT toString(status) FROM meta.backup_runs")} <= {
            "ok", "fail", "running"}
        assert scalar(conn, "SELECT countIf(NOT isValidJSON(payload_json)) FROM zakaz.stg_qtickets_sheets_raw") == 0
        assert rows(conn, "SELECT DISTINCT currency FROM zakaz.fact_qtickets_sales") == [("RUB",)]


@pytest.mark.slow
def test_same_seed_same_rows_other_seed_other_rows(tmp_path):
    prints = []
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        url = migrated(tmp_path, name)
        with connect(url) as conn:
            load_sample(conn, rows_per_table=20, seed=seed, today=TODAY)
            prints.append(fingerprints(conn))
    same_a, same_b, other = prints
    assert len(same_a) == 24
    assert same_a == same_b
    assert {t: n for t, (n, _) in other.items()} == {t: n for t, (n, _) in same_a.items()}
    assert [t for t in same_a if same_a[t][1] == other[t][1]] == []


def test_older_revision_0004_and_rows_survive_the_upgrade(tmp_path):
    url = migrated(tmp_path, "db", "0004")
    with connect(url) as conn:
        inserted = load_sample(conn, rows_per_table=25, seed=2, today=TODAY)
        assert sorted(inserted) == [t for (t,) in rows(conn, BASE_TABLES_SQL)]
        assert "zakaz.fact_qtickets_inventory_latest" not in inserted
        assert scalar(conn, "SELECT count() FROM system.columns WHERE database = 'zakaz' "
                            "AND table = 'meta_job_runs' AND name = 'run_id'") == 0
        for (view,) in rows(conn, VIEWS_SQL):
            assert scalar(conn, f"SELECT count() FROM {view}") > 0, view
        columns = {
            table: [c for (c,) in rows(conn, f"SELECT name FROM system.columns WHERE database || '.' || table = '{table}'")]
            for table in inserted
        }
        before = fingerprints(conn, columns)
    assert all(n == 25 for n, _ in before.values())

    alembic(url, "upgrade", "head")
    with connect(url) as conn:
        after = fingerprints(conn, columns)
        # Revision 0009 backfills the latest-inventory table from the history.
        assert scalar(conn, "SELECT count() FROM zakaz.v_qtickets_inventory") == 25
    assert {t: after[t] for t in before} == before


def test_fingerprint_is_order_independent_and_sees_every_change(tmp_path):
    url = migrated(tmp_path, "db")
    with connect(url) as conn:
        load_sample(conn, rows_per_table=15, tables=["meta.etl_runs", "zakaz.fact_qtickets_inventory_latest"])
        original = table_fingerprint(conn, "meta.etl_runs")
        assert original[0] == 15
        conn.exec_driver_sql("CREATE TABLE meta.etl_runs_copy AS meta.etl_runs ENGINE = MergeTree ORDER BY tuple()")
        conn.exec_driver_sql("INSERT INTO meta.etl_runs_copy SELECT * FROM meta.etl_runs ORDER BY rand()")
        assert table_fingerprint(conn, "meta.etl_runs_copy") == original
        assert fingerprints(conn)["meta.etl_runs_copy"] == original

        conn.exec_driver_sql("ALTER TABLE meta.etl_runs_copy UPDATE rows_read = rows_read + 1 "
                             "WHERE run_id = (SELECT min(run_id) FROM meta.etl_runs_copy) "
                             "SETTINGS mutations_sync = 2")
        changed = table_fingerprint(conn, "meta.etl_runs_copy")
        assert changed[0] == 15 and changed != original
        # ...but not when the changed column is left out.
        keep = ["job", "run_id", "started_at", "status"]
        assert table_fingerprint(conn, "meta.etl_runs_copy", keep) == table_fingerprint(conn, "meta.etl_runs", keep)

        # A row with a NULL still counts: changing its other values is seen
        # (cityHash64 alone returns NULL for it and sum() would skip the row).
        inv = "zakaz.fact_qtickets_inventory_latest"
        columns = ["event_name", "tickets_total"]
        null_print = table_fingerprint(conn, inv, columns)
        assert scalar(conn, f"SELECT countIf(tickets_total IS NULL) FROM {inv}") > 0
        conn.exec_driver_sql(f"ALTER TABLE {inv} UPDATE event_name = 'renamed' WHERE tickets_total IS NULL "
                             "SETTINGS mutations_sync = 2")
        assert table_fingerprint(conn, inv, columns) != null_print

def test_unknown_columns_and_tables_fall_back_on_their_type(tmp_path):
    url = migrated(tmp_path, "db", "0001")  # the three databases, no tables yet
    with connect(url) as conn:
        conn.exec_driver_sql("""
            CREATE TABLE meta.exotic
            (
                id UInt16, small Int8, amount Decimal(18, 4), ratio Float32, flag Bool,
                kind Enum16('a' = 1, 'b it''s' = 1000), tag LowCardinality(Nullable(String)),
                code FixedString(5), ident UUID, ip IPv4, born Date32, at DateTime64(3),
                tags Array(String), attrs Map(String, UInt8), pair Tuple(String, UInt8),
                note String DEFAULT 'n/a', shout String MATERIALIZED upper(note)
            )
            ENGINE = ReplacingMergeTree ORDER BY (id, tag) SETTINGS allow_nullable_key = 1
        """)
        assert load_sample(conn, rows_per_table=20, seed=4) == {"meta.exotic": 20}
        assert scalar(conn, "SELECT count() FROM meta.exotic FINAL") == 20
        assert scalar(conn, "SELECT countIf(kind NOT IN ('a', 'b it''s')) FROM meta.exotic") == 0
        assert scalar(conn, "SELECT countIf(length(code) != 5) FROM meta.exotic") == 0
        assert table_fingerprint(conn, "meta.exotic")[0] == 20
        with pytest.raises(ValueError, match="meta.nope"):
            load_sample(conn, tables=["meta.nope"])
