"""The insert-only version ledger.

One row per event of a step (``started``, then ``applied`` or ``failed``;
``stamped``, ``repaired`` for steps without DDL).  Rows are never updated or
deleted: on ClickHouse those are mutations (asynchronous on a server) and a
ReplacingMergeTree would collapse several heads on merge.  ``alembic_version``
is a view returning the head set of the latest completed step, so alembic and
other tools read the version as usual.
"""
from __future__ import annotations

import datetime as dt
import functools
import json
import getpass
import socket
from dataclasses import dataclass, field
from typing import Any

from app import cluster as cluster_mode
from app import insert_order
from app.warehouse import MANAGED_DATABASES
from app.errors import UsageError
from app.lock import LOCK_TABLE, lock_ddl
from app.sql import quote_literal

LEDGER_TABLE = "zakaz_schema_ledger"
VERSION_VIEW = "alembic_version"
# Statuses after which the head set in the row is the database's version.
COMPLETED = ("applied", "stamped", "repaired")

COLUMNS = {
    "seq": "UInt64",
    "step_id": "String",
    "revision": "String",
    "direction": "LowCardinality(String)",
    "status": "LowCardinality(String)",
    "heads": "Array(String)",
    "message": "String",
    "started_at": "DateTime64(3)",
    "finished_at": "DateTime64(3)",
    "duration_ms": "UInt64",
    "statements": "UInt32",
    "failed_statement": "UInt32",
    "error_code": "Int32",
    "error": "String",
    "skipped": "Array(String)",
    "checksum": "String",
    "host": "String",
    "os_user": "String",
    "tool_version": "String",
}


class LedgerError(UsageError):
    """The ledger is missing, altered or unreadable."""


def ledger_ddl(schema: str, engine: str = "MergeTree",
               cluster: "cluster_mode.Cluster | None" = None) -> list[str]:
    """The ledger table and its view; on a cluster, ON CLUSTER and replicated
    across every node (app.cluster), so each one reads the same history."""
    cols = ",\n    ".join(f"{name} {type_}" for name, type_ in COLUMNS.items())
    statements = [
        f"CREATE TABLE IF NOT EXISTS {schema}.{LEDGER_TABLE}\n(\n    {cols}\n)\n"
        f"ENGINE = {engine}\nORDER BY seq",
        f"CREATE OR REPLACE VIEW {schema}.{VERSION_VIEW} AS\n{version_select(schema)}",
    ]
    return [cluster_mode.rewrite(sql, cluster, default_database=schema, ledger=True) for sql in statements]


def version_select(schema: str) -> str:
    """The query of the ``alembic_version`` view."""
    # argMax over the completed rows: the head set of the latest step.
    # An empty ledger gives an empty array, so no row: "no version".
    return (f"SELECT arrayJoin(argMax(heads, seq)) AS version_num\n"
            f"FROM {schema}.{LEDGER_TABLE}\n"
            f"WHERE status IN ({', '.join(quote_literal(s) for s in COMPLETED)})")



