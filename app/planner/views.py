"""The planner's views and materialized views: created after what they read, recreated only when they must.

A view's column types are fixed when it is created, so a view is recreated
when its SELECT or columns change, or when it reads a column that was
retyped or dropped, or a view that was itself recreated; a column added
next to the ones it reads changes nothing for it.  Which columns a view
reads comes from ClickHouse's analyzer when the caller has it
(app.dependencies, passed as ``view_reads``), else from the names in its
text (``columns_read``, over-inclusive).

A materialized view keeps rows, so it is never dropped and created again to
change it: one with its own storage is rebuilt (``rebuild_materialized_view``:
new view, rows copied, swapped), one written TO a table reads anew in place
(``modify_query``: its rows live in the table).  Its stored columns have the
types its SELECT gave them, so reading a retyped column rebuilds it too (a
widened Decimal would otherwise be cut to the old scale on insert).
"""
from __future__ import annotations

from app.canonical import VIEW_DEFINER
from app.planner.steps import (
    _QUALIFIED, PlanRefused, _call, _code, _grant_calls, _order, _revoke_calls, _same_text, columns_read,
    key_clause, reads,
)
from app.schema import MATERIALIZED_VIEW, VIEW, DbObject

_BY_HAND = "write this revision by hand"


class ViewSteps:
    """The view half of app.planner's ``_Planner`` (its fields: the two schemas, SELECTs, targets, reads)."""

    def _query(self, name: str) -> str | None:
        """A view's SELECT after the change: the desired one, else (unchanged) the current one."""
        return self.after_q.get(name) or self.before_q.get(name)

    def _reads_changed(self, name: str, changed: dict[str, set[str] | None], recreated: set[str]) -> list[str]:
        """What ``name`` reads that changed under it: ``db.t.column``, or ``db.t`` (gone, or a recreated view)."""
        b, a = self.before, self.after
        query = self._query(name) or ""
        known = self.view_reads.get(name)
        if known is None:
            known = {}
            for source in reads(query, set(a) | set(b)):
                obj = b.get(source) or a[source]
                known[source] = columns_read(query, obj.column_names)
        found = []
        for source, columns in sorted(known.items()):
            if source in recreated or (source in changed and (changed[source] is None or columns is None)):
                found.append(source)
            elif source in changed:
                found += [f"{source}.{c}" for c in sorted(set(columns) & changed[source])]
        return found

    def _views(self, changed: dict[str, set[str] | None], kind_changed: set[str]) -> None:
        b, a = self.before, self.after
        views = [n for n in a if a[n].kind in (VIEW, MATERIALIZED_VIEW)]
        depends = {n: reads(self._query(n) or "", set(a) | set(b)) for n in views}
        recreated: set[str] = set()
        for name in _order(views, depends):
            new, old = a[name], b.get(name)
            old = None if name in kind_changed else old
            query = self._query(name)
            under = self._reads_changed(name, changed, recreated) if old is not None else []
            if old is None:
                why = "new"
            elif name in self.after_q and not _same_text(self.after_q[name], self.before_q.get(name, "")):
                why = "its SELECT changed"
            elif old.column_names != new.column_names:
                why = "its columns changed"
            elif new.kind == MATERIALIZED_VIEW and (old.engine, old.order_by, old.partition_by, old.primary_key) != (
                    new.engine, new.order_by, new.partition_by, new.primary_key):
                why = "its storage changed"
            elif new.kind == MATERIALIZED_VIEW and self._target(name, self.after_t) != self._target(
                    name, self.before_t):
                why = "its target table changed"
            elif under:
                why = f"it reads {', '.join(under)}, which changed"
            else:
                self._security(old, new, recreated=False)
                continue
            if query is not None:
                self._check_reads(name, query)
            if query is None:
                raise PlanRefused(f"{name}: its SELECT is not known, so the view cannot be "
                                  f"{'created' if old is None else 'recreated'} ({why}); {_BY_HAND}")
            recreated.add(name)
            if new.kind == MATERIALIZED_VIEW:
                again = self._materialized_view(old, new, query, why)
            else:
                again = True
                self._add(f"{'create' if old is None else 'recreate'} view {name}"
                          + ("" if old is None else f" ({why})"), _call("create_view", name, query),
                          *(_grant_calls(new) if old is None else ()))
            self._security(old, new, recreated=again)

    def _check_reads(self, name: str, query: str) -> None:
        # Only names in a database of the schema can be told from ``alias.column``.
        databases = {o.database for o in self.after.values()}
        for db, obj in _QUALIFIED.findall(_code(query)):
            if db in databases and f"{db}.{obj}" not in self.after:
                raise PlanRefused(f"{name}: reads {db}.{obj}, which the {self.direction}d schema does not have; "
                                  "add it, or correct the view's SELECT")

    @staticmethod
    def _target(name: str, targets: dict[str, str]) -> str | None:
        return targets.get(name)

    def _materialized_view(self, old: DbObject | None, new: DbObject, query: str, why: str) -> bool:
        """Plan one new or changed materialized view; whether it is a new object (its SQL SECURITY reset)."""
        name = new.name
        if new.primary_key:
            raise PlanRefused(f"{name}: no operation creates a materialized view whose PRIMARY KEY is not its "
                              f"ORDER BY; {_BY_HAND}")
        if old is not None and bool(old.engine) != bool(new.engine):
            raise PlanRefused(f"{name}: a materialized view cannot move between its own storage and a TO "
                              f"table keeping its rows; {_BY_HAND}")
        label = f"{'create' if old is None else 'recreate'} materialized view {name}" + (
            "" if old is None else f" ({why})")
        if not new.engine:
            return self._written_to(old, new, query, why, label)
        storage = dict(engine=new.engine, order_by=key_clause(new.order_by), partition_by=new.partition_by or None)
        if old is None:
            self._add(label, _call("create_materialized_view", name, query, **storage), *_grant_calls(new))
            return True
        kept = [c for c in new.column_names if c in old.column_names]
        lost = [f"{name}.{c}" for c in old.column_names if c not in new.column_names]
        if not kept:
            # Nothing in common to copy: the old rows cannot be carried over.
            self._refuse_loss(name, f"recreating the materialized view ({why}) empties its storage")
            self._add(label, _call("drop_view", name), _call("create_materialized_view", name, query, **storage),
                      loses=[name], how=["created anew, empty: its stored rows are dropped"])
            return True
        for target in lost:
            self._refuse_loss(target, f"rebuilding the materialized view ({why}) drops the column and its values")
        self._add(f"rebuild materialized view {name} ({why}), keeping its rows",
                  _call("rebuild_materialized_view", name, query, **storage, copy=", ".join(kept)),
                  loses=lost, how=["dropped with its values"] * len(lost))
        return True

    def _written_to(self, old: DbObject | None, new: DbObject, query: str, why: str, label: str) -> bool:
        """A materialized view written TO a table: its rows are the table's, so nothing of it is lost."""
        name = new.name
        target = self._target(name, self.after_t)
        if target is None:
            raise PlanRefused(f"{name}: the table this materialized view is written TO is not known; {_BY_HAND}")
        if target not in self.after:
            raise PlanRefused(f"{name}: written TO {target}, which the {self.direction}d schema does not have; "
                              "add the table, or correct the view")
        if old is None:
            self._add(label, _call("create_materialized_view", name, query, to=target), *_grant_calls(new))
            return True
        if self._target(name, self.before_t) == target:
            self._add(f"modify the query of materialized view {name} ({why}); its rows are {target}'s",
                      _call("modify_query", name, query))
            return False
        self._add(f"{label}; its rows stay in the tables it was written to",
                  _call("drop_view", name), _call("create_materialized_view", name, query, to=target))
        return True

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
                  *_revoke_calls(obj), _call("drop_view", obj.name), loses=loses,
                  how=["dropped with the rows of its storage"] * len(loses))
