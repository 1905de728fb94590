"""The operations that move rows: ``rebuild_table`` and ``copy_rows_once``.

They read the database between statements (shapes, parts, row counts), so
unlike the others they are more than a rendering: online they check as they
go; offline they write the statements a clean run sends.  On a cluster an
INSERT runs on the node we are connected to and reaches the other replicas by
replication, so they wait for replicas where a read must see every row, and
refuse a sharded cluster, whose other shards one connection cannot reach.

The helpers reach the migration through alembic's ``op`` proxy (the running
migration context), so a test can replace one of them (``exchange_tables``,
``_parts``, ``_active_parts``) to write rows at the worst moment.
"""
from __future__ import annotations

import logging
from contextlib import nullcontext

from alembic import op

from app import merging, progress
from app.errors import CheckFailed
from app.losses import DataLossRefused
from app.operations import definitions as d
from app.operations import render
from app.schema import TABLE, Column, DbObject, logical_engine, split_engine_full
from app.sql import in_list

log = logging.getLogger("zakaz_schema")


class RebuildStopped(CheckFailed):
    """A rebuild or copy stopped to keep rows; the message says what was kept and what to do."""


def _impl():
    return op.get_context().impl


def _online() -> bool:
    return not _impl().as_sql


def _run(sql: str) -> None:
    _impl().run_rendered(sql)


def _scalar(sql: str, params: dict | None = None):
    return op.get_bind().exec_driver_sql(sql, params or {}).scalar()


def _sync_replica(name: str, *, everywhere: bool = False) -> None:
    """Wait until replicas of ``name`` hold every part inserted anywhere so far.

    ``everywhere``: on every node of the cluster (before the original of a
    rebuild is dropped); else on the node we are connected to (before reading
    it as the complete table).
    """
    _run(render.sync_replica(name, _impl().placement, everywhere=everywhere))


def _refuse_sharded(operation: str, name: str) -> None:
    # An INSERT ... SELECT through one connection reads and writes the shard
    # of the node we are connected to: on a sharded cluster the other shards'
    # rows would be left behind (a rebuild would then swap in an empty table).
    cluster = _impl().cluster
    if cluster is not None and cluster.shards > 1 and _online():
        raise RebuildStopped(
            f"{operation} of {name} copies rows through one connection, which on cluster "
            f"{cluster.name!r} ({cluster.shards} shards) reaches one shard only; nothing was changed. "
            "Data-moving revisions are supported on one-shard clusters; elsewhere run this step by hand "
            "on each shard, then `zakaz-schema repair REVISION --mark-applied`"
        )


def _copy(operation: str, table: str, sql: str, total: int | None = None) -> None:
    """Run a copy's one INSERT ... SELECT, its progress reported while it runs (app.progress)."""
    watch = progress.watching(op.get_bind(), operation, table, total) if _online() else nullcontext()
    with watch as tag:
        _run(progress.tagged(sql, tag))


def exchange_tables(a: str, b: str) -> None:
    _run(render.exchange_tables(a, b, _impl().placement))


def copy_rows_once(impl, operation: d.CopyRowsOnce) -> None:
    if impl.cluster is not None:
        _refuse_sharded("copy_rows_once", operation.target)
        # The emptiness guard reads this node's replica: it must already hold
        # rows a failed earlier run inserted through another node.
        _sync_replica(operation.target)
    _copy("copy_rows_once", operation.target, render.copy_rows_once(operation))


def _shape(name: str) -> tuple:
    """What a rebuild changes: columns with types and defaults, the engine with its arguments, keys and TTL."""
    db, table = name.split(".", 1)
    conn = op.get_bind()
    cols = conn.exec_driver_sql(
        "SELECT name, type, default_kind, default_expression FROM system.columns "
        "WHERE database = %(d)s AND table = %(t)s ORDER BY position",
        {"d": db, "t": table},
    ).all()
    keys = conn.exec_driver_sql(
        "SELECT engine_full, partition_key, sorting_key, primary_key FROM system.tables "
        "WHERE database = %(d)s AND name = %(t)s",
        {"d": db, "t": table},
    ).all()
    return tuple(map(tuple, cols)), tuple((*_engine_and_ttl(row[0]), *row[1:]) for row in keys)


def _engine_and_ttl(engine_full: str) -> tuple[str, str]:
    """The engine with its arguments, and the TTL: ``system.tables.engine`` has the name alone.

    The logical engine: a Replicated table's Keeper path has its own table's
    UUID unfolded in it, so the probe's would never equal the table's.
    SETTINGS are the server's defaults, not what the operation asks for.
    """
    parts = split_engine_full(engine_full)
    return logical_engine(parts["ENGINE"]), parts.get("TTL", "")


