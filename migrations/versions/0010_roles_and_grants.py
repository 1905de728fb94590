"""Roles zakaz_etl, zakaz_reader and zakaz_backup with grants on exactly the objects that exist at this revision.

The old files granted to users kept in read-only XML storage (never took
effect) and named objects that did not exist.  Users and their passwords are
not here: `zakaz-schema users apply` creates them from the environment.
On the embedded engine (no access storage) each statement is checked and
recorded as skipped.  Downgrade drops the roles, which removes their grants.
"""
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

DOWNGRADE_LOSES: list[str] = []

ETL_WRITES = [
    "zakaz.stg_qtickets_sales", "zakaz.stg_sales_events", "zakaz.stg_vk_ads_daily",
    "zakaz.stg_qtickets_sheets_raw", "zakaz.stg_qtickets_sheets_events",
    "zakaz.stg_qtickets_sheets_inventory", "zakaz.stg_qtickets_sheets_sales",
    "zakaz.stg_qtickets_api_orders_raw", "zakaz.stg_qtickets_api_inventory_raw",
    "zakaz.fact_qtickets_sales", "zakaz.fact_qtickets_sales_daily",
    "zakaz.fact_qtickets_inventory", "zakaz.fact_qtickets_inventory_latest",
    "zakaz.dim_events", "zakaz.dim_city_alias",
    "zakaz.dm_sales_daily", "zakaz.dm_vk_ads_daily", "zakaz.meta_job_runs",
    "meta.etl_runs", "meta.etl_alerts", "meta.watermarks", "meta.sli_daily",
]
READER_SELECTS = [
    "zakaz.v_sales_latest", "zakaz.v_sales_14d", "zakaz.v_dm_sales_daily",
    "zakaz.v_vk_ads_daily", "zakaz.v_marketing_roi_daily", "zakaz.v_qtickets_sales_latest",
    "zakaz.v_qtickets_sales_14d", "zakaz.v_qtickets_inventory", "zakaz.v_qtickets_freshness",
    "zakaz.v_qtickets_sales_dashboard", "zakaz.mv_qtickets_sales_latest",
    "meta.v_quality_last_day", "meta.v_sli_latest",
    "bi.v_sales_daily", "bi.v_vk_ads_daily", "bi.v_marketing_roi_daily", "bi.v_ops_freshness",
    "zakaz.dim_events", "zakaz.fact_qtickets_sales", "zakaz.fact_qtickets_sales_daily",
    "zakaz.fact_qtickets_inventory_latest", "zakaz.meta_job_runs",
]
ROLES = ["zakaz_etl", "zakaz_reader", "zakaz_backup"]


def upgrade() -> None:
    for role in ROLES:
        op.create_role(role)
    for table in ETL_WRITES:
        op.grant("INSERT, SELECT", table, to="zakaz_etl")
    op.grant("SELECT", "meta.*", to="zakaz_etl")
    for name in READER_SELECTS:
        op.grant("SELECT", name, to="zakaz_reader")
    op.grant("INSERT, SELECT", "meta.backup_runs", to="zakaz_backup")


def downgrade() -> None:
    for role in reversed(ROLES):
        op.drop_role(role)
