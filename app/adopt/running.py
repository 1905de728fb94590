"""Running the planner's calls: online on the live connection, or written out as offline SQL.

The calls are the ClickHouse operations a revision makes (app.operations),
run through alembic's ``Operations`` with our ClickHouse implementation, so an
adoption's rebuild is the revisions' ``rebuild_table``: new table, copy
counted against the parts it read, swap, and a re-run that finds a
half-done rebuild finishes it instead of starting over.
"""
from __future__ import annotations

import io
from contextlib import contextmanager
from typing import Iterator

from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from clickhouse_sqlalchemy.drivers.native.base import ClickHouseDialect_native

import app.impl  # noqa: F401 - registers ClickHouseImpl and the operations
from app.planner import Call


@contextmanager
def online(conn, *, allow_data_loss: bool = False) -> Iterator[Operations]:
    """Operations on ``conn``; the operations' own drop guards refuse rows unless ``allow_data_loss``."""
    ctx = MigrationContext.configure(conn)
    ctx.impl.default_database = conn.dialect.default_schema_name or "default"
    ctx.impl.allow_data_loss = allow_data_loss
    # rebuild_table reaches the migration through alembic's ``op`` proxy.
    with Operations.context(ctx) as ops:
        yield ops


def invoke(ops: Operations, call: Call) -> None:
    getattr(ops, call.op)(*call.args, **dict(call.kwargs))


def offline_sql(calls, database: str = "default") -> list[str]:
    """The statements ``calls`` send on a clean run, as clickhouse-client reads them."""
    buf = io.StringIO()
    ctx = MigrationContext.configure(dialect=ClickHouseDialect_native(paramstyle="named"),
                                     opts={"as_sql": True, "output_buffer": buf, "literal_binds": True})
    ctx.impl.default_database = database
    with Operations.context(ctx) as ops:
        for call in calls:
            invoke(ops, call)
    return [s.strip() for s in buf.getvalue().split(";\n") if s.strip()]


def adoption_sql(plan, url: str | None = None) -> str:
    """The whole plan as one SQL script for review: per table its rows and operations, then each
    operation's statements, the ledger and the stamp, and (given the database's ``url``) the
    upgrade from the stamped revision to head as `upgrade --sql` writes it.  No password: the
    plan's URL is masked, and the offline upgrade SQL never holds one."""
    if not plan.adoptable:
        raise ValueError("a refused plan has no SQL")
    from app import commands, ledger  # noqa: PLC0415 - the ledger's DDL and row, the upgrade, as apply runs them

    out = [f"-- zakaz-schema adopt: {plan.url} (ClickHouse {plan.server_version}), chain {plan.chain_checksum[:12]}",
           f"-- {len(plan.operations)} operation(s), then stamp {plan.revision} as adopted, then "
           + (f"`zakaz-schema upgrade head` runs {plan.pending[0]}..{plan.pending[-1]}" if plan.pending
              else "nothing to upgrade"),
           "-- table: rows: operations"]
    by_table: dict[str, list[str]] = {}
    for op in plan.operations:
        table = op.target if op.target in plan.tables else op.target.rpartition(".")[0]
        by_table.setdefault(table, []).append(op.kind)
    for table, rows in plan.tables.items():
        out.append(f"--   {table}: {rows} row(s): {', '.join(by_table.get(table, [])) or 'unchanged'}")
    for n, op in enumerate(plan.operations, 1):
        # A losing operation's reason says what it loses and in how many rows (planning._count_risks).
        out += ["", f"-- {n}. {op.kind} {op.target}: {' '.join(op.reason.split())}"]
        out += [f"{sql};" for sql in op.statements]
    out += ["", "-- the ledger, and the adoption's stamp"]
    out += [f"{sql};" for sql in ledger.ledger_ddl("default")]
    row = ledger.Row("<step id>", plan.revision, "adopt", "stamped", [plan.revision],
                     f"adopted at {plan.revision} by {len(plan.operations)} operation(s)")
    out.append(ledger.insert_sql("default", row) + ";")
    if url is not None and plan.pending:
        out += ["", f"-- then the upgrade {plan.revision}:head", commands.offline_sql(url, f"{plan.revision}:head")]
    return "\n".join(out) + "\n"


# Operations whose whole effect is the schema the replay captures: a revision
# made only of these is done once the database has its schema at that revision.
_SCHEMA_ONLY = {"CreateDatabase", "CreateTable", "DropTable", "AddColumn", "DropColumn", "ModifyColumn",
                "RemoveColumnProperty", "ModifyTtl", "RemoveTtl", "CreateView", "DropView",
                "CreateMaterializedView", "SetViewSecurity", "ExchangeTables", "RebuildTable"}


def schema_only(revisions) -> list[bool]:
    """Per revision (alembic Scripts, base first): whether its upgrade only shapes the schema.

    Read from the operations it records when run offline.  A revision that
    writes rows (copy_rows_once, op.run), creates users, roles or grants, or
    records nothing (a check) does more than its schema: adopt never stamps
    it, the upgrade runs it.
    """
    out = []
    for rev in revisions:
        buf = io.StringIO()
        ctx = MigrationContext.configure(dialect=ClickHouseDialect_native(paramstyle="named"),
                                         opts={"as_sql": True, "output_buffer": buf, "literal_binds": True})
        try:
            with Operations.context(ctx):
                rev.module.upgrade()
        except Exception:
            out.append(False)
            continue
        recorded = ctx.impl.operations
        out.append(bool(recorded) and all(type(o).__name__ in _SCHEMA_ONLY for o in recorded))
    return out
