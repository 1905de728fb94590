"""Add fact_qtickets_sales._loaded_at DateTime DEFAULT now(): when each sales row was loaded, for freshness checks.

Existing rows get the time of this migration, written once (MATERIALIZE
COLUMN): a DEFAULT alone is computed again at every read of old rows, so
they would always look fresh.  Downgrade drops the column and its values.
"""
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

DOWNGRADE_LOSES = ["zakaz.fact_qtickets_sales._loaded_at"]


def upgrade() -> None:
    op.add_column_if_not_exists("zakaz.fact_qtickets_sales", "_loaded_at DateTime DEFAULT now()", after="_ver")
    # A mutation on a data table (never on the ledger), waited for so the
    # revision is done when it says it is.
    op.run("ALTER TABLE zakaz.fact_qtickets_sales MATERIALIZE COLUMN _loaded_at SETTINGS mutations_sync = 2")


def downgrade() -> None:
    op.drop_column_if_exists("zakaz.fact_qtickets_sales", "_loaded_at")
