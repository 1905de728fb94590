"""Databases as the old hand-written SQL files built them, for the adopt tests.

Written from warehouse.md ("The pre-lockdown state", "What went wrong in the
old SQL files"), as plain SQL in the files' own style: no alembic, no
app.operations, no ledger.  The plain pre-lockdown state is the schema after
revision 0004 (steps 5-9 missing).  On top of it come the known variants
(``meta_job_runs.run_id UUID DEFAULT generateUUIDv4()``; a
``fact_qtickets_inventory_latest`` with non-Nullable ticket columns), fixes
applied by hand (each one as an operator typed it, sometimes differently from
the revision), tables the files created for integrations, and damage.

The views are the old files' versions: same output columns as the chain's,
queries written differently (one reads its table without FINAL, as the old
file did).
"""
from __future__ import annotations

from app.engine import connect

DATABASES = [
    "CREATE DATABASE IF NOT EXISTS zakaz",
    "CREATE DATABASE IF NOT EXISTS meta",
    "CREATE DATABASE IF NOT EXISTS bi",
]

# 01_sales_core.sql
SALES_CORE = [
    """CREATE TABLE IF NOT EXISTS zakaz.stg_qtickets_sales (
        report_date Date, event_date Date, event_id String, event_name String, city String,
        tickets_sold UInt32, revenue Decimal(12,2), refunds_amount Decimal(12,2) DEFAULT 0,
        currency FixedString(3), src_message_id String, src_message_ts DateTime,
        dedup_key String, ingested_at DateTime DEFAULT now()
    ) ENGINE = ReplacingMergeTree(ingested_at)
    ORDER BY (report_date, event_date, event_id, city, event_name)""",
    """CREATE TABLE IF NOT EXISTS zakaz.core_sales_fct (
        sale_date Date, event_date Date, event_id String, event_name String, city String,
        tickets_sold UInt32, revenue Decimal(12,2), refunds_amount Decimal(12,2),
        currency FixedString(3), load_ts DateTime DEFAULT now()
    ) ENGINE = MergeTree ORDER BY (sale_date, event_date, event_id, city, event_name)""",
    """CREATE TABLE IF NOT EXISTS zakaz.dm_sales_daily (
        event_date Date, sale_date Date, event_id LowCardinality(String), city LowCardinality(String),
        event_name String, tickets_sold UInt64, revenue UInt64, refunds_amount UInt64,
        net_revenue Int64, currency LowCardinality(String) DEFAULT 'RUB',
        _loaded_at DateTime DEFAULT now(), _ver UInt64
    ) ENGINE = ReplacingMergeTree(_ver) PARTITION BY toYYYYMM(event_date)
    ORDER BY (event_date, city, event_id, event_name)""",
    """CREATE TABLE IF NOT EXISTS zakaz.dim_city_alias (
        alias LowCardinality(String), city LowCardinality(String)
    ) ENGINE = ReplacingMergeTree ORDER BY alias""",
    """CREATE TABLE IF NOT EXISTS zakaz.dm_vk_ads_daily (
        stat_date Date, city LowCardinality(String), impressions UInt64, clicks UInt64, spend UInt64,
        _loaded_at DateTime DEFAULT now(), _ver UInt64
    ) ENGINE = ReplacingMergeTree(_ver) PARTITION BY toYYYYMM(stat_date) ORDER BY (stat_date, city)""",
    """CREATE TABLE IF NOT EXISTS zakaz.stg_sales_events (
        event_date Date, event_id String, city String, order_id String, tickets_sold Int32,
        net_revenue Float64, currency LowCardinality(String),
        _src LowCardinality(String) DEFAULT 'qtickets', _op LowCardinality(String) DEFAULT 'UPSERT',
        _ver UInt64, _loaded_at DateTime DEFAULT now()
    ) ENGINE = ReplacingMergeTree(_ver) PARTITION BY toYYYYMM(event_date)
    ORDER BY (event_date, city, event_id, order_id) TTL _loaded_at + INTERVAL 30 DAY""",
    """CREATE TABLE IF NOT EXISTS zakaz.stg_vk_ads_daily (
        stat_date Date, city String, campaign_id String, ad_id String, impressions UInt64,
        clicks UInt64, spend Float64, _src LowCardinality(String) DEFAULT 'vk_ads',
        _op LowCardinality(String) DEFAULT 'UPSERT', _ver UInt64, _loaded_at DateTime DEFAULT now()
    ) ENGINE = ReplacingMergeTree(_ver) PARTITION BY toYYYYMM(stat_date)
    ORDER BY (stat_date, city, campaign_id, ad_id) TTL _loaded_at + INTERVAL 30 DAY""",
]

