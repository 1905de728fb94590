"""QTickets API: raw orders and inventory snapshots, daily sales fact, the latest-sales materialized view and the sales dashboard view.

As first shipped: raw orders have no ``order_id``, and the dashboard reads
inventory from the versioned fact_qtickets_inventory.  The materialized view
keeps the warehouse's design (a time filter inside an MV and sums stored in a
ReplacingMergeTree); lint warns about it on purpose.
Downgrade drops these tables (and the view's storage) with their rows.
"""
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = [
    "zakaz.stg_qtickets_api_orders_raw", "zakaz.stg_qtickets_api_inventory_raw",
    "zakaz.fact_qtickets_sales_daily",
]
DOWNGRADE_LOSES = TABLES + ["zakaz.mv_qtickets_sales_latest"]

VIEW_SQL = {
    "zakaz.v_qtickets_sales_dashboard": """
        WITH
            sales AS
            (
                SELECT event_id, city,
                       sumIf(tickets_sold, sales_date = today()) AS tickets_sold_today,
                       sumIf(revenue, sales_date = today()) AS revenue_today,
                       sum(tickets_sold) AS tickets_sold_14d,
                       sum(revenue) AS revenue_14d
                FROM zakaz.fact_qtickets_sales_daily FINAL
                WHERE sales_date >= today() - 13
                GROUP BY event_id, city
            ),
            inventory AS
            (
                SELECT event_id, city,
                       argMax(tickets_total, _loaded_at) AS tickets_total,
                       argMax(tickets_left, _loaded_at) AS tickets_left,
                       max(_loaded_at) AS inventory_updated_at
                FROM zakaz.fact_qtickets_inventory FINAL
                GROUP BY event_id, city
            )
        SELECT k.event_id AS event_id, e.event_name AS event_name, k.city AS city,
               s.tickets_sold_today AS tickets_sold_today, s.revenue_today AS revenue_today,
               s.tickets_sold_14d AS tickets_sold_14d, s.revenue_14d AS revenue_14d,
               i.tickets_total AS tickets_total, i.tickets_left AS tickets_left,
               i.inventory_updated_at AS inventory_updated_at,
               e.start_date AS start_date, e.end_date AS end_date
        FROM
        (
            SELECT event_id, city FROM sales
            UNION DISTINCT
            SELECT event_id, city FROM inventory
        ) AS k
        LEFT JOIN sales AS s ON s.event_id = k.event_id AND s.city = k.city
        LEFT JOIN inventory AS i ON i.event_id = k.event_id AND i.city = k.city
        LEFT JOIN
        (
            SELECT event_id, event_name, start_date, end_date FROM zakaz.dim_events FINAL
        ) AS e ON e.event_id = k.event_id
    """,
}


def upgrade() -> None:
    op.create_table_if_not_exists("zakaz.stg_qtickets_api_orders_raw", """
        event_id String
        city LowCardinality(String)
        sale_ts DateTime
        tickets_sold UInt32
        revenue Float64
        currency LowCardinality(String)
        _ver UInt64
        _dedup_key FixedString(32)
    """, engine="ReplacingMergeTree(_ver)", order_by="(_dedup_key)", partition_by="tuple()")
    op.create_table_if_not_exists("zakaz.stg_qtickets_api_inventory_raw", """
        snapshot_ts DateTime
        event_id String
        event_name String
        city LowCardinality(String)
        tickets_total Nullable(UInt32)
        tickets_left Nullable(UInt32)
        _ver UInt64
        _dedup_key FixedString(32)
    """, engine="ReplacingMergeTree(_ver)", order_by="(event_id, city, snapshot_ts)",
        partition_by="tuple()")
    op.create_table_if_not_exists("zakaz.fact_qtickets_sales_daily", """
        sales_date Date
        event_id String
        city LowCardinality(String)
        tickets_sold UInt32
        revenue Float64
        _ver UInt64
    """, engine="ReplacingMergeTree(_ver)", order_by="(event_id, sales_date, city)",
        partition_by="toYYYYMM(sales_date)")

    op.create_materialized_view("zakaz.mv_qtickets_sales_latest", """
        SELECT event_id, city,
               max(sale_ts) AS latest_sale_ts,
               sum(tickets_sold) AS tickets_sold_14d,
               sum(revenue) AS revenue_14d
        FROM zakaz.stg_qtickets_api_orders_raw
        WHERE sale_ts >= now() - toIntervalDay(14)
        GROUP BY event_id, city
    """, engine="ReplacingMergeTree", order_by="(event_id, city)", partition_by="tuple()")
    op.create_view("zakaz.v_qtickets_sales_dashboard", VIEW_SQL["zakaz.v_qtickets_sales_dashboard"])


def downgrade() -> None:
    op.drop_view("zakaz.v_qtickets_sales_dashboard")
    op.drop_view("zakaz.mv_qtickets_sales_latest")
    for table in reversed(TABLES):
        op.drop_table_if_exists(table)
