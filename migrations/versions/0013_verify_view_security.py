"""Verify the warehouse at this point: the column sets 0011 froze, and now how every view runs (SQL SECURITY DEFINER, as zakaz_view_definer on a server).

The columns and engines expected, and how they are checked, are 0011's own
frozen text and code (0012 changed none of them), read from that revision, so
this check means the same in a year; what is new is frozen here.  Fails with
a finding per difference and changes nothing; the downgrade has nothing to
undo.
"""
import re

from alembic import op

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
    expected = frozen.expected_schema(views_security=VIEW_SECURITY)
    # No named users on the embedded engine: its DEFINER views run as `default`.
    definers = [] if context.impl.is_embedded else wrong_definers(op.get_bind(), expected, VIEW_DEFINER)
    frozen.assert_schema(op.get_bind(), expected, more=definers)


def downgrade() -> None:
    pass


def wrong_definers(conn, expected: dict, definer: str) -> list[str]:
    """Views and materialized views of ``expected`` that do not run as ``definer``."""
    views = sorted(name for name, obj in expected.items() if obj["kind"] != "table")
    names = ", ".join(f"'{name}'" for name in views)
    rows = conn.exec_driver_sql(
        "SELECT concat(database, '.', name), create_table_query FROM system.tables "
        f"WHERE engine IN ('View', 'MaterializedView') AND concat(database, '.', name) IN ({names})").all()
    out = []
    for name, create in sorted(rows):
        m = re.search(r"\sDEFINER = (`[^`]*`|\S+) SQL SECURITY ", create or "")
        found = m.group(1).strip("`") if m else None
        if found != definer:
            out.append(f"DEFINER of {name}: expected {definer}, found {found or '(none)'}")
    return out