# 02_meta.sql
META = [
    """CREATE TABLE IF NOT EXISTS meta.backup_runs (
        ts DateTime DEFAULT now(), backup_name String,
        mode Enum8('full' = 1, 'incr' = 2) DEFAULT 'full', target String,
        status Enum8('ok' = 1, 'fail' = 2, 'running' = 3) DEFAULT 'running',
        bytes UInt64 DEFAULT 0, duration_ms UInt64 DEFAULT 0, details String DEFAULT '',
        error_msg String DEFAULT ''
    ) ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY (ts, backup_name, mode)""",
    """CREATE TABLE IF NOT EXISTS meta.etl_alerts (
        ts DateTime, severity LowCardinality(String), job LowCardinality(String),
        code LowCardinality(String), message String, context_json String
    ) ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY ts""",
    """CREATE TABLE IF NOT EXISTS meta.etl_runs (
        job LowCardinality(String), run_id UUID, started_at DateTime, finished_at DateTime,
        status LowCardinality(String), rows_written UInt64, rows_read UInt64, err_msg String,
        from_date Date, to_date Date, host String, version_tag String
    ) ENGINE = MergeTree PARTITION BY toYYYYMM(started_at) ORDER BY (started_at, job)""",
    """CREATE TABLE IF NOT EXISTS meta.sli_daily (
        d Date, table_name LowCardinality(String), metric_name LowCardinality(String),
        metric_value Float64, updated_at DateTime DEFAULT now()
    ) ENGINE = ReplacingMergeTree(updated_at) ORDER BY (d, table_name, metric_name)""",
    """CREATE TABLE IF NOT EXISTS meta.watermarks (
        source LowCardinality(String), stream LowCardinality(String), wm_type LowCardinality(String),
        wm_value_s String, updated_at DateTime DEFAULT now()
    ) ENGINE = ReplacingMergeTree(updated_at) ORDER BY (source, stream)""",
]

