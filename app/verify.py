"""Compare a live schema with the expected one, finding by finding.

Pure: both sides are ``app.schema.Schema`` values (a snapshot and, usually,
``app.canonical.CANONICAL``), compared by ``app.schema_diff``; nothing here
touches a database (``app.schema_check`` asks the live one).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable

from app.schema import BOOKKEEPING_NAMES, MATERIALIZED_VIEW, TABLE, VIEW, Schema
from app.schema_diff import Difference, diff_schemas

KINDS = (
    "missing_object", "unmanaged_object", "kind",
    "engine", "order_by", "partition_by", "primary_key", "ttl",
    "missing_column", "unmanaged_column", "type", "default", "codec", "comment", "column_order",
)

# How a report names each aspect compared as text.
_LABELS = {"engine": "engine", "order_by": "ORDER BY", "partition_by": "PARTITION BY", "ttl": "TTL",
           "primary_key": "PRIMARY KEY", "security": "SQL SECURITY", "definer": "DEFINER", "default": "DEFAULT",
           "codec": "CODEC", "comment": "COMMENT"}


NOT_FATAL = ("column_order", "unmanaged_object", "roles_unchecked")
# What app.operations.rebuild leaves behind: the old table kept after a swap it could not prove.
REBUILD_LEFTOVERS = ("__before_rebuild",)

# An application user (app.users) that exists without its role; ``actual`` says how.
USER_ROLE = "user_role"
# An application user holding more than its role (another role, a privilege of its own).
USER_RIGHTS = "user_rights"
ROLE_MISSING = "role missing"
ROLE_NOT_HELD = "not granted"
ROLE_NOT_DEFAULT = "not a default role"
_ROLE_ADVICE = {
    ROLE_MISSING: "user {user} exists but its role {role} does not (a downgrade dropped it, and with it its "
                  "grant to the user): run `zakaz-schema upgrade`, then `zakaz-schema users apply`",
    # Dropping a role removes its grants to users; creating it again does not give them back.
    ROLE_NOT_HELD: "user {user} exists but does not hold its role {role} (roles dropped by a downgrade and "
                   "created again lose their grants to users): run `zakaz-schema users apply`",
    ROLE_NOT_DEFAULT: "user {user} holds its role {role}, but not as a default role, so its logins get none "
                      "of the role's rights: run `zakaz-schema users apply`",
}

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
        if self.kind == USER_ROLE:
            return _ROLE_ADVICE[self.actual].format(user=self.object, role=self.expected)
        if self.kind == USER_RIGHTS:
            return (f"user {self.object} holds more than its role {self.expected}: {self.actual}; revoke "
                    f"them from {self.object} (`users apply` grants, never revokes)")
        if self.kind == "roles_unchecked":
            return f"the application users' roles were not checked: {self.actual}"
        if self.kind == "missing_object":
            return f"missing {self.expected.replace('_', ' ')} {self.object}"
        if self.kind == "unmanaged_object" and self.object.endswith(REBUILD_LEFTOVERS):
            # app.operations.rebuild keeps the table before a swap under this
            # name when it could not show the new one holds every row.
            table = self.object.rsplit("__", 1)[0]
            return (f"table {self.object} is left by a rebuild of {table}: check that {table} holds the rows "
                    f"you need from it, then drop it (DROP TABLE {self.object})")
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
        label = _LABELS.get(self.kind, self.kind)
        return f"{label} of {self.target}: expected {e}, found {a}"

    def to_dict(self) -> dict:
        return {**asdict(self), "fatal": self.fatal, "message": str(self)}


def _ignored(name: str) -> bool:
    return name.split(".", 1)[-1] in BOOKKEEPING_NAMES


# Presence differences, by the side that has the object or column.
_MISSING = {"object": "missing_object", "column": "missing_column"}
_EXTRA = {"object": "unmanaged_object", "column": "unmanaged_column"}


def finding(d: Difference, expected: Schema) -> Finding:
    """A difference from ``expected`` to the live schema, worded as verify reports it."""
    if d.aspect in _MISSING and d.removed:
        kind, exp, act = _MISSING[d.aspect], d.before, ""
    elif d.aspect in _EXTRA and d.added:
        kind, exp, act = _EXTRA[d.aspect], "", d.after
    else:
        kind, exp, act = d.aspect, d.before, d.after
    if d.aspect == "column" and expected[d.object].kind != TABLE:
        exp = act = ""  # a view's columns are judged by name only
    return Finding(kind, d.object, d.column, exp, act)


def compare_schema(
    live: Schema,
    expected: Schema,
    managed_databases: Iterable[str] | None = None,
) -> list[Finding]:
    """Every difference between ``live`` and ``expected``, in a stable order.

    Objects of ``live`` in a managed database (by default, any database
    ``expected`` has objects in) that ``expected`` lacks are unmanaged.
    """
    live = {n: o for n, o in live.items() if not _ignored(n)}
    expected = {n: o for n, o in expected.items() if not _ignored(n)}
    return [finding(d, expected) for d in diff_schemas(expected, live, managed_databases)]


class SchemaMismatch(Exception):
    """The live schema is not the expected one; the message lists every finding."""

    def __init__(self, findings: list[Finding]):
        self.findings = findings
        super().__init__(
            f"schema differs from the expected one ({len(findings)} finding(s)): "
            + "; ".join(str(f) for f in findings)
        )
