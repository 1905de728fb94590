"""Planning an adoption: read the live database once, plan it against every revision, keep the cheapest.

For each revision R of the chain that may be stamped (every revision up to
R only shapes the schema: app.adopt.running.schema_only) the schema planner (app.planner) gives the
operations that turn the live schema into what R defines (app.adopt.targets).
The chosen revision is the one needing the fewest operations, counting an
object or column already there ahead of R as one (the upgrade re-runs its
revision over it); operations that lose something count before any number
of those that keep every row, and among equals the latest revision wins (the
upgrade then re-runs least).  No revision whose plan the planner refuses is
chosen; if every one is refused, the reasons are the refusal.
"""
from __future__ import annotations

import json
import os
import re

from app import ledger, losses, planner
from app.adopt.plan import AdoptionPlan, AlreadyManaged
from app.adopt.repairs import ACCESS_CALLS, operations_from
from app.adopt import imported, running
from app.adopt.running import offline_sql
from app.chain import alembic_config, script_directory
from app.adopt.targets import current_schema, managed_names, shape_refusals, target_at
from app.warehouse import MANAGED_DATABASES
from app.config import mask_url, resolve_url
from app.engine import connect
from app.planner import Call, Step, columns_text, key_clause
from app.replay import linear_chain, revision_states
from app.schema import TABLE
from app.snapshot import take_snapshot
from app.verify import compare_schema

# The work table of rebuild_table (app.operations.rebuild): one left behind
# is an interrupted rebuild, which the plan finishes.
REBUILD_SUFFIX = "__rebuild"
BEFORE_MARK = "content before: "


def _roles(conn) -> set[str]:
    try:
        return {r[0] for r in conn.exec_driver_sql("SELECT name FROM system.roles").all()}
    except Exception:  # chDB: no access storage (grants are skipped there anyway)
        return set()


def _in_progress(rows: list[dict]) -> dict | None:
    """An adoption that started and was not stamped: its step, revision and the content measured before."""
    rows = [r for r in rows if r["direction"] != "import"]  # written with its first row
    if not rows or any(r["direction"] != "adopt" or r["status"] in ledger.COMPLETED for r in rows):
        return None
    first = rows[0]
    message = first["message"]
    try:
        recorded = json.loads(message[message.index(BEFORE_MARK) + len(BEFORE_MARK):])
    except ValueError:
        return None
    # How far the latest run got: its operations are rows "step k/total: ...",
    # and step k, the last one begun, did not finish (failed, or the process died).
    total = re.match(r"adopting at \S+: (\d+) operation", message)
    done, total = 0, int(total.group(1)) if total else 0
    for r in rows[1:]:
        step = re.match(r"step (\d+)/(\d+): ", r["message"] or "")
        if step:
            done, total = int(step.group(1)) - 1, int(step.group(2))
    return {"step_id": first["step_id"], "revision": first["revision"], "steps_done": done,
            "steps_total": total, "earlier_losses": _earlier_losses(rows[1:]), **recorded}


_LOSS = re.compile(r"; LOSES (.+) in (\d+) rows?(?:;|$)")


def _earlier_losses(rows: list[dict]) -> list[dict]:
    """The losing steps the adoption's earlier runs began and did not record as failed.

    The step rows are all that is left of those runs (the plan they ran is
    gone), and a step's reason says what it loses and in how many rows
    (``_count_risks``).  A step killed before it finished may not have lost
    anything; the caller drops the ones the new plan still has to run.
    """
    out: dict[tuple[str, ...], dict] = {}
    for k, r in enumerate(rows):
        step = re.match(r"step (\d+)/(\d+): (.*)", r["message"] or "", re.S)
        loss = _LOSS.search(step.group(3)) if step and r["status"] == "started" else None
        if not loss:
            continue
        failed = k + 1 < len(rows) and rows[k + 1]["status"] == "failed" and rows[k + 1]["message"] == r["message"]
        items = tuple(loss.group(1).split(", "))
        if failed:
            out.pop(items, None)
        else:
            out[items] = {"loses": list(items), "rows": int(loss.group(2)),
                          "step": f"step {step.group(1)}/{step.group(2)}", "reason": step.group(3)}
    return list(out.values())


def _as_defined(item: dict, findings: list, operations: list) -> bool:
    """Whether an object or column of a later revision already there is as that revision defines it:
    no finding of the plan's comparison on it, no operation changing it."""
    name, column = item["object"], item["column"]
    target = f"{name}.{column}" if column else name
    if any(f.fatal and f.object == name and (not column or f.column == column) for f in findings):
        return False
    return not any(op.target == target or (not column and op.target.startswith(name + "."))
                   for op in operations)


