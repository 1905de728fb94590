"""The SQL text of each ClickHouse operation, placed on this run's cluster.

Pure: an operation's fields and a ``Placement`` in, statements out.  Cluster
mode is decided here from what the operation is, never by reading SQL back:
an operation on an object in a database takes ``ON CLUSTER`` unless that
database uses the ``Replicated`` engine (it replicates DDL itself); a
database-level statement always takes it; a MergeTree-family engine becomes
its Replicated counterpart, with the Keeper path and replica name of the
cluster settings (none inside a Replicated database, which supplies them).
``ON CLUSTER`` sits where the ClickHouse grammar puts it for each statement
(after the object name; at the end of EXCHANGE and RENAME).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from app.cluster import Cluster
from app.operations import definitions as d
from app.schema import MERGE_TREE_FAMILY

_ENGINE = re.compile(r"^\s*(\w+)\s*(?:\((.*)\))?\s*$", re.S)


@dataclass(frozen=True)
class Placement:
    """Where this run's statements go: one server (``cluster`` None) or every node of a cluster."""

    cluster: Cluster | None = None
    # The database an unqualified name belongs to (the URL's).
    default_database: str = "default"

    def _in_replicated_database(self, name: str) -> bool:
        database = name.split(".", 1)[0] if "." in name else self.default_database
        return self.cluster is not None and database in self.cluster.replicated_databases

    def on_cluster(self, name: str) -> str:
        """`` ON CLUSTER '<c>'`` for a statement on object ``name``, or nothing."""
        if self.cluster is None or self._in_replicated_database(name):
            return ""
        return " " + self.cluster.clause

    def on_cluster_always(self) -> str:
        """For what is not in a database (a Replicated database does not replicate its own creation)."""
        return "" if self.cluster is None else " " + self.cluster.clause

    def engine(self, engine: str, name: str) -> str:
        if self.cluster is None:
            return engine
        m = _ENGINE.match(engine)
        if not m or not MERGE_TREE_FAMILY.match(m.group(1)):
            return engine
        return self.cluster.replicated_engine(m.group(1), m.group(2),
                                              in_replicated_database=self._in_replicated_database(name))


def _column_lines(columns: str) -> list[str]:
    return [line.strip().rstrip(",") for line in columns.splitlines() if line.strip()]


def create_table(op: d.CreateTable | d.RebuildTable, at: Placement, *, name: str | None = None,
                 if_not_exists: bool = True) -> str:
    """CREATE TABLE; ``name`` overrides the operation's (a rebuild's work and probe tables)."""
    name = name or op.name
    body = ",\n    ".join(_column_lines(op.columns))
    sql = (f"CREATE TABLE {'IF NOT EXISTS ' if if_not_exists else ''}{name}{at.on_cluster(name)}\n"
           f"(\n    {body}\n)\nENGINE = {at.engine(op.engine, name)}")
    if op.partition_by:
        sql += f"\nPARTITION BY {op.partition_by}"
    if op.primary_key:
        sql += f"\nPRIMARY KEY {op.primary_key}"
    sql += f"\nORDER BY {op.order_by}"
    if op.ttl:
        sql += f"\nTTL {op.ttl}"
    return sql


def drop_table(name: str, at: Placement) -> str:
    return f"DROP TABLE IF EXISTS {name}{at.on_cluster(name)} SYNC"


def create_database(op: d.CreateDatabase, at: Placement) -> str:
    return f"CREATE DATABASE IF NOT EXISTS {op.name}{at.on_cluster_always()}"


def drop_database(op: d.DropDatabase, at: Placement) -> str:
    # SYNC: on ClickHouse 24.8 (chdb 2.1) an asynchronous drop of an Atomic
    # database could hang the next statement on the same names.
    return f"DROP DATABASE IF EXISTS {op.name}{at.on_cluster_always()} SYNC"


def alter(table: str, at: Placement, clause: str) -> str:
    """``ALTER TABLE`` of ``table``, ON CLUSTER where it is placed, then ``clause``."""
    return f"ALTER TABLE {table}{at.on_cluster(table)} {clause}"


def add_column(op: d.AddColumn, at: Placement) -> str:
    where = " FIRST" if op.first else (f" AFTER {op.after}" if op.after else "")
    return alter(op.table, at, f"ADD COLUMN IF NOT EXISTS {op.column}{where}")


