"""What reads what in a database: views and materialized views, the columns they read, the grants on them.

``read_dependencies(conn)`` asks ClickHouse rather than reading SQL text:
each view's and materialized view's SELECT goes through ``EXPLAIN QUERY
TREE``, where the analyzer has resolved every column to the table (or view)
it comes from (``COLUMN ... source_id: N`` → ``TABLE id: N, table_name:
db.t``).  ``system.tables.dependencies_table`` would not do: on 24.8 and
26.x it lists only a materialized view's source, never a plain view's.
Where the analyzer cannot resolve a query (a view already broken), the
parse alone (``EXPLAIN AST``) still names the tables, without columns.

``impact(deps, target)`` walks that graph from a table, view or column to
everything that depends on it, directly or transitively, with the path.
Past the first hop it follows whole objects: a view reading any column of a
dependent view counts (ClickHouse keeps no column lineage through views).
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from app.warehouse import MANAGED_DATABASES
from app.errors import UsageError
from app.schema import MATERIALIZED_VIEW, TABLE, VIEW
from app.snapshot import SYSTEM_DATABASES, take_snapshot
from app.sql import clickhouse_error_code, in_list

_TABLE_NODE = re.compile(r"^\s*TABLE id: (\d+),(?: alias: [^,]+,)? table_name: ([^,\s]+)")
_COLUMN_NODE = re.compile(r"^\s*COLUMN id: \d+, column_name: (.+?), result_type: .*, source_id: (\d+)\s*$")
_AST_TABLE = re.compile(r"^\s*TableIdentifier ([^\s(]+)")
# The server prints a materialized view written into a table as
# ``CREATE MATERIALIZED VIEW db.mv TO db.target (...)``: one shape, its own.
_MV_TO = re.compile(r"^CREATE MATERIALIZED VIEW \S+ TO (\S+)")
ACCESS_DENIED = 497


class UnknownObject(UsageError):
    """``impact`` or ``graph`` was given a name the database does not have."""


@dataclass(frozen=True)
class Grant:
    grantee: str  # "role zakaz_reader" or "user datalens_reader"
    access: str
    target: str  # db.table, or db.table.column
    database: str
    table: str
    column: str | None


@dataclass
class Dependencies:
    """Objects of the managed databases and who reads whom.

    ``reads[reader][source]`` is the set of the source's columns the reader
    reads, or None when only the table is known (EXPLAIN AST fallback).
    """

    kinds: dict[str, str] = field(default_factory=dict)
    columns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    reads: dict[str, dict[str, set[str] | None]] = field(default_factory=dict)
    writes: dict[str, str] = field(default_factory=dict)  # materialized view -> its TO table
    grants: list[Grant] | None = None  # None: not readable here (embedded engine, or no SHOW ROLES)
    grants_note: str = ""

    def readers_of(self, name: str) -> dict[str, set[str] | None]:
        return {reader: sources[name] for reader, sources in self.reads.items() if name in sources}

    def edges(self) -> list[tuple[str, str]]:
        """(source, reader) for every read, sorted."""
        return sorted((src, reader) for reader, sources in self.reads.items() for src in sources)


@dataclass(frozen=True)
class Impacted:
    kind: str  # "view", "materialized view", "grant"
    name: str  # the object, or the grant as "SELECT on bi.v to role zakaz_reader"
    path: tuple[str, ...]  # from the target to this one

    @property
    def direct(self) -> bool:
        return len(self.path) == 2

    def to_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "path": list(self.path), "direct": self.direct}


def read_dependencies(conn, databases=MANAGED_DATABASES) -> Dependencies:
    """The dependency graph of ``databases`` on ``conn``: one snapshot, one EXPLAIN per view, the grants."""
    snap = take_snapshot(conn, databases)
    deps = Dependencies()
    for name, obj in snap.schema.items():
        deps.kinds[name] = obj.kind
        deps.columns[name] = tuple(c.name for c in obj.columns)
    for name, query in sorted(snap.queries.items()):
        deps.reads[name] = query_sources(conn, query, name.split(".", 1)[0])
        target = materialized_view_target(snap.creates.get(name, ""))
        if deps.kinds[name] == MATERIALIZED_VIEW and target:
            deps.writes[name] = target
    deps.grants, deps.grants_note = _grants(conn, databases)
    return deps


def materialized_view_target(create: str) -> str | None:
    """The table a materialized view writes TO, from its CREATE as the server prints it; None if it has storage."""
    m = _MV_TO.match(create or "")
    return m.group(1).replace("`", "") if m else None


def view_reads(conn, queries: dict[str, str]) -> dict[str, dict[str, set[str] | None]]:
    """Per view (``{name: SELECT}``), what it reads of each object: the planner's ``view_reads``."""
    return {name: query_sources(conn, query, name.split(".", 1)[0]) for name, query in sorted(queries.items())}


