"""What a step deletes: declared against what it does, and counted from ClickHouse's own system tables.

One declared-vs-actual check for both directions: a revision declares what
its upgrade (``UPGRADE_LOSES``) and downgrade (``DOWNGRADE_LOSES``) drop with
their data, ``db.table`` or ``db.table.column``; ``schema_losses`` says what a
step dropped, from the schema before and after it; ``check_declared`` holds
one against the other.  Lint and adopt use it (and the drill's downgrade
check is the same comparison).

The counting is used twice: by app.runtime before a run (and again before
each step), from what a dry run of the steps says they drop and what the
revisions declare; and by the drop operations (app.operations) right before their statement,
because rows can arrive while a run goes on.  Nothing that holds rows is
dropped without ``--allow-data-loss``, declared or not, and neither is
anything in a database being dropped that no revision of the chain created
(an integration's tables or views): those are "unmanaged".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from app.errors import CheckFailed
from app.merging import rows_merged
from app.schema import MATERIALIZED_VIEW, TABLE, Schema
from app.sql import in_list, quote_literal, quote_name
from app.types import ttl_keeps_rows, type_change

UPGRADE, DOWNGRADE = "upgrade", "downgrade"
DECLARATIONS = {UPGRADE: "UPGRADE_LOSES", DOWNGRADE: "DOWNGRADE_LOSES"}
# What a step can lose, by how it loses it.
DROP, NARROWING, RECREATE, TTL, MERGE = "drop", "narrowing", "recreate", "ttl", "merge"

# More than this many objects in one message are summarised.
LISTED = 10


class DataLossRefused(CheckFailed):
    """A drop would delete rows (or objects) nobody allowed it to delete; nothing was dropped."""


def row_count(n: int) -> str:
    """"1 row", "20 rows": every message that names rows at risk says it the same way."""
    return f"{n} row" if n == 1 else f"{n} rows"


@dataclass(frozen=True)
class Stored:
    name: str          # db.name
    kind: str          # "table", "view", "materialized view", "dictionary", "<Engine> table"
    rows: int | None   # rows a drop deletes; None: it keeps none of its own (a view, a remote table)

    def describe(self) -> str:
        if self.rows:
            return f"{self.name} ({row_count(self.rows)})"
        if self.rows == 0:
            return f"{self.name} (empty {self.kind})"
        return f"{self.name} ({self.kind})"


def stored(conn, databases: list[str], names: list[str] | None = None, *,
           cluster: str | None = None) -> dict[str, Stored]:
    """Every object of ``databases`` (or just ``names``, ``db.name``) and the rows a drop of it deletes.

    ``total_rows`` is what the server knows without reading; a materialized
    view's rows are its inner table's (a view written TO a table keeps none);
    engines that keep data but do not report a count (the Log family) are
    counted; remote engines (Kafka, MySQL, URL, ...) hold nothing here.

    ``cluster``: a drop ON CLUSTER deletes every replica's rows, and the
    replica connected to may not have them yet (replication lag, fetches
    stopped) or hold an object the others have not: every live replica is
    asked (``clusterAllReplicas``), each object counted at its fullest one.
    """
    if not databases:
        return {}
    where = f"database IN ({in_list(set(databases))})"
    if names is not None:
        # Inner tables too: a materialized view's rows are there.
        where += f" AND (name IN ({in_list({n.split('.', 1)[1] for n in names})}) OR startsWith(name, '.inner'))"
    if cluster is None:
        rows = conn.exec_driver_sql(
            "SELECT database, name, engine, total_rows, has_own_data, toString(uuid) "
            f"FROM system.tables WHERE {where} AND NOT is_temporary"
        ).all()
    else:
        # A replica that is down cannot be asked; the drop waits for it anyway.
        # The uuid of one replica (a materialized view's inner table is named after it).
        rows = conn.exec_driver_sql(
            "SELECT database, name, any(engine), max(total_rows), max(has_own_data), any(toString(uuid)) "
            f"FROM clusterAllReplicas({quote_literal(cluster)}, system.tables) WHERE {where} AND NOT is_temporary "
            "GROUP BY database, name SETTINGS skip_unavailable_shards = 1"
        ).all()
    inner = {(db, name): total for db, name, _, total, _, _ in rows if name.startswith(".inner")}
    wanted = set(names) if names is not None else None
    out: dict[str, Stored] = {}
    for db, name, engine, total, own, uuid in rows:
        full = f"{db}.{name}"
        if name.startswith(".inner") or (wanted is not None and full not in wanted):
            continue
        if engine in ("View", "LiveView", "WindowView"):
            out[full] = Stored(full, "view", None)
        elif engine == "MaterializedView":
            key = next((k for k in ((db, f".inner_id.{uuid}"), (db, f".inner.{name}")) if k in inner), None)
            held = inner[key] if key else None
            out[full] = Stored(full, "materialized view", int(held or 0) if key else None)
        elif engine == "Dictionary":
            out[full] = Stored(full, "dictionary", None)
        elif total is not None:
            out[full] = Stored(full, "table", int(total))
        elif own:
            source = quote_name(full) if cluster is None else \
                f"clusterAllReplicas({quote_literal(cluster)}, {quote_name(full)})"
            count = conn.exec_driver_sql(f"SELECT count() FROM {source} SETTINGS skip_unavailable_shards = 1"
                                         if cluster else f"SELECT count() FROM {source}").scalar()
            out[full] = Stored(full, "table", int(count))
        else:
            out[full] = Stored(full, f"{engine} table", None)
    return out


def rows_at_risk(conn, objects: list[str], *, cluster: str | None = None) -> dict[str, int]:
    """Rows held by tables or materialized views (``db.table``) and columns (``db.table.column``).

    Only objects holding rows are in the result.
    """
    tables = {".".join(o.split(".")[:2]) for o in objects}
    found = stored(conn, [t.split(".")[0] for t in tables], sorted(tables), cluster=cluster)
    columns = [o for o in objects if o.count(".") >= 2]
    present: set[str] = set()
    if columns:
        dbs = in_list({o.split(".")[0] for o in columns})
        names = in_list({o.split(".")[1] for o in columns})
        present = {f"{db}.{t}.{c}" for db, t, c in conn.exec_driver_sql(
            f"SELECT database, table, name FROM system.columns WHERE database IN ({dbs}) AND table IN ({names})"
        ).all()}
    at_risk: dict[str, int] = {}
    for obj in objects:
        table = found.get(".".join(obj.split(".")[:2]))
        if table is None or not table.rows:
            continue
        if obj.count(".") >= 2 and obj not in present:
            continue
        at_risk[obj] = table.rows
    return at_risk


def unmanaged(conn, database: str, chain: set[str], *, cluster: str | None = None) -> list[Stored]:
    """Objects in ``database`` other than ``chain`` (what revisions created or drop themselves)."""
    return [s for name, s in sorted(stored(conn, [database], cluster=cluster).items()) if name not in chain]


def listing(items: list[str]) -> str:
    if len(items) <= LISTED:
        return ", ".join(items)
    return ", ".join(items[:LISTED]) + f" and {len(items) - LISTED} more"


# --- declared against actual ------------------------------------------------

def declared(module, direction: str) -> list[str]:
    """What a revision module declares its ``direction`` step drops with its data."""
    return list(getattr(module, DECLARATIONS[direction], ()) or ())


def covers(declarations: Iterable[str], target: str) -> bool:
    """Whether a declaration names ``target`` (``db.table[.column]``) or the table it is in."""
    return any(target == d or target.startswith(d + ".") for d in declarations)


@dataclass(frozen=True)
class Loss:
    """One thing a step dropped with its data."""

    kind: str     # DROP, NARROWING, RECREATE or TTL
    target: str   # "db.table" or "db.table.column"
    message: str  # what happened to it, for a report


def holds_rows(obj) -> bool:
    """A table, or a materialized view with storage of its own (not one written TO a table)."""
    return obj is not None and (obj.kind == TABLE or (obj.kind == MATERIALIZED_VIEW and bool(obj.engine)))


def schema_losses(before: Schema, after: Schema, *, replaced: Iterable[str] = (),
                  copies: Mapping[str, Sequence[str] | None] | None = None) -> list[Loss]:
    """What a step lost, from the schema before and after it.

    ``replaced``: objects created anew by the step (their uuid changed);
    ``copies``: the replaced tables whose rows the step copied into the new
    one, with the columns copied (None: all).  A replaced table without a
    copy lost its rows; a copy without a column lost that column's values.
    """
    replaced, copies = set(replaced), copies or {}
    out = []
    for name, obj in sorted(before.items()):
        if not holds_rows(obj):
            continue
        new = after.get(name)
        what = "materialized view" if obj.kind == MATERIALIZED_VIEW else "table"
        if new is None or new.kind != obj.kind:
            out.append(Loss(DROP, name, f"drops {what} {name} with its rows"))
            continue
        if name in replaced and name not in copies:
            changes = [label for label, a, b in (
                ("engine", obj.engine, new.engine), ("ORDER BY", obj.order_by, new.order_by),
                ("PARTITION BY", obj.partition_by, new.partition_by)) if a != b]
            how = f"changes {'/'.join(changes)} by creating it anew" if changes else "drops and creates it again"
            out.append(Loss(RECREATE, name, f"{how} without copying its rows ({what} {name})"))
            continue
        if obj.kind == TABLE and not ttl_keeps_rows(obj.ttl, new.ttl):
            # materialize_ttl_after_modify (on by default): the rows already
            # past the new TTL are deleted at once (a rebuilt table's by its merges).
            out.append(Loss(TTL, name, f"sets TTL {new.ttl} on {name}: the rows already past it are deleted"))
        copied = copies.get(name) if name in replaced else None
        merged = rows_merged(obj, new) if name in replaced and obj.kind == TABLE else None
        if merged:
            out.append(Loss(MERGE, name, f"rebuilds {name}: {merged}"))
        for col in obj.columns:
            got = new.column(col.name)
            target = f"{name}.{col.name}"
            if got is None:
                out.append(Loss(DROP, target, f"drops column {target} with its values"))
            elif copied is not None and col.name not in copied:
                out.append(Loss(DROP, target, f"rebuilds {name} without copying column {col.name} "
                                              "(its values are reset)"))
            elif obj.kind == TABLE and not type_change(col.type, got.type).keeps_every_value:
                out.append(Loss(NARROWING, target, f"changes {target} from {col.type} to {got.type}, "
                                                   "which cannot hold every old value"))
    return out


@dataclass
class LossCheck:
    """A step's losses held against its declaration."""

    declared: list[Loss] = field(default_factory=list)    # lost, and declared
    undeclared: list[Loss] = field(default_factory=list)  # lost, and not declared
    unused: list[str] = field(default_factory=list)       # declared, and not lost

    @property
    def ok(self) -> bool:
        return not self.undeclared


def check_declared(declarations: Sequence[str], lost: Sequence[Loss]) -> LossCheck:
    """Each loss declared or not; each declaration used or not.

    A declaration of a table is used by the loss of one of its columns, and
    one of a column by the loss of its table.
    """
    check = LossCheck()
    for loss in lost:
        (check.declared if covers(declarations, loss.target) else check.undeclared).append(loss)
    for d in declarations:
        if not any(loss.target == d or loss.target.startswith(d + ".") or d.startswith(loss.target + ".")
                   for loss in lost):
            check.unused.append(d)
    return check
