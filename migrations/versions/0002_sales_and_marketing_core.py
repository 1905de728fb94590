"""Sales and marketing core: QTickets sales staging, sales facts and marts, VK Ads, ETL meta tables, and their views.

This is the first warehouse the loaders wrote to.  Views are created after
every table they read (the old SQL files created some views first).
Downgrade drops these tables with their rows.
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES = [
    "zakaz.stg_qtickets_sales", "zakaz.core_sales_fct", "zakaz.dm_sales_daily",
    "zakaz.dim_city_alias", "zakaz.dm_vk_ads_daily", "zakaz.stg_sales_events",
    "zakaz.stg_vk_ads_daily", "meta.backup_runs", "meta.etl_alerts", "meta.etl_runs",
    "meta.sli_daily", "meta.watermarks",
]
VIEWS = [
    "zakaz.v_sales_latest", "zakaz.v_sales_14d", "zakaz.v_dm_sales_daily",
    "zakaz.v_vk_ads_daily", "zakaz.v_marketing_roi_daily",
    "meta.v_quality_last_day", "meta.v_sli_latest",
    "bi.v_sales_daily", "bi.v_vk_ads_daily", "bi.v_marketing_roi_daily", "bi.v_ops_freshness",
]
DOWNGRADE_LOSES = TABLES


def upgrade() -> None:
    op.create_table_if_not_exists("zakaz.stg_qtickets_sales", """
        report_date Date
        event_date Date
        event_id String
        event_name String
        city String
        tickets_sold UInt32
        revenue Decimal(12, 2)
        refunds_amount Decimal(12, 2) DEFAULT 0
        currency FixedString(3)
        src_message_id String
        src_message_ts DateTime
        dedup_key String
        ingested_at DateTime DEFAULT now()
    """, engine="ReplacingMergeTree(ingested_at)",
        order_by="(report_date, event_date, event_id, city, event_name)")
    op.create_table_if_not_exists("zakaz.core_sales_fct", """
        sale_date Date
        event_date Date
        event_id String
        event_name String
        city String
        tickets_sold UInt32
        revenue Decimal(12, 2)
        refunds_amount Decimal(12, 2)
        currency FixedString(3)
        load_ts DateTime DEFAULT now()
    """, engine="MergeTree", order_by="(sale_date, event_date, event_id, city, event_name)")
    op.create_table_if_not_exists("zakaz.dm_sales_daily", """
        event_date Date
        sale_date Date
        event_id LowCardinality(String)
        city LowCardinality(String)
        event_name String
        tickets_sold UInt64
        revenue UInt64
        refunds_amount UInt64
        net_revenue Int64
        currency LowCardinality(String) DEFAULT 'RUB'
        _loaded_at DateTime DEFAULT now()
        _ver UInt64
    """, engine="ReplacingMergeTree(_ver)", order_by="(event_date, city, event_id, event_name)",
        partition_by="toYYYYMM(event_date)")
    op.create_table_if_not_exists("zakaz.dim_city_alias", """
        alias LowCardinality(String)
        city LowCardinality(String)
    """, engine="ReplacingMergeTree", order_by="(alias)")
    op.create_table_if_not_exists("zakaz.dm_vk_ads_daily", """
        stat_date Date
        city LowCardinality(String)
        impressions UInt64
        clicks UInt64
        spend UInt64
        _loaded_at DateTime DEFAULT now()
        _ver UInt64
    """, engine="ReplacingMergeTree(_ver)", order_by="(stat_date, city)",
        partition_by="toYYYYMM(stat_date)")
    op.create_table_if_not_exists("zakaz.stg_sales_events", """
        event_date Date
        event_id String
        city String
        order_id String
        tickets_sold Int32
        net_revenue Float64
        currency LowCardinality(String)
        _src LowCardinality(String) DEFAULT 'qtickets'
        _op LowCardinality(String) DEFAULT 'UPSERT'
        _ver UInt64
        _loaded_at DateTime DEFAULT now()
    """, engine="ReplacingMergeTree(_ver)", order_by="(event_date, city, event_id, order_id)",
        partition_by="toYYYYMM(event_date)", ttl="_loaded_at + toIntervalDay(30)")
    op.create_table_if_not_exists("zakaz.stg_vk_ads_daily", """
        stat_date Date
        city String
        campaign_id String
        ad_id String
        impressions UInt64
        clicks UInt64
        spend Float64
        _src LowCardinality(String) DEFAULT 'vk_ads'
        _op LowCardinality(String) DEFAULT 'UPSERT'
        _ver UInt64
        _loaded_at DateTime DEFAULT now()
    """, engine="ReplacingMergeTree(_ver)", order_by="(stat_date, city, campaign_id, ad_id)",
        partition_by="toYYYYMM(stat_date)", ttl="_loaded_at + toIntervalDay(30)")

    op.create_table_if_not_exists("meta.backup_runs", """
        ts DateTime DEFAULT now()
        backup_name String
        mode Enum8('full' = 1, 'incr' = 2) DEFAULT 'full'
        target String
        status Enum8('ok' = 1, 'fail' = 2, 'running' = 3) DEFAULT 'running'
        bytes UInt64 DEFAULT 0
        duration_ms UInt64 DEFAULT 0
        details String DEFAULT ''
        error_msg String DEFAULT ''
    """, engine="MergeTree", order_by="(ts, backup_name, mode)", partition_by="toYYYYMM(ts)")
    op.create_table_if_not_exists("meta.etl_alerts", """
        ts DateTime
        severity LowCardinality(String)
        job LowCardinality(String)
        code LowCardinality(String)
        message String
        context_json String
    """, engine="MergeTree", order_by="(ts)", partition_by="toYYYYMM(ts)")
    op.create_table_if_not_exists("meta.etl_runs", """
        job LowCardinality(String)
        run_id UUID
        started_at DateTime
        finished_at DateTime
        status LowCardinality(String)
        rows_written UInt64
        rows_read UInt64
        err_msg String
        from_date Date
        to_date Date
        host String
        version_tag String
    """, engine="MergeTree", order_by="(started_at, job)", partition_by="toYYYYMM(started_at)")
    op.create_table_if_not_exists("meta.sli_daily", """
        d Date
        table_name LowCardinality(String)
        metric_name LowCardinality(String)
        metric_value Float64
        updated_at DateTime DEFAULT now()
    """, engine="ReplacingMergeTree(updated_at)", order_by="(d, table_name, metric_name)")
    op.create_table_if_not_exists("meta.watermarks", """
        source LowCardinality(String)
        stream LowCardinality(String)
        wm_type LowCardinality(String)
        wm_value_s String
        updated_at DateTime DEFAULT now()
    """, engine="ReplacingMergeTree(updated_at)", order_by="(source, stream)")

    op.create_view("zakaz.v_sales_latest", """
        SELECT report_date AS sale_date, event_date, event_id, event_name, city,
               tickets_sold, revenue, refunds_amount, currency
        FROM zakaz.stg_qtickets_sales FINAL
    """)
    op.create_view("zakaz.v_sales_14d", """
        SELECT event_date AS d, city, event_id, event_name,
               sum(tickets_sold) AS tickets_sold,
               sum(revenue) AS revenue,
               sum(refunds_amount) AS refunds_amount
        FROM zakaz.stg_qtickets_sales FINAL
        WHERE report_date >= today() - 14
        GROUP BY d, city, event_id, event_name
    """)
    op.create_view("zakaz.v_dm_sales_daily", """
        SELECT event_date, sale_date, event_id, city, event_name, tickets_sold, revenue,
               refunds_amount, net_revenue, currency, _loaded_at
        FROM zakaz.dm_sales_daily
    """)
    op.create_view("zakaz.v_vk_ads_daily", """
        SELECT stat_date, city, impressions, clicks, spend
        FROM zakaz.dm_vk_ads_daily
    """)
    op.create_view("zakaz.v_marketing_roi_daily", """
        SELECT s.d AS d, s.city AS city, s.net_revenue AS net_revenue,
               s.tickets_sold AS tickets_sold, a.spend AS spend, a.clicks AS clicks,
               a.impressions AS impressions,
               if(a.spend = 0, 0, s.net_revenue / a.spend) AS roas,
               if(a.clicks = 0, 0, a.spend / a.clicks) AS cpc,
               if(s.tickets_sold = 0, 0, a.spend / s.tickets_sold) AS cpt
        FROM
        (
            SELECT event_date AS d, city, sum(net_revenue) AS net_revenue,
                   sum(tickets_sold) AS tickets_sold
            FROM zakaz.dm_sales_daily FINAL
            GROUP BY d, city
        ) AS s
        LEFT JOIN
        (
            SELECT stat_date AS d, city, sum(spend) AS spend, sum(clicks) AS clicks,
                   sum(impressions) AS impressions
            FROM zakaz.dm_vk_ads_daily FINAL
            GROUP BY d, city
        ) AS a ON s.d = a.d AND s.city = a.city
    """)
    op.create_view("meta.v_quality_last_day", """
        SELECT yesterday() AS d,
               (SELECT count() FROM zakaz.dm_sales_daily WHERE event_date = yesterday()) AS sales_rows,
               (SELECT sum(net_revenue) FROM zakaz.dm_sales_daily WHERE event_date = yesterday()) AS sales_revenue,
               (SELECT count() FROM zakaz.dm_vk_ads_daily WHERE stat_date = yesterday()) AS vk_rows,
               (SELECT sum(spend) FROM zakaz.dm_vk_ads_daily WHERE stat_date = yesterday()) AS vk_spend
    """)
    op.create_view("meta.v_sli_latest", """
        SELECT d, table_name, metric_name, metric_value, updated_at
        FROM meta.sli_daily FINAL
        WHERE d >= today() - 2
    """)
    op.create_view("bi.v_sales_daily", """
        SELECT s.event_date AS d,
               if(a.city = '', lower(trimBoth(s.city)), toString(a.city)) AS city,
               toString(s.event_id) AS event_id,
               sum(s.tickets_sold) AS tickets_sold,
               CAST(sum(s.net_revenue) AS Decimal(18, 2)) / 100 AS revenue,
               toString(any(s.currency)) AS currency,
               max(s._loaded_at) AS _loaded_at
        FROM zakaz.dm_sales_daily AS s FINAL
        LEFT JOIN
        (
            SELECT toString(alias) AS alias, any(city) AS city
            FROM zakaz.dim_city_alias FINAL
            GROUP BY alias
        ) AS a ON lower(trimBoth(toString(s.city))) = a.alias
        GROUP BY d, city, event_id
    """)
    op.create_view("bi.v_vk_ads_daily", """
        SELECT stat_date AS d, lower(toString(city)) AS city,
               sum(impressions) AS impressions, sum(clicks) AS clicks,
               CAST(sum(spend) AS Decimal(18, 2)) / 100 AS spend,
               max(_loaded_at) AS _loaded_at
        FROM zakaz.dm_vk_ads_daily FINAL
        GROUP BY d, city
    """)
    # Without join_use_nulls (a setting here would leak into the views it
    # reads), the side a row is missing from has default values: '' and 1970-01-01.
    op.create_view("bi.v_marketing_roi_daily", """
        SELECT if(s.city = '', v.d, s.d) AS d,
               if(s.city = '', v.city, s.city) AS city,
               s.revenue AS revenue,
               s.tickets_sold AS tickets_sold,
               v.impressions AS impressions,
               v.clicks AS clicks,
               v.spend AS spend,
               if(v.spend = 0, 0, toFloat64(s.revenue) / toFloat64(v.spend)) AS roas,
               if(v.clicks = 0, NULL, toFloat64(v.spend) / v.clicks) AS cpc,
               if(s.tickets_sold = 0, NULL, toFloat64(v.spend) / s.tickets_sold) AS cpt,
               greatest(s._loaded_at, v._loaded_at) AS _loaded_at
        FROM
        (
            SELECT d, city, sum(revenue) AS revenue, sum(tickets_sold) AS tickets_sold,
                   max(_loaded_at) AS _loaded_at
            FROM bi.v_sales_daily
            GROUP BY d, city
        ) AS s
        FULL OUTER JOIN bi.v_vk_ads_daily AS v ON s.d = v.d AND s.city = v.city
    """)
    op.create_view("bi.v_ops_freshness", """
        SELECT today() AS d,
               'qtickets+vk_ads' AS source,
               (SELECT max(_loaded_at) FROM zakaz.dm_sales_daily) AS loaded_at_sales,
               (SELECT max(_loaded_at) FROM zakaz.dm_vk_ads_daily) AS loaded_at_vk,
               dateDiff('hour', loaded_at_sales, now()) AS freshness_hours_sales,
               dateDiff('hour', loaded_at_vk, now()) AS freshness_hours_vk
    """)


def downgrade() -> None:
    for view in reversed(VIEWS):
        op.drop_view(view)
    for table in reversed(TABLES):
        op.drop_table_if_exists(table)
