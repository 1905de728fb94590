"""The warehouse's objects as adopt reads them, and what keeps a live schema from containing a revision's.

``blocking_differences`` is the old matching rule (the latest revision the
database fully contains), kept as a report: the revision adopt stamps is
chosen by the size of the plan (app.adopt.planning).
"""
from __future__ import annotations

from app.replay import RevisionState
from app.warehouse import MANAGED_DATABASES
from app.schema import TABLE, VIEW, Column, DbObject, Schema
from app.snapshot import snapshot_schema

KEY_FIELDS = ("engine", "order_by", "partition_by")
OBJECT_FIELDS = KEY_FIELDS + ("ttl",)


def warehouse_objects(conn) -> Schema:
    """The objects of zakaz, meta and bi as adopt and status count them: a
    materialized view's storage table is part of the view, and the ledger,
    its view and the deploy lock are not the warehouse's (a snapshot leaves them out)."""
    return snapshot_schema(conn, MANAGED_DATABASES)


def col_def(col: Column) -> tuple[str, str]:
    return (col.type, col.default)


def versions_from(states: list[RevisionState], start: int, name: str) -> list[DbObject]:
    return [s.schema[name] for s in states[start:] if name in s.schema]


def blocking_differences(live: Schema, states: list[RevisionState], index: int) -> list[str]:
    """Why the live schema does not fully contain the schema at ``states[index]`` ([] if it does).

    A value that a later revision gives (a fix applied by hand) counts as
    contained; views are left out (they hold no rows and are recreated).
    """
    out = []
    for name, exp in sorted(states[index].schema.items()):
        if exp.kind == VIEW:
            continue
        got = live.get(name)
        if got is None:
            out.append(f"missing {exp.kind.replace('_', ' ')} {name}")
            continue
        if got.kind != exp.kind:
            out.append(f"{name} is a {got.kind.replace('_', ' ')}, expected a {exp.kind.replace('_', ' ')}")
            continue
        versions = versions_from(states, index, name)
        for f in OBJECT_FIELDS:
            if getattr(got, f) not in {getattr(v, f) for v in versions}:
                out.append(f"{f} of {name}: expected {getattr(exp, f) or '(none)'}, found {getattr(got, f) or '(none)'}")
        for col in exp.columns:
            have = got.column(col.name)
            if have is None:
                out.append(f"missing column {name}.{col.name}")
            elif exp.kind == TABLE:
                allowed = {col_def(c) for v in versions if (c := v.column(col.name))}
                if col_def(have) not in allowed:
                    out.append(f"column {name}.{col.name}: expected {col.spec}, found {have.spec}")
    return out
