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
in place (app.planner.columns); the steps' data types and the text helpers
are app.planner.steps.
A new object gets the grants of the Access rules (``GRANT_RULES``); a
dropped one's are revoked before it goes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from app.canonical import VIEW_DEFINER
from app.planner.columns import column_change, ttl_calls
from app.planner.steps import (
    _COMPUTED, _QUALIFIED, GRANT_RULES, Call, Plan, PlanRefused, Step, _call, _code, _grant_calls, _is_view,
    _order, _revoke_calls, _same_text, columns_text, grants, identifiers, key_clause, key_columns, reads,
)
from app.schema import MATERIALIZED_VIEW, TABLE, VIEW, DbObject, Schema
from app.types import IMPOSSIBLE, LOSSY, type_change

__all__ = ["GRANT_RULES", "Call", "Plan", "PlanRefused", "Step", "columns_text", "grants", "identifiers",
           "key_clause", "key_columns", "plan", "reads"]

def plan(current: Schema, desired: Schema, *, allow_loss: bool = False,
         current_queries: Mapping[str, str] | None = None,
         desired_queries: Mapping[str, str] | None = None) -> Plan:
    """The steps from ``current`` to ``desired`` and back.

    ``*_queries``: each view's SELECT, in one form on both sides (ClickHouse's
    ``formatQuery``; the planner compares text).  A view of ``desired``
    without one keeps the current SELECT; a new one must have one.
    Raises PlanRefused for a loss not allowed, or a change no operation makes.
    """
    cq = dict(current_queries or {})
    # A view the desired side does not spell out keeps its SELECT, in both directions.
    dq = {**{n: q for n, q in cq.items() if n in desired}, **(desired_queries or {})}
    up = _Planner(current, desired, cq, dq, allow_loss, "upgrade").steps()
    try:
        down = _Planner(desired, current, dq, cq, True, "downgrade").steps()
    except PlanRefused as exc:
        raise PlanRefused(f"{exc} (needed by the downgrade, which must restore the current schema)") from None
    return Plan(tuple(up), tuple(down))


def _primary_key(obj: DbObject) -> str | None:
    return key_clause(obj.primary_key) if obj.primary_key else None


# --- the planner ------------------------------------------------------------------------------

