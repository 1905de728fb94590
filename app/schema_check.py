"""Check a live database against an expected schema: the snapshot compared, views read, definers.

What ``verify`` and the verification revisions (0011, 0013) assert, and what
the drill asks of every view after a step.  Compares through the pure
``app.verify``; the questions to the server are here.
"""
from __future__ import annotations

from typing import Iterable

from app.schema import TABLE, Schema, view_definer
from app.snapshot import take_snapshot
from app.sql import in_list
from app.verify import Finding, SchemaMismatch, compare_schema


def assert_schema(conn, expected: Schema, *, definer: str | None = None) -> None:
    """Raise SchemaMismatch unless the live database matches ``expected``.

    Besides the column-by-column comparison, every view must answer a SELECT,
    and with ``definer``, every view of ``expected`` must run as that user.
    """
    databases = sorted({name.split(".", 1)[0] for name in expected})
    live = take_snapshot(conn, databases).schema
    findings = [f for f in compare_schema(live, expected) if f.fatal]
    views = [name for name, obj in expected.items() if obj.kind != TABLE and name in live]
    findings += [Finding("unselectable", name, "", "selectable", str(getattr(exc, "orig", exc)).splitlines()[0])
                 for name, exc in unreadable_views(conn, views).items()]
    if definer:
        findings += definer_findings(conn, [n for n, o in expected.items() if o.kind != TABLE], definer)
    if findings:
        raise SchemaMismatch(findings)


def unreadable_views(conn, views: Iterable[str]) -> dict[str, Exception]:
    """The views that do not answer a SELECT, with the error each raised.

    All of them are asked in one statement (a view's query is analysed whole
    when it is read, as ``SELECT * FROM v LIMIT 0`` would; ``tuple(*)`` names
    every output column, so none is pruned); only if that fails is each asked
    alone, to name it and say why.
    """
    views = sorted(views)
    if not views:
        return {}
    try:
        conn.exec_driver_sql(" UNION ALL ".join(
            f"SELECT '{name}' AS view, toTypeName(tuple(*)) AS columns FROM {name} LIMIT 0" for name in views))
        return {}
    except Exception:
        pass
    out = {}
    for name in views:
        try:
            conn.exec_driver_sql(f"SELECT * FROM {name} LIMIT 0").all()
        except Exception as exc:
            out[name] = exc
    return out


def definer_findings(conn, views: Iterable[str], definer: str) -> list[Finding]:
    """Views and materialized views whose ``DEFINER`` is not ``definer``, on a server.

    Not part of the schema snapshot: on the embedded engine (no access
    storage, no named users) every DEFINER view runs as ``default``.
    """
    names = sorted(views)
    if not names:
        return []
    rows = dict(conn.exec_driver_sql(
        "SELECT concat(database, '.', name), create_table_query FROM system.tables "
        f"WHERE engine IN ('View', 'MaterializedView') AND concat(database, '.', name) IN ({in_list(names)})"
    ).all())
    return [Finding("definer", n, "", definer, view_definer(rows[n]) or "(none)")
            for n in names if n in rows and view_definer(rows[n]) != definer]
