"""The planner's steps as adoption operations: a kind, a target, the SQL, and the rows at stake.

A step that loses something (the planner's ``loses``) gets the query that
counts the rows holding what it would lose, run when the plan is made: a
dropped table or column, every row; a retyped column, the rows whose value
does not come back unchanged from the new type (``accurateCastOrNull``: a
value that cannot convert is counted, never silently dropped); a collapsing
table whose sorting key changes, the visible rows the new key merges away;
a TTL, the rows already past it.
"""
from __future__ import annotations

from app import losses, types
from app.adopt.plan import Operation
from app.planner import Step
from app.schema import TABLE, Schema
from app.sql import quote_identifier, quote_literal

COLLAPSING = ("Replacing", "Collapsing", "Summing", "Aggregating", "Graphite")
# The first call of a step names it; access calls (grants) ride along.
_KINDS = {
    "create_database": "create_database", "create_table_if_not_exists": "create_table",
    "add_column_if_not_exists": "add_column", "drop_column_if_exists": "drop_column",
    "modify_column": "modify_column", "remove_column_property": "modify_column", "modify_ttl": "modify_ttl",
    "remove_ttl": "remove_ttl", "rebuild_table": "rebuild_table", "create_view": "create_view",
    "create_materialized_view": "create_materialized_view", "set_view_security": "set_view_security",
    "drop_view": "drop_view", "drop_table_if_exists": "drop_table",
}
ACCESS_CALLS = ("grant", "access", "revoke")


def _kind(step: Step) -> str:
    ops = [c.op for c in step.calls if c.op not in ACCESS_CALLS]
    if ops[:2] == ["drop_view", "create_materialized_view"]:
        return "recreate_materialized_view"
    kind = _KINDS.get(ops[0], ops[0]) if ops else "access"
    if kind == "create_view" and step.describe.startswith("recreate"):
        return "recreate_view"
    return kind


def _target(step: Step, kind: str) -> str:
    call = next((c for c in step.calls if c.op not in ACCESS_CALLS), step.calls[0])
    name = call.args[0] if call.args else ""
    if kind in ("add_column", "modify_column"):
        return f"{name}.{call.args[1].split()[0]}"
    if kind == "drop_column":
        return f"{name}.{call.args[1]}"
    return name


def _changed_value(column: str, old: str, new: str) -> str:
    back = f"accurateCastOrNull(accurateCastOrNull({quote_identifier(column)}, {quote_literal(new)}), {quote_literal(old)})"
    return f"NOT ifNull({back} = {quote_identifier(column)}, isNull({quote_identifier(column)}))"


def risk_sql(target: str, current: Schema, desired: Schema) -> str:
    """The query counting the rows that hold what losing ``target`` ("db.t" or "db.t.c") would lose."""
    table, _, column = target.rpartition(".") if target.count(".") == 2 else (target, "", "")
    old, new = current.get(table), desired.get(table)
    if not column or old is None or new is None or old.column(column) is None or new.column(column) is None:
        return f"SELECT count() FROM {table}"
    was, want = old.column(column).type, new.column(column).type
    change = types.type_change(was, want)
    if change.only_nulls:
        return f"SELECT countIf(isNull({quote_identifier(column)})) FROM {table}"
    return f"SELECT countIf({_changed_value(column, _bare(was), _bare(want))}) FROM {table}"


def _bare(type_: str) -> str:
    # accurateCastOrNull returns Nullable itself and takes no Nullable target.
    return type_[len("Nullable("):-1] if type_.startswith("Nullable(") else type_


def operations_from(steps, current: Schema, desired: Schema, rows: dict[str, int],
                    render) -> list[Operation]:
    """One Operation per step (``render``: calls -> offline statements)."""
    out = []
    for step in steps:
        kind = _kind(step)
        target = _target(step, kind)
        table = target if target in desired or target in current else target.rpartition(".")[0]
        count = rows.get(table)
        if count is not None:
            reason = f"{step.describe}; {table} holds {losses.row_count(count)}"
        elif kind == "create_table":
            reason = f"{step.describe}: missing, created empty as the revision defines it (no rows to lose)"
        else:
            reason = step.describe
        op = Operation(kind, target, reason, render(step.calls), calls=list(step.calls),
                       loses=list(step.loses), rows=count)
        if step.loses:
            op.risk_sql = [risk_sql(t, current, desired) for t in step.loses]
        old, new = current.get(table), desired.get(table)
        if old is not None and new is not None and old.kind == TABLE == new.kind:
            op.converts_to = {f"{table}.{c.name}": c.type for c in new.columns
                              if old.column(c.name) is not None and old.column(c.name).type != c.type}
            op.rekeys = kind == "rebuild_table" and new.order_by != old.order_by and any(
                p in e for p in COLLAPSING for e in (old.engine, new.engine))
            if kind == "rebuild_table" and new.order_by != old.order_by and any(
                    p in new.engine for p in COLLAPSING):
                # Rows equal on the new sorting key collapse on merge.
                op.loses = op.loses or [table]
                extra = (f"SELECT count() - uniqExact(tuple({new.order_by or ''})) "
                         f"FROM {table}{' FINAL' if any(p in old.engine for p in COLLAPSING) else ''}")
                op.risk_sql.append(extra)
        if kind == "modify_ttl" and new is not None and new.ttl:
            op.loses = [table]
            op.reason += "; rows already past the new TTL are deleted by it"
            op.risk_sql = [f"SELECT countIf(({new.ttl}) <= now()) FROM {table}"]
        out.append(op)
    return out

