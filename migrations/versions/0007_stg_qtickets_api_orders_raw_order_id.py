"""Add stg_qtickets_api_orders_raw.order_id String as the first column: the API's order id, needed to trace a sale back to its order.

Rows loaded before have an empty order_id.  Downgrade drops the column and its values.
"""
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

DOWNGRADE_LOSES = ["zakaz.stg_qtickets_api_orders_raw.order_id"]


def upgrade() -> None:
    op.add_column_if_not_exists("zakaz.stg_qtickets_api_orders_raw", "order_id String", first=True)


def downgrade() -> None:
    op.drop_column_if_exists("zakaz.stg_qtickets_api_orders_raw", "order_id")
