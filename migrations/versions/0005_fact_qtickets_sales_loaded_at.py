"""Add fact_qtickets_sales._loaded_at DateTime DEFAULT now(): when each sales row was loaded, for freshness checks.

Existing rows read the time of this migration.  Downgrade drops the column and its values.
"""
from app.operations import add_column, drop_column

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

DOWNGRADE_LOSES = ["zakaz.fact_qtickets_sales._loaded_at"]


def upgrade() -> None:
    add_column("zakaz.fact_qtickets_sales", "_loaded_at DateTime DEFAULT now()", after="_ver")


def downgrade() -> None:
    drop_column("zakaz.fact_qtickets_sales", "_loaded_at")
