"""Content fingerprints of tables: row count and an order-independent checksum.

What proves a step kept the rows it should: the drill compares them before
and after each step, adopt before and after its repairs, tests after a failed
statement.  One ``UNION ALL`` statement covers every table asked.

``DataProbe`` is the drill's side: it remembers each checksum with the table's
uuid and the names of the data parts it was computed over, so a table no
step touched is not read again.  A part never changes once written (an
insert, merge or mutation writes a new part, under a new name), and a table
dropped and created again has a new uuid: equal uuid and parts are equal
stored rows, so the remembered checksum is the one a new read would give.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from app.sample_data import base_tables
from app.schema import MATERIALIZED_VIEW
from app.snapshot import Snapshot
from app.sql import quote_identifier, quote_literal, quote_name

# Columns that cannot be read back as stored values.
UNREADABLE_DEFAULTS = ("ALIAS", "EPHEMERAL")


def fingerprint_sql(table: str, columns: list[str]) -> str:
    # toString makes the checksum about content, not representation: a value
    # hashes the same as String or UUID, Nullable or not, LowCardinality or
    # not.  cityHash64 is NULL if any argument is NULL, hence the ifNull.
    # sum() wraps around in UInt64 and, unlike groupBitXor, counts duplicates.
    if columns:
        args = ", ".join(f"ifNull(toString({quote_identifier(c)}), '<NULL>')" for c in columns)
        checksum = f"toString(sum(cityHash64({args})))"
    else:
        checksum = "'0'"
    return f"SELECT {quote_literal(table)}, count(), {checksum} FROM {quote_name(table)}"


def table_fingerprint(conn, table: str, columns: list[str] | None = None) -> tuple[int, str]:
    """(row count, order-independent checksum of ``columns``, default all) of "db.table"."""
    if columns is None:
        db, name = table.split(".", 1)
        columns = [c for (c,) in conn.exec_driver_sql(
            f"SELECT name FROM system.columns WHERE database = {quote_literal(db)} "
            f"AND table = {quote_literal(name)} AND default_kind != 'ALIAS' ORDER BY position").all()]
        if not columns:
            raise ValueError(f"table {table} does not exist or has no columns")
    _, count, checksum = conn.exec_driver_sql(fingerprint_sql(table, columns)).one()
    return int(count), str(checksum)


def fingerprints_of(conn, columns_by_table: dict[str, list[str]]) -> dict[str, tuple[int, str]]:
    """Fingerprints of the tables named, over the columns given: one statement."""
    if not columns_by_table:
        return {}
    sql = "\nUNION ALL\n".join(fingerprint_sql(name, cols) for name, cols in columns_by_table.items())
    return {name: (int(count), str(checksum)) for name, count, checksum in conn.exec_driver_sql(sql).all()}


def fingerprints(conn, columns_by_table: dict[str, list[str]] | None = None) -> dict[str, tuple[int, str]]:
    """Fingerprints of every base table of zakaz, meta and bi: two queries in all.

    ``columns_by_table`` narrows the columns of the tables it names (e.g. to
    those a downgrade keeps); other tables use all their stored columns.
    """
    columns_by_table = columns_by_table or {}
    wanted = {name: columns_by_table.get(name, [c for c, _, kind in table.columns if kind != "ALIAS"])
              for name, table in base_tables(conn).items()}
    return fingerprints_of(conn, wanted)


# --- the drill's probe -----------------------------------------------------------------

def readable_columns(obj) -> list[str]:
    return [c.name for c in obj.columns if c.default.split(" ", 1)[0] not in UNREADABLE_DEFAULTS]


@dataclass
class Data:
    """Row counts and checksums of base tables, and row counts of materialized views."""

    prints: dict[str, tuple[int, str]]
    columns: dict[str, list[str]]  # the columns each checksum covers
    view_rows: dict[str, int]
    # "db.table.column" not stored in every part: read from its DEFAULT.
    unstored: dict[str, str] = field(default_factory=dict)  # -> the DEFAULT expression

    def rows(self, name: str) -> int:
        if name in self.prints:
            return self.prints[name][0]
        return self.view_rows.get(name, 0)


class DataProbe:
    """Fingerprints over a series of states of one database, each table read only when its parts changed."""

    def __init__(self, conn):
        self.conn = conn
        # (uuid, ((column, type), ...), part names) -> (count, checksum)
        self._known: dict[tuple, tuple[int, str]] = {}

    def take(self, snap: Snapshot, columns: dict[str, list[str]] | None = None) -> Data:
        """Fingerprints of the snapshot's base tables over ``columns`` (default: all readable ones).

        Columns a table no longer has are left out, so a checksum can be taken
        after a step over the columns of before; ``Data.columns`` says which
        were used, and checksums are compared only where those agree.
        ``snap`` must be taken with ``parts`` and after the last write.
        """
        parts = snap.parts
        unstored = unstored_columns(snap)
        used: dict[str, list[str]] = {}
        for name in snap.tables():
            have = [c for c in readable_columns(snap.schema[name]) if f"{name}.{c}" not in unstored]
            wanted = columns.get(name, have) if columns is not None else have
            used[name] = [c for c in wanted if c in have]
        keys = {}
        for name, cols in used.items():
            types = {c.name: c.type for c in snap.schema[name].columns}
            # Only the MergeTree family has parts; without a uuid (an Ordinary
            # database) a table created again could reuse its part names.
            # Any other table is read every time.
            uuid = snap.uuids.get(name, "")
            if "MergeTree" not in snap.schema[name].engine or not uuid.strip("0-"):
                uuid = object()
            keys[name] = (uuid, tuple((c, types[c]) for c in cols), parts.get(name, ()))
        missing = {name: used[name] for name, key in keys.items() if key not in self._known}
        # Materialized views' storage is counted every time: a count is cheap,
        # and the view's rows change with every insert into its source.
        views = [name for name, obj in snap.schema.items() if obj.kind == MATERIALIZED_VIEW and obj.engine]
        selects = [fingerprint_sql(name, cols) for name, cols in missing.items()]
        selects += [f"SELECT {quote_literal(name)}, count(), '' FROM {quote_name(name)}" for name in views]
        view_rows = {}
        if selects:
            for name, count, checksum in self.conn.exec_driver_sql("\nUNION ALL\n".join(selects)).all():
                if name in missing:
                    self._known[keys[name]] = (int(count), str(checksum))
                else:
                    view_rows[name] = int(count)
        prints = {name: self._known[key] for name, key in keys.items()}
        return Data(prints, used, view_rows, unstored)


def unstored_columns(snap: Snapshot) -> dict[str, str]:
    """Columns missing from some data part: ``{"db.table.column": DEFAULT expression}``.

    ADD COLUMN writes nothing: rows already in the table read the column's
    DEFAULT, evaluated at every read, until a merge or MATERIALIZE COLUMN
    stores it.  Such values are not data a step keeps or loses (and with
    ``now()`` they change every second), so checksums leave them out.
    """
    out = {}
    for name in snap.tables():
        count = len(snap.parts.get(name, ()))
        if not count:
            continue
        for col in snap.schema[name].columns:
            if col.default.split(" ", 1)[0] in UNREADABLE_DEFAULTS:
                continue
            if snap.stored.get((name, col.name), 0) < count:
                out[f"{name}.{col.name}"] = col.default
    return out


# Defaults that differ from one read to the next.
VOLATILE = re.compile(r"\b(now|now64|today|yesterday|rand\w*|generateUUID\w*|randomString\w*)\s*\(", re.I)
