"""Applying an adoption: run the plan step by step (recorded, resumable), stamp, upgrade to head, verify,
and check that every row is still there."""
from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from typing import Callable

from alembic import command as alembic_command

from app import commands, ledger, losses
from app.adopt import imported, running
from app.adopt.matching import warehouse_objects
from app.adopt.plan import AdoptionPlan, AdoptionResult, DataLossRefused, NoMatchingRevision, PlanChanged
from app.adopt.planning import BEFORE_MARK, plan_adoption
from app.adopt.repairs import COLLAPSING
from app.chain import alembic_config, script_directory
from app.config import resolve_url
from app.engine import connect
from app.lock import deploy_lock
from app.operations.rebuild import RebuildStopped
from app.runtime import file_checksum
from app.errors import CheckFailed, ZakazError
from app.schema import TABLE, Schema
from app.sql import clickhouse_error_message, quote_identifier, quote_literal, quote_name

# --- content check -------------------------------------------------------------------------

def _content_queries(live: Schema, skip: set[str], cutoff: str,
                     converted: dict[str, str] | None = None, *, final: bool = True) -> dict[str, str]:
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
        columns = [c for c in obj.columns if not c.default.startswith(("ALIAS", "EPHEMERAL"))
                   and not losses.covers(skip, f"{name}.{c.name}")]

        def value(column) -> str:
            # The same query runs before and after, so the hash only has to
            # read both shapes alike: the native value (LowCardinality hashes
            # as its value), converted where the type changes; a NULL would
            # make the whole row's hash NULL, hence its flag and its value.
            new_type = converted.get(f"{name}.{column.name}")
            v = f"CAST({quote_identifier(column.name)} AS {new_type})" if new_type else quote_identifier(column.name)
            typ = new_type or column.type
            if typ.startswith(("Nullable(", "LowCardinality(Nullable(")):
                return f"isNull({v}), assumeNotNull({v})"
            return f"toString({v})" if "Nullable(" in typ else v

        args = ", ".join(value(c) for c in columns)
        checksum = f"toString(sum(cityHash64({args})))" if columns else "'0'"
        reader = " FINAL" if final and any(part in obj.engine for part in COLLAPSING) else ""
        where = f" WHERE NOT (({obj.ttl}) <= toDateTime('{cutoff}'))" if obj.ttl else ""
        queries[name] = f"SELECT {quote_literal(name)}, count(), {checksum} FROM {quote_name(name)}{reader}{where}"
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

class AdoptionStepFailed(CheckFailed):
    """An operation of the plan failed; the ledger records it and ``adopt --apply`` resumes from there."""


def _row(fresh: AdoptionPlan, step_id: str, status: str, message: str, **more) -> ledger.Row:
    return ledger.Row(step_id, fresh.revision, "adopt", status, [], message, **more)


def _run_steps(conn, schema_name: str, fresh: AdoptionPlan, step_id: str, allow_data_loss: bool,
               reporter: Callable[[dict], None] | None, queries: dict[str, str], raw: dict[str, str],
               before: dict) -> None:
    """Each operation: a ``started`` row of the adoption's ledger step, then its calls.

    The adoption's rows stay ``started`` (an open step: ``upgrade`` refuses
    until the adoption is stamped) and a failure is written as ``failed``;
    ``adopt --apply`` plans again from the database as it is, so what is
    done is not done again, and a rebuild stopped half-way is finished by
    rebuild_table's own re-run rules.

    A table rebuilt with another sorting key of a collapsing engine is
    compared as stored (``raw``: no FINAL) across its step, and its content
    as readers see it (``queries``) is measured again into ``before``.
    """
    total = len(fresh.operations)
    with running.online(conn, allow_data_loss=allow_data_loss) as ops:
        for k, op in enumerate(fresh.operations, 1):
            ledger.write(conn, schema_name, _row(fresh, step_id, "started", f"step {k}/{total}: {op.reason}",
                                                 statements=len(op.statements)))
            started = dt.datetime.now()
            stored = {op.target: raw[op.target]} if op.rekeys and op.target in raw else {}
            try:
                was = _run_content(conn, stored)
                for call in op.calls:
                    running.invoke(ops, call)
                now = _run_content(conn, stored)
                if now != was:
                    raise RebuildStopped(
                        f"rebuild of {op.target}: its stored rows were {was[op.target]} (count, checksum) before "
                        f"and are {now[op.target]} after; the table has its new shape: compare it with a backup "
                        "before going on")
                if stored:
                    # Readers see the rows through the new key from now on.
                    before.update(_run_content(conn, {op.target: queries[op.target]}))
            except Exception as exc:
                error = str(exc) if isinstance(exc, ZakazError) else clickhouse_error_message(exc)
                error = " ".join(error.split())
                ledger.write(conn, schema_name, _row(
                    fresh, step_id, "failed", f"step {k}/{total}: {op.reason}", started_at=started,
                    finished_at=dt.datetime.now(), failed_statement=k, error=error[:2000]))
                done = ("no step is done" if k == 1 else "step 1 is done and recorded in the ledger" if k == 2
                        else f"steps 1..{k - 1} are done and recorded in the ledger")
                fix = "pause the writes if any" if isinstance(exc, RebuildStopped) else "fix the cause"
                raise AdoptionStepFailed(
                    f"adoption step {k}/{total} ({op.kind} {op.target}) failed: {error}; {done}; {fix}, then run "
                    "`zakaz-schema adopt --apply` again to resume from this step (it retries this one)") from None
            if reporter:
                reporter({"kind": "operation", "operation": op.kind, "target": op.target,
                          "statements": len(op.statements)})


