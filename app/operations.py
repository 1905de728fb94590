"""The ClickHouse operations revisions are written with.

Every operation is safe to re-run (ClickHouse DDL is not transactional: a
revision that failed half-way is resumed by running it again), and renders to
plain SQL in offline mode.  Names are ``database.object``.  Revisions import
these functions; they never import the canonical schema.

In cluster mode the ClickHouse implementation adds ``ON CLUSTER`` and
Replicated engines to what these functions emit (app.cluster); the functions
that move data (``rebuild_table``, ``copy_rows_once``) also wait for
replicas, because an INSERT runs on the node we are connected to and reaches
the other replicas by replication.
"""
from __future__ import annotations

import logging

from alembic import op
from sqlalchemy import text

from app import losses
from app.sql import quote_literal

log = logging.getLogger("zakaz_schema")


def _run(sql: str) -> None:
    # alembic wraps strings in text(), which reads ":name" as a bind
    # parameter; ClickHouse SQL has none, so every colon is literal.
    op.execute(text(sql.strip().replace(":", "\\:")))


def run(sql: str) -> None:
    """A statement no named operation covers; write it re-runnable."""
    _run(sql)


def restore_views(revision: str, names: list[str]) -> None:
    """Recreate views as an earlier revision defined them (its ``VIEW_SQL``).

    Used by downgrades that repointed views, so the old definition is written
    once, in the revision that introduced it.
    """
    module = op.get_context().script.get_revision(revision).module
    for name in names:
        create_view(name, module.VIEW_SQL[name])


def _online() -> bool:
    return not op.get_context().as_sql


def _announce(action: str, name: str) -> None:
    # Before a run, app.runtime renders its steps offline (a dry run) to learn
    # what they would create and drop; nothing is executed then.
    notes = getattr(op.get_context().impl, "announced", None)
    if notes is not None:
        notes.append((action, name))


def _loss_allowed() -> bool:
    # Outside app.runtime (which sets it per run) nothing is allowed.
    return not _online() or getattr(op.get_context().impl, "allow_data_loss", False)


def _refuse_rows(objects: list[str]) -> None:
    """Right before a drop: rows may have arrived since the run was checked."""
    if _loss_allowed():
        return
    held = losses.rows_at_risk(op.get_bind(), objects)
    if held:
        raise losses.DataLossRefused(
            f"refusing to drop {', '.join(f'{o} ({n} rows)' for o, n in held.items())}: rows this run was "
            "not allowed to delete (written after it was checked, or a drop its revision does not declare); "
            "nothing was dropped: stop the writes, or back it up and re-run with --allow-data-loss "
            "(alembic: -x allow_data_loss=true)"
        )


def _cluster():
    """The cluster settings of this run (app.cluster.Cluster), None on a single server."""
    return getattr(op.get_context().impl, "cluster", None)


def _sync_replica(name: str, *, everywhere: bool = False) -> None:
    """Wait until replicas of ``name`` hold every part inserted anywhere so far.

    ``everywhere``: on every node of the cluster (before the original of a
    rebuild is dropped); else on the node we are connected to (before reading
    it as the complete table).
    """
    cluster = _cluster()
    where = f"{cluster.clause} " if everywhere else ""
    _run(f"SYSTEM SYNC REPLICA {where}{name}")


def _refuse_sharded(operation: str, name: str) -> None:
    # An INSERT ... SELECT through one connection reads and writes the shard
    # of the node we are connected to: on a sharded cluster the other shards'
    # rows would be left behind (a rebuild would then swap in an empty table).
    cluster = _cluster()
    if cluster is not None and cluster.shards > 1 and _online():
        raise RuntimeError(
            f"{operation} of {name} copies rows through one connection, which on cluster "
            f"{cluster.name!r} ({cluster.shards} shards) reaches one shard only; nothing was changed. "
            "Data-moving revisions are supported on one-shard clusters; elsewhere run this step by hand "
            "on each shard, then `zakaz-schema repair REVISION --mark-applied`"
        )


def create_database(name: str) -> None:
    _run(f"CREATE DATABASE IF NOT EXISTS {name}")


