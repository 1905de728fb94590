"""QTickets from Google Sheets: raw sheet rows, events, inventory and sales staging, the sales and inventory facts, the events dimension, the job-run log, and their views.

As first shipped: sheets inventory and fact_qtickets_sales have no
``_loaded_at`` (sheets inventory is unpartitioned), meta_job_runs has no
``run_id``, and the inventory views read the versioned fact_qtickets_inventory
(its ``_loaded_at`` is the inventory date).  Later revisions fix each.
Downgrade drops these tables with their rows.
"""
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = [
    "zakaz.stg_qtickets_sheets_raw", "zakaz.stg_qtickets_sheets_events",
    "zakaz.stg_qtickets_sheets_inventory", "zakaz.stg_qtickets_sheets_sales",
    "zakaz.fact_qtickets_sales", "zakaz.fact_qtickets_inventory", "zakaz.dim_events",
    "zakaz.meta_job_runs",
]
DOWNGRADE_LOSES = TABLES

VIEW_SQL = {
    "zakaz.v_qtickets_sales_latest": """
        SELECT date, event_id, event_name, city, tickets_sold, revenue, refunds, currency
        FROM zakaz.fact_qtickets_sales FINAL
    """,
    "zakaz.v_qtickets_sales_14d": """
        SELECT date, city, event_id, event_name,
               sum(tickets_sold) AS tickets_sold,
               sum(revenue) AS revenue,
               sum(refunds) AS refunds,
               any(currency) AS currency
        FROM zakaz.fact_qtickets_sales FINAL
        WHERE date >= today() - 14
        GROUP BY date, city, event_id, event_name
    """,
    "zakaz.v_qtickets_inventory": """
        SELECT event_id, city, tickets_total, tickets_left,
               toInt64(tickets_total) - toInt64(tickets_left) AS tickets_sold
        FROM zakaz.fact_qtickets_inventory FINAL
    """,
    "zakaz.v_qtickets_freshness": """
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
        FROM zakaz.fact_qtickets_inventory
    """,
}


def upgrade() -> None:
    op.create_table_if_not_exists("zakaz.stg_qtickets_sheets_raw", """
        source String
        sheet_id String
        tab String
        payload_json String
        _ver UInt64
        _ingest_ts DateTime
        hash_low_card LowCardinality(String)
    """, engine="ReplacingMergeTree(_ver)", order_by="(source, sheet_id, tab, hash_low_card)",
        partition_by="toYYYYMM(_ingest_ts)", ttl="_ingest_ts + toIntervalDay(30)")
    op.create_table_if_not_exists("zakaz.stg_qtickets_sheets_events", """
        event_id String
        event_name String
        event_date Date
        city String
        tickets_total UInt32 DEFAULT 0
        tickets_left UInt32 DEFAULT 0
        _ver UInt64
        hash_low_card LowCardinality(String)
    """, engine="ReplacingMergeTree(_ver)", order_by="(event_id, city)",
        partition_by="toYYYYMM(event_date)")
    op.create_table_if_not_exists("zakaz.stg_qtickets_sheets_inventory", """
        event_id String
        city String
        tickets_total UInt32 DEFAULT 0
        tickets_left UInt32 DEFAULT 0
        _ver UInt64
        hash_low_card LowCardinality(String)
    """, engine="ReplacingMergeTree(_ver)", order_by="(event_id, city)", partition_by="tuple()")
    op.create_table_if_not_exists("zakaz.stg_qtickets_sheets_sales", """
        date Date
        event_id String
        event_name String
        city String
        tickets_sold UInt32 DEFAULT 0
        revenue Decimal(12, 2) DEFAULT 0
        refunds Decimal(12, 2) DEFAULT 0
        currency FixedString(3) DEFAULT 'RUB'
        _ver UInt64
        hash_low_card LowCardinality(String)
    """, engine="ReplacingMergeTree(_ver)", order_by="(date, event_id, city)",
        partition_by="toYYYYMM(date)")
    op.create_table_if_not_exists("zakaz.fact_qtickets_sales", """
        date Date
        event_id String
        event_name String
        city String
        tickets_sold UInt32 DEFAULT 0
        revenue Decimal(12, 2) DEFAULT 0
        refunds Decimal(12, 2) DEFAULT 0
        currency FixedString(3) DEFAULT 'RUB'
        _ver UInt64
    """, engine="ReplacingMergeTree(_ver)", order_by="(date, event_id, city)",
        partition_by="toYYYYMM(date)")
    op.create_table_if_not_exists("zakaz.fact_qtickets_inventory", """
        event_id String
        city LowCardinality(String)
        tickets_total UInt32 DEFAULT 0
        tickets_left UInt32 DEFAULT 0
        _ver UInt64
        _loaded_at DateTime DEFAULT now()
    """, engine="ReplacingMergeTree(_ver)", order_by="(event_id, city)", partition_by="tuple()")
    op.create_table_if_not_exists("zakaz.dim_events", """
        event_id String
        event_name String
        city LowCardinality(String)
        start_date Nullable(Date)
        end_date Nullable(Date)
        tickets_total UInt32 DEFAULT 0
        tickets_left UInt32 DEFAULT 0
        _ver UInt64
        _loaded_at DateTime DEFAULT now()
    """, engine="ReplacingMergeTree(_ver)", order_by="(event_id)", partition_by="tuple()")
    op.create_table_if_not_exists("zakaz.meta_job_runs", """
        job LowCardinality(String)
        started_at DateTime
        finished_at DateTime
        status LowCardinality(String)
        rows_processed UInt64 DEFAULT 0
        message String DEFAULT ''
        metrics String DEFAULT ''
    """, engine="MergeTree", order_by="(job, started_at)", partition_by="toYYYYMM(started_at)")

    for name, select in VIEW_SQL.items():
        op.create_view(name, select)


def downgrade() -> None:
    for view in reversed(VIEW_SQL):
        op.drop_view(view)
    for table in reversed(TABLES):
        op.drop_table_if_exists(table)