def apply_adoption(url: str | None, plan: AdoptionPlan, *, allow_data_loss: bool = False,
                   script_location: str | None = None, cache_dir: str | os.PathLike | None = None,
                   reporter: Callable[[dict], None] | None = None) -> AdoptionResult:
    """Run the plan step by step, stamp the revision as adopted, upgrade to head, verify, check every row.

    ``plan`` is the plan the operator saw: the database is planned again and
    must give the same one.  Raises NoMatchingRevision, DataLossRefused or
    PlanChanged before changing anything; AdoptionStepFailed (recorded,
    resumable) when an operation fails.
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
            "the plan would lose data: "
            + "; ".join(f"{op.kind} {op.target} ({losses.row_count(op.rows_at_risk)})" for op in lossy)
            + "; back it up, then re-run with --allow-data-loss"
        )
    lost = {item for op in fresh.operations if op.loses for item in op.loses}
    # A losing step of an earlier run that this plan runs again did not lose
    # (it was killed before it did): this run reports it as its own.
    earlier = [loss for loss in (fresh.resume or {}).get("earlier_losses", []) if not set(loss["loses"]) & lost]
    converted = {k: v for op in fresh.operations for k, v in op.converts_to.items()}
    cutoff = (dt.datetime.now() + dt.timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S")
    script = script_directory(alembic_config(url, script_location=script_location))
    revision = script.get_revision(fresh.revision)

    with connect(url) as conn:
        schema_name = conn.dialect.default_schema_name or "default"
        before_schema = warehouse_objects(conn)
        if fresh.resume:
            # The queries of the first run (over the columns there were before
            # it), measured again: writes may have gone on while it stood.
            step_id = fresh.resume["step_id"]
            queries = fresh.resume["queries"]
            before = _run_content(conn, queries)
        else:
            step_id = str(uuid.uuid4())
            queries = _content_queries(before_schema, lost, cutoff, converted)
            before = _run_content(conn, queries)

        rekeyed = {op.target for op in fresh.operations if op.rekeys}
        raw = _content_queries({n: o for n, o in before_schema.items() if n in rekeyed}, lost, cutoff, converted,
                               final=False)

        def repair_and_stamp() -> None:
            for sql in ledger.ledger_ddl(schema_name):
                conn.exec_driver_sql(sql)
            if not fresh.resume:
                # One INSERT: the imported history and the adoption's first row land together.
                ledger.write(conn, schema_name, *imported.ledger_rows(fresh.imported), _row(
                    fresh, step_id, "started",
                    f"adopting at {fresh.revision}: {len(fresh.operations)} operation(s); "
                    + BEFORE_MARK + json.dumps({"queries": queries, "before": before}, sort_keys=True)))
            _run_steps(conn, schema_name, fresh, step_id, allow_data_loss, reporter, queries, raw, before)
            statements = sum(len(op.statements) for op in fresh.operations)
            ledger.write(conn, schema_name, ledger.Row(
                step_id, fresh.revision, "adopt", "stamped", [fresh.revision],
                f"adopted: the database built by the old SQL files, brought to revision {fresh.revision} by "
                f"{len(fresh.operations)} operation(s), {statements} statement(s)"
                + (f", resuming an interrupted run whose steps lost data (allowed): "
                   + "; ".join(f"{loss['step']} LOSES {', '.join(loss['loses'])} in {losses.row_count(loss['rows'])}"
                               for loss in earlier) if earlier else ""),
                statements=statements, checksum=file_checksum(revision.path),
            ))
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
    undeclared = [] if fresh.resume else losses.check_declared(
        sorted(lost), losses.schema_losses(before_schema, repaired)).undeclared

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
            changes.append(f"{name}: {losses.row_count(was[0])}, checksum {was[1]} before; "
                           + (f"{losses.row_count(now[0])}, checksum {now[1]} after" if isinstance(now, tuple)
                              else str(now)))
    # The first run's queries already leave out what its steps lost.
    unchecked = lost | {item for loss in earlier for item in loss["loses"]}
    return AdoptionResult(fresh, steps, verified["findings"], changes, len(before), unchecked=sorted(unchecked),
                          resumed=bool(fresh.resume), earlier_losses=earlier)


def explain_refusal(plan: AdoptionPlan) -> str:
    """One paragraph: why ``plan`` cannot be adopted."""
    if plan.adoptable:
        return ""
    parts = list(plan.refusals) or ["no revision can be reached keeping the rows"]
    return "; ".join(parts) + "; nothing was changed"
