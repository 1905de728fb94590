"""Changing a materialized view without losing its rows: ``rebuild_materialized_view`` and ``modify_query``.

A view written ``TO`` a table keeps no rows of its own: its SELECT changes
in place with ``ALTER TABLE ... MODIFY QUERY`` (ClickHouse's documented way,
ingestion goes on; 24.8 and 26.x both update the view's columns with it).

A view with its own (inner) storage cannot: the inner table has the old
columns and keys.  ``rebuild_materialized_view`` is ``rebuild_table`` for it:
a new view with the wanted SELECT and storage under ``<name>__rebuild``, the
old view's rows copied into it, ``EXCHANGE TABLES`` (atomic; each view keeps
its inner table, named after its own uuid), the old one dropped.  From the
moment the new view exists, inserts into its source reach both views, so
only the rows the old view held before that are copied: its inner parts are
listed before the new view is created, and if they are not exactly the
parts after the copy (an insert into the source, or a merge, meanwhile) the
step stops before the swap with nothing changed.  Pause ETL writes into the
tables the view reads before a revision rebuilds it.

It is a ``RebuildTable`` (its ``copy`` is what it carries over), so what
reads rebuilds (lint's loss check) reads it too.
"""
from __future__ import annotations

from dataclasses import dataclass

from alembic.operations import Operations

from app.operations import definitions as d
from app.operations import rebuild, render
from app.operations.rebuild import RebuildStopped, _online, _run, _scalar
from app.sql import in_list


@Operations.register_operation("rebuild_materialized_view")
@dataclass
class RebuildMaterializedView(d.RebuildTable):
    select: str = ""

    @classmethod
    def rebuild_materialized_view(cls, operations, name: str, select: str, *, engine: str, order_by: str,
                                  partition_by: str | None = None, copy: str) -> None:
        """A materialized view with its own storage, given a new SELECT or storage; every stored row kept.

        ``copy``: the columns carried over (new ones get their default).
        New view, copy, swap (see app.operations.materialized)."""
        return operations.invoke(cls(name, "", engine, order_by, copy, partition_by, select=select))

    def describe(self) -> str:
        return f"rebuild materialized view {self.name} ({self.engine}, keeping {self.copy})"


@Operations.register_operation("modify_query")
@dataclass
class ModifyQuery(d.ClickHouseOperation):
    name: str
    select: str

    @classmethod
    def modify_query(cls, operations, name: str, select: str) -> None:
        """ALTER TABLE ``name`` MODIFY QUERY: a materialized view written TO a table reads anew; re-runnable."""
        return operations.invoke(cls(name, select))

    def describe(self) -> str:
        return f"modify the query of {self.name}"


def render_modify_query(op: ModifyQuery, at: render.Placement) -> str:
    return render.alter(op.name, at, f"MODIFY QUERY\n{op.select.strip()}")


def _create(op: RebuildMaterializedView, name: str, at: render.Placement) -> str:
    sql = render.create_materialized_view(
        d.CreateMaterializedView(name, op.select, op.engine, op.order_by, op.partition_by), at)
    # A name that was just dropped: created plainly, so a leftover is an error, not kept.
    return sql.replace("CREATE MATERIALIZED VIEW IF NOT EXISTS ", "CREATE MATERIALIZED VIEW ", 1)


def _inner(name: str) -> str | None:
    """The inner table of materialized view ``name`` (``db..inner_id.<uuid>``), or None."""
    db, view = name.split(".", 1)
    found = _scalar(
        "SELECT i.name FROM system.tables AS v INNER JOIN system.tables AS i ON i.database = v.database "
        "WHERE v.database = %(d)s AND v.name = %(v)s AND v.engine = 'MaterializedView' "
        "AND i.name IN (concat('.inner_id.', toString(v.uuid)), concat('.inner.', v.name))",
        {"d": db, "v": view})
    return f"{db}.{found}" if found else None


