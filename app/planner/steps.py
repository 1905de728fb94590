"""What a plan is made of (calls, steps, the plan) and what the planner reads off a schema.

Pure text and data: the key and column clauses of a create or rebuild, the
names an expression or SELECT mentions, the grants of the Access rules, the
order views must be created in.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from app.errors import UsageError
from app.schema import MATERIALIZED_VIEW, TABLE, VIEW, DbObject


# Column kinds whose values ClickHouse computes: never copied or inserted.
_COMPUTED = ("MATERIALIZED", "ALIAS", "EPHEMERAL")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STRING = re.compile(r"'(?:[^'\\]|\\.)*'")
_QUALIFIED = re.compile(r"`?([A-Za-z_][A-Za-z0-9_]*)`?\.`?([A-Za-z_][A-Za-z0-9_]*)`?")


# Who may use a new object, by warehouse.md's Access section (revision 0010
# granted the objects of its time): the ETL writes the staging, fact,
# dimension and mart tables of zakaz; DataLens reads every view.  The other
# grants there name single objects, which a new object is none of.
GRANT_RULES = (
    (re.compile(r"^zakaz\.(stg|fact|dim|dm)_"), (TABLE,), "INSERT, SELECT", "zakaz_etl"),
    (re.compile(r"^(zakaz|meta|bi)\."), (VIEW, MATERIALIZED_VIEW), "SELECT", "zakaz_reader"),
)


class PlanRefused(UsageError):
    """A change the planner will not make as asked; the message names the object and the decision."""


@dataclass(frozen=True)
class Call:
    """One ``op.<name>(*args, **kwargs)`` call, as a revision writes it."""

    op: str
    args: tuple = ()
    kwargs: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Step:
    """One change: its calls, a one-line summary, and what it drops with its data."""

    describe: str
    calls: tuple[Call, ...]
    loses: tuple[str, ...] = ()  # "db.table" or "db.table.column"
    # How each of ``loses`` is lost, in the words of a docstring ("dropped with its rows"); may be shorter.
    how: tuple[str, ...] = ()

    def losses(self) -> dict[str, str]:
        """Each target of ``loses`` and how it is lost."""
        how = self.how + ("dropped with its data",) * (len(self.loses) - len(self.how))
        return dict(zip(self.loses, how))


@dataclass(frozen=True)
class Plan:
    upgrade: tuple[Step, ...]
    downgrade: tuple[Step, ...]

    @property
    def empty(self) -> bool:
        return not self.upgrade

    @property
    def changes(self) -> list[str]:
        return [s.describe for s in self.upgrade]

    @property
    def upgrade_loses(self) -> list[str]:
        return _unique(t for s in self.upgrade for t in s.loses)

    @property
    def downgrade_loses(self) -> list[str]:
        return _unique(t for s in self.downgrade for t in s.loses)

    def loss_notes(self, direction: str = "downgrade") -> dict[str, str]:
        """Each target the ``direction`` ("upgrade", "downgrade") loses, and how."""
        out: dict[str, str] = {}
        for step in self.upgrade if direction == "upgrade" else self.downgrade:
            for target, how in step.losses().items():
                out.setdefault(target, how)
        return out



# --- helpers -------------------------------------------------------------------------------

def _unique(items) -> list[str]:
    return list(dict.fromkeys(items))


def _call(op: str, *args, **kwargs) -> Call:
    return Call(op, args, tuple((k, v) for k, v in kwargs.items() if v is not None))


def key_clause(key: str) -> str:
    """A normalised key (``a, b``; ``''``) as an ORDER BY clause: ``(a, b)``, ``tuple()``."""
    return f"({key})" if key else "tuple()"


def columns_text(obj: DbObject) -> str:
    """The column lines of a create or rebuild: ``name Type [DEFAULT expr]``."""
    return "\n".join(f"{c.name} {c.spec}" for c in obj.columns)


def _code(text: str) -> str:
    """``text`` without its string literals (a table name in quotes is data, not a reference)."""
    return _STRING.sub("''", text)


def identifiers(expression: str) -> set[str]:
    """Names in an expression (over-inclusive: function names too)."""
    return set(_IDENTIFIER.findall(_code(expression)))


def key_columns(obj: DbObject) -> set[str]:
    """Columns ClickHouse will not ALTER: those in the keys and the engine's arguments."""
    used = identifiers(" ".join((obj.order_by, obj.partition_by, obj.engine.partition("(")[2])))
    return used & set(obj.column_names)


def reads(query: str, names) -> set[str]:
    """The objects of ``names`` a SELECT mentions as ``db.name``."""
    return {f"{a}.{b}" for a, b in _QUALIFIED.findall(_code(query))} & set(names)


# ``SELECT *``, ``t.*``, ``COLUMNS('re')``: every column, whatever names the text holds (``count(*)`` reads none).
_EVERY_COLUMN = re.compile(r"(?:\bSELECT\s+(?:DISTINCT\s+)?|,\s*|\.)\*|\bCOLUMNS\s*\(", re.I)


def columns_read(query: str, columns) -> set[str] | None:
    """The ``columns`` a SELECT may read, over-inclusive (names in its text); None: all of them.

    A stand-in for ClickHouse's analyzer (app.dependencies) where no database
    is at hand: a name in the text may be an alias or another table's column,
    which only makes a view count as a reader when it is not one.
    """
    code = _code(query)
    if _EVERY_COLUMN.search(code):
        return None
    return identifiers(code) & set(columns)


def _same_text(a: str, b: str) -> bool:
    return " ".join(a.split()) == " ".join(b.split())


def grants(obj: DbObject) -> list[tuple[str, str]]:
    """``(privileges, role)`` the Access rules give ``obj``."""
    return [(privileges, role) for pattern, kinds, privileges, role in GRANT_RULES
            if obj.kind in kinds and pattern.match(obj.name)]


def _grant_calls(obj: DbObject) -> list[Call]:
    return [_call("grant", privileges, obj.name, to=role) for privileges, role in grants(obj)]


def _revoke_calls(obj: DbObject) -> list[Call]:
    # A grant outlives its object (access storage keeps names): the spec wants none on missing names.
    return [_call("access", f"REVOKE {privileges} ON {obj.name} FROM {role}") for privileges, role in grants(obj)]


def _is_view(obj: DbObject | None) -> bool:
    return obj is not None and obj.kind in (VIEW, MATERIALIZED_VIEW)


def _order(names, depends: Mapping[str, set[str]]) -> list[str]:
    """``names`` with each after what it depends on (among ``names``); by name otherwise."""
    names, done, out = sorted(names), set(), []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in done:
            return
        if name in path:
            raise PlanRefused(f"views {' -> '.join(path + (name,))} read each other in a cycle; "
                              "break the cycle in the canonical schema")
        for dep in sorted(depends.get(name, ())):
            if dep in names:
                visit(dep, path + (name,))
        done.add(name)
        out.append(name)

    for n in names:
        visit(n, ())
    return out
