"""What changes one kept column, or a table's TTL, in place: the ALTERs, in the order they must run.

MODIFY COLUMN with a type (and DEFAULT) alone keeps the column's DEFAULT,
CODEC and COMMENT (both ClickHouse lines): what the new column no longer has
is removed first, each with its own statement; what it has is then set with
the fewest words: the whole definition when the type or DEFAULT changes
(which carries CODEC and COMMENT), else ``CODEC(...)`` or ``COMMENT '...'``
alone.  A table TTL is set with MODIFY TTL and removed with REMOVE TTL; a key
change rebuilds the table and carries its TTL along instead.

MODIFY TTL runs with the server's ``materialize_ttl_after_modify = 1``: the
rows the new TTL has already expired are deleted right away (a rebuilt
table's, by its merges).  ``app.types.ttl_keeps_rows`` tells a TTL that deletes nothing
the old one kept (removed, or the same expression with a period at least as
long) from one that may: a TTL added or tightened is a loss.
"""
from __future__ import annotations

from app.planner.steps import _COMPUTED, Call, _call
from app.schema import Column, DbObject, quote_string


def column_change(table: str, was: Column, col: Column) -> tuple[list[Call], list[str]]:
    """The calls that turn column ``was`` of ``table`` into ``col``, and what changed in words."""
    calls: list[Call] = []
    if was.default and not col.default:
        kind = was.default.split(" ", 1)[0]
        calls.append(_call("modify_column", table, f"{col.name} REMOVE {kind if kind in _COMPUTED else 'DEFAULT'}"))
    for prop in ("codec", "comment"):
        if getattr(was, prop) and not getattr(col, prop):
            calls.append(_call("remove_column_property", table, col.name, prop.upper()))
    if was.type != col.type or (col.default and col.default != was.default):
        calls.append(_call("modify_column", table, f"{col.name} {col.spec}"))
    else:
        if col.codec and col.codec != was.codec:
            calls.append(_call("modify_column", table, f"{col.name} CODEC({col.codec})"))
        if col.comment and col.comment != was.comment:
            calls.append(_call("modify_column", table, f"{col.name} COMMENT {quote_string(col.comment)}"))
    what = []
    if was.type != col.type:
        what.append(f"{was.type} -> {col.type}")
    if was.default != col.default:
        what.append(f"default {col.default}" if col.default else "default removed")
    if was.codec != col.codec:
        what.append(f"codec {col.codec}" if col.codec else "codec removed")
    if was.comment != col.comment:
        what.append(f"comment {quote_string(col.comment)}" if col.comment else "comment removed")
    return calls, what


def ttl_calls(new: DbObject) -> tuple[str, Call]:
    """The step that gives table ``new`` its TTL (or none): its summary and call."""
    if not new.ttl:
        return f"remove the TTL of {new.name}", _call("remove_ttl", new.name)
    return f"set TTL of {new.name} to {new.ttl}", _call("modify_ttl", new.name, new.ttl)