# 03_views.sql: the old files' views of the sales core.
CORE_VIEWS = [
    # The old file read the staging table without FINAL.
    """CREATE OR REPLACE VIEW zakaz.v_sales_latest AS
       SELECT report_date AS sale_date, event_date, event_id, event_name, city,
              tickets_sold, revenue, refunds_amount, currency
       FROM zakaz.stg_qtickets_sales""",
    """CREATE OR REPLACE VIEW zakaz.v_sales_14d AS
       SELECT event_date AS d, city, event_id, event_name, sum(tickets_sold) AS tickets_sold,
              sum(revenue) AS revenue, sum(refunds_amount) AS refunds_amount
       FROM zakaz.stg_qtickets_sales FINAL
       WHERE report_date >= today() - INTERVAL 14 DAY
       GROUP BY d, city, event_id, event_name""",
    """CREATE OR REPLACE VIEW zakaz.v_dm_sales_daily AS
       SELECT event_date, sale_date, event_id, city, event_name, tickets_sold, revenue,
              refunds_amount, net_revenue, currency, _loaded_at
       FROM zakaz.dm_sales_daily""",
    """CREATE OR REPLACE VIEW zakaz.v_vk_ads_daily AS
       SELECT stat_date, city, impressions, clicks, spend FROM zakaz.dm_vk_ads_daily""",
    """CREATE OR REPLACE VIEW zakaz.v_marketing_roi_daily AS
       SELECT s.d AS d, s.city AS city, s.net_revenue AS net_revenue, s.tickets_sold AS tickets_sold,
              a.spend AS spend, a.clicks AS clicks, a.impressions AS impressions,
              if(a.spend = 0, 0, s.net_revenue / a.spend) AS roas,
              if(a.clicks = 0, 0, a.spend / a.clicks) AS cpc,
              if(s.tickets_sold = 0, 0, a.spend / s.tickets_sold) AS cpt
       FROM (SELECT event_date AS d, city, sum(net_revenue) AS net_revenue, sum(tickets_sold) AS tickets_sold
             FROM zakaz.dm_sales_daily FINAL GROUP BY d, city) AS s
       LEFT JOIN (SELECT stat_date AS d, city, sum(spend) AS spend, sum(clicks) AS clicks,
                         sum(impressions) AS impressions
                  FROM zakaz.dm_vk_ads_daily FINAL GROUP BY d, city) AS a
       ON s.d = a.d AND s.city = a.city""",
    """CREATE OR REPLACE VIEW meta.v_quality_last_day AS
       SELECT yesterday() AS d,
              (SELECT count() FROM zakaz.dm_sales_daily WHERE event_date = yesterday()) AS sales_rows,
              (SELECT sum(net_revenue) FROM zakaz.dm_sales_daily WHERE event_date = yesterday()) AS sales_revenue,
              (SELECT count() FROM zakaz.dm_vk_ads_daily WHERE stat_date = yesterday()) AS vk_rows,
              (SELECT sum(spend) FROM zakaz.dm_vk_ads_daily WHERE stat_date = yesterday()) AS vk_spend""",
    """CREATE OR REPLACE VIEW meta.v_sli_latest AS
       SELECT d, table_name, metric_name, metric_value, updated_at
       FROM meta.sli_daily FINAL WHERE d >= today() - 2""",
    """CREATE OR REPLACE VIEW bi.v_sales_daily AS
       SELECT s.event_date AS d,
              if(a.city = '', lower(trimBoth(s.city)), toString(a.city)) AS city,
              toString(s.event_id) AS event_id, sum(s.tickets_sold) AS tickets_sold,
              CAST(sum(s.net_revenue) AS Decimal(18, 2)) / 100 AS revenue,
              toString(any(s.currency)) AS currency, max(s._loaded_at) AS _loaded_at
       FROM zakaz.dm_sales_daily AS s FINAL
       LEFT JOIN (SELECT toString(alias) AS alias, any(city) AS city
                  FROM zakaz.dim_city_alias FINAL GROUP BY alias) AS a
       ON lower(trimBoth(toString(s.city))) = a.alias
       GROUP BY d, city, event_id""",
    """CREATE OR REPLACE VIEW bi.v_vk_ads_daily AS
       SELECT stat_date AS d, lower(toString(city)) AS city, sum(impressions) AS impressions,
              sum(clicks) AS clicks, CAST(sum(spend) AS Decimal(18, 2)) / 100 AS spend,
              max(_loaded_at) AS _loaded_at
       FROM zakaz.dm_vk_ads_daily FINAL GROUP BY d, city""",
    """CREATE OR REPLACE VIEW bi.v_marketing_roi_daily AS
       SELECT if(s.city = '', v.d, s.d) AS d, if(s.city = '', v.city, s.city) AS city,
              s.revenue AS revenue, s.tickets_sold AS tickets_sold, v.impressions AS impressions,
              v.clicks AS clicks, v.spend AS spend,
              if(v.spend = 0, 0, toFloat64(s.revenue) / toFloat64(v.spend)) AS roas,
              if(v.clicks = 0, NULL, toFloat64(v.spend) / v.clicks) AS cpc,
              if(s.tickets_sold = 0, NULL, toFloat64(v.spend) / s.tickets_sold) AS cpt,
              greatest(s._loaded_at, v._loaded_at) AS _loaded_at
       FROM (SELECT d, city, sum(revenue) AS revenue, sum(tickets_sold) AS tickets_sold,
                    max(_loaded_at) AS _loaded_at
             FROM bi.v_sales_daily GROUP BY d, city) AS s
       FULL OUTER JOIN bi.v_vk_ads_daily AS v ON s.d = v.d AND s.city = v.city""",
    """CREATE OR REPLACE VIEW bi.v_ops_freshness AS
       SELECT today() AS d, 'qtickets+vk_ads' AS source,
              (SELECT max(_loaded_at) FROM zakaz.dm_sales_daily) AS loaded_at_sales,
              (SELECT max(_loaded_at) FROM zakaz.dm_vk_ads_daily) AS loaded_at_vk,
              dateDiff('hour', loaded_at_sales, now()) AS freshness_hours_sales,
              dateDiff('hour', loaded_at_vk, now()) AS freshness_hours_vk""",
]


