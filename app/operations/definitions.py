"""The ClickHouse operations as data: what each one changes, before any SQL.

Each is an Alembic ``MigrateOperation`` registered on ``Operations``, so a
revision writes ``op.create_view(...)``; app.operations.implementations
renders and runs it, and the ClickHouse implementation keeps the objects a
step ran (``impl.operations``) for lint and cluster code to read.  Names are
``database.object``; every operation is safe to re-run (ClickHouse DDL is not
transactional: a revision that failed half-way is resumed by running it
again).

Names: alembic's own ``op.create_table``, ``op.drop_table``,
``op.add_column`` and ``op.drop_column`` stay alembic's (SQLAlchemy
``Column`` objects; tests and autogenerate use them, and registering ours
under those names would replace them for every dialect).  The ClickHouse
versions take SQL text and are re-runnable, and are named for the statement
they emit: ``create_table_if_not_exists``, ``drop_table_if_exists``,
``add_column_if_not_exists``, ``drop_column_if_exists``.  Telling the two
apart by argument type would work for the first two but not for the drops
(both take strings), and one rule for the four reads better than two.
Names alembic does not use keep their plain form (``create_view``,
``rebuild_table``, ...).
"""
from __future__ import annotations

from dataclasses import dataclass

from alembic.operations import MigrateOperation, Operations


class ClickHouseOperation(MigrateOperation):
    """Base of the operations below: ``describe()`` is their one-line summary."""

    def describe(self) -> str:
        raise NotImplementedError


@Operations.register_operation("create_database")
@dataclass
class CreateDatabase(ClickHouseOperation):
    name: str

    @classmethod
    def create_database(cls, operations, name: str) -> None:
        """CREATE DATABASE IF NOT EXISTS."""
        return operations.invoke(cls(name))

    def describe(self) -> str:
        return f"create database {self.name}"


@Operations.register_operation("drop_database")
@dataclass
class DropDatabase(ClickHouseOperation):
    name: str

    @classmethod
    def drop_database(cls, operations, name: str) -> None:
        """Drop a database that holds nothing but what its revision created.

        By the time a downgrade drops a database, the later revisions'
        downgrades have dropped their objects: anything else still in it (an
        integration's tables and views) was never the chain's to delete, and
        is refused without ``--allow-data-loss`` even when empty.
        """
        return operations.invoke(cls(name))

    def describe(self) -> str:
        return f"drop database {self.name}"


@Operations.register_operation("create_table_if_not_exists")
@dataclass
class CreateTable(ClickHouseOperation):
    name: str
    columns: str
    engine: str
    order_by: str
    partition_by: str | None = None
    ttl: str | None = None
    primary_key: str | None = None

    @classmethod
    def create_table_if_not_exists(cls, operations, name: str, columns: str, *, engine: str, order_by: str,
                                   partition_by: str | None = None, ttl: str | None = None,
                                   primary_key: str | None = None) -> None:
        """CREATE TABLE IF NOT EXISTS; ``columns`` is one column definition per line.

        ``primary_key``: only when it is not the ORDER BY (a prefix of it).
        In cluster mode a MergeTree-family ``engine`` becomes Replicated."""
        return operations.invoke(cls(name, columns, engine, order_by, partition_by, ttl, primary_key))

    def describe(self) -> str:
        return f"create table {self.name} ({self.engine})"


@Operations.register_operation("drop_table_if_exists")
@dataclass
class DropTable(ClickHouseOperation):
    name: str

    @classmethod
    def drop_table_if_exists(cls, operations, name: str) -> None:
        """DROP TABLE IF EXISTS; refused while it holds rows this run may not delete."""
        return operations.invoke(cls(name))

    def describe(self) -> str:
        return f"drop table {self.name}"


@Operations.register_operation("add_column_if_not_exists")
@dataclass
class AddColumn(ClickHouseOperation):
    table: str
    column: str
    after: str | None = None
    first: bool = False

    @classmethod
    def add_column_if_not_exists(cls, operations, table: str, column: str, *, after: str | None = None,
                                 first: bool = False) -> None:
        """ALTER TABLE ADD COLUMN IF NOT EXISTS; ``column`` is its definition (``name Type DEFAULT ...``)."""
        return operations.invoke(cls(table, column, after, first))

    def describe(self) -> str:
        return f"add column {self.table}.{self.column}"


@Operations.register_operation("drop_column_if_exists")
@dataclass
class DropColumn(ClickHouseOperation):
    table: str
    column: str

    @classmethod
    def drop_column_if_exists(cls, operations, table: str, column: str) -> None:
        """ALTER TABLE DROP COLUMN IF EXISTS; refused while it holds values this run may not delete."""
        return operations.invoke(cls(table, column))

    def describe(self) -> str:
        return f"drop column {self.table}.{self.column}"


