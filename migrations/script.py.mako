"""${message}

Why: TODO say what changes and why, in a sentence or two (the changelog line).
Downgrade: TODO say what a downgrade loses, if anything.
"""
from alembic import op  # op.create_table_if_not_exists, op.create_view, op.rebuild_table, op.grant, ...: app/operations

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
