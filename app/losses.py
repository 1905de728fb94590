"""What a step would delete, counted from ClickHouse's own system tables.

Used twice: by app.runtime before a run (and again before each step), from
what a dry run of the steps says they drop and what the revisions declare;
and by the drop operations (app.operations) right before their statement,
because rows can arrive while a run goes on.  Nothing that holds rows is
dropped without ``--allow-data-loss``, declared or not, and neither is
anything in a database being dropped that no revision of the chain created
(an integration's tables or views): those are "unmanaged".
"""
from __future__ import annotations

from dataclasses import dataclass

from app.sql import quote_literal

# More than this many objects in one message are summarised.
LISTED = 10


class DataLossRefused(Exception):
    """A drop would delete rows (or objects) nobody allowed it to delete; nothing was dropped."""


@dataclass(frozen=True)
class Stored:
    name: str          # db.name
    kind: str          # "table", "view", "materialized view", "dictionary", "<Engine> table"
    rows: int | None   # rows a drop deletes; None: it keeps none of its own (a view, a remote table)

    def describe(self) -> str:
        if self.rows:
            return f"{self.name} ({self.rows} rows)"
        if self.rows == 0:
            return f"{self.name} (empty {self.kind})"
        return f"{self.name} ({self.kind})"


def stored(conn, databases: list[str], names: list[str] | None = None) -> dict[str, Stored]:
    """Every object of ``databases`` (or just ``names``, ``db.name``) and the rows a drop of it deletes.

    ``total_rows`` is what the server knows without reading; a materialized
    view's rows are its inner table's (a view written TO a table keeps none);
    engines that keep data but do not report a count (the Log family) are
    counted; remote engines (Kafka, MySQL, URL, ...) hold nothing here.
    """
    if not databases:
        return {}
    where = f"database IN ({', '.join(quote_literal(d) for d in sorted(set(databases)))})"
    if names is not None:
        # Inner tables too: a materialized view's rows are there.
        tables = ", ".join(quote_literal(n.split(".", 1)[1]) for n in sorted(set(names))) or "''"
        where += f" AND (name IN ({tables}) OR startsWith(name, '.inner'))"
    rows = conn.exec_driver_sql(
        "SELECT database, name, engine, total_rows, has_own_data, toString(uuid) "
        f"FROM system.tables WHERE {where} AND NOT is_temporary"
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
            count = conn.exec_driver_sql(f"SELECT count() FROM `{db}`.`{name}`").scalar()
            out[full] = Stored(full, "table", int(count))
        else:
            out[full] = Stored(full, f"{engine} table", None)
    return out


def rows_at_risk(conn, objects: list[str]) -> dict[str, int]:
    """Rows held by tables or materialized views (``db.table``) and columns (``db.table.column``).

    Only objects holding rows are in the result.
    """
    tables = {".".join(o.split(".")[:2]) for o in objects}
    found = stored(conn, [t.split(".")[0] for t in tables], sorted(tables))
    columns = [o for o in objects if o.count(".") >= 2]
    present: set[str] = set()
    if columns:
        dbs = ", ".join(quote_literal(o.split(".")[0]) for o in columns)
        names = ", ".join(quote_literal(o.split(".")[1]) for o in columns)
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


def unmanaged(conn, database: str, chain: set[str]) -> list[Stored]:
    """Objects in ``database`` other than ``chain`` (what revisions created or drop themselves)."""
    return [s for name, s in sorted(stored(conn, [database]).items()) if name not in chain]


def listing(items: list[str]) -> str:
    if len(items) <= LISTED:
        return ", ".join(items)
    return ", ".join(items[:LISTED]) + f" and {len(items) - LISTED} more"
