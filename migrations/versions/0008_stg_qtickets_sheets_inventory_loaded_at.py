"""Add stg_qtickets_sheets_inventory._loaded_at DateTime DEFAULT now() and partition by toYYYYMM(_loaded_at), so old snapshots can be dropped by month.

A partition key cannot be altered, so the table is rebuilt: new table, copy
of every row, swap.  Existing rows get the time of the rebuild as _loaded_at.
Downgrade rebuilds it back unpartitioned, keeping every row but dropping the
_loaded_at values.
"""
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

DOWNGRADE_LOSES = ["zakaz.stg_qtickets_sheets_inventory._loaded_at"]

COLUMNS = """
    event_id String
    city String
    tickets_total UInt32 DEFAULT 0
    tickets_left UInt32 DEFAULT 0
    _ver UInt64
    hash_low_card LowCardinality(String)
"""
KEPT = "event_id, city, tickets_total, tickets_left, _ver, hash_low_card"


def upgrade() -> None:
    op.rebuild_table("zakaz.stg_qtickets_sheets_inventory", COLUMNS + "_loaded_at DateTime DEFAULT now()",
                  engine="ReplacingMergeTree(_ver)", order_by="(event_id, city)",
                  partition_by="toYYYYMM(_loaded_at)", copy=KEPT)


def downgrade() -> None:
    op.rebuild_table("zakaz.stg_qtickets_sheets_inventory", COLUMNS,
                  engine="ReplacingMergeTree(_ver)", order_by="(event_id, city)",
                  partition_by="tuple()", copy=KEPT)
