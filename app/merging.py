"""What a table's merges do to its rows when a rebuild changes its engine or keys.

A Replacing, Summing, Aggregating, Collapsing (...) MergeTree keeps one row,
or one combined row, per sorting key within a partition: its merges are part
of what it stores.  A rebuild copies every row, and the new table's merges
then combine the rows that share its key.  A key that no longer tells apart
rows the old one did (a column left out of ORDER BY, a coarser PARTITION BY),
a plain MergeTree becoming a merging one, or other engine arguments (another
version column, other summed columns) make rows the old table kept disappear
at the next merge (and from ``FINAL`` at once), though the copy counted them
all.  Found by a tryout: narrowing a ReplacingMergeTree's ORDER BY was
planned as "keeping every row".

Pure: two ``app.schema.DbObject`` tables in, a reason or None out.  The
planner refuses (or declares) such a rebuild; app.losses reports it for lint,
which holds hand-written revisions to the same rule.
"""
from __future__ import annotations

import re

from app.schema import MERGE_TREE_FAMILY, DbObject, _scan, logical_engine, normalise_key

_IDENTIFIER = re.compile(r"`[^`]+`|[A-Za-z_][A-Za-z0-9_]*")


def _merging(engine: str) -> bool:
    name = engine.split("(", 1)[0].strip()
    return bool(MERGE_TREE_FAMILY.match(name)) and name != "MergeTree"


def merges_rows(engine: str) -> bool:
    """Whether a table of ``engine`` (Replicated or not) combines rows in its merges."""
    return _merging(logical_engine(engine))


def _parts(key: str) -> list[str]:
    """A normalised key's top-level expressions: ``a, toYYYYMM(d)`` -> ``["a", "toYYYYMM(d)"]``."""
    text = normalise_key(key)
    if not text:
        return []
    cuts = [i for i, ch, depth in _scan(text) if ch == "," and depth == 0]
    bounds = zip([-1, *cuts], [*cuts, len(text)])
    return [" ".join(text[a + 1:b].split()) for a, b in bounds]


def _reads(expression: str, columns: set[str]) -> set[str]:
    """The ``columns`` an expression reads (function names and keywords are not columns)."""
    return {i.strip("`") for i in _IDENTIFIER.findall(expression)} & columns


def _identity(obj: DbObject) -> list[str]:
    """What tells two rows apart for the merges: the partition and the sorting key."""
    return _parts(obj.partition_by) + _parts(obj.order_by)


def rows_merged(old: DbObject, new: DbObject) -> str | None:
    """Why ``new``'s merges may combine rows ``old`` keeps apart, or None if they cannot."""
    before, after = logical_engine(old.engine), logical_engine(new.engine)
    if not _merging(after):
        return None  # a plain MergeTree merges parts, never rows
    if not _merging(before):
        return f"{after} keeps one row per sorting key, and {before} keeps every row"
    if "".join(before.split()) != "".join(after.split()):
        return f"{before} -> {after} changes which of the rows sharing a key its merges keep"
    kept = _identity(new)
    # An old key expression still tells rows apart if the new key has it, or
    # every column it reads as a key expression of its own (``toYYYYMM(d)``
    # is decided by ``d``).
    bare = {p.strip("`") for p in kept if _IDENTIFIER.fullmatch(p)}
    columns = set(old.column_names)
    lost = [p for p in _identity(old) if p not in kept and not _reads(p, columns) <= bare]
    if not lost:
        return None
    return (f"its new key ({', '.join(kept) or 'none'}) no longer tells rows apart by "
            f"{', '.join(dict.fromkeys(lost))}: rows that differ only there are merged into one")


def merged_rows_sql(old: DbObject, new: DbObject) -> str:
    """A query counting the rows of table ``old`` that ``new``'s merges would combine away.

    Read where the rows are, before a rebuild copies them: a change the rule
    above calls lossy loses nothing in a table whose rows all differ in the
    new key too (what 0008's downgrade meets on most databases).  What the
    old table keeps is one row per value of its own partition and key (every
    stored row, if it does not merge rows or the engine's arguments change);
    each value of the new partition and key keeps one row, so the loss is
    the old values that share a new one.  Counted with GROUP BY semantics,
    not FINAL: a SELECT ... FINAL also folds rows across partitions, which
    the old table's merges never do (a tryout's 24.8 server counted 0 where
    a row was then lost).  Key expressions over columns the old table lacks
    are left out: copied rows get such a column's default.
    """
    columns = set(old.column_names)
    kept = [p for p in _identity(new) if (read := _reads(p, set(new.column_names))) and read <= columns]
    before, after = logical_engine(old.engine), logical_engine(new.engine)
    new_values = f"uniqExact(tuple({', '.join(kept)}))" if kept else "least(count(), 1)"
    if _merging(before) and "".join(before.split()) == "".join(after.split()):
        both = list(dict.fromkeys(_identity(old) + kept))
        old_values = f"uniqExact(tuple({', '.join(both)}))" if both else "least(count(), 1)"
    else:
        old_values = "count()"
    return f"SELECT {old_values} - {new_values} FROM {old.name}"