def _shape(name: str) -> tuple:
    """What the rebuild changes: the view's SELECT as the server prints it, its storage's columns and keys."""
    inner = _inner(name)
    if inner is None:
        return ()
    db, view = name.split(".", 1)
    select = _scalar("SELECT as_select FROM system.tables WHERE database = %(d)s AND name = %(v)s",
                     {"d": db, "v": view})
    return select, rebuild._shape(inner)


def _inner_parts(name: str) -> dict[str, int]:
    inner = _inner(name)
    if inner is None:
        return {}
    db, table = inner.split(".", 1)
    rows = rebuild.op.get_bind().exec_driver_sql(
        "SELECT name, rows FROM system.parts WHERE database = %(d)s AND table = %(t)s AND active",
        {"d": db, "t": table}).all()
    return {part: int(n) for part, n in rows}


def rebuild_materialized_view(impl, operation: RebuildMaterializedView) -> None:
    """New view, copy, swap, drop the old; stops before the swap if the old view's parts moved.

    Its own views go with ``DROP TABLE``, which drops a view too: what lint
    reads as the emptying of a table the next INSERT fills (rule rerun-data).

    Re-run safety: a leftover ``<name>__rebuild`` is a partial new view
    (dropped and redone; the original is untouched) or, once ``name`` has the
    wanted shape, the old view after the swap (dropped once ``name`` holds
    every row it held, else kept, as ``rebuild_table`` keeps an old table).
    """
    name, copy, at = operation.name, operation.copy, impl.placement
    work = f"{name}__rebuild"
    if impl.cluster is not None and _online():
        # Each node's inner table is named after that node's view uuid: the
        # replica waits a copy needs cannot be written once for the cluster.
        raise RebuildStopped(
            f"rebuild_materialized_view of {name} does not run in cluster mode yet; nothing was changed: "
            "rebuild it by hand on the cluster, then `zakaz-schema repair REVISION --mark-applied`")
    if _online():
        probe = f"{name}__shape"
        _run(render.drop_table(probe, at))
        _run(_create(operation, probe, at))
        wanted = _shape(probe)
        _run(render.drop_table(probe, at))
        if _shape(name) == wanted:
            if _shape(work):
                rebuild._keep_old_table(name, work, copy, "an earlier run stopped after the swap")
            _run(render.drop_table(work, at))
            return
    _run(render.drop_table(work, at))
    # Listed before the new view exists: rows inserted after it reach both views.
    listed = _inner_parts(name) if _online() else {}
    _run(_create(operation, work, at))
    where = (f" WHERE _part IN ({in_list(listed)})" if listed else " WHERE 0") if _online() else ""
    rebuild._copy("rebuild_materialized_view", name,
                  f"INSERT INTO {work} ({copy}) SELECT {copy} FROM {name}{where} SETTINGS optimize_on_insert = 0",
                  total=sum(listed.values()) if _online() else None)
    if _online():
        now = _inner_parts(name)
        if now != listed:
            what = sorted(set(now) ^ set(listed))[0]
            _run(render.drop_table(work, at))
            raise RebuildStopped(
                f"rebuild of materialized view {name}: its stored parts changed during the copy (part {what}: "
                "an insert into the tables it reads, or a merge), so rows written meanwhile could not be "
                "told apart; nothing was swapped and the view is untouched: pause writes into the tables "
                "it reads (ETL loads) and run it again")
    _run(render.exchange_tables(name, work, at))
    _run(render.drop_table(work, at))


@Operations.implementation_for(RebuildMaterializedView)
def _rebuild_materialized_view(operations, operation: RebuildMaterializedView) -> None:
    impl = operations.impl
    impl.record(operation)
    rebuild_materialized_view(impl, operation)


@Operations.implementation_for(ModifyQuery)
def _modify_query(operations, operation: ModifyQuery) -> None:
    impl = operations.impl
    impl.record(operation)
    impl.run_rendered(render_modify_query(operation, impl.placement))
