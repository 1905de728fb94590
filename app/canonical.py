"""The warehouse at head, as data: what ``verify``, ``adopt``, lint and the tests expect.

Transcribed once from the spec (warehouse.md).  Revisions never import this
module: a revision is frozen history and carries its own copy of what it needs.

Each table is written as it would be declared: its name and engine clause on
one line (as in the spec, parsed with the same rules as system.tables'
engine_full, so ``ORDER BY (a, b)`` and ``PARTITION BY tuple()`` may be
written as the spec has them), then one line per column: name, type and an
optional ``DEFAULT expr``, ``COMMENT 'text'`` and ``CODEC(...)``, in that
order.  Views list their output column names; their types are not part of
the spec, so they are stored as ''.
"""
from __future__ import annotations

from app.schema import MATERIALIZED_VIEW, VIEW, Schema, parse_tables, parse_views
from app.warehouse import MANAGED_DATABASES  # noqa: F401 - written once, there

# The user every view runs as on a server (revision 0012); it cannot log in.
VIEW_DEFINER = "zakaz_view_definer"

TABLES = """
zakaz.core_sales_fct  MergeTree ORDER BY (sale_date, event_date, event_id, city, event_name)
    sale_date       Date
    event_date      Date
    event_id        String
    event_name      String
    city            String
    tickets_sold    UInt32
    revenue         Decimal(12, 2)
    refunds_amount  Decimal(12, 2)
    currency        FixedString(3)
    load_ts         DateTime DEFAULT now()

zakaz.dim_city_alias  ReplacingMergeTree ORDER BY (alias)
    alias           LowCardinality(String)
    city            LowCardinality(String)

zakaz.dim_events  ReplacingMergeTree(_ver) ORDER BY (event_id) PARTITION BY tuple()
    event_id        String
    event_name      String
    city            LowCardinality(String)
    start_date      Nullable(Date)
    end_date        Nullable(Date)
    tickets_total   UInt32 DEFAULT 0
    tickets_left    UInt32 DEFAULT 0
    _ver            UInt64
    _loaded_at      DateTime DEFAULT now()

zakaz.dm_sales_daily  ReplacingMergeTree(_ver) ORDER BY (event_date, city, event_id, event_name) PARTITION BY toYYYYMM(event_date)
    event_date      Date
    sale_date       Date
    event_id        LowCardinality(String)
    city            LowCardinality(String)
    event_name      String
    tickets_sold    UInt64
    revenue         UInt64
    refunds_amount  UInt64
    net_revenue     Int64
    currency        LowCardinality(String) DEFAULT 'RUB'
    _loaded_at      DateTime DEFAULT now()
    _ver            UInt64

zakaz.dm_vk_ads_daily  ReplacingMergeTree(_ver) ORDER BY (stat_date, city) PARTITION BY toYYYYMM(stat_date)
    stat_date       Date
    city            LowCardinality(String)
    impressions     UInt64
    clicks          UInt64
    spend           UInt64
    _loaded_at      DateTime DEFAULT now()
    _ver            UInt64

zakaz.fact_qtickets_inventory  ReplacingMergeTree(_ver) ORDER BY (event_id, city) PARTITION BY tuple()
    event_id        String
    city            LowCardinality(String)
    tickets_total   UInt32 DEFAULT 0
    tickets_left    UInt32 DEFAULT 0
    _ver            UInt64
    _loaded_at      DateTime DEFAULT now()

zakaz.fact_qtickets_inventory_latest  ReplacingMergeTree(_ver) ORDER BY (event_id, city) PARTITION BY tuple()
    snapshot_ts     DateTime
    event_id        String
    event_name      String
    city            LowCardinality(String)
    tickets_total   Nullable(UInt32)
    tickets_left    Nullable(UInt32)
    _ver            UInt64

zakaz.fact_qtickets_sales  ReplacingMergeTree(_ver) ORDER BY (date, event_id, city) PARTITION BY toYYYYMM(date)
    date            Date
    event_id        String
    event_name      String
    city            String
    tickets_sold    UInt32 DEFAULT 0
    revenue         Decimal(12, 2) DEFAULT 0
    refunds         Decimal(12, 2) DEFAULT 0
    currency        FixedString(3) DEFAULT 'RUB'
    _ver            UInt64
    _loaded_at      DateTime DEFAULT now()

zakaz.fact_qtickets_sales_daily  ReplacingMergeTree(_ver) ORDER BY (event_id, sales_date, city) PARTITION BY toYYYYMM(sales_date)
    sales_date      Date
    event_id        String
    city            LowCardinality(String)
    tickets_sold    UInt32
    revenue         Float64
    _ver            UInt64

zakaz.meta_job_runs  MergeTree ORDER BY (job, started_at) PARTITION BY toYYYYMM(started_at)
    job             LowCardinality(String)
    run_id          String DEFAULT toString(generateUUIDv4())
    started_at      DateTime
    finished_at     DateTime
    status          LowCardinality(String)
    rows_processed  UInt64 DEFAULT 0
    message         String DEFAULT ''
    metrics         String DEFAULT ''

zakaz.stg_qtickets_api_inventory_raw  ReplacingMergeTree(_ver) ORDER BY (event_id, city, snapshot_ts) PARTITION BY tuple()
    snapshot_ts     DateTime
    event_id        String
    event_name      String
    city            LowCardinality(String)
    tickets_total   Nullable(UInt32)
    tickets_left    Nullable(UInt32)
    _ver            UInt64
    _dedup_key      FixedString(32)

zakaz.stg_qtickets_api_orders_raw  ReplacingMergeTree(_ver) ORDER BY (_dedup_key) PARTITION BY tuple()
    order_id        String
    event_id        String
    city            LowCardinality(String)
    sale_ts         DateTime
    tickets_sold    UInt32
    revenue         Float64
    currency        LowCardinality(String)
    _ver            UInt64
    _dedup_key      FixedString(32)

zakaz.stg_qtickets_sales  ReplacingMergeTree(ingested_at) ORDER BY (report_date, event_date, event_id, city, event_name)
    report_date     Date
    event_date      Date
    event_id        String
    event_name      String
    city            String
    tickets_sold    UInt32
    revenue         Decimal(12, 2)
    refunds_amount  Decimal(12, 2) DEFAULT 0
    currency        FixedString(3)
    src_message_id  String
    src_message_ts  DateTime
    dedup_key       String
    ingested_at     DateTime DEFAULT now()

zakaz.stg_qtickets_sheets_events  ReplacingMergeTree(_ver) ORDER BY (event_id, city) PARTITION BY toYYYYMM(event_date)
    event_id        String
    event_name      String
    event_date      Date
    city            String
    tickets_total   UInt32 DEFAULT 0
    tickets_left    UInt32 DEFAULT 0
    _ver            UInt64
    hash_low_card   LowCardinality(String)

zakaz.stg_qtickets_sheets_inventory  ReplacingMergeTree(_ver) ORDER BY (event_id, city) PARTITION BY toYYYYMM(_loaded_at)
    event_id        String
    city            String
    tickets_total   UInt32 DEFAULT 0
    tickets_left    UInt32 DEFAULT 0
    _ver            UInt64
    hash_low_card   LowCardinality(String)
    _loaded_at      DateTime DEFAULT now()

zakaz.stg_qtickets_sheets_raw  ReplacingMergeTree(_ver) ORDER BY (source, sheet_id, tab, hash_low_card) PARTITION BY toYYYYMM(_ingest_ts) TTL _ingest_ts + toIntervalDay(30)
    source          String
    sheet_id        String
    tab             String
    payload_json    String
    _ver            UInt64
    _ingest_ts      DateTime
    hash_low_card   LowCardinality(String)

zakaz.stg_qtickets_sheets_sales  ReplacingMergeTree(_ver) ORDER BY (date, event_id, city) PARTITION BY toYYYYMM(date)
    date            Date
    event_id        String
    event_name      String
    city            String
    tickets_sold    UInt32 DEFAULT 0
    revenue         Decimal(12, 2) DEFAULT 0
    refunds         Decimal(12, 2) DEFAULT 0
    currency        FixedString(3) DEFAULT 'RUB'
    _ver            UInt64
    hash_low_card   LowCardinality(String)

zakaz.stg_sales_events  ReplacingMergeTree(_ver) ORDER BY (event_date, city, event_id, order_id) PARTITION BY toYYYYMM(event_date) TTL _loaded_at + toIntervalDay(30)
    event_date      Date
    event_id        String
    city            String
    order_id        String
    tickets_sold    Int32
    net_revenue     Float64
    currency        LowCardinality(String)
    _src            LowCardinality(String) DEFAULT 'qtickets'
    _op             LowCardinality(String) DEFAULT 'UPSERT'
    _ver            UInt64
    _loaded_at      DateTime DEFAULT now()

zakaz.stg_vk_ads_daily  ReplacingMergeTree(_ver) ORDER BY (stat_date, city, campaign_id, ad_id) PARTITION BY toYYYYMM(stat_date) TTL _loaded_at + toIntervalDay(30)
    stat_date       Date
    city            String
    campaign_id     String
    ad_id           String
    impressions     UInt64
    clicks          UInt64
    spend           Float64
    _src            LowCardinality(String) DEFAULT 'vk_ads'
    _op             LowCardinality(String) DEFAULT 'UPSERT'
    _ver            UInt64
    _loaded_at      DateTime DEFAULT now()

meta.backup_runs  MergeTree ORDER BY (ts, backup_name, mode) PARTITION BY toYYYYMM(ts)
    ts              DateTime DEFAULT now()
    backup_name     String
    mode            Enum8('full' = 1, 'incr' = 2) DEFAULT 'full'
    target          String
    status          Enum8('ok' = 1, 'fail' = 2, 'running' = 3) DEFAULT 'running'
    bytes           UInt64 DEFAULT 0
    duration_ms     UInt64 DEFAULT 0
    details         String DEFAULT ''
    error_msg       String DEFAULT ''

meta.etl_alerts  MergeTree ORDER BY (ts) PARTITION BY toYYYYMM(ts)
    ts              DateTime
    severity        LowCardinality(String)
    job             LowCardinality(String)
    code            LowCardinality(String)
    message         String
    context_json    String

meta.etl_runs  MergeTree ORDER BY (started_at, job) PARTITION BY toYYYYMM(started_at)
    job             LowCardinality(String)
    run_id          UUID
    started_at      DateTime
    finished_at     DateTime
    status          LowCardinality(String)
    rows_written    UInt64
    rows_read       UInt64
    err_msg         String
    from_date       Date
    to_date         Date
    host            String
    version_tag     String

meta.sli_daily  ReplacingMergeTree(updated_at) ORDER BY (d, table_name, metric_name)
    d               Date
    table_name      LowCardinality(String)
    metric_name     LowCardinality(String)
    metric_value    Float64
    updated_at      DateTime DEFAULT now()

meta.watermarks  ReplacingMergeTree(updated_at) ORDER BY (source, stream)
    source          LowCardinality(String)
    stream          LowCardinality(String)
    wm_type         LowCardinality(String)
    wm_value_s      String
    updated_at      DateTime DEFAULT now()
"""

