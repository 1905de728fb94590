"""Verify the warehouse at this point: the column sets 0011 froze, and now how every view runs (SQL SECURITY DEFINER, as zakaz_view_definer on a server).

The columns and engines expected are 0011's own frozen text (0012 changed
none of them), read from that revision, so this check means the same in a
year; what is new is frozen here.  Fails with a finding per difference and
changes nothing; the downgrade has nothing to undo.
"""
from alembic import op

from app.schema import MATERIALIZED_VIEW, VIEW, parse_tables, parse_views
from app.verify import assert_schema

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

DOWNGRADE_LOSES: list[str] = []

VIEW_SECURITY = "DEFINER"
VIEW_DEFINER = "zakaz_view_definer"


def upgrade() -> None:
    context = op.get_context()
    if context.as_sql:
        context.impl.static_output("-- 0013: the schema check runs online only" + context.impl.command_terminator)
        return
    frozen = context.script.get_revision("0011").module
    expected = {
        obj.name: obj
        for obj in parse_tables(frozen.TABLES) + parse_views(frozen.VIEWS, VIEW, security=VIEW_SECURITY)
        + parse_views(frozen.MATERIALIZED_VIEWS, MATERIALIZED_VIEW)
    }
    # No named users on the embedded engine: its DEFINER views run as `default`.
    definer = None if context.impl.is_embedded else VIEW_DEFINER
    assert_schema(op.get_bind(), expected, definer=definer)


def downgrade() -> None:
    pass
