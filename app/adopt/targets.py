"""What the live database must become before revision R is stamped: one schema per candidate R.

The desired schema at candidate R is the schema at R for every object R has,
and, for an object or column a later revision creates that is already there
(applied by hand), its shape at that revision: the upgrade re-runs the later
revisions with IF NOT EXISTS and leaves it as it is, so it must already be
what they make.  Objects no revision has are left out on both sides: the
plan never touches them.

One exception to "the shape at R": a later revision that rebuilds a table
(new keys) copies only the columns it knows.  A column added by hand ahead
of it would lose its values in that copy, so the table is brought to the
rebuilt shape now (rebuild_table of that revision then finds it done).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from app.replay import RevisionState
from app.schema import TABLE, Column, DbObject, Schema

KEY_FIELDS = ("engine", "order_by", "partition_by", "primary_key")


@dataclass
class Target:
    """The desired schema at one candidate revision, and how far the live one is ahead of it."""

    index: int
    schema: Schema
    queries: dict[str, str]
    ahead: list[dict] = field(default_factory=list)  # {"object", "column", "revision"}


def managed_names(states: list[RevisionState]) -> set[str]:
    return {name for s in states for name in s.schema}


def first_index(states: list[RevisionState], name: str, column: str | None = None, start: int = 0) -> int | None:
    for i in range(start, len(states)):
        obj = states[i].schema.get(name)
        if obj is not None and (column is None or obj.column(column) is not None):
            return i
    return None


def shape_refusals(live: Schema, states: list[RevisionState]) -> list[str]:
    """Objects under a name the chain uses that are not the chain's object: no plan can adopt them."""
    out = []
    for name, got in sorted(live.items()):
        versions = [s.schema[name] for s in states if name in s.schema]
        if not versions:
            continue
        kinds = {v.kind for v in versions}
        if got.kind not in kinds:
            out.append(
                f"{name} is a {got.kind.replace('_', ' ')} where the revisions have a "
                f"{' or '.join(sorted(k.replace('_', ' ') for k in kinds))}: decide whether it is the chain's "
                f"object; if not, rename it (RENAME TABLE {name} TO ...) and adopt again")
            continue
        known = {c.name for v in versions for c in v.columns}
        if got.kind == TABLE and not known & set(got.column_names):
            out.append(
                f"{name} has no column in common with the table the revisions create "
                f"(it has {', '.join(got.column_names[:6])}{' ...' if len(got.columns) > 6 else ''}): it is "
                f"another table under the chain's name; rename it (RENAME TABLE {name} TO ...) to keep it "
                "unmanaged, or back it up and drop it, then adopt again")
    return out


def _keys(obj: DbObject) -> tuple:
    return tuple(getattr(obj, f) for f in KEY_FIELDS)


def _place(target: DbObject, extra: list[Column], live: DbObject) -> DbObject:
    """``target`` with the columns ``extra``, each after its predecessor in the live table."""
    columns = list(target.columns)
    for col in extra:
        names = [c.name for c in columns]
        live_names = list(live.column_names)
        before = [n for n in live_names[:live_names.index(col.name)] if n in names]
        at = names.index(before[-1]) + 1 if before else 0
        columns.insert(at, col)
    return replace(target, columns=tuple(columns))


def _table(states: list[RevisionState], got: DbObject, base: int, i: int) -> tuple[DbObject, list[dict]]:
    name = got.name
    target = states[base].schema[name]
    ahead: list[dict] = []
    if base > i:
        ahead.append({"object": name, "column": "", "revision": states[base].revision})

    def later_columns(shape: DbObject, start: int) -> list[Column]:
        extra = []
        for col in got.columns:
            if shape.column(col.name) is None:
                k = first_index(states, name, col.name, start=start + 1)
                if k is not None:
                    extra.append(states[k].schema[name].column(col.name))
        return extra

    extra = later_columns(target, base)
    for m in range(base + 1, len(states)):
        before, after = states[m - 1].schema.get(name), states[m].schema.get(name)
        if before is None or after is None or _keys(before) == _keys(after):
            continue
        # Revision m rebuilds the table copying the columns it knows.
        if any(before.column(c.name) is None for c in extra):
            target, base = after, m
            ahead.append({"object": name, "column": "", "revision": states[m].revision})
            extra = later_columns(target, m)
        break
    for col in extra:
        ahead.append({"object": name, "column": col.name,
                      "revision": states[first_index(states, name, col.name, start=base + 1)].revision})
    return _place(target, extra, got), ahead


def target_at(states: list[RevisionState], i: int, live: Schema) -> Target:
    """The desired schema at candidate ``states[i]`` for the managed objects of ``live``."""
    at = states[i]
    schema: Schema = {}
    queries: dict[str, str] = {}
    ahead: list[dict] = []
    for name, obj in at.schema.items():
        if name in live and live[name].kind == TABLE == obj.kind:
            schema[name], more = _table(states, live[name], i, i)
            ahead += more
        else:
            schema[name] = obj
        if name in at.queries:
            queries[name] = at.queries[name]
    for name, got in live.items():
        if name in at.schema:
            continue
        base = first_index(states, name, start=i + 1)
        if base is None:
            continue  # in no revision after i (unmanaged, or gone by i: not ours to keep)
        later = states[base]
        if got.kind == TABLE == later.schema[name].kind:
            schema[name], more = _table(states, got, base, i)
            ahead += more
        else:
            schema[name] = later.schema[name]
            ahead.append({"object": name, "column": "", "revision": later.revision})
        if name in later.queries:
            queries[name] = later.queries[name]
    return Target(i, schema, queries, ahead)


def current_schema(live: Schema, states: list[RevisionState], skip: set[str]) -> Schema:
    """The live objects the plan may change: those a revision has, minus ``skip``."""
    names = managed_names(states)
    return {n: o for n, o in live.items() if n in names and n not in skip}

