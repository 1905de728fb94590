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

from alembic import op
from sqlalchemy import text


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
    _run(_table_ddl(name, columns, engine, order_by, partition_by, ttl))


def drop_table(name: str) -> None:
    _run(f"DROP TABLE IF EXISTS {name} SYNC")


def add_column(table: str, column: str, *, after: str | None = None, first: bool = False) -> None:
    where = " FIRST" if first else (f" AFTER {after}" if after else "")
    _run(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column}{where}")


def drop_column(table: str, column: str) -> None:
    _run(f"ALTER TABLE {table} DROP COLUMN IF EXISTS {column}")


def modify_column(table: str, column: str) -> None:
    """MODIFY COLUMN (re-runnable as written: modifying to the same type is a no-op)."""
    _run(f"ALTER TABLE {table} MODIFY COLUMN {column}")


def create_view(name: str, select: str) -> None:
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
    _run(f"DROP VIEW IF EXISTS {name} SYNC")


def create_materialized_view(name: str, select: str, *, engine: str, order_by: str,
                             partition_by: str | None = None) -> None:
    """A materialized view with its own (inner) storage."""
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


def rebuild_table(name: str, columns: str, *, engine: str, order_by: str,
                  partition_by: str | None = None, ttl: str | None = None,
                  copy: str) -> None:
    """Change what ALTER cannot (partition key, engine): new table, copy, swap.

    Every row is kept: ``copy`` lists the columns carried over (new columns
    get their DEFAULT), and the copy is counted before the swap.

    Re-run safety: a leftover ``<name>__rebuild`` from a failed run is either
    a partial new copy (dropped and redone, the original is untouched) or,
    after the swap, the old table (dropped once ``name`` has the wanted shape).
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
            _run(f"DROP TABLE IF EXISTS {work} SYNC")
            return
    _run(f"DROP TABLE IF EXISTS {work} SYNC")
    _run(_table_ddl(work, columns, engine, order_by, partition_by, ttl, if_not_exists=False))
    if cluster is not None:
        # The copy reads this node's replica of the original: make it whole first.
        _sync_replica(name)
    # optimize_on_insert = 0: unmerged duplicates must survive the copy (and
    # the row count check below), as they would in the original table.
    _run(f"INSERT INTO {work} ({copy}) SELECT {copy} FROM {name} SETTINGS optimize_on_insert = 0")
    if _online():
        # Both counts read this node, which holds the whole original (synced
        # above on a cluster) and the whole copy (inserted here).
        conn = op.get_bind()
        old = conn.exec_driver_sql(f"SELECT count() FROM {name}").scalar()
        new = conn.exec_driver_sql(f"SELECT count() FROM {work}").scalar()
        if old != new:
            raise RuntimeError(
                f"rebuild of {name} copied {new} of {old} rows; the original is untouched "
                f"and {work} holds the partial copy: run the upgrade again"
            )
    if cluster is not None:
        # The copy reaches the other replicas by replication; the swap and the
        # drop of the original wait until every replica holds all of it.
        _sync_replica(work, everywhere=True)
    exchange_tables(name, work)
    _run(f"DROP TABLE IF EXISTS {work} SYNC")


def access(sql: str) -> None:
    """A CREATE ROLE / GRANT / REVOKE statement.

    Runs on a server; on the embedded engine (no access storage) it is checked
    with formatQuery and recorded as skipped by the ClickHouse implementation.
    """
    _run(sql)