def ensure(conn, schema: str, cluster: "cluster_mode.Cluster | None" = None, *, lock: bool = False) -> None:
    """Create the ledger and its view if missing; refuse a ledger altered by hand.

    ``lock``: the deploy lock's table (app.lock) too.

    A missing ledger beside a populated warehouse means it was dropped by
    hand (or the database was built by the old SQL files): creating an empty
    one would make the chain run again over live tables, so refuse.  A
    ledger that does not match the mode (a local one in cluster mode, a
    replicated one without it) is refused too: one node's history, or DDL
    run on one node of a cluster, is how replicas drift apart.

    One query tells what exists, and DDL runs only for what is missing (or,
    for the view, defined otherwise than ``ledger_ddl`` says).  On a cluster
    that matters beyond speed: an ON CLUSTER statement waits for every host,
    IF NOT EXISTS or not, so re-creating the ledger on each deploy blocked
    every command (``upgrade`` with nothing to do included) while a replica
    was down.  The node we are connected to answers for the others through
    Keeper: the ledger's and the lock's replica count (``total_replicas``,
    stopped replicas included) below the number of hosts of the cluster means
    a node has not got them yet (a host added later): then everything is
    created ON CLUSTER again, which needs every host up.
    """
    state = _preamble_state(conn, schema, cluster, LOCK_TABLE)
    objects = state["objects"]
    if LEDGER_TABLE in objects:
        check_structure(conn, schema, state["columns"])
        check_mode(schema, objects[LEDGER_TABLE][0], cluster)
    else:
        objects_in_warehouse = conn.exec_driver_sql(
            "SELECT count() FROM system.tables WHERE database IN %(dbs)s",
            {"dbs": MANAGED_DATABASES},
        ).scalar()
        if objects_in_warehouse:
            raise LedgerError(
                f"no ledger ({schema}.{LEDGER_TABLE}) but the warehouse databases hold {objects_in_warehouse} "
                "objects: the ledger was dropped by hand or the database predates zakaz-schema; "
                "use `zakaz-schema adopt` (or restore the ledger from a backup)"
            )
    if cluster is not None and state["readonly"]:
        raise cluster_mode.KeeperUnavailable(
            f"the ledger {schema}.{LEDGER_TABLE} is read-only on this node: ClickHouse cannot reach "
            "ZooKeeper/Keeper (or lost this replica's metadata there); nothing was changed. Check the "
            "Keeper ensemble and this node's <zookeeper> settings (system.zookeeper_connection), then retry"
        )
    everywhere = cluster is None or state["replicas"] >= state["hosts"]
    table_sql, view_sql = ledger_ddl(schema, cluster=cluster)
    statements = []
    if LEDGER_TABLE not in objects or not everywhere:
        statements.append(table_sql)
    if VERSION_VIEW not in objects or not objects[VERSION_VIEW][1] or not everywhere:
        statements.append(view_sql)
    if lock and (LOCK_TABLE not in objects or not everywhere):
        statements.append(lock_ddl(schema, cluster=cluster))
    for sql in statements:
        cluster_mode.run_ddl(conn, sql, cluster)


def _preamble_state(conn, schema: str, cluster: "cluster_mode.Cluster | None", lock_table: str) -> dict[str, Any]:
    """What ``ensure`` needs to know, in one query on this node.

    ``objects``: name -> (engine, whether a view's query is the one
    ``ledger_ddl`` gives, compared as formatted by the server); ``columns``:
    the ledger's; on a cluster, ``replicas``: the fewest replicas registered
    in Keeper of the ledger and the lock, ``hosts``: hosts in the cluster,
    ``readonly``: a replica of them is read-only here (no Keeper).
    """
    params = {"d": schema, "t": LEDGER_TABLE, "v": VERSION_VIEW, "l": lock_table, "q": version_select(schema)}
    extra = ""
    if cluster is not None:
        params["c"] = cluster.name
        replicas = "FROM system.replicas WHERE database = %(d)s AND table IN (%(t)s, %(l)s)"
        extra = (f", (SELECT toUInt64(min(total_replicas)) {replicas}) AS replicas"
                 f", (SELECT toUInt8(max(is_readonly)) {replicas}) AS readonly"
                 ", (SELECT count() FROM system.clusters WHERE cluster = %(c)s) AS hosts")
    rows = conn.exec_driver_sql(
        "SELECT name, engine, toUInt8(ifNull(formatQueryOrNull(as_select) = formatQueryOrNull(%(q)s), 0)) AS current, "
        "(SELECT toJSONString(mapFromArrays(groupArray(name), groupArray(type))) FROM system.columns "
        "WHERE database = %(d)s AND table = %(t)s) AS columns" + extra + " "
        "FROM system.tables WHERE database = %(d)s AND name IN (%(t)s, %(v)s, %(l)s)",
        params,
    ).all()
    first = rows[0]._mapping if rows else {}
    return {
        "objects": {r.name: (r.engine, bool(int(r.current))) for r in rows},
        "columns": json.loads(first["columns"]) if first else {},
        "replicas": int(first.get("replicas") or 0),
        "hosts": int(first.get("hosts") or 0),
        "readonly": bool(int(first.get("readonly") or 0)),
    }