@Operations.register_operation("modify_column")
@dataclass
class ModifyColumn(ClickHouseOperation):
    table: str
    column: str

    @classmethod
    def modify_column(cls, operations, table: str, column: str) -> None:
        """MODIFY COLUMN (re-runnable as written: modifying to the same type is a no-op)."""
        return operations.invoke(cls(table, column))

    def describe(self) -> str:
        return f"modify column {self.table}: {self.column}"


@Operations.register_operation("remove_column_property")
@dataclass
class RemoveColumnProperty(ClickHouseOperation):
    table: str
    column: str
    property: str  # "CODEC" or "COMMENT"

    @classmethod
    def remove_column_property(cls, operations, table: str, column: str, property: str) -> None:
        """MODIFY COLUMN ``column`` REMOVE ``property`` (``CODEC``, ``COMMENT``).

        ClickHouse refuses to remove what a column does not have, so a re-run
        (online) skips a property already gone."""
        return operations.invoke(cls(table, column, property.upper()))

    def describe(self) -> str:
        return f"remove {self.property} of {self.table}.{self.column}"


@Operations.register_operation("modify_ttl")
@dataclass
class ModifyTtl(ClickHouseOperation):
    table: str
    ttl: str

    @classmethod
    def modify_ttl(cls, operations, table: str, ttl: str) -> None:
        """MODIFY TTL: the table TTL ``ttl`` (an expression with its optional action), re-runnable.

        Rows the new TTL has already expired are deleted as parts are
        rewritten: that is what a TTL is for."""
        return operations.invoke(cls(table, ttl))

    def describe(self) -> str:
        return f"set TTL of {self.table} to {self.ttl}"


@Operations.register_operation("remove_ttl")
@dataclass
class RemoveTtl(ClickHouseOperation):
    table: str

    @classmethod
    def remove_ttl(cls, operations, table: str) -> None:
        """REMOVE TTL; ClickHouse refuses it on a table without one, so a re-run (online) skips it."""
        return operations.invoke(cls(table))

    def describe(self) -> str:
        return f"remove the TTL of {self.table}"


@Operations.register_operation("create_view")
@dataclass
class CreateView(ClickHouseOperation):
    name: str
    select: str

    @classmethod
    def create_view(cls, operations, name: str, select: str) -> None:
        """CREATE OR REPLACE VIEW ``name`` AS ``select``."""
        return operations.invoke(cls(name, select))

    def describe(self) -> str:
        return f"create view {self.name}"


@Operations.register_operation("drop_view")
@dataclass
class DropView(ClickHouseOperation):
    name: str

    @classmethod
    def drop_view(cls, operations, name: str) -> None:
        """DROP VIEW IF EXISTS (a materialized view too: its own storage holds rows, guarded like a table's)."""
        return operations.invoke(cls(name))

    def describe(self) -> str:
        return f"drop view {self.name}"


@Operations.register_operation("create_materialized_view")
@dataclass
class CreateMaterializedView(ClickHouseOperation):
    name: str
    select: str
    engine: str | None = None
    order_by: str | None = None
    partition_by: str | None = None
    to: str | None = None

    @classmethod
    def create_materialized_view(cls, operations, name: str, select: str, *, engine: str | None = None,
                                 order_by: str | None = None, partition_by: str | None = None,
                                 to: str | None = None) -> None:
        """A materialized view with its own (inner) storage, or (``to``) written into an existing table."""
        return operations.invoke(cls(name, select, engine, order_by, partition_by, to))

    def describe(self) -> str:
        return f"create materialized view {self.name} ({f'TO {self.to}' if self.to else self.engine})"


@Operations.register_operation("set_view_security")
@dataclass
class SetViewSecurity(ClickHouseOperation):
    name: str
    security: str
    definer: str | None = None
    server_only: bool = False

    @classmethod
    def set_view_security(cls, operations, name: str, security: str, *, definer: str | None = None,
                          server_only: bool = False) -> None:
        """How a view runs: ``DEFINER`` (with ``definer``'s rights), ``INVOKER`` (its reader's) or ``NONE``.

        Re-runnable: setting what is already set changes nothing.  chDB has no
        access storage and so no named users: there a ``DEFINER = name``
        clause fails (code 192) and the view runs as its only user,
        ``default``, so the clause is left out on the embedded engine
        (offline SQL, written for a server, keeps it).  ``server_only``: on
        the embedded engine the statement is checked and recorded as skipped,
        like an access statement (chDB refuses ``NONE`` for want of the ALLOW
        SQL SECURITY NONE privilege).
        """
        return operations.invoke(cls(name, security, definer, server_only))

    def describe(self) -> str:
        return f"set {self.name} SQL SECURITY {self.security}" + (f" as {self.definer}" if self.definer else "")