@dataclass
class _Planner:
    before: Schema
    after: Schema
    before_q: dict[str, str]
    after_q: dict[str, str]
    allow_loss: bool
    direction: str
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
        changed = {name for name in kept_tables if self._change_table(b[name], a[name])}
        # A table that becomes a view must be gone before the view takes its name.
        for name in sorted(gone_tables & kind_changed):
            self._drop_table(b[name])
        self._views(changed | gone_tables, kind_changed)
        for name in sorted(gone_tables - kind_changed):
            self._drop_table(b[name])
        for db in sorted({o.database for o in b.values()} - {o.database for o in a.values()}):
            self._add(f"drop database {db}", _call("drop_database", db))
        return self.out

    def _add(self, describe: str, *calls: Call, loses=()) -> None:
        self.out.append(Step(describe, tuple(calls), tuple(loses)))

    def _refuse_loss(self, target: str, what: str) -> None:
        """Refuse an upgrade that loses ``target`` unless allowed (the downgrade always declares it)."""
        if not self.allow_loss:
            raise PlanRefused(f"{target}: {what}; keep it in the canonical schema, or accept the loss "
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
                  loses=[obj.name])

    def _type_losses(self, old: DbObject, new: DbObject) -> list[str]:
        """Columns whose type change may lose values (refused unless allowed); IMPOSSIBLE always refused."""
        lost = []
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
                lost.append(target)
        return lost

    def _change_table(self, old: DbObject, new: DbObject) -> bool:
        """Plan the changes of one table; whether it changed in a way its readers see."""
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
        if storage or key_retyped or any(c.name in keys for c in dropped):
            why = storage + [f"type of key column {c}" for c in key_retyped]
            self._rebuild(old, new, dropped, why)
            return True
        for col in dropped:
            self._refuse_loss(f"{old.name}.{col.name}", "dropping the column deletes its values")
        lost = self._type_losses(old, new)
        if ttl_first:
            self._add(*ttl_calls(new))
        for col in dropped:
            self._add(f"drop column {old.name}.{col.name}", _call("drop_column_if_exists", old.name, col.name),
                      loses=[f"{old.name}.{col.name}"])
        for col in new.columns:
            was = old.column(col.name)
            if was is not None and was != col:
                target = f"{old.name}.{col.name}"
                calls, what = column_change(old.name, was, col)
                self._add(f"modify column {target}: {', '.join(what)}", *calls,
                          loses=[target] if target in lost else [])
        self._add_and_move_columns(old, new)
        if old.ttl != new.ttl and not ttl_first:
            self._add(*ttl_calls(new))
        return bool(dropped or retyped)

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
        lost = self._type_losses(old, new) + [f"{old.name}.{c.name}" for c in dropped]
        copy = [c.name for c in new.columns
                if old.column(c.name) is not None and c.default.split(" ", 1)[0] not in _COMPUTED
                and old.column(c.name).default.split(" ", 1)[0] not in _COMPUTED]
        self._add(f"rebuild table {new.name} ({', '.join(why)}), keeping every row",
                  _call("rebuild_table", new.name, columns_text(new), engine=new.engine,
                        order_by=key_clause(new.order_by), partition_by=new.partition_by or None,
                        ttl=new.ttl or None, copy=", ".join(copy), primary_key=_primary_key(new)),
                  loses=lost)

    # --- views ----------------------------------------------------------------------------

    def _query(self, name: str) -> str | None:
        """A view's SELECT after the change: the desired one, else (unchanged) the current one."""
        return self.after_q.get(name) or self.before_q.get(name)

    def _views(self, changed_tables: set[str], kind_changed: set[str]) -> None:
        b, a = self.before, self.after
        views = [n for n in a if _is_view(a[n])]
        depends = {n: reads(self._query(n) or "", set(a) | set(b)) for n in views}
        recreated: set[str] = set(changed_tables)
        for name in _order(views, depends):
            new, old = a[name], b.get(name)
            old = None if name in kind_changed else old
            query = self._query(name)
            if old is None:
                why = "new"
            elif name in self.after_q and not _same_text(self.after_q[name], self.before_q.get(name, "")):
                why = "its SELECT changed"
            elif old.column_names != new.column_names:
                why = "its columns changed"
            elif new.kind == MATERIALIZED_VIEW and (old.engine, old.order_by, old.partition_by, old.primary_key) != (
                    new.engine, new.order_by, new.partition_by, new.primary_key):
                why = "its storage changed"
            elif new.kind == VIEW and depends[name] & recreated:
                # A view's column types are fixed when it is created; a
                # materialized view keeps its rows and is left alone.
                why = f"it reads {', '.join(sorted(depends[name] & recreated))}, which changed"
            else:
                self._security(old, new, recreated=False)
                continue
            if query is not None:
                self._check_reads(name, query)
            if query is None:
                raise PlanRefused(f"{name}: its SELECT is not known, so the view cannot be "
                                  f"{'created' if old is None else 'recreated'} ({why}); "
                                  "write this revision by hand")
            recreated.add(name)
            if new.kind == MATERIALIZED_VIEW:
                self._materialized_view(old, new, query, why)
            else:
                self._add(f"{'create' if old is None else 'recreate'} view {name}"
                          + ("" if old is None else f" ({why})"), _call("create_view", name, query),
                          *(_grant_calls(new) if old is None else ()))
            self._security(old, new, recreated=True)

    def _check_reads(self, name: str, query: str) -> None:
        # Only names in a database of the schema can be told from ``alias.column``.
        databases = {o.database for o in self.after.values()}
        for db, obj in _QUALIFIED.findall(_code(query)):
            if db in databases and f"{db}.{obj}" not in self.after:
                raise PlanRefused(f"{name}: reads {db}.{obj}, which the {self.direction}d schema does not have; "
                                  "add it, or correct the view's SELECT")

    def _materialized_view(self, old: DbObject | None, new: DbObject, query: str, why: str) -> None:
        if not new.engine:
            raise PlanRefused(f"{new.name}: no operation creates a materialized view written TO a table; "
                              "write this revision by hand")
        if new.primary_key:
            raise PlanRefused(f"{new.name}: no operation creates a materialized view whose PRIMARY KEY is not its "
                              "ORDER BY; write this revision by hand")
        calls, loses = [], []
        if old is not None:
            if old.engine:
                # Its rows live in its own storage, which a new view does not inherit.
                self._refuse_loss(new.name, f"recreating the materialized view ({why}) empties its storage")
                loses.append(new.name)
            calls.append(_call("drop_view", new.name))
        calls.append(_call("create_materialized_view", new.name, query, engine=new.engine,
                           order_by=key_clause(new.order_by), partition_by=new.partition_by or None))
        if old is None:
            calls += _grant_calls(new)
        self._add(f"{'create' if old is None else 'recreate'} materialized view {new.name}"
                  + ("" if old is None else f" ({why})"), *calls, loses=loses)

    def _security(self, old: DbObject | None, new: DbObject, *, recreated: bool) -> None:
        wanted = new.security or (old.security if old is not None else "")
        # CREATE OR REPLACE VIEW without the clause resets how a view runs.
        default = "INVOKER" if new.kind == VIEW else "NONE"
        # An old side that does not state it (an expectation) is taken as already right.
        have = default if recreated or old is None else (old.security or wanted)
        if not wanted or wanted == have:
            return
        self._add(f"set {new.name} SQL SECURITY {wanted}",
                  _call("set_view_security", new.name, wanted,
                        definer=VIEW_DEFINER if wanted == "DEFINER" else None,
                        server_only=True if new.kind == MATERIALIZED_VIEW else None))

    def _drop_view(self, obj: DbObject) -> None:
        loses = []
        if obj.kind == MATERIALIZED_VIEW and obj.engine:
            self._refuse_loss(obj.name, "dropping the materialized view deletes the rows of its storage")
            loses.append(obj.name)
        self._add(f"drop {'materialized ' if obj.kind == MATERIALIZED_VIEW else ''}view {obj.name}",
                  *_revoke_calls(obj), _call("drop_view", obj.name), loses=loses)
