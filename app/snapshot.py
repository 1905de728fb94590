"""One snapshot of a live database's objects, in two queries whatever their number.

Every tool that needs to know what a database holds reads it here: verify
(against the canonical schema), the drill and lint (before and after each
step), adopt (the live schema, and the schema at every revision) and the
tests.  The result is a ``Snapshot``: the ``app.schema.Schema`` model
(columns with type, DEFAULT, CODEC and COMMENT, engine, keys, TTL, how a view runs) plus what
the model leaves out but some tool compares: the databases, each object's
uuid, CREATE statement and view query, and each table's row count.

The migration tool's own objects (the ledger, its ``alembic_version`` view,
the deploy lock) are not the warehouse's and never appear in a snapshot.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Iterable

from app.warehouse import MANAGED_DATABASES
from app.schema import (
    BOOKKEEPING_NAMES, MATERIALIZED_VIEW, TABLE, VIEW, Column, DbObject, Schema, implicit_primary_key,
    logical_engine, normalise_codec, normalise_expression, normalise_key, normalise_type, split_engine_full,
    view_security, without_sql_security,
)
from app.sql import in_list

# Databases of the server itself: never the warehouse's, never a revision's.
SYSTEM_DATABASES = ("system", "INFORMATION_SCHEMA", "information_schema")
_INNER_PREFIXES = (".inner_id.", ".inner.")

# The normalisers scan text character by character, and a drill or lint
# snapshots the same definitions dozens of times: each text is scanned once.
_type = functools.lru_cache(maxsize=8192)(normalise_type)
_expression = functools.lru_cache(maxsize=8192)(normalise_expression)
_key = functools.lru_cache(maxsize=8192)(normalise_key)
_engine_clauses = functools.lru_cache(maxsize=8192)(split_engine_full)
_security = functools.lru_cache(maxsize=8192)(view_security)
_codec = functools.lru_cache(maxsize=8192)(normalise_codec)
_primary_key = functools.lru_cache(maxsize=8192)(implicit_primary_key)


@dataclass(frozen=True)
class Snapshot:
    schema: Schema
    databases: frozenset[str]
    # Per object of ``schema``: its uuid, and its CREATE statement as the
    # server prints it (SQL SECURITY clause included).
    uuids: dict[str, str] = field(default_factory=dict)
    creates: dict[str, str] = field(default_factory=dict)
    # Views and materialized views: their SELECT as the server prints it
    # (formatted from the parsed query, so independent of how it was written).
    queries: dict[str, str] = field(default_factory=dict)
    # Tables: rows as system.tables counts them; None for engines without a cheap count.
    total_rows: dict[str, int | None] = field(default_factory=dict)
    # Taken with ``parts`` only: each table's active data parts (by name),
    # and per (table, column) how many of them store the column.
    parts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    stored: dict[tuple[str, str], int] = field(default_factory=dict)

    @functools.cached_property
    def definitions(self) -> dict[str, str]:
        """Per object: a view's query, else its CREATE statement, without the SQL SECURITY clause.

        How a view runs is compared as the schema's ``security``, where a view
        created without the clause equals one ALTERed back to the default.
        """
        return {name: without_sql_security(self.queries.get(name, "") if obj.kind == VIEW
                                           else self.creates.get(name, ""))
                for name, obj in self.schema.items()}

    def tables(self) -> list[str]:
        """The base tables (objects holding rows of their own, views' storage aside)."""
        return [name for name, obj in self.schema.items() if obj.kind == TABLE]


def is_bookkeeping(name: str) -> bool:
    """The ledger, its view and the deploy lock, in whatever database they live."""
    return name.split(".", 1)[-1] in BOOKKEEPING_NAMES


def _where(databases: Iterable[str] | None, column: str) -> str:
    if databases is None:
        return f"{column} NOT IN ({in_list(SYSTEM_DATABASES)})"
    return f"{column} IN ({in_list(databases)})"


def _kind(engine: str) -> str:
    if engine == "View":
        return VIEW
    if engine == "MaterializedView":
        return MATERIALIZED_VIEW
    return TABLE


def take_snapshot(conn, databases: Iterable[str] | None = None, *, parts: bool = False) -> Snapshot:
    """Every table, view and materialized view of ``databases`` (default: every non-system one).

    Two queries whatever the number of objects: system.tables with
    system.databases (a database without objects is still part of what a
    step must restore), then system.columns; with ``parts``, two more for the
    active data parts of each table and the columns each part stores
    (``Snapshot.parts``, ``Snapshot.stored``).
    The inner storage table of a materialized view is not an object of its
    own: its engine and keys are reported on the view.
    """
    databases = None if databases is None else list(databases)
    if databases is not None and not databases:
        return Snapshot({}, frozenset())
    in_db, in_name = _where(databases, "database"), _where(databases, "name")
    # The databases ride along with the tables (an empty database has no
    # table row): one round trip fewer, and as cheap as two queries.
    queries = {
        2: "SELECT database, name, toString(uuid), engine, engine_full, sorting_key, partition_key, primary_key, "
           "if(engine IN ('View', 'MaterializedView'), as_select, ''), "
           "if(startsWith(name, '.inner'), '', create_table_query), isNull(total_rows), ifNull(total_rows, 0) "
           f"FROM system.tables WHERE {in_db} "
           "UNION ALL SELECT name, '', '', '', '', '', '', '', '', '', toUInt8(0), toUInt64(0) "
           f"FROM system.databases WHERE {in_name}",
        3: "SELECT database, table, name, type, default_kind, default_expression, position, "
           f"compression_codec, comment FROM system.columns WHERE {in_db}",
    }
    rows = {tag: conn.exec_driver_sql(sql).all() for tag, sql in queries.items()}
    snap = _assemble(rows)
    if parts:
        _read_parts(conn, in_db, snap.parts, snap.stored)
    return snap


def with_fresh_parts(conn, snap: Snapshot, databases: Iterable[str]) -> Snapshot:
    """``snap`` with the data parts read again (after rows were written): two small queries."""
    fresh = dataclasses.replace(snap, parts={}, stored={})
    _read_parts(conn, _where(list(databases), "database"), fresh.parts, fresh.stored)
    return fresh


def _read_parts(conn, in_db: str, parts: dict, stored: dict) -> None:
    found: dict[str, list[str]] = {}
    for database, table, part in conn.exec_driver_sql(
            f"SELECT database, table, name FROM system.parts WHERE active AND {in_db}").all():
        found.setdefault(f"{database}.{table}", []).append(part)
    parts.update({name: tuple(sorted(names)) for name, names in found.items()})
    for database, table, column in conn.exec_driver_sql(
            f"SELECT database, table, column FROM system.parts_columns WHERE active AND {in_db}").all():
        stored[(f"{database}.{table}", column)] = stored.get((f"{database}.{table}", column), 0) + 1


def _assemble(rows: dict[int, list]) -> Snapshot:
    columns_of: dict[str, list[tuple[int, Column]]] = {}
    for database, table, name, type_, default_kind, default_expression, position, codec, comment in rows[3]:
        default = _expression(default_expression)
        if default_kind and default_kind != "DEFAULT":
            default = f"{default_kind} {default}".strip()
        type_ = _type(type_)
        columns_of.setdefault(f"{database}.{table}", []).append(
            (position, Column(name, type_, default, _codec(codec, type_), comment)))

    dbs = frozenset(r[0] for r in rows[2] if not r[1])
    tables = {f"{r[0]}.{r[1]}": r for r in rows[2] if r[1]}
    snap = Snapshot({}, dbs)
    for full_name in sorted(tables):
        database, name, uuid, engine, _, _, _, _, query, create, no_count, count = tables[full_name]
        if name.startswith(_INNER_PREFIXES) or is_bookkeeping(full_name):
            continue
        kind = _kind(engine)
        storage = tables[full_name]
        if kind == VIEW:
            storage = None
        elif kind == MATERIALIZED_VIEW:
            # Atomic databases name the storage after the view's uuid, Ordinary
            # ones (old servers) after the view's name; a view written TO an
            # existing table has neither and no storage of its own.
            storage = tables.get(f"{database}..inner_id.{uuid}") or tables.get(f"{database}..inner.{name}")
        engine_full, sorting_key, partition_key, primary_key = storage[4:8] if storage else ("", "", "", "")
        clauses = _engine_clauses(engine_full)
        snap.schema[full_name] = DbObject(
            name=full_name,
            kind=kind,
            columns=tuple(c for _, c in sorted(columns_of.get(full_name, ()), key=lambda pc: pc[0])),
            # A cluster deploy makes engines Replicated: same table, compared as such.
            engine=logical_engine(clauses["ENGINE"]),
            order_by=_key(sorting_key),
            partition_by=_key(partition_key),
            primary_key=_primary_key(primary_key, sorting_key),
            # system.tables has no TTL column: engine_full is the only source.
            ttl=_expression(clauses.get("TTL", "")),
            security=_security(create, kind),
        )
        snap.uuids[full_name] = uuid
        snap.creates[full_name] = create
        if kind != TABLE:
            snap.queries[full_name] = query
        else:
            snap.total_rows[full_name] = None if no_count else int(count)
    return snap


def snapshot_schema(conn, databases: Iterable[str] = MANAGED_DATABASES) -> Schema:
    """The ``Schema`` of ``databases``, normalised (``take_snapshot(...).schema``)."""
    return take_snapshot(conn, databases).schema