def _parts(name: str) -> dict[str, int]:
    """Rows per active part of ``name``, as a SELECT reads them.

    A part is immutable, so its name stands for its rows: parts that appear
    later hold rows inserted later, and a part that disappears was merged
    (or mutated) into a new one.
    """
    rows = op.get_bind().exec_driver_sql(f"SELECT _part, count() FROM {name} GROUP BY _part").all()
    return {part: int(n) for part, n in rows}


def _active_parts(name: str) -> dict[str, int]:
    """Active parts of ``name`` and their rows, from system.parts: no data is read."""
    db, table = name.split(".", 1)
    rows = op.get_bind().exec_driver_sql(
        "SELECT name, rows FROM system.parts WHERE database = %(d)s AND table = %(t)s AND active",
        {"d": db, "t": table}).all()
    return {part: int(n) for part, n in rows}


def _pause_writes(name: str) -> str:
    return (f"writes or merges changed its parts: pause writes into {name} (ETL loads) and run it again; "
            "if nothing writes into it, a background merge did it and running it again retries the rebuild")


def _keep_old_table(name: str, old: str, copy: str, why: str) -> None:
    """After a swap, drop the old table only if ``name`` holds every row of it; else keep it and stop.

    Rows are compared over the copied columns with their multiplicity (each
    distinct row counted in both; NULLs group together, unlike in a JOIN;
    24.8 runs EXCEPT ALL as EXCEPT DISTINCT).  The difference is not moved.
    In a table that merges rows (ReplacingMergeTree, ...) it may be only
    versions a merge in ``name`` legitimately replaced (a run killed after
    the swap gives merges time): then what each table's merges keep
    (FINAL) is compared too, and if ``name`` keeps every row the old one
    would, nothing lacks (a tryout was told to copy back 50,000 superseded
    versions).
    """
    if _impl().cluster is not None:
        _sync_replica(name)
        _sync_replica(old)
    missing = _rows_lacking(name, old, copy)
    if missing and merging.merges_rows(_shape(old)[1][0][0]):
        missing = _rows_lacking(name, old, copy, final=" FINAL")
    if not missing:
        return
    kept = f"{name}__before_rebuild"
    fix = f"pause writes into {name}, copy the rows it lacks from {kept}, then drop {kept}"
    exists = _scalar("SELECT count() FROM system.tables WHERE database = %(d)s AND name = %(t)s",
                     {"d": kept.split(".", 1)[0], "t": kept.split(".", 1)[1]})
    if exists:
        raise RebuildStopped(
            f"rebuild of {name}: {why}; {old}, the table before the swap, holds {missing} row(s) {name} "
            f"lacks and is kept, but {kept} is left from an earlier rebuild: deal with that first, then "
            f"{fix.replace(kept, old)}"
        )
    _run(render.rename_table(old, kept, _impl().placement))
    raise RebuildStopped(
        f"rebuild of {name}: {why}, so rows written meanwhile cannot be told apart from copied ones; "
        f"{name} has the new shape, and the table before the swap is kept as {kept}, holding "
        f"{missing} row(s) {name} lacks: {fix}"
    )


def _rows_lacking(name: str, old: str, copy: str, *, final: str = "") -> int:
    """Rows of ``old`` (over the ``copy`` columns, with multiplicity) that ``name`` does not hold."""
    return _scalar(
        f"SELECT sum(d) FROM (SELECT {copy}, sum(s) AS d FROM (SELECT {copy}, 1 AS s FROM {old}{final} "
        f"UNION ALL SELECT {copy}, -1 AS s FROM {name}{final}) GROUP BY {copy} HAVING d > 0)") or 0


def _move_late_rows(name: str, old: str, copy: str, copied: dict[str, int]) -> None:
    """Move rows that reached the original after its parts were copied (now in ``old``) into ``name``.

    Writes go on during a rebuild: an INSERT between the copy and the swap
    (on a cluster the wait for every replica lies in between) lands in the
    table that is swapped out.  Its rows are in parts the copy did not read;
    an INSERT that was already running at the swap can still add one, hence
    a few passes.  A copied part that is gone was merged, maybe with new
    rows, and part names can no longer tell them apart.
    """
    cluster = _impl().cluster
    seen = dict(copied)
    moved = 0
    for _ in range(3):
        if cluster is not None:
            # Parts inserted through other nodes before the swap reach this one by replication.
            _sync_replica(old)
        now = _active_parts(old)
        gone = [p for p in seen if p not in now]
        if gone:
            _keep_old_table(name, old, copy, f"part {gone[0]} of the original was merged during the rebuild")
            return
        late = {p: n for p, n in now.items() if p not in seen}
        if not late:
            if moved:
                log.warning("rebuild of %s: %d row(s) written during the swap were moved into the new table",
                            name, moved)
            return
        _run(f"INSERT INTO {name} ({copy}) SELECT {copy} FROM {old} "
             f"WHERE _part IN ({in_list(late)}) SETTINGS optimize_on_insert = 0")
        seen.update(late)
        moved += sum(late.values())
    _keep_old_table(name, old, copy, f"rows kept arriving in {old} after the swap")