def drop_database(name: str) -> None:
    """Drop a database that holds nothing but what its revision created.

    By the time a downgrade drops a database, the later revisions' downgrades
    have dropped their objects: anything else still in it (an integration's
    tables and views) was never the chain's to delete, and is refused without
    ``--allow-data-loss`` even when empty.
    """
    _announce("drop_database", name)
    if not _loss_allowed():
        owned = getattr(op.get_context().impl, "step_owned", set())
        left = losses.unmanaged(op.get_bind(), name, owned)
        if left:
            raise losses.DataLossRefused(
                f"refusing to drop database {name}: it holds objects no revision created: "
                f"{losses.listing([s.describe() for s in left])}; nothing was dropped: move them, or back "
                "them up and re-run with --allow-data-loss (alembic: -x allow_data_loss=true)"
            )
    # SYNC: on ClickHouse 24.8 (chdb 2.1) an asynchronous drop of an Atomic
    # database could hang the next statement on the same names.
    _run(f"DROP DATABASE IF EXISTS {name} SYNC")


def _column_lines(columns: str) -> list[str]:
    return [line.strip().rstrip(",") for line in columns.splitlines() if line.strip()]


def _table_ddl(name: str, columns: str, engine: str, order_by: str,
               partition_by: str | None, ttl: str | None, if_not_exists: bool = True) -> str:
    body = ",\n    ".join(_column_lines(columns))
    sql = f"CREATE TABLE {'IF NOT EXISTS ' if if_not_exists else ''}{name}\n(\n    {body}\n)\nENGINE = {engine}"
    if partition_by:
        sql += f"\nPARTITION BY {partition_by}"
    sql += f"\nORDER BY {order_by}"
    if ttl:
        sql += f"\nTTL {ttl}"
    return sql


def create_table(name: str, columns: str, *, engine: str, order_by: str,
                 partition_by: str | None = None, ttl: str | None = None) -> None:
    """CREATE TABLE IF NOT EXISTS; ``columns`` is one column definition per line."""
    _announce("create", name)
    _run(_table_ddl(name, columns, engine, order_by, partition_by, ttl))


def drop_table(name: str) -> None:
    _announce("drop", name)
    _refuse_rows([name])
    _run(f"DROP TABLE IF EXISTS {name} SYNC")


def add_column(table: str, column: str, *, after: str | None = None, first: bool = False) -> None:
    where = " FIRST" if first else (f" AFTER {after}" if after else "")
    _run(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column}{where}")


def drop_column(table: str, column: str) -> None:
    _announce("drop", f"{table}.{column}")
    _refuse_rows([f"{table}.{column}"])
    _run(f"ALTER TABLE {table} DROP COLUMN IF EXISTS {column}")


def modify_column(table: str, column: str) -> None:
    """MODIFY COLUMN (re-runnable as written: modifying to the same type is a no-op)."""
    _run(f"ALTER TABLE {table} MODIFY COLUMN {column}")


def create_view(name: str, select: str) -> None:
    _announce("create", name)
    _run(f"CREATE OR REPLACE VIEW {name} AS\n{select.strip()}")


def set_view_security(name: str, security: str, *, definer: str | None = None,
                      server_only: bool = False) -> None:
    """How a view runs: ``DEFINER`` (with ``definer``'s rights), ``INVOKER`` (its reader's) or ``NONE``.

    Re-runnable: setting what is already set changes nothing.  chDB has no
    access storage and so no named users: there a ``DEFINER = name`` clause
    fails (code 192) and the view runs as its only user, ``default``, so the
    clause is left out on the embedded engine (offline SQL, written for a
    server, keeps it).  ``server_only``: on the embedded engine the statement
    is checked and recorded as skipped, like an access statement (chDB
    refuses ``NONE`` for want of the ALLOW SQL SECURITY NONE privilege).
    """
    clause = f"SQL SECURITY {security}"
    impl = op.get_context().impl
    embedded = getattr(impl, "is_embedded", False) and _online()
    if definer and not embedded:
        clause = f"DEFINER = {definer} {clause}"
    sql = f"ALTER TABLE {name} MODIFY {clause}"
    if server_only and embedded:
        impl.skip_statement(sql)
    else:
        _run(sql)


def drop_view(name: str) -> None:
    _announce("drop", name)
    _refuse_rows([name])  # a materialized view's own storage holds rows
    _run(f"DROP VIEW IF EXISTS {name} SYNC")