def check_mode(schema: str, engine: str, cluster: "cluster_mode.Cluster | None") -> None:
    replicated = engine.startswith("Replicated")
    if cluster is not None and not replicated:
        raise LedgerError(
            f"cluster mode, but the ledger {schema}.{LEDGER_TABLE} is not replicated ({engine}): it was "
            "created by a deploy without --cluster and only this node has the history. Rename it, "
            f"create the replicated ledger (first statement of `zakaz-schema sql --cluster {cluster.name}`), "
            "copy the rows over (INSERT INTO ... SELECT * FROM the renamed table), then deploy again"
        )
    if cluster is None and replicated:
        raise LedgerError(
            f"the ledger {schema}.{LEDGER_TABLE} is replicated ({engine}): this database was deployed "
            "in cluster mode; pass --cluster NAME (alembic: -x cluster=NAME, or ZAKAZ_CLUSTER), "
            "otherwise DDL would run on this node only"
        )


def check_structure(conn, schema: str, columns: dict[str, str] | None = None) -> None:
    """Refuse a ledger whose columns are not ``COLUMNS`` (``columns``: already read, name -> type)."""
    if columns is None:
        columns = dict(conn.exec_driver_sql(
            "SELECT name, type FROM system.columns WHERE database = %(d)s AND table = %(t)s",
            {"d": schema, "t": LEDGER_TABLE},
        ).all())
    found = columns
    expected = COLUMNS
    if found != expected:
        missing = sorted(set(expected) - set(found))
        wrong = sorted(c for c in expected if c in found and found[c] != expected[c])
        extra = sorted(set(found) - set(expected))
        raise LedgerError(
            f"ledger table {schema}.{LEDGER_TABLE} was altered by hand "
            f"(missing {missing or '-'}, changed {wrong or '-'}, extra {extra or '-'}); "
            "restore it from a backup or recreate it and `zakaz-schema stamp` the real version"
        )


# Rows are ordered by ``seq``: the ledger's maximum plus one, taken by the server
# as the row is inserted (app.insert_order, ``insert_sql``), or, in a migration
# run, counted on from the maximum its preflight read under the same serialisation
# (app.recorder: no sub-query per INSERT).  A seq this high was not written by zakaz-schema
# (clock-based seqs of old ledgers are about 1.8e18): adding to it would wrap
# a UInt64, so writers refuse (``check_order``).
SEQ_LIMIT = 2 ** 63


def next_seq_sql(schema: str, offset: int = 1) -> str:
    """The expression giving the ``offset``-th row of a ledger INSERT its seq."""
    return insert_order.next_seq_sql(schema, LEDGER_TABLE, offset)


def check_order(rows: list[dict[str, Any]], schema: str = "default") -> None:
    """Refuse a ledger whose order cannot be continued (a seq written by hand near the UInt64 limit)."""
    if rows and rows[-1]["seq"] >= SEQ_LIMIT:
        last = rows[-1]
        raise LedgerError(
            f"ledger row seq {last['seq']} ({last['direction']} {last['revision'] or '-'}, {last['status']}) "
            f"is beyond what zakaz-schema writes ({SEQ_LIMIT - 1} at most): it was inserted by hand, and no "
            "later row could sort after it; nothing was changed. Remove that row "
            f"(ALTER TABLE {schema}.{LEDGER_TABLE} DELETE WHERE seq = {last['seq']}), then check `zakaz-schema status`"
        )


@dataclass
class Row:
    step_id: str
    revision: str
    direction: str
    status: str
    heads: list[str]
    message: str = ""
    started_at: dt.datetime = field(default_factory=dt.datetime.now)
    finished_at: dt.datetime | None = None
    duration_ms: int = 0
    statements: int = 0
    failed_statement: int = 0
    error_code: int = 0
    error: str = ""
    skipped: list[str] = field(default_factory=list)
    checksum: str = ""
    host: str = field(default_factory=socket.gethostname)
    os_user: str = field(default_factory=lambda: _os_user())
    tool_version: str = field(default_factory=lambda: _tool_version())
    # None: taken by the server when the row is inserted (``next_seq_sql``).
    seq: int | None = None

    def values(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in COLUMNS}
        out["finished_at"] = self.finished_at or self.started_at
        out["heads"] = sorted(self.heads)
        return out


@functools.cache  # the same for every row of a process (and ~0.2 ms a lookup)
def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"


@functools.cache
def _tool_version() -> str:
    # Imported here, not at the top: importlib.metadata costs ~10 ms and
    # app.fastpath imports this module to read the ledger, never to write it.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("zakaz-schema")
    except PackageNotFoundError:
        return "dev"