@Operations.register_operation("exchange_tables")
@dataclass
class ExchangeTables(ClickHouseOperation):
    a: str
    b: str

    @classmethod
    def exchange_tables(cls, operations, a: str, b: str) -> None:
        """EXCHANGE TABLES ``a`` AND ``b`` (atomic: each name then holds the other's table)."""
        return operations.invoke(cls(a, b))

    def describe(self) -> str:
        return f"exchange tables {self.a} and {self.b}"


@Operations.register_operation("copy_rows_once")
@dataclass
class CopyRowsOnce(ClickHouseOperation):
    target: str
    columns: str
    select: str

    @classmethod
    def copy_rows_once(cls, operations, target: str, columns: str, select: str) -> None:
        """INSERT ... SELECT that only runs while ``target`` is empty (a backfill safe to re-run).

        On a cluster it first waits for this node's replica of ``target``
        (the emptiness guard reads it), and is refused on a sharded cluster
        (one connection reaches one shard)."""
        return operations.invoke(cls(target, columns, select))

    def describe(self) -> str:
        return f"copy rows into {self.target} ({self.columns}) once"


@Operations.register_operation("rebuild_table")
@dataclass
class RebuildTable(ClickHouseOperation):
    name: str
    columns: str
    engine: str
    order_by: str
    copy: str
    partition_by: str | None = None
    ttl: str | None = None
    primary_key: str | None = None

    @classmethod
    def rebuild_table(cls, operations, name: str, columns: str, *, engine: str, order_by: str,
                      partition_by: str | None = None, ttl: str | None = None, copy: str,
                      primary_key: str | None = None) -> None:
        """Change what ALTER cannot (partition key, engine): new table, copy, swap.

        Every row is kept: ``copy`` lists the columns carried over (new
        columns get their DEFAULT); rows written during the rebuild are moved
        too, or the step stops and says what to do (app.operations.rebuild).
        """
        return operations.invoke(cls(name, columns, engine, order_by, copy, partition_by, ttl, primary_key))

    def describe(self) -> str:
        return f"rebuild table {self.name} ({self.engine}, keeping {self.copy})"


@Operations.register_operation("create_role")
@dataclass
class CreateRole(ClickHouseOperation):
    name: str

    @classmethod
    def create_role(cls, operations, name: str) -> None:
        """CREATE ROLE IF NOT EXISTS (checked and recorded as skipped on the embedded engine)."""
        return operations.invoke(cls(name))

    def describe(self) -> str:
        return f"create role {self.name}"


@Operations.register_operation("drop_role")
@dataclass
class DropRole(ClickHouseOperation):
    name: str

    @classmethod
    def drop_role(cls, operations, name: str) -> None:
        """DROP ROLE IF EXISTS, which removes its grants."""
        return operations.invoke(cls(name))

    def describe(self) -> str:
        return f"drop role {self.name}"


@Operations.register_operation("grant")
@dataclass
class Grant(ClickHouseOperation):
    privileges: str
    on: str
    to: str

    @classmethod
    def grant(cls, operations, privileges: str, on: str, *, to: str) -> None:
        """GRANT ``privileges`` (``"INSERT, SELECT"``) ON ``on`` (``db.table``, ``db.*``) TO ``to``; re-runnable."""
        return operations.invoke(cls(privileges, on, to))

    def describe(self) -> str:
        return f"grant {self.privileges} on {self.on} to {self.to}"


@Operations.register_operation("access")
@dataclass
class Access(ClickHouseOperation):
    sql: str

    @classmethod
    def access(cls, operations, sql: str) -> None:
        """An access statement no named operation covers (CREATE USER, REVOKE ...), as written.

        Runs on a server; on the embedded engine (no access storage) it is
        checked with formatQuery and recorded as skipped.  Its text is the
        operation (access statements have many forms), so in cluster mode
        app.cluster's rewriter, the guard of raw SQL, places ON CLUSTER."""
        return operations.invoke(cls(sql))

    def describe(self) -> str:
        return " ".join(self.sql.split())


@Operations.register_operation("run")
@dataclass
class Run(ClickHouseOperation):
    sql: str

    @classmethod
    def run(cls, operations, sql: str) -> None:
        """A statement no named operation covers; write it re-runnable.

        In cluster mode app.cluster's rewriter places ON CLUSTER in it, and
        refuses DDL whose place it does not know."""
        return operations.invoke(cls(sql))

    def describe(self) -> str:
        return "run " + " ".join(self.sql.split())[:80]


ALL = (CreateDatabase, DropDatabase, CreateTable, DropTable, AddColumn, DropColumn, ModifyColumn,
       RemoveColumnProperty, ModifyTtl, RemoveTtl, CreateView,
       DropView, CreateMaterializedView, SetViewSecurity, ExchangeTables, CopyRowsOnce, RebuildTable,
       CreateRole, DropRole, Grant, Access, Run)
