"""Applying an adoption: repair, stamp, upgrade to head, verify, and check that every row is still there."""
from __future__ import annotations

import datetime as dt
import os
import uuid
from typing import Callable

from alembic import command as alembic_command

from app import commands, ledger, losses
from app.adopt.matching import warehouse_objects
from app.adopt.plan import (
    AdoptionPlan, AdoptionRefused, AdoptionResult, DataLossRefused, NoMatchingRevision, Operation, PlanChanged,
)
from app.adopt.planning import plan_adoption
from app.adopt.repairs import COLLAPSING
from app.chain import alembic_config, script_directory
from app.config import resolve_url
from app.engine import connect
from app.lock import deploy_lock
from app.runtime import file_checksum
from app.schema import TABLE, Schema
from app.sql import clickhouse_error_message, quote_identifier, quote_literal, quote_name

# --- content check -------------------------------------------------------------------------

def _content_queries(live: Schema, skip: set[str], cutoff: str,
                     converted: dict[str, str] | None = None) -> dict[str, str]:
    """One fingerprint query per base table: row count and a checksum over its stored columns.

    FINAL for collapsing engines: a background merge during adoption may
    collapse duplicates, which changes no row a reader sees.  Rows that a TTL
    may delete before ``cutoff`` are left out for the same reason.  A column
    in ``converted`` (``db.table.column`` -> type) is read as converted to
    that type: what the repair's MODIFY COLUMN leaves there.
    """
    converted = converted or {}
    queries = {}
    for name, obj in sorted(live.items()):
        if obj.kind != TABLE or losses.covers(skip, name):
            continue
        columns = [c.name for c in obj.columns if not c.default.startswith(("ALIAS", "EPHEMERAL"))
                   and not losses.covers(skip, f"{name}.{c.name}")]

        def value(column: str) -> str:
            new_type = converted.get(f"{name}.{column}")
            return f"CAST({quote_identifier(column)} AS {new_type})" if new_type else quote_identifier(column)

        args = ", ".join(f"ifNull(toString({value(c)}), '<NULL>')" for c in columns)
        checksum = f"toString(sum(cityHash64({args})))" if columns else "'0'"
        final = " FINAL" if any(part in obj.engine for part in COLLAPSING) else ""
        where = f" WHERE NOT (({obj.ttl}) <= toDateTime('{cutoff}'))" if obj.ttl else ""
        queries[name] = f"SELECT {quote_literal(name)}, count(), {checksum} FROM {quote_name(name)}{final}{where}"
    return queries


def _run_content(conn, queries: dict[str, str]) -> dict[str, tuple[int, str] | str]:
    out: dict[str, tuple[int, str] | str] = {}
    if not queries:
        return out
    try:
        # One query for all tables; table by table only when one is unreadable.
        for name, count, checksum in conn.exec_driver_sql("\nUNION ALL\n".join(queries.values())).all():
            out[name] = (int(count), str(checksum))
        return out
    except Exception:
        pass
    for name, sql in queries.items():
        try:
            _, count, checksum = conn.exec_driver_sql(sql).one()
            out[name] = (int(count), str(checksum))
        except Exception as exc:
            out[name] = "unreadable: " + clickhouse_error_message(exc)[:200]
    return out


# --- apply -----------------------------------------------------------------------------------

def _run_operation(conn, op: Operation, reporter: Callable[[dict], None] | None) -> None:
    for i, sql in enumerate(op.statements):
        conn.exec_driver_sql(sql)
        if op.count_check and i == op.count_check_after:
            original, copy = op.count_check
            old = conn.exec_driver_sql(f"SELECT count() FROM {original}").scalar()
            new = conn.exec_driver_sql(f"SELECT count() FROM {copy}").scalar()
            if old != new:
                raise AdoptionRefused(
                    f"rebuild of {original} copied {new} of {old} rows; {original} is untouched and "
                    f"{copy} holds the partial copy; nothing is stamped: find the cause and adopt again"
                )
    if reporter:
        reporter({"kind": "operation", "operation": op.kind, "target": op.target, "statements": len(op.statements)})


