"""The schema planner: the operations that turn one schema into another while keeping rows.

Pure: two ``app.schema.Schema`` values (and the SELECT of their views, which
the model leaves out) in, a ``Plan`` out.  Autogenerate renders a plan as a
revision (app.autogenerate); adopt's repair planner is meant to use it too.

A plan holds both directions.  The downgrade is planned as the change from
the desired schema back to the current one, not as each step's inverse
replayed backwards: views must be created after what they read in either
direction, and a step-by-step inverse would restore a dependent view before
the view it reads.  A downgrade may lose what the upgrade added (a new
table's rows, a new column's values, a narrowing back): those are its
declared losses.  An upgrade that would lose rows is refused unless
``allow_loss``, and then declares them.

What ClickHouse cannot ALTER (ORDER BY, PARTITION BY, PRIMARY KEY, engine, a
key column's type) is a ``rebuild_table`` that copies every column both
shapes share.  A column's DEFAULT, CODEC and COMMENT and a table's TTL change
in place (app.planner.columns); a TTL added or tightened deletes the rows
already past it, a loss like a dropped column.  Views and materialized views
(recreated only when what they read changed; a materialized view rebuilt or
re-queried with its rows kept) are app.planner.views; the steps' data types
and the text helpers are app.planner.steps.
A new object gets the grants of the Access rules (``GRANT_RULES``); a
dropped one's are revoked before it goes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from app.merging import rows_merged
from app.planner.columns import column_change, ttl_calls
from app.planner.steps import (
    _COMPUTED, GRANT_RULES, Call, Plan, PlanRefused, Step, _call, _grant_calls, _is_view, _order, _revoke_calls,
    columns_read, columns_text, grants, identifiers, key_clause, key_columns, reads,
)
from app.planner.views import ViewSteps
from app.schema import TABLE, Column, DbObject, Schema
from app.types import IMPOSSIBLE, LOSSY, type_change, ttl_keeps_rows

__all__ = ["GRANT_RULES", "Call", "Plan", "PlanRefused", "Step", "columns_read", "columns_text", "grants",
           "identifiers", "key_clause", "key_columns", "plan", "reads"]

def plan(current: Schema, desired: Schema, *, allow_loss: bool = False,
         current_queries: Mapping[str, str] | None = None,
         desired_queries: Mapping[str, str] | None = None,
         current_targets: Mapping[str, str] | None = None,
         desired_targets: Mapping[str, str] | None = None,
         view_reads: Mapping[str, Mapping[str, set[str] | None]] | None = None) -> Plan:
    """The steps from ``current`` to ``desired`` and back.

    ``*_queries``: each view's SELECT, in one form on both sides (ClickHouse's
    ``formatQuery``; the planner compares text).  A view of ``desired``
    without one keeps the current SELECT; a new one must have one.
    ``*_targets``: the table each materialized view written TO a table
    writes into (the desired side falls back to the current one).
    ``view_reads``: per view whose SELECT both sides share, the columns it
    reads of each object (None: all), as ClickHouse's analyzer resolves them
    (app.dependencies); a view not in it is read from its text.
    Raises PlanRefused for a loss not allowed, or a change no operation makes.
    """
    cq = dict(current_queries or {})
    # A view the desired side does not spell out keeps its SELECT, in both directions.
    dq = {**{n: q for n, q in cq.items() if n in desired}, **(desired_queries or {})}
    ct = dict(current_targets or {})
    dt = {**{n: t for n, t in ct.items() if n in desired}, **(desired_targets or {})}
    known = {n: dict(r) for n, r in (view_reads or {}).items()}
    up = _Planner(current, desired, cq, dq, allow_loss, "upgrade", ct, dt, known).steps()
    try:
        down = _Planner(desired, current, dq, cq, True, "downgrade", dt, ct, known).steps()
    except PlanRefused as exc:
        raise PlanRefused(f"{exc} (needed by the downgrade, which must restore the current schema)") from None
    return Plan(tuple(up), tuple(down))


def _primary_key(obj: DbObject) -> str | None:
    return key_clause(obj.primary_key) if obj.primary_key else None


# --- the planner ------------------------------------------------------------------------------

@dataclass
class _Planner(ViewSteps):
    before: Schema
    after: Schema
    before_q: dict[str, str]
    after_q: dict[str, str]
    allow_loss: bool
    direction: str
    before_t: dict[str, str] = field(default_factory=dict)
    after_t: dict[str, str] = field(default_factory=dict)
    view_reads: dict[str, dict[str, set[str] | None]] = field(default_factory=dict)
    out: list[Step] = field(default_factory=list)

    def steps(self) -> list[Step]:
        b, a = self.before, self.after
        kind_changed = {n for n in set(b) & set(a) if b[n].kind != a[n].kind}
        gone_views = {n for n in b if _is_view(b[n]) and (n not in a or n in kind_changed)}
        gone_tables = {n for n in b if b[n].kind == TABLE and (n not in a or n in kind_changed)}
        new_tables = sorted(n for n in a if a[n].kind == TABLE and (n not in b or n in kind_changed))
        kept_tables = sorted(n for n in a if a[n].kind == TABLE and n in b and n not in kind_changed)

        for db in sorted({o.database for o in a.values()} - {o.database for o in b.values()}):
            self._add(f"create database {db}", _call("create_database", db))
        # Readers go before what they read.
        for name in reversed(_order(gone_views, {n: reads(self.before_q.get(n, ""), b) for n in b})):
            self._drop_view(b[name])
        for name in new_tables:
            self._create_table(a[name])
        # Per table, the columns its readers may see differently (retyped or dropped); None: all of it.
        changed: dict[str, set[str] | None] = {name: cols for name in kept_tables
                                               if (cols := self._change_table(b[name], a[name]))}
        changed.update(dict.fromkeys(gone_tables))
        # A table that becomes a view must be gone before the view takes its name.
        for name in sorted(gone_tables & kind_changed):
            self._drop_table(b[name])
        self._views(changed, kind_changed)
        for name in sorted(gone_tables - kind_changed):
            self._drop_table(b[name])
        for db in sorted({o.database for o in b.values()} - {o.database for o in a.values()}):
            self._add(f"drop database {db}", _call("drop_database", db))
        return self.out

    def _add(self, describe: str, *calls: Call, loses=(), how=()) -> None:
        self.out.append(Step(describe, tuple(calls), tuple(loses), tuple(how)))

    def _refuse_loss(self, target: str, what: str, keep: str = "keep it") -> None:
        """Refuse an upgrade that loses ``target`` unless allowed (the downgrade always declares it)."""
        if not self.allow_loss:
            raise PlanRefused(f"{target}: {what}; {keep} in the canonical schema, or accept the loss "
                              "with --allow-data-loss (declared in UPGRADE_LOSES)")

    # --- tables ---------------------------------------------------------------------------

    def _create_table(self, obj: DbObject) -> None:
        self._add(f"create table {obj.name} ({obj.engine})",
                  _call("create_table_if_not_exists", obj.name, columns_text(obj), engine=obj.engine,
                        order_by=key_clause(obj.order_by), partition_by=obj.partition_by or None,
                        ttl=obj.ttl or None, primary_key=_primary_key(obj)), *_grant_calls(obj))

    def _drop_table(self, obj: DbObject) -> None:
        self._refuse_loss(obj.name, "dropping the table deletes its rows")
        self._add(f"drop table {obj.name} with its rows", *_revoke_calls(obj), _call("drop_table_if_exists", obj.name),
                  loses=[obj.name], how=["dropped with its rows"])

    def _type_losses(self, old: DbObject, new: DbObject) -> dict[str, str]:
        """Columns whose type change may lose values, and how (refused unless allowed).

        IMPOSSIBLE is always refused."""
        lost = {}
        for col in new.columns:
            was = old.column(col.name)
            if was is None or was.type == col.type:
                continue
            change = type_change(was.type, col.type)
            target = f"{old.name}.{col.name}"
            if change.kind == IMPOSSIBLE:
                raise PlanRefused(f"{target}: {was.type} -> {col.type} is impossible ({change.reason}); "
                                  "add a new column and backfill it in a hand-written revision")
            if change.kind == LOSSY:
                self._refuse_loss(target, f"{was.type} -> {col.type} may lose values ({change.reason})")
                lost[target] = f"changed from {was.type} to {col.type}: {change.reason}"
        return lost

    def _ttl_loss(self, old: DbObject, new: DbObject) -> dict[str, str]:
        """The table, if its new TTL may delete rows the old one keeps (refused unless allowed)."""
        if ttl_keeps_rows(old.ttl, new.ttl):
            return {}
        self._refuse_loss(old.name, f"TTL {new.ttl} deletes the rows already past it",
                          "keep the old TTL" if old.ttl else "leave the TTL out")
        return {old.name: f"rows already past TTL {new.ttl} are deleted"}

    def _change_table(self, old: DbObject, new: DbObject) -> set[str]:
        """Plan the changes of one table; the columns its readers see differently (retyped or dropped)."""
        dropped = [c for c in old.columns if new.column(c.name) is None]
        retyped = {c.name for c in new.columns if old.column(c.name) and old.column(c.name).type != c.type}
        keys = key_columns(old) | key_columns(new)
        storage = [label for label, x, y in (
            ("engine", old.engine, new.engine), ("ORDER BY", old.order_by, new.order_by),
            ("PARTITION BY", old.partition_by, new.partition_by), ("PRIMARY KEY", old.primary_key, new.primary_key),
        ) if x != y]
        key_retyped = sorted(retyped & keys)
        # A TTL over a column that goes must go (or change) first, one over a
        # new column comes after it; over both at once: rebuilt.
        ttl_first = old.ttl != new.ttl and (not new.ttl or bool(identifiers(old.ttl) & {c.name for c in dropped}))
        if ttl_first and identifiers(new.ttl) & (set(new.column_names) - set(old.column_names)):
            storage.append("TTL")
        touched = retyped | {c.name for c in dropped}
        if storage or key_retyped or any(c.name in keys for c in dropped):
            why = storage + [f"type of key column {c}" for c in key_retyped]
            self._rebuild(old, new, dropped, why)
            return touched
        for col in dropped:
            self._refuse_loss(f"{old.name}.{col.name}", "dropping the column deletes its values")
        lost = self._type_losses(old, new)
        ttl_lost = self._ttl_loss(old, new)
        if ttl_first:
            self._add(*ttl_calls(new), loses=list(ttl_lost), how=list(ttl_lost.values()))
        for col in dropped:
            self._add(f"drop column {old.name}.{col.name}", _call("drop_column_if_exists", old.name, col.name),
                      loses=[f"{old.name}.{col.name}"], how=["dropped with its values"])
        for col in new.columns:
            was = old.column(col.name)
            if was is not None and was != col:
                target = f"{old.name}.{col.name}"
                calls, what = column_change(old.name, was, col)
                self._add(f"modify column {target}: {', '.join(what)}", *calls,
                          loses=[target] if target in lost else [], how=[lost[target]] if target in lost else [])
        self._add_and_move_columns(old, new)
        if old.ttl != new.ttl and not ttl_first:
            describe, call = ttl_calls(new)
            if ttl_lost:
                describe += " (deletes the rows already past it)"
            self._add(describe, call, loses=list(ttl_lost), how=list(ttl_lost.values()))
        return touched

    def _add_and_move_columns(self, old: DbObject, new: DbObject) -> None:
        wanted = list(new.column_names)
        now = [n for n in old.column_names if n in wanted]
        for i, name in enumerate(wanted):
            if name in now:
                continue
            after = wanted[i - 1] if i else None
            self._add(f"add column {new.name}.{name} {new.column(name).spec}"
                      + (f" after {after}" if after else " first"),
                      _call("add_column_if_not_exists", new.name, f"{name} {new.column(name).spec}",
                            after=after, first=True if not after else None))
            now.insert(now.index(after) + 1 if after else 0, name)
        for i, name in enumerate(wanted):
            if now[i] == name:
                continue
            after = wanted[i - 1] if i else None
            now.remove(name)
            now.insert(now.index(after) + 1 if after else 0, name)
            where = f"AFTER {after}" if after else "FIRST"
            self._add(f"move column {new.name}.{name} {where.lower()}",
                      _call("modify_column", new.name, f"{name} {new.column(name).spec} {where}"))

    def _rebuild(self, old: DbObject, new: DbObject, dropped: list[Column], why: list[str]) -> None:
        for col in dropped:
            self._refuse_loss(f"{old.name}.{col.name}", "the rebuild drops the column and its values")
        lost = {**self._type_losses(old, new), **self._ttl_loss(old, new),
                **{f"{old.name}.{c.name}": "dropped with its values" for c in dropped}}
        merged = rows_merged(old, new)
        if merged:
            self._refuse_loss(old.name, merged, "keep the old engine and key")
            lost[old.name] = merged
        copy = [c.name for c in new.columns
                if old.column(c.name) is not None and c.default.split(" ", 1)[0] not in _COMPUTED
                and old.column(c.name).default.split(" ", 1)[0] not in _COMPUTED]
        self._add(f"rebuild table {new.name} ({', '.join(why)}), " + ("keeping every row" if not lost else "copying every row"),
                  _call("rebuild_table", new.name, columns_text(new), engine=new.engine,
                        order_by=key_clause(new.order_by), partition_by=new.partition_by or None,
                        ttl=new.ttl or None, copy=", ".join(copy), primary_key=_primary_key(new)),
                  loses=list(lost), how=list(lost.values()))
