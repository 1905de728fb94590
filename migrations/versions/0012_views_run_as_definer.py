"""Every view runs with the rights of zakaz_view_definer, a user that cannot log in, so DataLens reads dashboards without grants on the tables under them.

A view runs with its reader's rights unless it says otherwise (SQL SECURITY
INVOKER, the server default): datalens_reader, rightly granted nothing on
staging tables, was denied on v_sales_latest and most views in zakaz, meta and
bi.  A dedicated definer (no login: HOST NONE) holds SELECT on the
three databases; the reader keeps SELECT on the views only.  On the embedded
engine there are no users: the views run as DEFINER with chDB's one user, and
the user statements are checked and recorded as skipped.  The materialized
view, read by DataLens too, runs as the definer as well: created with no
clause it ran as SQL SECURITY NONE, and a 24.8 server then checked its
reader's rights on the source table.  It also writes with the definer's
rights.  On the embedded engine its statements are skipped (chDB cannot set
NONE back, and has one user anyway).

Downgrade makes the views INVOKER again and the materialized view NONE, then
drops the definer; no rows are touched.
"""
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

DOWNGRADE_LOSES: list[str] = []

DEFINER = "zakaz_view_definer"
VIEWS = [
    "zakaz.v_sales_latest", "zakaz.v_sales_14d", "zakaz.v_dm_sales_daily", "zakaz.v_vk_ads_daily",
    "zakaz.v_marketing_roi_daily", "zakaz.v_qtickets_sales_latest", "zakaz.v_qtickets_sales_14d",
    "zakaz.v_qtickets_inventory", "zakaz.v_qtickets_freshness", "zakaz.v_qtickets_sales_dashboard",
    "meta.v_quality_last_day", "meta.v_sli_latest",
    "bi.v_sales_daily", "bi.v_vk_ads_daily", "bi.v_marketing_roi_daily", "bi.v_ops_freshness",
]
MATERIALIZED_VIEWS = ["zakaz.mv_qtickets_sales_latest"]


def upgrade() -> None:
    op.access(f"CREATE USER IF NOT EXISTS {DEFINER} NOT IDENTIFIED HOST NONE")
    for database in ("zakaz", "meta", "bi"):
        op.grant("SELECT", f"{database}.*", to=DEFINER)
    for view in VIEWS:
        op.set_view_security(view, "DEFINER", definer=DEFINER)
    for view in MATERIALIZED_VIEWS:
        op.set_view_security(view, "DEFINER", definer=DEFINER, server_only=True)


def downgrade() -> None:
    for view in MATERIALIZED_VIEWS:
        op.set_view_security(view, "NONE", server_only=True)
    for view in reversed(VIEWS):
        op.set_view_security(view, "INVOKER")
    op.access(f"DROP USER IF EXISTS {DEFINER}")
