"""Compare a live schema with the expected one, finding by finding.

Pure: both sides are ``app.schema.Schema`` values (a snapshot and, usually,
``app.canonical.CANONICAL``); nothing here touches a database.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable

from app.ledger import LEDGER_TABLE, VERSION_VIEW
from app.schema import MATERIALIZED_VIEW, TABLE, VIEW, DbObject, Schema

# The migration ledger lives beside the warehouse but is not part of it.
IGNORED_NAMES = (LEDGER_TABLE, VERSION_VIEW)

KINDS = (
    "missing_object", "unmanaged_object", "kind",
    "engine", "order_by", "partition_by", "ttl",
    "missing_column", "unmanaged_column", "type", "default", "column_order",
)

# Object attributes compared as text, with the label a report uses.
_OBJECT_FIELDS = (
    ("engine", "engine"),
    ("order_by", "ORDER BY"),
    ("partition_by", "PARTITION BY"),
    ("ttl", "TTL"),
    ("security", "SQL SECURITY"),
)


NOT_FATAL = ("column_order", "unmanaged_object")

# Where an object of each kind is declared in app/canonical.py, and how.
_CANONICAL_ENTRY = {
    TABLE: ("TABLES", "a line with the name and engine clause, then one line per column"),
    VIEW: ("VIEWS", "name: output columns"),
    MATERIALIZED_VIEW: ("MATERIALIZED_VIEWS", "name and engine clause: output columns"),
}


@dataclass(frozen=True)
class Finding:
    kind: str
    object: str
    column: str
    expected: str
    actual: str

    @property
    def fatal(self) -> bool:
        # Adopted databases may list columns in another order, and keep
        # integration tables of their own beside the managed ones: both are
        # reported, neither makes the managed schema wrong.
        return self.kind not in NOT_FATAL

    @property
    def target(self) -> str:
        return f"{self.object}.{self.column}" if self.column else self.object

    def __str__(self) -> str:
        e = self.expected or "(none)"
        a = self.actual or "(none)"
        if self.kind == "missing_object":
            return f"missing {self.expected.replace('_', ' ')} {self.object}"
        if self.kind == "unmanaged_object":
            # Often a table a new revision creates: canonical.py is the
            # schema at head, edited by hand alongside the revision.
            where, how = _CANONICAL_ENTRY.get(self.actual, ("TABLES", ""))
            return (f"{self.actual.replace('_', ' ')} {self.object} is not in app/canonical.py; if a revision "
                    f"creates it, add it to {where} there ({how}), else it is left untouched")
        if self.kind == "kind":
            return f"{self.object} is a {a.replace('_', ' ')}, expected a {e.replace('_', ' ')}"
        if self.kind == "missing_column":
            return f"missing column {self.target}" + (f" (expected {self.expected})" if self.expected else "")
        if self.kind == "unmanaged_column":
            return f"unmanaged column {self.target}" + (f" ({self.actual})" if self.actual else "")
        if self.kind == "column_order":
            return f"column order of {self.object} differs (not fatal): expected {e}; found {a}"
        label = {**dict(_OBJECT_FIELDS), "definer": "DEFINER"}.get(self.kind, self.kind)
        if self.kind == "default":
            label = "DEFAULT"
        return f"{label} of {self.target}: expected {e}, found {a}"

    def to_dict(self) -> dict:
        return {**asdict(self), "fatal": self.fatal, "message": str(self)}


def _ignored(name: str) -> bool:
    return name.split(".", 1)[-1] in IGNORED_NAMES


def _compare_object(live: DbObject, exp: DbObject) -> list[Finding]:
    name = exp.name
    if live.kind != exp.kind:
        # Columns and keys of a view against a table's say nothing useful.
        return [Finding("kind", name, "", exp.kind, live.kind)]
    findings = [
        Finding(kind, name, "", getattr(exp, kind), getattr(live, kind))
        for kind, _ in _OBJECT_FIELDS
        # security is judged only where the expectation states it (0011 froze none)
        if getattr(exp, kind) != getattr(live, kind) and (kind != "security" or exp.security)
    ]
    # A view's column types are whatever its query yields (and differ
    # between ClickHouse lines); only its output names are part of the spec.
    typed = exp.kind == TABLE
    live_names = set(live.column_names)
    for col in exp.columns:
        got = live.column(col.name)
        if got is None:
            findings.append(Finding("missing_column", name, col.name, col.spec if typed else "", ""))
            continue
        if typed and got.type != col.type:
            findings.append(Finding("type", name, col.name, col.type, got.type))
        if typed and got.default != col.default:
            findings.append(Finding("default", name, col.name, col.default, got.default))
    exp_names = set(exp.column_names)
    for col in live.columns:
        if col.name not in exp_names:
            findings.append(Finding("unmanaged_column", name, col.name, "", col.spec if typed else ""))
    # Order is judged on the columns both sides have, so a missing or extra
    # column is not also reported as an order difference.
    exp_order = [n for n in exp.column_names if n in live_names]
    live_order = [n for n in live.column_names if n in exp_names]
    if exp_order != live_order:
        findings.append(Finding("column_order", name, "", ", ".join(exp_order), ", ".join(live_order)))
    return findings


def compare_schema(
    live: Schema,
    expected: Schema,
    managed_databases: Iterable[str] | None = None,
) -> list[Finding]:
    """Every difference between ``live`` and ``expected``, in a stable order.

    Objects of ``live`` in a managed database (by default, any database
    ``expected`` has objects in) that ``expected`` lacks are unmanaged.
    """
    managed = set(managed_databases) if managed_databases is not None else {o.database for o in expected.values()}
    findings: list[Finding] = []
    for name in sorted(set(live) | set(expected)):
        if _ignored(name):
            continue
        got, exp = live.get(name), expected.get(name)
        if exp is None:
            if got.database in managed:
                findings.append(Finding("unmanaged_object", name, "", "", got.kind))
        elif got is None:
            findings.append(Finding("missing_object", name, "", exp.kind, ""))
        else:
            findings.extend(_compare_object(got, exp))
    return findings


class SchemaMismatch(Exception):
    """The live schema is not the expected one; the message lists every finding."""

    def __init__(self, findings: list[Finding]):
        self.findings = findings
        super().__init__(
            f"schema differs from the expected one ({len(findings)} finding(s)): "
            + "; ".join(str(f) for f in findings)
        )


def assert_schema(conn, expected: Schema, *, definer: str | None = None) -> None:
    """Raise SchemaMismatch unless the live database matches ``expected``.

    Besides the column-by-column comparison, every view must answer a SELECT,
    and with ``definer``, every view of ``expected`` must run as that user.
    """
    from app.schema import snapshot_schema

    databases = sorted({name.split(".", 1)[0] for name in expected})
    live = snapshot_schema(conn, databases)
    findings = [f for f in compare_schema(live, expected) if f.fatal]
    views = [name for name, obj in expected.items() if obj.kind != TABLE and name in live]
    if views and not _all_selectable(conn, views):
        # One of them is not: ask each, to name it and say why.
        for name in views:
            try:
                conn.exec_driver_sql(f"SELECT * FROM {name} LIMIT 0")
            except Exception as exc:
                orig = str(getattr(exc, "orig", exc)).splitlines()[0]
                findings.append(Finding("unselectable", name, "", "selectable", orig))
    if definer:
        findings += definer_findings(conn, [n for n, o in expected.items() if o.kind != TABLE], definer)
    if findings:
        raise SchemaMismatch(findings)


def _all_selectable(conn, views: list[str]) -> bool:
    """Whether every view answers a SELECT, asked in one statement (a view's
    query is analysed whole when it is read, as ``SELECT * FROM v LIMIT 0``
    would; ``tuple(*)`` names every output column, so none is pruned)."""
    try:
        conn.exec_driver_sql(" UNION ALL ".join(
            f"SELECT '{name}' AS view, toTypeName(tuple(*)) AS columns FROM {name} LIMIT 0" for name in views))
    except Exception:
        return False
    return True


def definer_findings(conn, views: Iterable[str], definer: str) -> list[Finding]:
    """Views and materialized views whose ``DEFINER`` is not ``definer``, on a server.

    Not part of the schema snapshot: on the embedded engine (no access
    storage, no named users) every DEFINER view runs as ``default``.
    """
    from app.schema import view_definer

    names = sorted(views)
    if not names:
        return []
    rows = dict(conn.exec_driver_sql(
        "SELECT concat(database, '.', name), create_table_query FROM system.tables "
        "WHERE engine IN ('View', 'MaterializedView') AND concat(database, '.', name) IN ("
        + ", ".join(f"%(v{i})s" for i in range(len(names))) + ")",
        {f"v{i}": n for i, n in enumerate(names)},
    ).all())
    return [Finding("definer", n, "", definer, view_definer(rows[n]) or "(none)")
            for n in names if n in rows and view_definer(rows[n]) != definer]