def drop_column(op: d.DropColumn, at: Placement) -> str:
    return alter(op.table, at, f"DROP COLUMN IF EXISTS {op.column}")


def modify_column(op: d.ModifyColumn, at: Placement) -> str:
    return alter(op.table, at, f"MODIFY COLUMN {op.column}")


def remove_column_property(op: d.RemoveColumnProperty, at: Placement) -> str:
    return alter(op.table, at, f"MODIFY COLUMN {op.column} REMOVE {op.property}")


def modify_ttl(op: d.ModifyTtl, at: Placement) -> str:
    return alter(op.table, at, f"MODIFY TTL {op.ttl}")


def remove_ttl(op: d.RemoveTtl, at: Placement) -> str:
    return alter(op.table, at, "REMOVE TTL")


def create_view(op: d.CreateView, at: Placement) -> str:
    return f"CREATE OR REPLACE VIEW {op.name}{at.on_cluster(op.name)} AS\n{op.select.strip()}"


def drop_view(op: d.DropView, at: Placement) -> str:
    return f"DROP VIEW IF EXISTS {op.name}{at.on_cluster(op.name)} SYNC"


def create_materialized_view(op: d.CreateMaterializedView, at: Placement) -> str:
    if op.to:
        return (f"CREATE MATERIALIZED VIEW IF NOT EXISTS {op.name}{at.on_cluster(op.name)} TO {op.to}\n"
                f"AS\n{op.select.strip()}")
    sql = (f"CREATE MATERIALIZED VIEW IF NOT EXISTS {op.name}{at.on_cluster(op.name)}\n"
           f"ENGINE = {at.engine(op.engine, op.name)}")
    if op.partition_by:
        sql += f"\nPARTITION BY {op.partition_by}"
    return sql + f"\nORDER BY {op.order_by}\nAS\n{op.select.strip()}"


def set_view_security(op: d.SetViewSecurity, at: Placement, *, with_definer: bool) -> str:
    """``with_definer``: False on the embedded engine, which has no named users (see the operation)."""
    clause = f"SQL SECURITY {op.security}"
    if op.definer and with_definer:
        clause = f"DEFINER = {op.definer} {clause}"
    return alter(op.name, at, f"MODIFY {clause}")


def exchange_tables(a: str, b: str, at: Placement) -> str:
    return f"EXCHANGE TABLES {a} AND {b}{at.on_cluster(a)}"


def rename_table(old: str, new: str, at: Placement) -> str:
    return f"RENAME TABLE {old} TO {new}{at.on_cluster(old)}"


# Roles and grants are not in a database: always ON CLUSTER on a cluster.

def create_role(op: d.CreateRole, at: Placement) -> str:
    return f"CREATE ROLE IF NOT EXISTS {op.name}{at.on_cluster_always()}"


def drop_role(op: d.DropRole, at: Placement) -> str:
    return f"DROP ROLE IF EXISTS {op.name}{at.on_cluster_always()}"


def grant(op: d.Grant, at: Placement) -> str:
    return f"GRANT{at.on_cluster_always()} {op.privileges} ON {op.on} TO {op.to}"


def sync_replica(name: str, at: Placement, *, everywhere: bool = False) -> str:
    """Wait for a replica of ``name``: this node's, or (``everywhere``) every node's.

    Never inside a Replicated database's exemption: SYSTEM is not DDL."""
    where = f"{at.cluster.clause} " if everywhere and at.cluster is not None else ""
    return f"SYSTEM SYNC REPLICA {where}{name}"


def copy_rows_once(op: d.CopyRowsOnce) -> str:
    # An INSERT runs on the node we are connected to and reaches the other
    # replicas by replication: no ON CLUSTER.
    return (
        f"INSERT INTO {op.target} ({op.columns})\n"
        f"SELECT * FROM ({op.select.strip()})\n"
        f"WHERE (SELECT count() FROM {op.target}) = 0\n"
        # A ReplacingMergeTree target would otherwise collapse rows with one
        # key inside the insert itself: a backfill keeps every row.
        "SETTINGS optimize_on_insert = 0"
    )