def create_materialized_view(name: str, select: str, *, engine: str, order_by: str,
                             partition_by: str | None = None) -> None:
    """A materialized view with its own (inner) storage."""
    _announce("create", name)
    sql = f"CREATE MATERIALIZED VIEW IF NOT EXISTS {name}\nENGINE = {engine}"
    if partition_by:
        sql += f"\nPARTITION BY {partition_by}"
    sql += f"\nORDER BY {order_by}\nAS\n{select.strip()}"
    _run(sql)


def exchange_tables(a: str, b: str) -> None:
    _run(f"EXCHANGE TABLES {a} AND {b}")


def copy_rows_once(target: str, columns: str, select: str) -> None:
    """INSERT ... SELECT that only runs while ``target`` is empty (re-run safe backfill)."""
    if _cluster() is not None:
        _refuse_sharded("copy_rows_once", target)
        # The emptiness guard reads this node's replica: it must already hold
        # rows a failed earlier run inserted through another node.
        _sync_replica(target)
    _run(
        f"INSERT INTO {target} ({columns})\n"
        f"SELECT * FROM ({select.strip()})\n"
        f"WHERE (SELECT count() FROM {target}) = 0\n"
        # A ReplacingMergeTree target would otherwise collapse rows with one
        # key inside the insert itself: a backfill keeps every row.
        "SETTINGS optimize_on_insert = 0"
    )


def _shape(name: str) -> tuple:
    """What a rebuild changes: columns with types and defaults, and the keys."""
    db, table = name.split(".", 1)
    conn = op.get_bind()
    cols = conn.exec_driver_sql(
        "SELECT name, type, default_kind, default_expression FROM system.columns "
        "WHERE database = %(d)s AND table = %(t)s ORDER BY position",
        {"d": db, "t": table},
    ).all()
    keys = conn.exec_driver_sql(
        "SELECT engine, partition_key, sorting_key, primary_key FROM system.tables "
        "WHERE database = %(d)s AND name = %(t)s",
        {"d": db, "t": table},
    ).all()
    return tuple(map(tuple, cols)), tuple(map(tuple, keys))


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


def _in_list(names) -> str:
    return ", ".join(quote_literal(n) for n in sorted(names))


def _pause_writes(name: str) -> str:
    return f"pause writes into {name} (ETL loads) and run it again"


def _keep_old_table(name: str, old: str, copy: str, why: str) -> None:
    """After a swap, drop the old table only if ``name`` holds every row of it; else keep it and stop.

    Rows are compared over the copied columns with their multiplicity (each
    distinct row counted in both; NULLs group together, unlike in a JOIN;
    24.8 runs EXCEPT ALL as EXCEPT DISTINCT).  The difference is not moved:
    in a ReplacingMergeTree it also holds duplicates a merge in ``name``
    legitimately collapsed.
    """
    if _cluster() is not None:
        _sync_replica(name)
        _sync_replica(old)
    conn = op.get_bind()
    missing = conn.exec_driver_sql(
        f"SELECT sum(d) FROM (SELECT {copy}, sum(s) AS d FROM (SELECT {copy}, 1 AS s FROM {old} "
        f"UNION ALL SELECT {copy}, -1 AS s FROM {name}) GROUP BY {copy} HAVING d > 0)").scalar()
    if not missing:
        return
    kept = f"{name}__before_rebuild"
    fix = f"pause writes into {name}, copy the rows it lacks from {kept}, then drop {kept}"
    exists = conn.exec_driver_sql(
        "SELECT count() FROM system.tables WHERE database = %(d)s AND name = %(t)s",
        {"d": kept.split(".", 1)[0], "t": kept.split(".", 1)[1]}).scalar()
    if exists:
        raise RuntimeError(
            f"rebuild of {name}: {why}; {old}, the table before the swap, holds {missing} row(s) {name} "
            f"lacks and is kept, but {kept} is left from an earlier rebuild: deal with that first, then "
            f"{fix.replace(kept, old)}"
        )
    _run(f"RENAME TABLE {old} TO {kept}")
    raise RuntimeError(
        f"rebuild of {name}: {why}, so rows written meanwhile cannot be told apart from copied ones; "
        f"{name} has the new shape, and the table before the swap is kept as {kept}, holding "
        f"{missing} row(s) {name} lacks: {fix}"
    )


