"""What the drill compares after each step, worded as its report says it.

Pure: two ``app.snapshot.Snapshot`` values, or two ``app.fingerprint.Data``
values, in; sentences out.  ``after`` names the state compared with the
earlier one ("after the downgrade").
"""
from __future__ import annotations

import re

from app.warehouse import MANAGED_DATABASES
from app.fingerprint import Data, readable_columns
from app.losses import row_count
from app.schema import MATERIALIZED_VIEW, TABLE, VIEW
from app.schema_diff import Difference, diff_databases, diff_schemas
from app.snapshot import Snapshot

_LABELS = {"order_by": "ORDER BY", "partition_by": "PARTITION BY", "ttl": "TTL",
           "default": "DEFAULT", "column_order": "column order"}


def _describe(d: Difference, before: Snapshot, after: str) -> str:
    if d.aspect == "database":
        return f"database {d.object} is {'missing' if d.removed else 'left over'} {after}"
    if d.aspect == "object":
        kind = (d.before or d.after).replace("_", " ")
        return f"{kind} {d.object} is {'missing' if d.removed else 'left over'} {after}"
    if d.aspect == "column":
        if d.removed:
            return f"column {d.target} is missing {after}"
        spec = d.after if before.schema[d.object].kind == TABLE else ""
        return f"column {d.target}" + (f" ({spec})" if spec else "") + f" is left over {after}"
    label = _LABELS.get(d.aspect, d.aspect)
    return f"{label} of {d.target} is {d.after or '(none)'} {after}, was {d.before or '(none)'}"


def view_reads(query: str) -> list[str]:
    """Tables a view's query names after FROM / JOIN (for messages; CTE names have no database)."""
    names = re.findall(r"\b(?:FROM|JOIN)\s+(`?\w+`?\.`?\w+`?)", query, flags=re.I)
    return sorted({n.replace("`", "") for n in names})


def _first_difference(a: str, b: str, width: int = 40) -> str:
    i = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    start = max(i - 10, 0)
    return f"{b[start:i + width]!r}, was {a[start:i + width]!r}"


def schema_differences(before: Snapshot, after: Snapshot, after_label: str) -> list[str]:
    """What differs between two snapshots of one database, first difference first.

    Besides the schema model, each object's definition as the server prints
    it: a view whose output columns are unchanged but that reads another
    table (0009 repoints views) is caught by its query, and codecs, settings
    or indices the model leaves out by the table's CREATE statement.
    """
    diffs = diff_databases(before.databases, after.databases)
    diffs += diff_schemas(before.schema, after.schema, MANAGED_DATABASES)
    out = [_describe(d, before, after_label) for d in diffs]
    named = {d.object for d in diffs}
    old_defs, new_defs = before.definitions, after.definitions
    for name in sorted(set(old_defs) & set(new_defs) - named):
        old, new = old_defs[name], new_defs[name]
        if old == new:
            continue
        obj = after.schema[name]
        if obj.kind == VIEW and view_reads(old) != view_reads(new):
            out.append(f"view {name} reads {', '.join(view_reads(new)) or 'no table'} {after_label}, "
                       f"was {', '.join(view_reads(old)) or 'no table'}")
        else:
            kind = obj.kind.replace("_", " ")
            out.append(f"definition of {kind} {name} differs {after_label}: {_first_difference(old, new)}")
    return out


def views_to_read(before: Snapshot, after: Snapshot) -> list[str]:
    """The views and materialized views of ``after`` that a step may have broken.

    Those it created or changed, and those whose query names (as a word,
    with or without its database) an object it created, changed or dropped,
    repeated through views reading views.  A view reading nothing that
    changed answers as it did before the step, and reading every view after
    every step was a third of the drill's time.
    """
    old_defs, new_defs = before.definitions, after.definitions
    changed = {name for name in set(before.schema) | set(after.schema)
               if before.schema.get(name) != after.schema.get(name) or old_defs.get(name) != new_defs.get(name)}
    views = {name: new_defs[name] for name, obj in after.schema.items() if obj.kind != TABLE}
    out = {name for name in views if name in changed}
    grew = True
    while grew:
        words = {part for name in changed | out for part in (name, name.split(".", 1)[1])}
        found = {name for name, query in views.items() if name not in out
                 and set(re.findall(r"[\w.]+", query.replace("`", ""))) & words}
        out |= found
        grew = bool(found)
    return sorted(out)


def covered(declared: set[str], table: str, column: str | None = None) -> bool:
    return table in declared or (column is not None and f"{table}.{column}" in declared)


def dropped_data(before: Snapshot, after: Snapshot) -> list[tuple[str, str, str]]:
    """Tables, materialized views' storage and columns present before and gone after.

    ``(name, table, column)`` with ``column`` '' for a whole object; views
    without storage hold no data and are not listed.
    """
    out = []
    for name, obj in before.schema.items():
        if obj.kind == VIEW or (obj.kind == MATERIALIZED_VIEW and not obj.engine):
            continue  # no storage of its own (a materialized view written TO a table)
        now = after.schema.get(name)
        if now is None or now.kind != obj.kind:
            out.append((name, name, ""))
        elif obj.kind == TABLE:
            kept = set(now.column_names)
            out += [(f"{name}.{c}", name, c) for c in readable_columns(obj) if c not in kept]
    return out


def data_differences(before: Data, after: Data, declared: set[str], what: str) -> list[str]:
    """Tables whose rows or content differ between two states, declared losses aside."""
    out = []
    for name, (count, checksum) in sorted(before.prints.items()):
        if name in declared or name not in after.prints:
            continue  # declared, or dropped: reported by dropped_data and the schema check
        new_count, new_checksum = after.prints[name]
        if new_count != count:
            out.append(f"rows of {name} {what}: {count} -> {new_count}")
        elif before.columns[name] == after.columns[name] and new_checksum != checksum:
            out.append(f"content of {name} {what}: checksum over {len(before.columns[name])} "
                       f"column(s) {', '.join(before.columns[name])} differs")
    return out


def columns_without(snap: Snapshot, declared: set[str]) -> dict[str, list[str]]:
    """Each base table's readable columns, those declared lost left out."""
    return {name: [c for c in readable_columns(snap.schema[name]) if not covered(declared, name, c)]
            for name in snap.tables()}


def summarise(losses: list[str]) -> str:
    if len(losses) <= 2:
        return ", ".join(losses)
    rows = sum(int(m.group(1)) for m in (re.search(r"\((\d+) rows?\)", x) for x in losses) if m)
    return f"{len(losses)} objects" + (f", {row_count(rows)}" if rows else "")