def meta_job_runs(run_id_uuid: bool) -> str:
    # When the old files had run_id, it was UUID (the changelog says String).
    run_id = "run_id UUID DEFAULT generateUUIDv4(), " if run_id_uuid else ""
    return f"""CREATE TABLE IF NOT EXISTS zakaz.meta_job_runs (
        job LowCardinality(String), {run_id}started_at DateTime, finished_at DateTime,
        status LowCardinality(String), rows_processed UInt64 DEFAULT 0, message String DEFAULT '',
        metrics String DEFAULT ''
    ) ENGINE = MergeTree PARTITION BY toYYYYMM(started_at) ORDER BY (job, started_at)"""


# 04_qtickets_sheets.sql
SHEETS = [
    """CREATE TABLE IF NOT EXISTS zakaz.stg_qtickets_sheets_raw (
        source String, sheet_id String, tab String, payload_json String, _ver UInt64,
        _ingest_ts DateTime, hash_low_card LowCardinality(String)
    ) ENGINE = ReplacingMergeTree(_ver) PARTITION BY toYYYYMM(_ingest_ts)
    ORDER BY (source, sheet_id, tab, hash_low_card) TTL _ingest_ts + INTERVAL 30 DAY""",
    """CREATE TABLE IF NOT EXISTS zakaz.stg_qtickets_sheets_events (
        event_id String, event_name String, event_date Date, city String,
        tickets_total UInt32 DEFAULT 0, tickets_left UInt32 DEFAULT 0, _ver UInt64,
        hash_low_card LowCardinality(String)
    ) ENGINE = ReplacingMergeTree(_ver) PARTITION BY toYYYYMM(event_date) ORDER BY (event_id, city)""",
    """CREATE TABLE IF NOT EXISTS zakaz.stg_qtickets_sheets_inventory (
        event_id String, city String, tickets_total UInt32 DEFAULT 0, tickets_left UInt32 DEFAULT 0,
        _ver UInt64, hash_low_card LowCardinality(String)
    ) ENGINE = ReplacingMergeTree(_ver) PARTITION BY tuple() ORDER BY (event_id, city)""",
    """CREATE TABLE IF NOT EXISTS zakaz.stg_qtickets_sheets_sales (
        date Date, event_id String, event_name String, city String, tickets_sold UInt32 DEFAULT 0,
        revenue Decimal(12,2) DEFAULT 0, refunds Decimal(12,2) DEFAULT 0,
        currency FixedString(3) DEFAULT 'RUB', _ver UInt64, hash_low_card LowCardinality(String)
    ) ENGINE = ReplacingMergeTree(_ver) PARTITION BY toYYYYMM(date) ORDER BY (date, event_id, city)""",
    """CREATE TABLE IF NOT EXISTS zakaz.fact_qtickets_sales (
        date Date, event_id String, event_name String, city String, tickets_sold UInt32 DEFAULT 0,
        revenue Decimal(12,2) DEFAULT 0, refunds Decimal(12,2) DEFAULT 0,
        currency FixedString(3) DEFAULT 'RUB', _ver UInt64
    ) ENGINE = ReplacingMergeTree(_ver) PARTITION BY toYYYYMM(date) ORDER BY (date, event_id, city)""",
    """CREATE TABLE IF NOT EXISTS zakaz.fact_qtickets_inventory (
        event_id String, city LowCardinality(String), tickets_total UInt32 DEFAULT 0,
        tickets_left UInt32 DEFAULT 0, _ver UInt64, _loaded_at DateTime DEFAULT now()
    ) ENGINE = ReplacingMergeTree(_ver) PARTITION BY tuple() ORDER BY (event_id, city)""",
    """CREATE TABLE IF NOT EXISTS zakaz.dim_events (
        event_id String, event_name String, city LowCardinality(String), start_date Nullable(Date),
        end_date Nullable(Date), tickets_total UInt32 DEFAULT 0, tickets_left UInt32 DEFAULT 0,
        _ver UInt64, _loaded_at DateTime DEFAULT now()
    ) ENGINE = ReplacingMergeTree(_ver) PARTITION BY tuple() ORDER BY event_id""",
]

