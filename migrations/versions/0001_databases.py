"""Create the warehouse databases: zakaz (staging, facts, marts), meta (ETL bookkeeping), bi (DataLens views).

Downgrade drops the three databases and everything left in them.
"""
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

DOWNGRADE_LOSES: list[str] = []


def upgrade() -> None:
    op.create_database("zakaz")
    op.create_database("meta")
    op.create_database("bi")


def downgrade() -> None:
    op.drop_database("bi")
    op.drop_database("meta")
    op.drop_database("zakaz")