# In the spec's order, which is also a valid creation order.
VIEWS = """
zakaz.v_sales_latest: sale_date, event_date, event_id, event_name, city, tickets_sold, revenue, refunds_amount, currency
zakaz.v_sales_14d: d, city, event_id, event_name, tickets_sold, revenue, refunds_amount
zakaz.v_dm_sales_daily: event_date, sale_date, event_id, city, event_name, tickets_sold, revenue, refunds_amount, net_revenue, currency, _loaded_at
zakaz.v_vk_ads_daily: stat_date, city, impressions, clicks, spend
zakaz.v_marketing_roi_daily: d, city, net_revenue, tickets_sold, spend, clicks, impressions, roas, cpc, cpt
zakaz.v_qtickets_sales_latest: date, event_id, event_name, city, tickets_sold, revenue, refunds, currency
zakaz.v_qtickets_sales_14d: date, city, event_id, event_name, tickets_sold, revenue, refunds, currency
zakaz.v_qtickets_inventory: event_id, city, tickets_total, tickets_left, tickets_sold
zakaz.v_qtickets_freshness: source, table_name, latest_date, days_behind, total_rows
zakaz.v_qtickets_sales_dashboard: event_id, event_name, city, tickets_sold_today, revenue_today, tickets_sold_14d, revenue_14d, tickets_total, tickets_left, inventory_updated_at, start_date, end_date
meta.v_quality_last_day: d, sales_rows, sales_revenue, vk_rows, vk_spend
meta.v_sli_latest: d, table_name, metric_name, metric_value, updated_at
bi.v_sales_daily: d, city, event_id, tickets_sold, revenue, currency, _loaded_at
bi.v_vk_ads_daily: d, city, impressions, clicks, spend, _loaded_at
bi.v_marketing_roi_daily: d, city, revenue, tickets_sold, impressions, clicks, spend, roas, cpc, cpt, _loaded_at
bi.v_ops_freshness: d, source, loaded_at_sales, loaded_at_vk, freshness_hours_sales, freshness_hours_vk
"""

# Name and storage engine clause, then a colon and the output columns.
MATERIALIZED_VIEWS = """
zakaz.mv_qtickets_sales_latest ReplacingMergeTree ORDER BY (event_id, city) PARTITION BY tuple(): event_id, city, latest_sale_ts, tickets_sold_14d, revenue_14d
"""


CANONICAL: Schema = {
    obj.name: obj
    for obj in (
        parse_tables(TABLES)
        # Every view runs with its definer's rights (revision 0012): DataLens
        # reads views without grants on what is under them.
        + parse_views(VIEWS, VIEW, security="DEFINER")
        + parse_views(MATERIALIZED_VIEWS, MATERIALIZED_VIEW)
    )
}
