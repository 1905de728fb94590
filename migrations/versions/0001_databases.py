"""Create the warehouse databases: zakaz (staging, facts, marts), meta (ETL bookkeeping), bi (DataLens views).

Downgrade drops the three databases and everything left in them.
"""
from app.operations import create_database, drop_database

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

DOWNGRADE_LOSES: list[str] = []


def upgrade() -> None:
    create_database("zakaz")
    create_database("meta")
    create_database("bi")


def downgrade() -> None:
    drop_database("bi")
    drop_database("meta")
    drop_database("zakaz")