def _finish_rebuild(name: str, current, desired) -> Step:
    new, old = desired[name], current[name]
    copy = [c.name for c in new.columns if old.column(c.name) is not None
            and not c.default.startswith(("MATERIALIZED", "ALIAS", "EPHEMERAL"))]
    call = Call("rebuild_table", (name, columns_text(new)), tuple((k, v) for k, v in (
        ("engine", new.engine), ("order_by", key_clause(new.order_by)), ("partition_by", new.partition_by or None),
        ("ttl", new.ttl or None), ("copy", ", ".join(copy)),
        ("primary_key", key_clause(new.primary_key) if new.primary_key else None)) if v is not None))
    return Step(f"finish the interrupted rebuild of {name} ({name}{REBUILD_SUFFIX} is left from it)", (call,))


def _steps(plan_steps, roles: set[str]) -> list[Step]:
    """The upgrade steps adopt runs: never a database dropped; grants only to roles that exist
    (a revision after R creates the roles and grants on what exists then)."""
    out = []
    for step in plan_steps:
        if any(c.op == "drop_database" for c in step.calls):
            continue
        calls = tuple(c for c in step.calls if c.op not in ACCESS_CALLS
                      or any(role in roles for role in (*c.args, *dict(c.kwargs).values()) if isinstance(role, str)))
        if calls:
            out.append(Step(step.describe, calls, step.loses))
    return out


def _cost(steps: list[Step], ahead: list) -> tuple[int, int]:
    return (sum(1 for s in steps if s.loses), len(steps) + len(ahead))


