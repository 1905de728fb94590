"""The history of a database migrated by ``clickhouse-migrations`` (PyPI), imported into the ledger.

That tool keeps the SQL files it applied in a table of its own
(``schema_versions`` unless renamed: ``version UInt32, md5 String, script
String, created_at DateTime``).  Adopt recognises the table by those columns,
whatever its name or database, never changes it, and writes one ledger row
per applied file (direction ``import``, status ``imported``: a step of the
past, not a version of this chain) before the adoption's own rows, so
``history`` shows what was done before the chain took over.  The script text
is not copied: SQL files may carry passwords (CREATE USER), which never go
into the ledger.
"""
from __future__ import annotations

import datetime as dt
import uuid

from app import ledger
from app.sql import quote_name

TOOL = "clickhouse-migrations"
COLUMNS = ["created_at", "md5", "script", "version"]
_SYSTEM = ("system", "INFORMATION_SCHEMA", "information_schema")


def find_histories(conn) -> dict[str, list[dict]]:
    """``db.table`` -> its applied files ({version, md5, applied_at}), for every table shaped like the tool's."""
    tables = conn.exec_driver_sql(
        "SELECT database, table FROM system.columns WHERE database NOT IN %(system)s "
        "GROUP BY database, table HAVING arraySort(groupArray(name)) = %(columns)s",
        {"system": _SYSTEM, "columns": COLUMNS}).all()
    out = {}
    for database, table in sorted(tables):
        name = f"{database}.{table}"
        rows = conn.exec_driver_sql(
            f"SELECT version, md5, created_at FROM {quote_name(name)} ORDER BY version, created_at").all()
        out[name] = [{"version": int(v), "md5": str(m), "applied_at": t} for v, m, t in rows]
    return out


def revision_of(version: int) -> str:
    # Kept apart from the chain's revision ids in `history`.
    return f"cm-{version}"


def ledger_rows(histories: dict[str, list[dict]]) -> list[ledger.Row]:
    rows = []
    for table, entries in histories.items():
        for e in entries:
            when = e["applied_at"] if isinstance(e["applied_at"], dt.datetime) else dt.datetime.now()
            rows.append(ledger.Row(
                str(uuid.uuid4()), revision_of(e["version"]), "import", "imported", [],
                f"imported from {TOOL} ({table}, kept as it is): version {e['version']} applied "
                f"{when:%Y-%m-%d %H:%M:%S}, md5 {e['md5']}",
                started_at=when, finished_at=when, checksum=e["md5"]))
    return rows