SHEETS_VIEWS = [
    """CREATE OR REPLACE VIEW zakaz.v_qtickets_sales_latest AS
       SELECT date, event_id, event_name, city, tickets_sold, revenue, refunds, currency
       FROM zakaz.fact_qtickets_sales FINAL""",
    """CREATE OR REPLACE VIEW zakaz.v_qtickets_sales_14d AS
       SELECT date, city, event_id, event_name, sum(tickets_sold) AS tickets_sold,
              sum(revenue) AS revenue, sum(refunds) AS refunds, any(currency) AS currency
       FROM zakaz.fact_qtickets_sales FINAL WHERE date >= today() - 14
       GROUP BY date, city, event_id, event_name""",
    """CREATE OR REPLACE VIEW zakaz.v_qtickets_inventory AS
       SELECT event_id, city, tickets_total, tickets_left,
              toInt64(tickets_total) - toInt64(tickets_left) AS tickets_sold
       FROM zakaz.fact_qtickets_inventory FINAL""",
    """CREATE OR REPLACE VIEW zakaz.v_qtickets_freshness AS
       SELECT 'sales' AS source, 'zakaz.fact_qtickets_sales' AS table_name,
              CAST(max(date) AS Nullable(Date)) AS latest_date,
              dateDiff('day', latest_date, today()) AS days_behind, count() AS total_rows
       FROM zakaz.fact_qtickets_sales
       UNION ALL
       SELECT 'events', 'zakaz.dim_events', CAST(max(start_date) AS Nullable(Date)),
              dateDiff('day', CAST(max(start_date) AS Nullable(Date)), today()), count()
       FROM zakaz.dim_events
       UNION ALL
       SELECT 'inventory', 'zakaz.fact_qtickets_inventory', CAST(toDate(max(_loaded_at)) AS Nullable(Date)),
              dateDiff('day', CAST(toDate(max(_loaded_at)) AS Nullable(Date)), today()), count()
       FROM zakaz.fact_qtickets_inventory""",
]

# 05_qtickets_api.sql
API = [
    """CREATE TABLE IF NOT EXISTS zakaz.stg_qtickets_api_orders_raw (
        event_id String, city LowCardinality(String), sale_ts DateTime, tickets_sold UInt32,
        revenue Float64, currency LowCardinality(String), _ver UInt64, _dedup_key FixedString(32)
    ) ENGINE = ReplacingMergeTree(_ver) PARTITION BY tuple() ORDER BY _dedup_key""",
    """CREATE TABLE IF NOT EXISTS zakaz.stg_qtickets_api_inventory_raw (
        snapshot_ts DateTime, event_id String, event_name String, city LowCardinality(String),
        tickets_total Nullable(UInt32), tickets_left Nullable(UInt32), _ver UInt64,
        _dedup_key FixedString(32)
    ) ENGINE = ReplacingMergeTree(_ver) PARTITION BY tuple() ORDER BY (event_id, city, snapshot_ts)""",
    """CREATE TABLE IF NOT EXISTS zakaz.fact_qtickets_sales_daily (
        sales_date Date, event_id String, city LowCardinality(String), tickets_sold UInt32,
        revenue Float64, _ver UInt64
    ) ENGINE = ReplacingMergeTree(_ver) PARTITION BY toYYYYMM(sales_date) ORDER BY (event_id, sales_date, city)""",
    """CREATE MATERIALIZED VIEW IF NOT EXISTS zakaz.mv_qtickets_sales_latest
       ENGINE = ReplacingMergeTree PARTITION BY tuple() ORDER BY (event_id, city) AS
       SELECT event_id, city, max(sale_ts) AS latest_sale_ts, sum(tickets_sold) AS tickets_sold_14d,
              sum(revenue) AS revenue_14d
       FROM zakaz.stg_qtickets_api_orders_raw
       WHERE sale_ts >= now() - INTERVAL 14 DAY
       GROUP BY event_id, city""",
    """CREATE OR REPLACE VIEW zakaz.v_qtickets_sales_dashboard AS
       SELECT k.event_id AS event_id, e.event_name AS event_name, k.city AS city,
              s.tickets_sold_today AS tickets_sold_today, s.revenue_today AS revenue_today,
              s.tickets_sold_14d AS tickets_sold_14d, s.revenue_14d AS revenue_14d,
              i.tickets_total AS tickets_total, i.tickets_left AS tickets_left,
              i.inventory_updated_at AS inventory_updated_at,
              e.start_date AS start_date, e.end_date AS end_date
       FROM (SELECT DISTINCT event_id, city FROM zakaz.fact_qtickets_sales_daily
             UNION DISTINCT SELECT DISTINCT event_id, toString(city) FROM zakaz.fact_qtickets_inventory) AS k
       LEFT JOIN (SELECT event_id, city,
                         sumIf(tickets_sold, sales_date = today()) AS tickets_sold_today,
                         sumIf(revenue, sales_date = today()) AS revenue_today,
                         sum(tickets_sold) AS tickets_sold_14d, sum(revenue) AS revenue_14d
                  FROM zakaz.fact_qtickets_sales_daily FINAL WHERE sales_date >= today() - 13
                  GROUP BY event_id, city) AS s ON s.event_id = k.event_id AND s.city = k.city
       LEFT JOIN (SELECT event_id, city, argMax(tickets_total, _loaded_at) AS tickets_total,
                         argMax(tickets_left, _loaded_at) AS tickets_left,
                         max(_loaded_at) AS inventory_updated_at
                  FROM zakaz.fact_qtickets_inventory FINAL GROUP BY event_id, city) AS i
       ON i.event_id = k.event_id AND i.city = k.city
       LEFT JOIN (SELECT event_id, event_name, start_date, end_date FROM zakaz.dim_events FINAL) AS e
       ON e.event_id = k.event_id""",
]