def apply_adoption(url: str | None, plan: AdoptionPlan, *, allow_data_loss: bool = False,
                   script_location: str | None = None, cache_dir: str | os.PathLike | None = None,
                   reporter: Callable[[dict], None] | None = None) -> AdoptionResult:
    """Repair, stamp the matched revision as adopted, upgrade to head, verify, check every row.

    ``plan`` is the plan the operator saw: the database is planned again and
    must give the same one.  Raises NoMatchingRevision, DataLossRefused or
    PlanChanged before changing anything.
    """
    url = resolve_url(url)
    fresh = plan_adoption(url, script_location=script_location, cache_dir=cache_dir)
    if fresh.signature() != plan.signature():
        raise PlanChanged("the database changed since the plan was made; review the new plan "
                          "(`zakaz-schema adopt`) and apply that one")
    if not fresh.adoptable:
        raise NoMatchingRevision(explain_refusal(fresh))
    lossy = fresh.lossy_operations
    if lossy and not allow_data_loss:
        raise DataLossRefused(
            "the repair plan would lose data: "
            + "; ".join(f"{op.kind} {op.target} ({op.rows_at_risk} rows)" for op in lossy)
            + "; back it up, then re-run with --allow-data-loss"
        )
    lost = {item for op in fresh.operations if op.loses for item in op.loses}
    converted = {op.target: op.converts_to for op in fresh.operations if op.converts_to}
    cutoff = (dt.datetime.now() + dt.timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S")
    script = script_directory(alembic_config(url, script_location=script_location))
    revision = script.get_revision(fresh.revision)

    with connect(url) as conn:
        schema_name = conn.dialect.default_schema_name or "default"
        before_schema = warehouse_objects(conn)
        queries = _content_queries(before_schema, lost, cutoff, converted)
        before = _run_content(conn, queries)

        def repair_and_stamp() -> None:
            for op in fresh.operations:
                _run_operation(conn, op, reporter)
            for sql in ledger.ledger_ddl(schema_name):
                conn.exec_driver_sql(sql)
            statements = sum(len(op.statements) for op in fresh.operations)
            row = ledger.Row(
                str(uuid.uuid4()), fresh.revision, "adopt", "stamped", [fresh.revision],
                f"adopted: the database built by the old SQL files fully contains revision {fresh.revision}; "
                f"{len(fresh.operations)} repair operation(s), {statements} statement(s)",
                statements=statements, checksum=file_checksum(revision.path),
            )
            ledger.write(conn, schema_name, row)
            if reporter:
                reporter({"kind": "stamp", "revision": fresh.revision})

        if conn.dialect.driver == "chdb":
            repair_and_stamp()  # chDB's directory lock keeps other processes out
        else:
            with deploy_lock(conn, schema_name):
                repair_and_stamp()

        # The repairs against what the plan said they drop: the schema
        # before and after them, held to the plan's list as a revision is
        # held to its DOWNGRADE_LOSES.
        repaired = warehouse_objects(conn)
    undeclared = losses.check_declared(sorted(lost), losses.schema_losses(before_schema, repaired)).undeclared

    steps: list[dict] = []

    def collect(event: dict) -> None:
        steps.append(event)
        if reporter:
            reporter({"kind": "step", **event})

    cfg = alembic_config(url, script_location=script_location, reporter=collect)
    alembic_command.upgrade(cfg, "head")
    verified = commands.verify(url)

    with connect(url) as conn:
        after = _run_content(conn, queries)
    changes = [f"{loss.target}: the repairs {loss.message}, which the plan did not list" for loss in undeclared]
    for name, was in before.items():
        now = after.get(name)
        if isinstance(was, str):
            changes.append(f"{name}: could not be read before adoption ({was})")
        elif now != was:
            changes.append(f"{name}: {was[0]} rows, checksum {was[1]} before; "
                           + (f"{now[0]} rows, checksum {now[1]} after" if isinstance(now, tuple) else str(now)))
    return AdoptionResult(fresh, steps, verified["findings"], changes, len(before))


def explain_refusal(plan: AdoptionPlan) -> str:
    """One paragraph: why ``plan`` cannot be adopted."""
    if plan.adoptable:
        return ""
    parts = list(plan.refusals)
    if plan.revision is None and plan.blocked_at and not parts:
        parts.append("the database does not fully contain the schema of any revision")
    return "; ".join(parts) + "; nothing was changed"
