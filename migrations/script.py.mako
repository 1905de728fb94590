"""${message}

Why: TODO say what changes and why, in a sentence or two (the changelog line).
Downgrade: TODO say what a downgrade loses, if anything.
"""
from app.operations import (  # noqa: F401 - the ClickHouse operations
    access,
    add_column,
    copy_rows_once,
    create_database,
    create_materialized_view,
    create_table,
    create_view,
    drop_column,
    drop_database,
    drop_table,
    drop_view,
    exchange_tables,
    modify_column,
    rebuild_table,
    restore_views,
    run,
)

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}

# Tables ("db.table") or columns ("db.table.column") whose rows the downgrade
# drops; a downgrade refuses to run while they hold rows unless allowed.
DOWNGRADE_LOSES: list[str] = []


## `alembic merge heads` joins heads (down_revision is a tuple): nothing to run.
def upgrade() -> None:
    ${upgrades if upgrades else ("pass  # a merge of heads" if isinstance(down_revision, tuple) else "raise NotImplementedError('write the upgrade')")}


def downgrade() -> None:
    ${downgrades if downgrades else ("pass  # a merge of heads" if isinstance(down_revision, tuple) else "raise NotImplementedError('write the downgrade')")}