def pre_lockdown(*, run_id_uuid: bool = False) -> list[str]:
    """The schema after revision 0004, as the old files left it (steps 5-9 missing)."""
    return (DATABASES + SALES_CORE + META + CORE_VIEWS + SHEETS + [meta_job_runs(run_id_uuid)]
            + SHEETS_VIEWS + API)


_LATEST = """CREATE TABLE IF NOT EXISTS zakaz.fact_qtickets_inventory_latest (
        snapshot_ts DateTime, event_id String, event_name String, city LowCardinality(String),
        tickets_total {total}, tickets_left {left}, _ver UInt64
    ) ENGINE = ReplacingMergeTree(_ver) PARTITION BY tuple() ORDER BY (event_id, city)"""

_LATEST_VIEW = """CREATE OR REPLACE VIEW zakaz.v_qtickets_inventory AS
       SELECT event_id, city, tickets_total, tickets_left,
              toInt64(tickets_total) - toInt64(tickets_left) AS tickets_sold
       FROM zakaz.fact_qtickets_inventory_latest FINAL"""

# Fixes as operators applied them by hand, keyed by the revision they stand for.
HAND_FIXES = {
    # 0005 exactly as the revision does it.
    "0005": ["ALTER TABLE zakaz.fact_qtickets_sales ADD COLUMN _loaded_at DateTime DEFAULT now()"],
    # 0007 at the end of the table, not FIRST.
    "0007": ["ALTER TABLE zakaz.stg_qtickets_api_orders_raw ADD COLUMN order_id String"],
    # 0008's column, without the new partition key (that needs a rebuild).
    "0008-column": ["ALTER TABLE zakaz.stg_qtickets_sheets_inventory ADD COLUMN _loaded_at DateTime DEFAULT now()"],
    # 0009 as the revision has it, inventory view repointed.
    "0009": [_LATEST.format(total="Nullable(UInt32)", left="Nullable(UInt32)"), _LATEST_VIEW],
    # The known variant: non-Nullable ticket columns, copied from fact_qtickets_inventory.
    "0009-not-null": [_LATEST.format(total="UInt32 DEFAULT 0", left="UInt32 DEFAULT 0"), _LATEST_VIEW],
    # Nullable fixed on one column only.
    "0009-half": [_LATEST.format(total="Nullable(UInt32)", left="UInt32"), _LATEST_VIEW],
}

