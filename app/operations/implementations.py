"""How each ClickHouse operation runs: rendered (app.operations.render) and executed by ClickHouseImpl.

Registered with ``Operations.implementation_for``; they need the ClickHouse
implementation (app.impl), which counts each statement, runs it (or writes it
out in offline mode) and keeps the operation in ``impl.operations``.  Around
the SQL they add what a statement cannot say: what the step creates and drops
(``impl.announced``, read by app.runtime's dry runs), the data-loss guards
right before a drop, and the skips of the embedded engine.
"""
from __future__ import annotations

from alembic.operations import Operations

from app import losses
from app.operations import definitions as d
from app.operations import rebuild, render
from app.schema import split_engine_full


def _begin(operations, operation):
    impl = operations.impl
    impl.record(operation)
    return impl


def _online(impl) -> bool:
    return not impl.as_sql


def announce(impl, action: str, name: str) -> None:
    # Before a run, app.runtime renders its steps offline (a dry run) to learn
    # what they would create and drop; nothing is executed then.
    notes = getattr(impl, "announced", None)
    if notes is not None:
        notes.append((action, name))


def _loss_allowed(impl) -> bool:
    # Outside app.runtime (which sets it per run) nothing is allowed.
    return not _online(impl) or getattr(impl, "allow_data_loss", False)


def _cluster_name(impl) -> str | None:
    """The cluster a drop runs on: its rows are counted on every replica (app.losses.stored)."""
    return impl.cluster.name if impl.cluster is not None else None


def _refuse_rows(impl, objects: list[str]) -> None:
    """Right before a drop: rows may have arrived since the run was checked."""
    if _loss_allowed(impl):
        return
    held = losses.rows_at_risk(impl.connection, objects, cluster=_cluster_name(impl))
    if held:
        raise losses.DataLossRefused(
            f"refusing to drop {', '.join(f'{o} ({losses.row_count(n)})' for o, n in held.items())}: "
            "rows this run was not allowed to delete (written after it was checked, or a drop its revision "
            "does not declare); nothing was dropped: stop the writes, or back it up and re-run with --allow-data-loss "
            "(alembic: -x allow_data_loss=true)"
        )


@Operations.implementation_for(d.CreateDatabase)
def create_database(operations, operation: d.CreateDatabase) -> None:
    impl = _begin(operations, operation)
    impl.run_rendered(render.create_database(operation, impl.placement))
    impl.refresh_replicated_databases()


@Operations.implementation_for(d.DropDatabase)
def drop_database(operations, operation: d.DropDatabase) -> None:
    impl = _begin(operations, operation)
    name = operation.name
    announce(impl, "drop_database", name)
    if not _loss_allowed(impl):
        owned = getattr(impl, "step_owned", set())
        left = losses.unmanaged(impl.connection, name, owned, cluster=_cluster_name(impl))
        if left:
            raise losses.DataLossRefused(
                f"refusing to drop database {name}: it holds objects no revision created: "
                f"{losses.listing([s.describe() for s in left])}; nothing was dropped: move them, or back "
                "them up and re-run with --allow-data-loss (alembic: -x allow_data_loss=true)"
            )
    impl.run_rendered(render.drop_database(operation, impl.placement))
    impl.refresh_replicated_databases()


@Operations.implementation_for(d.CreateTable)
def create_table(operations, operation: d.CreateTable) -> None:
    impl = _begin(operations, operation)
    announce(impl, "create", operation.name)
    impl.run_rendered(render.create_table(operation, impl.placement))


@Operations.implementation_for(d.DropTable)
def drop_table(operations, operation: d.DropTable) -> None:
    impl = _begin(operations, operation)
    announce(impl, "drop", operation.name)
    _refuse_rows(impl, [operation.name])
    impl.run_rendered(render.drop_table(operation.name, impl.placement))


@Operations.implementation_for(d.AddColumn)
def add_column(operations, operation: d.AddColumn) -> None:
    impl = _begin(operations, operation)
    impl.run_rendered(render.add_column(operation, impl.placement))


@Operations.implementation_for(d.DropColumn)
def drop_column(operations, operation: d.DropColumn) -> None:
    impl = _begin(operations, operation)
    target = f"{operation.table}.{operation.column}"
    announce(impl, "drop", target)
    _refuse_rows(impl, [target])
    impl.run_rendered(render.drop_column(operation, impl.placement))


@Operations.implementation_for(d.ModifyColumn)
def modify_column(operations, operation: d.ModifyColumn) -> None:
    impl = _begin(operations, operation)
    impl.run_rendered(render.modify_column(operation, impl.placement))


# What system.columns holds for each property REMOVE takes away: '' once it is gone.
_COLUMN_PROPERTY = {"CODEC": "compression_codec", "COMMENT": "comment"}


