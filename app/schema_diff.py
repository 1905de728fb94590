"""One neutral diff between two schemas: what differs, not what that means.

Pure: both sides are ``app.schema.Schema`` values.  Each tool words the
differences its own way: verify as "expected X, found Y" (``before`` is the
expectation), the drill as "schema not restored: ..." and lint as "... is not
restored" (``before`` is the state before the step), adopt as what stands
between a database and a revision.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from app.schema import TABLE, DbObject, Schema

# Aspects of an object compared as text, in report order.
OBJECT_ASPECTS = ("engine", "order_by", "partition_by", "primary_key", "ttl", "security")
# Aspects of a table's column compared as text, in report order.
COLUMN_ASPECTS = ("type", "default", "codec", "comment")
# What a Difference can be about.  "object", "column" and "database": present
# on one side only, the other side's value is ''; the present side holds the
# object's kind, the column's DDL (a view's column, untyped: its name) or the
# database's name (``object`` is then the database).
ASPECTS = ("database", "object", "kind") + OBJECT_ASPECTS + ("column",) + COLUMN_ASPECTS + ("column_order",)


@dataclass(frozen=True)
class Difference:
    object: str  # "db.name" (a database's name for aspect "database")
    column: str  # '' unless the difference is about one column
    aspect: str  # one of ASPECTS
    before: str
    after: str

    @property
    def target(self) -> str:
        return f"{self.object}.{self.column}" if self.column else self.object

    @property
    def added(self) -> bool:
        """An object, column or database present only after."""
        return self.aspect in ("database", "object", "column") and not self.before

    @property
    def removed(self) -> bool:
        """An object, column or database present only before."""
        return self.aspect in ("database", "object", "column") and not self.after


def diff_databases(before: Iterable[str], after: Iterable[str]) -> list[Difference]:
    before, after = set(before), set(after)
    return ([Difference(db, "", "database", db, "") for db in sorted(before - after)]
            + [Difference(db, "", "database", "", db) for db in sorted(after - before)])


def diff_objects(before: DbObject, after: DbObject) -> list[Difference]:
    """How one object differs, ``before`` first.

    A view's column types are whatever its query yields (and differ between
    ClickHouse lines): only its output names are compared.  ``security`` is
    compared only where ``before`` states it (an expectation may not).
    """
    name = before.name
    if before.kind != after.kind:
        # Columns and keys of a view against a table's say nothing useful.
        return [Difference(name, "", "kind", before.kind, after.kind)]
    out = [Difference(name, "", aspect, getattr(before, aspect), getattr(after, aspect))
           for aspect in OBJECT_ASPECTS
           if getattr(before, aspect) != getattr(after, aspect) and (aspect != "security" or before.security)]
    typed = before.kind == TABLE
    after_names = set(after.column_names)
    for col in before.columns:
        got = after.column(col.name)
        if got is None:
            out.append(Difference(name, col.name, "column", col.spec if typed else col.name, ""))
            continue
        if typed:
            out.extend(Difference(name, col.name, aspect, getattr(col, aspect), getattr(got, aspect))
                       for aspect in COLUMN_ASPECTS if getattr(got, aspect) != getattr(col, aspect))
    before_names = set(before.column_names)
    for col in after.columns:
        if col.name not in before_names:
            out.append(Difference(name, col.name, "column", "", col.spec if typed else col.name))
    # Order is judged on the columns both sides have, so a missing or extra
    # column is not also reported as an order difference.
    before_order = [n for n in before.column_names if n in after_names]
    after_order = [n for n in after.column_names if n in before_names]
    if before_order != after_order:
        out.append(Difference(name, "", "column_order", ", ".join(before_order), ", ".join(after_order)))
    return out


def diff_schemas(before: Schema, after: Schema, databases: Iterable[str] | None = None) -> list[Difference]:
    """Every difference from ``before`` to ``after``, by object name.

    An object only ``after`` has counts if it is in one of ``databases``
    (default: any database ``before`` has objects in); one only ``before``
    has always counts.
    """
    scope = set(databases) if databases is not None else {o.database for o in before.values()}
    out: list[Difference] = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old is None:
            if new.database in scope:
                out.append(Difference(name, "", "object", "", new.kind))
        elif new is None:
            out.append(Difference(name, "", "object", old.kind, ""))
        else:
            out.extend(diff_objects(old, new))
    return out