# Tables and views the files created for integrations; not managed here.
INTEGRATIONS = [
    """CREATE TABLE IF NOT EXISTS zakaz.stg_amocrm_deals (
        deal_id UInt64, pipeline LowCardinality(String), amount Decimal(12,2), city String,
        created_at DateTime, _ver UInt64
    ) ENGINE = ReplacingMergeTree(_ver) ORDER BY deal_id""",
    """CREATE TABLE IF NOT EXISTS meta.integration_sync_log (
        ts DateTime, integration LowCardinality(String), rows UInt64, ok UInt8
    ) ENGINE = MergeTree ORDER BY ts""",
    """CREATE OR REPLACE VIEW bi.v_amocrm_pipeline AS
       SELECT pipeline, city, count() AS deals, sum(amount) AS amount
       FROM zakaz.stg_amocrm_deals FINAL GROUP BY pipeline, city""",
]


def run_sql(url: str, statements: list[str]) -> None:
    with connect(url) as conn:
        for sql in statements:
            conn.exec_driver_sql(sql)


def build_legacy(url: str, *, run_id_uuid: bool = False, fixes: tuple[str, ...] = (),
                 integrations: bool = False, extra: list[str] | tuple[str, ...] = ()) -> None:
    """Bootstrap ``url`` the way the old SQL files did, plus hand fixes, integrations and ``extra`` SQL."""
    statements = pre_lockdown(run_id_uuid=run_id_uuid)
    for fix in fixes:
        statements += HAND_FIXES[fix]
    if integrations:
        statements += INTEGRATIONS
    run_sql(url, statements + list(extra))


# Tables as other old file sets wrote them: keys, partitions and key-column
# types that differ from the revision's, and tables they never created.  Each
# replaces the table the plain bootstrap made (before any row is loaded).
def _replace(name: str, create: str) -> list[str]:
    return [f"DROP TABLE IF EXISTS {name} SYNC", create]


VARIANTS = {
    # ORDER BY without a column the revision has (city).
    "order-by-short": _replace("zakaz.fact_qtickets_sales_daily", """CREATE TABLE zakaz.fact_qtickets_sales_daily (
        sales_date Date, event_id String, city LowCardinality(String), tickets_sold UInt32,
        revenue Float64, _ver UInt64
    ) ENGINE = ReplacingMergeTree(_ver) PARTITION BY toYYYYMM(sales_date) ORDER BY (event_id, sales_date)"""),
    # The sorting key's columns in another order.
    "order-by-swapped": _replace("meta.sli_daily", """CREATE TABLE meta.sli_daily (
        d Date, table_name LowCardinality(String), metric_name LowCardinality(String),
        metric_value Float64, updated_at DateTime DEFAULT now()
    ) ENGINE = ReplacingMergeTree(updated_at) ORDER BY (table_name, d, metric_name)"""),
    # Another partition key.
    "partition": _replace("zakaz.dm_vk_ads_daily", """CREATE TABLE zakaz.dm_vk_ads_daily (
        stat_date Date, city LowCardinality(String), impressions UInt64, clicks UInt64, spend UInt64,
        _loaded_at DateTime DEFAULT now(), _ver UInt64
    ) ENGINE = ReplacingMergeTree(_ver) PARTITION BY toYear(stat_date) ORDER BY (stat_date, city)"""),
    # A key column as String where the revision has LowCardinality(String).
    "key-type": _replace("zakaz.dm_sales_daily", """CREATE TABLE zakaz.dm_sales_daily (
        event_date Date, sale_date Date, event_id LowCardinality(String), city String,
        event_name String, tickets_sold UInt64, revenue UInt64, refunds_amount UInt64,
        net_revenue Int64, currency LowCardinality(String) DEFAULT 'RUB',
        _loaded_at DateTime DEFAULT now(), _ver UInt64
    ) ENGINE = ReplacingMergeTree(_ver) PARTITION BY toYYYYMM(event_date)
    ORDER BY (event_date, city, event_id, event_name)"""),
    # A file set that never created a table of 0003 (the views reading it fail).
    "missing-table": ["DROP TABLE zakaz.stg_qtickets_sheets_events SYNC"],
}


def variants(*names: str) -> list[str]:
    return [sql for name in names for sql in VARIANTS[name]]