def _as_table(name: str, shape: tuple) -> DbObject:
    columns, tables = shape
    engine, _, partition_key, sorting_key, _ = tables[0]
    return DbObject(name, TABLE, tuple(Column(c[0], c[1]) for c in columns), engine=engine,
                    order_by=sorting_key, partition_by=partition_key)


def _check_merged_rows(name: str, current: tuple, wanted: tuple, *, allowed: bool) -> None:
    """Before anything changes: refuse a new engine or key whose merges would combine stored rows.

    The copy keeps every row, but the new table's merges then combine those
    that share its key (app.merging): counted here, on the rows themselves.
    Allowed (--allow-data-loss), the count is said, not silently lost.
    """
    if not current[1]:
        return  # no such table: the copy's own error says so
    old, new = _as_table(name, current), _as_table(name, wanted)
    why = merging.rows_merged(old, new)
    if why is None:
        return
    if _impl().cluster is not None:
        _sync_replica(name)  # count every row, wherever it was written
    merged = _scalar(merging.merged_rows_sql(old, new))
    if not merged:
        return
    if allowed:
        log.warning("rebuild of %s: %s; %d stored row(s) will be merged away, as --allow-data-loss allows",
                    name, why, merged)
        return
    raise DataLossRefused(
        f"refusing to rebuild {name}: {why}; {merged} stored row(s) would be merged away; nothing was "
        "changed: keep the old engine and key, or back the table up and resume with --allow-data-loss "
        "as well (alembic: -x allow_data_loss=true)"
    )


def rebuild_table(impl, operation: d.RebuildTable) -> None:
    """New table, copy, swap; every row kept.

    The copy reads the original's parts as listed before it and is counted
    against them; rows inserted after that listing are found after the swap
    in parts the copy did not read, and moved.  If a merge mixes the two,
    the step stops before the swap (nothing changed) or, after it, keeps the
    old table (see ``_keep_old_table``).  Pausing the writes into the table
    makes none of that happen.

    Re-run safety: a leftover ``<name>__rebuild`` from a failed run is either
    a partial new copy (dropped and redone, the original is untouched) or,
    after the swap, the old table (dropped once ``name`` has the wanted shape
    and holds every row of it).
    """
    name, copy = operation.name, operation.copy
    at = impl.placement
    work = f"{name}__rebuild"
    if impl.cluster is not None:
        _refuse_sharded("rebuild_table", name)
    if _online():
        probe = f"{name}__shape"
        _run(render.drop_table(probe, at))
        _run(render.create_table(operation, at, name=probe))
        wanted = _shape(probe)
        _run(render.drop_table(probe, at))
        current = _shape(name)
        if current == wanted:
            if _shape(work) != ((), ()):
                _keep_old_table(name, work, copy, "an earlier run stopped after the swap")
            _run(render.drop_table(work, at))
            return
        _check_merged_rows(name, current, wanted, allowed=getattr(impl, "allow_data_loss", False))
    _run(render.drop_table(work, at))
    _run(render.create_table(operation, at, name=work, if_not_exists=False))
    if impl.cluster is not None:
        # The copy reads this node's replica of the original: make it whole first.
        _sync_replica(name)
    # optimize_on_insert = 0: unmerged duplicates must survive the copy (and
    # the row count check below), as they would in the original table.
    copied: dict[str, int] = {}
    where = ""
    if _online():
        copied = _parts(name)
        # 24.8 cannot parse an empty IN ().
        where = f" WHERE _part IN ({in_list(copied)})" if copied else " WHERE 0"
    _copy("rebuild_table", name,
          f"INSERT INTO {work} ({copy}) SELECT {copy} FROM {name}{where} SETTINGS optimize_on_insert = 0",
          total=sum(copied.values()) if _online() else None)
    if _online():
        # The copy and its count are on this node, the parts were listed here.
        new = _scalar(f"SELECT count() FROM {work}")
        old = sum(copied.values())
        if old != new:
            raise RebuildStopped(
                f"rebuild of {name} copied {new} of {old} rows (a merge changed its parts during the "
                f"copy); the original is untouched and {work} holds the partial copy: {_pause_writes(name)}"
            )
    if impl.cluster is not None:
        # The copy reaches the other replicas by replication; the swap and the
        # drop of the original wait until every replica holds all of it.
        _sync_replica(work, everywhere=True)
    if _online():
        gone = [p for p in copied if p not in _active_parts(name)]
        if gone:
            raise RebuildStopped(
                f"rebuild of {name}: part {gone[0]} was merged after it was copied, so rows written "
                f"meanwhile could not be told apart after the swap; nothing was swapped and the original "
                f"is untouched: {_pause_writes(name)}"
            )
    exchange_tables(name, work)
    if _online():
        _move_late_rows(name, work, copy, copied)
    _run(render.drop_table(work, at))