@Operations.implementation_for(d.RemoveColumnProperty)
def remove_column_property(operations, operation: d.RemoveColumnProperty) -> None:
    impl = _begin(operations, operation)
    if operation.property not in _COLUMN_PROPERTY:
        raise ValueError(f"remove_column_property removes CODEC or COMMENT, not {operation.property!r}")
    if _online(impl):
        db, table = operation.table.split(".", 1)
        held = impl.connection.exec_driver_sql(
            f"SELECT {_COLUMN_PROPERTY[operation.property]} FROM system.columns "
            "WHERE database = %(d)s AND table = %(t)s AND name = %(c)s",
            {"d": db, "t": table, "c": operation.column}).scalar()
        if not held:
            return
    impl.run_rendered(render.remove_column_property(operation, impl.placement))


@Operations.implementation_for(d.ModifyTtl)
def modify_ttl(operations, operation: d.ModifyTtl) -> None:
    impl = _begin(operations, operation)
    impl.run_rendered(render.modify_ttl(operation, impl.placement))


@Operations.implementation_for(d.RemoveTtl)
def remove_ttl(operations, operation: d.RemoveTtl) -> None:
    impl = _begin(operations, operation)
    if _online(impl):
        db, table = operation.table.split(".", 1)
        engine_full = impl.connection.exec_driver_sql(
            "SELECT engine_full FROM system.tables WHERE database = %(d)s AND name = %(t)s",
            {"d": db, "t": table}).scalar()
        if "TTL" not in split_engine_full(engine_full or ""):
            return
    impl.run_rendered(render.remove_ttl(operation, impl.placement))


@Operations.implementation_for(d.CreateView)
def create_view(operations, operation: d.CreateView) -> None:
    impl = _begin(operations, operation)
    announce(impl, "create", operation.name)
    impl.run_rendered(render.create_view(operation, impl.placement))


@Operations.implementation_for(d.DropView)
def drop_view(operations, operation: d.DropView) -> None:
    impl = _begin(operations, operation)
    announce(impl, "drop", operation.name)
    _refuse_rows(impl, [operation.name])  # a materialized view's own storage holds rows
    impl.run_rendered(render.drop_view(operation, impl.placement))


@Operations.implementation_for(d.CreateMaterializedView)
def create_materialized_view(operations, operation: d.CreateMaterializedView) -> None:
    impl = _begin(operations, operation)
    announce(impl, "create", operation.name)
    impl.run_rendered(render.create_materialized_view(operation, impl.placement))


@Operations.implementation_for(d.SetViewSecurity)
def set_view_security(operations, operation: d.SetViewSecurity) -> None:
    impl = _begin(operations, operation)
    embedded = impl.is_embedded and _online(impl)
    sql = render.set_view_security(operation, impl.placement, with_definer=not embedded)
    if operation.server_only and embedded:
        impl.skip_statement(sql)
    else:
        impl.run_rendered(sql)


@Operations.implementation_for(d.ExchangeTables)
def exchange_tables(operations, operation: d.ExchangeTables) -> None:
    impl = _begin(operations, operation)
    impl.run_rendered(render.exchange_tables(operation.a, operation.b, impl.placement))


@Operations.implementation_for(d.CopyRowsOnce)
def copy_rows_once(operations, operation: d.CopyRowsOnce) -> None:
    rebuild.copy_rows_once(_begin(operations, operation), operation)


@Operations.implementation_for(d.RebuildTable)
def rebuild_table(operations, operation: d.RebuildTable) -> None:
    rebuild.rebuild_table(_begin(operations, operation), operation)


# Access statements are skipped on the embedded engine (no access storage) by
# ClickHouseImpl, which sees every statement, after counting them.

@Operations.implementation_for(d.CreateRole)
def create_role(operations, operation: d.CreateRole) -> None:
    impl = _begin(operations, operation)
    impl.run_rendered(render.create_role(operation, impl.placement))


@Operations.implementation_for(d.DropRole)
def drop_role(operations, operation: d.DropRole) -> None:
    impl = _begin(operations, operation)
    impl.run_rendered(render.drop_role(operation, impl.placement))


@Operations.implementation_for(d.Grant)
def grant(operations, operation: d.Grant) -> None:
    impl = _begin(operations, operation)
    impl.run_rendered(render.grant(operation, impl.placement))


@Operations.implementation_for(d.Access)
def access(operations, operation: d.Access) -> None:
    _begin(operations, operation).run_raw(operation.sql)


@Operations.implementation_for(d.Run)
def run(operations, operation: d.Run) -> None:
    _begin(operations, operation).run_raw(operation.sql)
