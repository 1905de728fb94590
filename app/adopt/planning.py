"""Planning an adoption: read the live database once, match it to a revision, plan the repairs."""
from __future__ import annotations

import os

from app import ledger
from app.adopt.matching import annotate, blocking_differences, first_index
from app.adopt.plan import AdoptionPlan, AlreadyManaged, Operation
from app.adopt.repairs import OP_ORDER, Planner
from app.replay import revision_states
from app.canonical import MANAGED_DATABASES
from app.config import mask_url, resolve_url
from app.engine import connect
from app.schema import TABLE, VIEW
from app.snapshot import take_snapshot
from app.sql import clickhouse_error_message, quote_name
from app.verify import compare_schema

def _read_live(conn):
    """One read of everything the plan needs from the live database."""
    schema_name = conn.dialect.default_schema_name or "default"
    has_ledger = conn.exec_driver_sql("SELECT count() FROM system.tables WHERE database = %(d)s AND name = %(t)s",
                       {"d": schema_name, "t": ledger.LEDGER_TABLE}).scalar()
    ledger_rows = []
    if has_ledger:
        ledger_rows = ledger.read_rows(conn, schema_name)
    snap = take_snapshot(conn, MANAGED_DATABASES)
    live, databases = snap.schema, sorted(snap.databases)
    view_sql = {name: snap.queries[name] for name, obj in live.items() if obj.kind == VIEW}
    unselectable = {}
    views = [name for name, obj in live.items() if obj.kind != TABLE]
    try:
        # One query for all views; one each only when some view fails.
        if views:
            conn.exec_driver_sql(" UNION ALL ".join(
                f"SELECT count() FROM (SELECT * FROM {quote_name(v)} LIMIT 0)" for v in views)).all()
    except Exception:
        for name in views:
            try:
                conn.exec_driver_sql(f"SELECT * FROM {quote_name(name)} LIMIT 0").all()
            except Exception as exc:
                unselectable[name] = clickhouse_error_message(exc)[:300]
    version = conn.exec_driver_sql("SELECT version()").scalar()
    return schema_name, bool(has_ledger), ledger_rows, live, databases, view_sql, unselectable, version


def plan_adoption(url: str | None = None, *, script_location: str | None = None,
                  cache_dir: str | os.PathLike | None = None) -> AdoptionPlan:
    """Match the live database to a revision and plan the repairs; changes nothing.

    Raises AlreadyManaged for a database with a ledger.  A database that
    matches no revision gives a plan with ``revision`` None (or refusals)
    that says why.
    """
    url = resolve_url(url)
    # The replay opens a scratch embedded database: done before the live
    # connection is opened (one embedded path per process at a time).
    chain = revision_states(script_location, cache_dir)
    states = chain.states
    with connect(url) as conn:
        schema_name, has_ledger, rows, live, databases, view_sql, unselectable, version = _read_live(conn)
        if has_ledger and rows:
            heads = ledger.current_heads(rows)
            raise AlreadyManaged(
                f"{schema_name}.{ledger.LEDGER_TABLE} exists: this database is already managed by "
                f"zakaz-schema (at {', '.join(heads) or 'base'}); use `zakaz-schema status`, "
                "`upgrade` and `verify` instead of adopt"
            )

        plan = AdoptionPlan(
            url=mask_url(url), server_version=version, chain_checksum=chain.checksum,
            head=states[-1].revision, revision=None, objects=len(live), blocked_at={},
            differences=[], ahead=[], operations=[], unmanaged=[], refusals=[],
        )
        if has_ledger:
            plan.notes.append("an empty ledger exists (an adoption interrupted before its stamp); it is reused")
        known = [n for n in live if first_index(states, n) is not None]
        if not known:
            plan.refusals.append(
                "the warehouse databases hold no object of any revision: nothing to adopt; "
                "a new database is built with `zakaz-schema upgrade`"
                + (f" (found only unmanaged objects: {', '.join(sorted(live))})" if live else "")
            )
            plan.unmanaged = [f"{n} ({o.kind.replace('_', ' ')})" for n, o in sorted(live.items())]
            return plan

        blocked = {i: blocking_differences(live, states, i) for i in range(len(states))}
        contained = [i for i, found in blocked.items() if not found]
        r = max(contained) if contained else None
        # Why not the next revision (later ones differ at least as much).
        for i in ([r + 1] if r is not None and r + 1 < len(states) else []):
            plan.blocked_at[states[i].revision] = blocked[i][:8] + (
                [f"... and {len(blocked[i]) - 8} more"] if len(blocked[i]) > 8 else [])
        if r is None:
            plan.refusals.append("the database does not fully contain the schema of any revision")
            return plan

        # Tables exist in order of the revisions that create them: one missing
        # below the newest revision the database holds tables of was dropped
        # (or never created), and its rows cannot be accounted for.
        newest = max(first_index(states, n) for n in known if live[n].kind != VIEW) \
            if any(live[n].kind != VIEW for n in known) else r
        missing = sorted(n for n, o in states[newest].schema.items() if o.kind != VIEW and n not in live)
        if newest > r and missing:
            created_by = {n: states[first_index(states, n)].revision for n in missing}
            holders = sorted({states[first_index(states, n)].revision for n in known
                              if live[n].kind != VIEW and first_index(states, n) > r})
            plan.refusals.append(
                "the database matches no revision: "
                + ", ".join(f"{n} (created by {created_by[n]})" for n in missing)
                + f" missing, while it holds tables created by revisions {', '.join(holders)}; "
                "restore the missing table(s) from a backup (or create them as that revision defines them), "
                "then adopt again"
            )
            plan.revision = None
            return plan

        plan.revision = states[r].revision
        plan.pending = [s.revision for s in states[r + 1:]]
        plan.differences = annotate(compare_schema(live, states[r].schema, MANAGED_DATABASES), live, states, r)
        planner = Planner(live, states, r, view_sql, unselectable)
        planner.plan()
        for database in states[r].databases:
            if database not in databases:
                planner.ops.append(Operation("create_database", database, f"revision {plan.revision} has it",
                                             [f"CREATE DATABASE IF NOT EXISTS {database}"]))
        planner.ops.sort(key=lambda op: OP_ORDER.index(op.kind))
        for op in planner.ops:
            if op.risk_sql:
                try:
                    op.rows_at_risk = int(conn.exec_driver_sql(op.risk_sql).scalar() or 0)
                except Exception:
                    # Cannot tell what it would lose: assume every row.
                    table = op.target if op.target.count(".") == 1 else op.target.rsplit(".", 1)[0]
                    op.rows_at_risk = int(conn.exec_driver_sql(f"SELECT count() FROM {table}").scalar() or 0)
        plan.operations = planner.ops
        plan.refusals = planner.refusals
        plan.ahead = planner.ahead
        plan.unmanaged = planner.unmanaged
        plan.notes += planner.notes
        return plan