def plan_adoption(url: str | None = None, *, script_location: str | None = None,
                  cache_dir: str | os.PathLike | None = None) -> AdoptionPlan:
    """Plan the adoption of the database at ``url``; changes nothing.

    Raises AlreadyManaged for a database with a ledger (unless the ledger
    holds only an adoption in progress, which the plan resumes).  A database
    no plan can adopt gives a plan with ``revision`` None and the refusals.
    """
    url = resolve_url(url)
    # The replay opens a scratch embedded database: done before the live
    # connection is opened (one embedded path per process at a time).
    chain = revision_states(script_location, cache_dir)
    states = chain.states
    with connect(url) as conn:
        schema_name = conn.dialect.default_schema_name or "default"
        has_ledger = conn.exec_driver_sql(
            "SELECT count() FROM system.tables WHERE database = %(d)s AND name = %(t)s",
            {"d": schema_name, "t": ledger.LEDGER_TABLE}).scalar()
        rows = ledger.read_rows(conn, schema_name) if has_ledger else []
        resume = _in_progress(rows)
        if rows and resume is None:
            raise AlreadyManaged(
                f"{schema_name}.{ledger.LEDGER_TABLE} exists: this database is already managed by "
                f"zakaz-schema (at {', '.join(ledger.current_heads(rows)) or 'base'}); use `zakaz-schema status`, "
                "`upgrade` and `verify` instead of adopt")
        snap = take_snapshot(conn, MANAGED_DATABASES)
        version = conn.exec_driver_sql("SELECT version()").scalar()
        roles = _roles(conn)
        live = snap.schema
        plan = AdoptionPlan(
            url=mask_url(url), server_version=version, chain_checksum=chain.checksum,
            head=states[-1].revision, revision=None, objects=len(live), blocked_at={},
            differences=[], ahead=[], operations=[], unmanaged=[], refusals=[], resume=resume,
        )
        if not resume:
            plan.imported = imported.find_histories(conn)
        for table, entries in plan.imported.items():
            plan.notes.append(
                f"{table} is the history of {imported.TOOL} ({len(entries)} applied file(s)): kept as it is, "
                "and imported into the ledger as history before the adoption")
        if resume:
            plan.notes.append(f"resuming the adoption at {resume['revision']} begun in ledger step "
                              f"{resume['step_id']}: what is done is not done again")
        elif has_ledger:
            plan.empty_ledger = True
            plan.notes.append("an empty ledger exists (an adoption interrupted before its first step); it is reused")
        names = managed_names(states)
        leftovers = sorted(n[:-len(REBUILD_SUFFIX)] for n in live
                           if n.endswith(REBUILD_SUFFIX) and n[:-len(REBUILD_SUFFIX)] in names)
        hidden = {n + REBUILD_SUFFIX for n in leftovers}
        plan.unmanaged = [f"{n} ({o.kind.replace('_', ' ')})" for n, o in sorted(live.items())
                          if n not in names and n not in hidden]
        plan.tables = {n: int(snap.total_rows.get(n) or 0) for n, o in sorted(live.items())
                       if o.kind == TABLE and n not in hidden}
        if not any(n in names for n in live):
            plan.refusals.append(
                "the warehouse databases hold no object of any revision: nothing to adopt; "
                "a new database is built with `zakaz-schema upgrade`"
                + (f" (found only unmanaged objects: {', '.join(sorted(live))})" if live else ""))
            return plan
        plan.refusals = shape_refusals(live, states)
        if plan.refusals:
            return plan

        # A view reading a table of the chain that is missing cannot be
        # selected from: the plan treats it as missing too (and creates it).
        broken = {n for n, q in snap.queries.items() if n in names and planner.reads(q, names) - set(live)}
        for n in sorted(broken):
            plan.notes.append(f"{n} reads {', '.join(sorted(planner.reads(snap.queries[n], names) - set(live)))}, "
                              "which is missing: it is created again as the revision defines it")
        current = current_schema(live, states, hidden | broken)
        live_queries = {n: q for n, q in snap.queries.items() if n in current}
        # Stamping R claims revisions up to R ran: only those whose whole
        # effect is their schema can be stood in for by the plan.
        below = next((i for i, ok in enumerate(running.schema_only(linear_chain(script_directory(
            alembic_config(url, script_location=script_location))))) if not ok), len(states))
        candidates = [chain.index(resume["revision"])] if resume else range(below)
        planned, refused = {}, {}
        for i in candidates:
            target = target_at(states, i, current)
            try:
                steps = _steps(planner.plan(current, target.schema, allow_loss=True, current_queries=live_queries,
                                            desired_queries=target.queries).upgrade, roles)
            except planner.PlanRefused as exc:
                refused[i] = str(exc)
                continue
            rebuilt = {c.args[0] for s in steps for c in s.calls if c.op == "rebuild_table"}
            steps += [_finish_rebuild(n, current, target.schema) for n in leftovers
                      if n not in rebuilt and n in target.schema and n in current]
            planned[i] = (target, steps)
        plan.candidates = {states[i].revision: _cost(s, t.ahead)[1] for i, (t, s) in planned.items()}
        if not planned:
            reasons = sorted(set(refused.values()))
            plan.refusals.append(
                "no revision can be reached keeping the rows: " + "; ".join(reasons[:5])
                + (f"; and {len(reasons) - 5} more" if len(reasons) > 5 else "")
                + "; for adopt: change what is named by hand into what the revisions have (or back it up "
                "and drop it), then adopt again")
            return plan

        r = min(planned, key=lambda i: (*_cost(planned[i][1], planned[i][0].ahead), -i))
        target, steps = planned[r]
        plan.revision = states[r].revision
        plan.pending = [s.revision for s in states[r + 1:]]
        findings = compare_schema(current, target.schema, MANAGED_DATABASES)
        plan.differences = [{**{k: v for k, v in f.to_dict().items() if k != "fatal"}, "revision": ""}
                            for f in findings]
        if r + 1 < len(states) and r + 1 in planned:
            mine = {s.describe for s in steps}
            extra = [s.describe for s in planned[r + 1][1] if s.describe not in mine]
            plan.blocked_at[states[r + 1].revision] = extra[:8] + (
                [f"... and {len(extra) - 8} more"] if len(extra) > 8 else [])
        elif r + 1 in refused:
            plan.blocked_at[states[r + 1].revision] = [refused[r + 1]]
        elif r + 1 == below < len(states):
            plan.blocked_at[states[r + 1].revision] = [
                "does more than shape the schema (writes rows, access or checks): never stamped, the upgrade runs it"]
        for n in leftovers:
            plan.notes.append(f"{n}{REBUILD_SUFFIX} is left from an interrupted rebuild of {n}: the plan finishes it")
        plan.operations = operations_from(steps, current, target.schema, plan.tables,
                                          lambda calls: offline_sql(calls, schema_name))
        _count_risks(conn, plan.operations)
        if resume:
            # A losing step the earlier run began that this plan runs again had not lost yet.
            again = {item for op in plan.operations if op.loses for item in op.loses}
            resume["earlier_losses"] = [loss for loss in resume["earlier_losses"] if not set(loss["loses"]) & again]
        plan.ahead = [{**a, "matches": _as_defined(a, findings, plan.operations)} for a in target.ahead]
        return plan


def _count_risks(conn, operations) -> None:
    """The rows each losing operation would lose, counted now; an operation that would lose none is not one."""
    for op in operations:
        if not op.loses:
            continue
        total = 0
        for sql in op.risk_sql:
            try:
                total += int(conn.exec_driver_sql(sql).scalar() or 0)
            except Exception:
                # Cannot tell what it would lose: assume every row of its table.
                total = max(total, op.rows or 0, 1)
        op.rows_at_risk = total
        if total:
            op.reason += f"; LOSES {', '.join(op.loses)} in {losses.row_count(total)}"
        elif all(t.count(".") == 1 or t in op.converts_to for t in op.loses):
            # No row past the TTL, no value changed by the cast: the content check covers it.
            op.loses = []
