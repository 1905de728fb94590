"""Add fact_qtickets_inventory_latest, the latest inventory snapshot per event and city, backfilled from fact_qtickets_inventory, and point the inventory, freshness and dashboard views at it.

fact_qtickets_inventory stays as the versioned history.  The backfill copies
every history row (snapshot_ts = _loaded_at, event_name from dim_events) and
runs only while the new table is empty, so a re-run never doubles rows.
Downgrade points the views back at fact_qtickets_inventory (as revisions
0003/0004 defined them) and drops the new table with its rows.
"""
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

DOWNGRADE_LOSES = ["zakaz.fact_qtickets_inventory_latest"]


def upgrade() -> None:
    op.create_table_if_not_exists("zakaz.fact_qtickets_inventory_latest", """
        snapshot_ts DateTime
        event_id String
        event_name String
        city LowCardinality(String)
        tickets_total Nullable(UInt32)
        tickets_left Nullable(UInt32)
        _ver UInt64
    """, engine="ReplacingMergeTree(_ver)", order_by="(event_id, city)", partition_by="tuple()")
    op.copy_rows_once(
        "zakaz.fact_qtickets_inventory_latest",
        "snapshot_ts, event_id, event_name, city, tickets_total, tickets_left, _ver",
        """
        SELECT i._loaded_at, i.event_id, coalesce(e.event_name, ''), i.city,
               i.tickets_total, i.tickets_left, i._ver
        FROM zakaz.fact_qtickets_inventory AS i
        LEFT JOIN
        (
            SELECT event_id, any(event_name) AS event_name
            FROM zakaz.dim_events FINAL
            GROUP BY event_id
        ) AS e ON e.event_id = i.event_id
        """,
    )
    op.create_view("zakaz.v_qtickets_inventory", """
        SELECT event_id, city, tickets_total, tickets_left,
               toInt64(tickets_total) - toInt64(tickets_left) AS tickets_sold
        FROM zakaz.fact_qtickets_inventory_latest FINAL
    """)
    op.create_view("zakaz.v_qtickets_freshness", """
        SELECT 'sales' AS source, 'zakaz.fact_qtickets_sales' AS table_name,
               CAST(max(date) AS Nullable(Date)) AS latest_date,
               dateDiff('day', latest_date, today()) AS days_behind, count() AS total_rows
        FROM zakaz.fact_qtickets_sales
        UNION ALL
        SELECT 'events', 'zakaz.dim_events', CAST(max(start_date) AS Nullable(Date)),
               dateDiff('day', CAST(max(start_date) AS Nullable(Date)), today()), count()
        FROM zakaz.dim_events
        UNION ALL
        SELECT 'inventory', 'zakaz.fact_qtickets_inventory_latest',
               CAST(toDate(max(snapshot_ts)) AS Nullable(Date)),
               dateDiff('day', CAST(toDate(max(snapshot_ts)) AS Nullable(Date)), today()), count()
        FROM zakaz.fact_qtickets_inventory_latest
    """)
    op.create_view("zakaz.v_qtickets_sales_dashboard", """
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
                       argMax(tickets_total, snapshot_ts) AS tickets_total,
                       argMax(tickets_left, snapshot_ts) AS tickets_left,
                       max(snapshot_ts) AS inventory_updated_at
                FROM zakaz.fact_qtickets_inventory_latest FINAL
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
    """)


def downgrade() -> None:
    op.create_view("zakaz.v_qtickets_inventory", INVENTORY_BEFORE)
    op.create_view("zakaz.v_qtickets_freshness", FRESHNESS_BEFORE)
    op.create_view("zakaz.v_qtickets_sales_dashboard", DASHBOARD_BEFORE)
    op.drop_table_if_exists("zakaz.fact_qtickets_inventory_latest")

# The views as revisions 0003 and 0004 defined them, copied here so that this
# downgrade restores the same views whatever later edits do to those files.
INVENTORY_BEFORE = """
        SELECT event_id, city, tickets_total, tickets_left,
               toInt64(tickets_total) - toInt64(tickets_left) AS tickets_sold
        FROM zakaz.fact_qtickets_inventory FINAL
    """
FRESHNESS_BEFORE = """
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
    """
DASHBOARD_BEFORE = """
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
    """