def insert_sql(schema: str, row: Row, *more: Row, settings: str = "") -> str:
    """One INSERT for one or more rows (several rows land in one part, atomically).

    A row without a seq gets the ledger's maximum plus its position in this
    INSERT, computed by the server (also in offline SQL, when the script runs).
    ``settings``: a ``SETTINGS ...`` clause for the INSERT.
    """
    tuples = []
    for offset, r in enumerate((row, *more), 1):
        values = r.values()
        seq = next_seq_sql(schema, offset=offset) if values["seq"] is None else quote_literal(values["seq"])
        tuples.append("(" + ", ".join(seq if k == "seq" else quote_literal(v) for k, v in values.items()) + ")")
    clause = f"{settings} " if settings else ""
    return f"INSERT INTO {schema}.{LEDGER_TABLE} ({', '.join(COLUMNS)}) {clause}VALUES " + ", ".join(tuples)


def write(conn, schema: str, row: Row, *more: Row) -> None:
    # Offline SQL (insert_sql alone) has no such clause: clickhouse-client's
    # session, or the operator, decides how long its INSERTs wait for Keeper.
    conn.exec_driver_sql(insert_sql(schema, row, *more, settings=cluster_mode.INSERT_SETTINGS))


def rows_sql(schema: str, extra: str = "") -> str:
    """The query reading the ledger's rows in their order (``extra``: more
    select expressions after the columns, for app.fastpath's one query)."""
    # Arrays come back as lists from chDB and the native driver but as text
    # from the HTTP driver: JSON is read the same way by all three.
    selected = ", ".join(
        f"toJSONString({c}) AS {c}" if t.startswith("Array") else c for c, t in COLUMNS.items()
    )
    return f"SELECT {selected}{extra} FROM {schema}.{LEDGER_TABLE} ORDER BY seq"


_ARRAYS = [c for c, t in COLUMNS.items() if t.startswith("Array")]


def decode_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row of ``rows_sql`` as the functions below take it (its arrays decoded)."""
    for c in _ARRAYS:
        row[c] = json.loads(row[c])
    return row


def read_rows(conn, schema: str) -> list[dict[str, Any]]:
    try:
        result = conn.exec_driver_sql(rows_sql(schema))
    except Exception as exc:
        raise LedgerError(
            f"cannot read the ledger {schema}.{LEDGER_TABLE} ({str(getattr(exc, 'orig', exc)).splitlines()[0]}); "
            "run `zakaz-schema upgrade` to create it, or restore it if it was dropped by hand"
        ) from None
    return [decode_row(dict(r._mapping)) for r in result]


# --- what the rows say (pure: app.fastpath reads them without SQLAlchemy) ---------------


def current_heads(rows: list[dict[str, Any]]) -> list[str]:
    done = [r for r in rows if r["status"] in COMPLETED]
    return sorted(done[-1]["heads"]) if done else []


def open_problem(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The latest step if it did not complete: failed, or started and never finished.

    Only the latest step counts: a later completed step (a resume, a repair)
    settles everything before it.
    """
    if not rows:
        return None
    last_step = rows[-1]["step_id"]
    events = [r for r in rows if r["step_id"] == last_step]
    final = events[-1]
    if final["status"] == "failed":
        return {**final, "state": "failed"}
    if final["status"] == "started":
        return {**final, "state": "interrupted"}
    return None


def applied_checksums(rows: list[dict[str, Any]]) -> dict[str, str]:
    """revision -> the checksum its file had when the latest upgrade applied it (undone ones dropped)."""
    out: dict[str, str] = {}
    for r in rows:
        if r["status"] == "applied" and r["direction"] == "upgrade" and r["checksum"]:
            out[r["revision"]] = r["checksum"]
        elif r["direction"] == "downgrade" and r["status"] == "applied":
            out.pop(r["revision"], None)
    return out


def skipped_statements(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Access statements recorded as skipped by the latest upgrade of each revision."""
    latest: dict[str, dict] = {}
    for r in rows:
        if r["status"] == "applied" and r["direction"] == "upgrade":
            latest[r["revision"]] = r
        elif r["status"] == "applied" and r["direction"] == "downgrade":
            latest.pop(r["revision"], None)  # nothing of it is in the database now
    return [
        {"revision": rev, "statements": r["skipped"]}
        for rev, r in sorted(latest.items()) if r["skipped"]
    ]