def _move_late_rows(name: str, old: str, copy: str, copied: dict[str, int]) -> None:
    """Move rows that reached the original after its parts were copied (now in ``old``) into ``name``.

    Writes go on during a rebuild: an INSERT between the copy and the swap
    (on a cluster the wait for every replica lies in between) lands in the
    table that is swapped out.  Its rows are in parts the copy did not read;
    an INSERT that was already running at the swap can still add one, hence
    a few passes.  A copied part that is gone was merged, maybe with new
    rows, and part names can no longer tell them apart.
    """
    cluster = _cluster()
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
             f"WHERE _part IN ({_in_list(late)}) SETTINGS optimize_on_insert = 0")
        seen.update(late)
        moved += sum(late.values())
    _keep_old_table(name, old, copy, f"rows kept arriving in {old} after the swap")


def rebuild_table(name: str, columns: str, *, engine: str, order_by: str,
                  partition_by: str | None = None, ttl: str | None = None,
                  copy: str) -> None:
    """Change what ALTER cannot (partition key, engine): new table, copy, swap.

    Every row is kept: ``copy`` lists the columns carried over (new columns
    get their DEFAULT).  The copy reads the original's parts as listed
    before it and is counted against them; rows inserted after that listing
    are found after the swap in parts the copy did not read, and moved.
    If a merge mixes the two, the step stops before the swap (nothing
    changed) or, after it, keeps the old table (see ``_keep_old_table``).
    Pausing the writes into the table makes none of that happen.

    Re-run safety: a leftover ``<name>__rebuild`` from a failed run is either
    a partial new copy (dropped and redone, the original is untouched) or,
    after the swap, the old table (dropped once ``name`` has the wanted shape
    and holds every row of it).
    """
    work = f"{name}__rebuild"
    cluster = _cluster()
    if cluster is not None:
        _refuse_sharded("rebuild_table", name)
    if _online():
        probe = f"{name}__shape"
        _run(f"DROP TABLE IF EXISTS {probe} SYNC")
        _run(_table_ddl(probe, columns, engine, order_by, partition_by, ttl))
        wanted = _shape(probe)
        _run(f"DROP TABLE IF EXISTS {probe} SYNC")
        if _shape(name) == wanted:
            if _shape(work) != ((), ()):
                _keep_old_table(name, work, copy, "an earlier run stopped after the swap")
            _run(f"DROP TABLE IF EXISTS {work} SYNC")
            return
    _run(f"DROP TABLE IF EXISTS {work} SYNC")
    _run(_table_ddl(work, columns, engine, order_by, partition_by, ttl, if_not_exists=False))
    if cluster is not None:
        # The copy reads this node's replica of the original: make it whole first.
        _sync_replica(name)
    # optimize_on_insert = 0: unmerged duplicates must survive the copy (and
    # the row count check below), as they would in the original table.
    copied: dict[str, int] = {}
    where = ""
    if _online():
        copied = _parts(name)
        # 24.8 cannot parse an empty IN ().
        where = f" WHERE _part IN ({_in_list(copied)})" if copied else " WHERE 0"
    _run(f"INSERT INTO {work} ({copy}) SELECT {copy} FROM {name}{where} SETTINGS optimize_on_insert = 0")
    if _online():
        # The copy and its count are on this node, the parts were listed here.
        new = op.get_bind().exec_driver_sql(f"SELECT count() FROM {work}").scalar()
        old = sum(copied.values())
        if old != new:
            raise RuntimeError(
                f"rebuild of {name} copied {new} of {old} rows (a merge changed its parts during the "
                f"copy); the original is untouched and {work} holds the partial copy: {_pause_writes(name)}"
            )
    if cluster is not None:
        # The copy reaches the other replicas by replication; the swap and the
        # drop of the original wait until every replica holds all of it.
        _sync_replica(work, everywhere=True)
    if _online():
        gone = [p for p in copied if p not in _active_parts(name)]
        if gone:
            raise RuntimeError(
                f"rebuild of {name}: part {gone[0]} was merged after it was copied, so rows written "
                f"meanwhile could not be told apart after the swap; nothing was swapped and the original "
                f"is untouched: {_pause_writes(name)}"
            )
    exchange_tables(name, work)
    if _online():
        _move_late_rows(name, work, copy, copied)
    _run(f"DROP TABLE IF EXISTS {work} SYNC")


def access(sql: str) -> None:
    """A CREATE ROLE / GRANT / REVOKE statement.

    Runs on a server; on the embedded engine (no access storage) it is checked
    with formatQuery and recorded as skipped by the ClickHouse implementation.
    """
    _run(sql)