def query_sources(conn, query: str, database: str) -> dict[str, set[str] | None]:
    """What ``query`` (a view's SELECT, run in ``database``) reads: {object: columns, or None if unknown}."""
    try:
        lines = [line for (line,) in conn.exec_driver_sql("EXPLAIN QUERY TREE " + query).all()]
    except Exception:
        # The analyzer resolves names, so a broken view fails here; the
        # parse still says which tables it names.
        lines = None
    if lines is not None:
        tables = {m.group(1): m.group(2).replace("`", "") for line in lines if (m := _TABLE_NODE.match(line))}
        tables = {i: t for i, t in tables.items() if not _is_system(t)}
        found: dict[str, set[str] | None] = {t: set() for t in tables.values()}
        for line in lines:
            m = _COLUMN_NODE.match(line)
            if m and m.group(2) in tables:
                found[tables[m.group(2)]].add(m.group(1))
        return found
    names = [m.group(1).replace("`", "") for (line,) in conn.exec_driver_sql("EXPLAIN AST " + query).all()
             if (m := _AST_TABLE.match(line))]
    # A bare name may be a CTE: only names with a database, or this view's own, are objects.
    return {full: None for n in names if not _is_system(full := n if "." in n else f"{database}.{n}")}


def _is_system(name: str) -> bool:
    # A view without FROM reads system.one: no dependency of the warehouse.
    return name.split(".", 1)[0] in SYSTEM_DATABASES


def _grants(conn, databases) -> tuple[list[Grant] | None, str]:
    sql = ("SELECT user_name, role_name, access_type, database, table, column FROM system.grants "
           f"WHERE database IN ({in_list(databases)}) AND table IS NOT NULL AND table != '' "
           "AND NOT is_partial_revoke")
    try:
        rows = conn.exec_driver_sql(sql).all()
    except Exception as exc:
        if clickhouse_error_code(exc) != ACCESS_DENIED:
            raise
        # chDB has no access storage (and refuses system.grants); a server
        # user without SHOW ROLES gets the same answer.
        return None, "grants not read: this connection may not read system.grants (embedded, or no SHOW ROLES grant)"
    grants = []
    for user, role, access, database, table, column in rows:
        grantee = f"role {role}" if role else f"user {user}"
        target = f"{database}.{table}" + (f".{column}" if column else "")
        grants.append(Grant(grantee, str(access), target, database, table, column or None))
    return sorted(set(grants), key=lambda g: (g.target, g.grantee, g.access)), ""


# --- impact -------------------------------------------------------------------------------

def resolve(deps: Dependencies, target: str) -> tuple[str, str | None]:
    """``(object, column or None)`` for ``db.object`` or ``db.object.column``; UnknownObject otherwise."""
    if target in deps.kinds:
        return target, None
    obj, _, column = target.rpartition(".")
    if obj in deps.kinds:
        if column in deps.columns.get(obj, ()):
            return obj, column
        close = difflib.get_close_matches(column, deps.columns.get(obj, ()), n=3)
        raise UnknownObject(f"{obj} has no column {column!r}" + _did_you_mean([f"{obj}.{c}" for c in close]))
    close = difflib.get_close_matches(target, list(deps.kinds), n=3, cutoff=0.6) or difflib.get_close_matches(
        target, [f"{o}.{c}" for o, cols in deps.columns.items() for c in cols], n=3, cutoff=0.6)
    where = ", ".join(sorted({n.split(".", 1)[0] for n in deps.kinds})) or "the managed databases (none found)"
    raise UnknownObject(f"no object {target!r} in {where}" + _did_you_mean(close)
                        + ("" if close else "; write db.object or db.object.column"))


def _did_you_mean(names: list[str]) -> str:
    return f"; did you mean {' or '.join(names)}?" if names else ""


def impact(deps: Dependencies, target: str) -> list[Impacted]:
    """Every view, materialized view and grant depending on ``target``, breadth first (shortest path)."""
    obj, column = resolve(deps, target)
    found: list[Impacted] = []
    seen = {obj}
    frontier = []
    for reader, cols in sorted(deps.readers_of(obj).items()):
        if column is None or cols is None or column in cols:
            frontier.append((reader, (target, reader)))
    for g in deps.grants or []:
        if g.database + "." + g.table == obj and (column is None or g.column in (None, column)):
            found.append(Impacted("grant", f"{g.access} on {g.target} to {g.grantee}", (target, "grant")))
    while frontier:
        nxt = []
        for name, path in frontier:
            if name in seen:
                continue
            seen.add(name)
            kind = deps.kinds.get(name, VIEW)
            found.append(Impacted(kind.replace("_", " "), name, path))
            for g in deps.grants or []:
                if f"{g.database}.{g.table}" == name:
                    found.append(Impacted("grant", f"{g.access} on {g.target} to {g.grantee}", path + ("grant",)))
            if name in deps.writes:
                nxt.append((deps.writes[name], path + (deps.writes[name],)))
            nxt += [(reader, path + (reader,)) for reader in sorted(deps.readers_of(name))]
        frontier = [(n, p) for n, p in nxt if deps.kinds.get(n) != TABLE or n in deps.writes.values()]
    return found
