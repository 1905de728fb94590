"""Adopting a legacy database of 41 objects whose largest table holds a million rows.

The database is the pre-lockdown state as the old SQL files built it
(tests/legacy_fixtures.py) with ``zakaz.dm_sales_daily``'s key column
``city`` as String instead of LowCardinality(String): the plan rebuilds that
table.  It is filled with 1,000,000 rows (``numbers(1000000)``); every other
table gets 50 sample rows.  The baseline is what the rebuild cannot avoid: a
plain ``INSERT INTO copy SELECT`` of the table into one with the revision's
definition.  ``adopt --apply`` is timed whole (plan again, content before,
the plan's steps, stamp, upgrade 0005..head, verify, content after) and its
steps alone (first operation to the stamp).  Each timed part runs in a fresh
process with the imports warm; the chain's replay is cached before.
"""
from __future__ import annotations

import sys
import time

from bench.harness import PROJECT_ROOT, embedded_url, in_fresh_process, median, row, scratch, seconds

ROWS = 1_000_000
ROUNDS = 3
TABLE = "zakaz.dm_sales_daily"
COPY = "zakaz.bench_plain_copy"
TARGET = 1.5


def fill(url: str, rows: int) -> dict:
    sys.path.insert(0, str(PROJECT_ROOT / "tests"))
    from legacy_fixtures import build_legacy, variants

    from app import adopt
    from app.engine import connect
    from app.sample_data import load_sample

    adopt.revision_states()  # cached once, before the timed runs
    build_legacy(url, extra=variants("key-type"))
    with connect(url) as conn:
        load_sample(conn, rows_per_table=50, seed=7)
        conn.exec_driver_sql(
            f"INSERT INTO {TABLE} (event_date, sale_date, event_id, city, event_name, tickets_sold, revenue, "
            "refunds_amount, net_revenue, currency, _ver) "
            "SELECT toDate('2024-01-01') + number % 700, toDate('2024-01-01') + number % 690, "
            "concat('ev-', toString(number % 50000)), concat('city-', toString(number % 97)), "
            "concat('event ', toString(number % 5000)), number % 40, number % 100000, number % 900, "
            f"toInt64(number % 100000) - 450, 'RUB', number FROM numbers({int(rows)})")
    return {}


def plain_copy(url: str) -> dict:
    from app import adopt
    from app.engine import connect
    from bench.harness import warm_imports

    warm_imports()
    plan = adopt.plan_adoption(url)
    rebuilt = [op for op in plan.operations if op.kind == "rebuild_table"]
    spent = 0.0
    with connect(url) as conn:
        for op in rebuilt:
            [call] = [c for c in op.calls if c.op == "rebuild_table"]
            kw = dict(call.kwargs)
            conn.exec_driver_sql(
                f"CREATE TABLE {COPY} ({', '.join(call.args[1].splitlines())}) ENGINE = {kw['engine']} "
                + (f"PARTITION BY {kw['partition_by']} " if kw.get("partition_by") else "")
                + f"ORDER BY {kw['order_by']}")
            t0 = time.perf_counter()
            conn.exec_driver_sql(f"INSERT INTO {COPY} ({kw['copy']}) SELECT {kw['copy']} FROM {op.target}")
            spent += time.perf_counter() - t0
            conn.exec_driver_sql(f"DROP TABLE {COPY} SYNC")
    return {"seconds": spent, "tables": [op.target for op in rebuilt]}


def adoption(url: str) -> dict:
    from app import adopt, ledger
    from app.engine import connect
    from bench.harness import warm_imports

    warm_imports()
    t0 = time.perf_counter()
    plan = adopt.plan_adoption(url)
    planned = time.perf_counter() - t0
    result = adopt.apply_adoption(url, plan)
    spent = time.perf_counter() - t0
    assert result.ok, (result.data_changes, [str(f) for f in result.findings if f.fatal])
    with connect(url) as conn:
        rows = [r for r in ledger.read_rows(conn, "default") if r["direction"] == "adopt"]
        objects = len(adopt.warehouse_objects(conn))
    # The adoption's rows: its start, one per operation (written as it begins), the stamp.
    begun = [r["started_at"] for r in rows[1:]]
    rebuild_at = next(i for i, r in enumerate(rows[1:-1]) if r["message"].split(": ", 1)[1].startswith("rebuild"))
    return {"seconds": spent, "plan": planned, "steps": (begun[-1] - begun[0]).total_seconds(),
            "rebuild": (begun[rebuild_at + 1] - begun[rebuild_at]).total_seconds(),
            "operations": len(plan.operations), "tables": result.checked_tables, "objects": objects}


def run(rows: int = ROWS, rounds: int = ROUNDS) -> list[dict]:
    copies, totals, steps, plans, ratios, rebuilds = [], [], [], [], [], []
    info: dict = {}
    with scratch() as tmp:
        for i in range(rounds):
            url = embedded_url(tmp, f"db{i}")
            info = in_fresh_process("bench.adopt:fill", url, rows)
            copy = in_fresh_process("bench.adopt:plain_copy", url)
            assert copy["tables"] == [TABLE], copy
            got = in_fresh_process("bench.adopt:adoption", url)
            info.update(got)
            copies.append(copy["seconds"])
            totals.append(got["seconds"])
            steps.append(got["steps"])
            rebuilds.append(got["rebuild"])
            plans.append(got["plan"])
            ratios.append(got["seconds"] / copy["seconds"])
    c, t, s, rb = median(copies), median(totals), median(steps), median(rebuilds)
    ratio = median(ratios)
    return [
        row("adopt", f"plain INSERT INTO copy SELECT of the rebuilt table, {rows:,} rows", seconds(c),
            note=f"{rows / c / 1e6:.2f} M rows/s; median of {rounds}", seconds=c),
        row("adopt", f"adopt --apply, {info.get('objects')} objects, {info.get('operations')} operation(s)",
            seconds(t), note=f"plan {seconds(median(plans))}; the plan's steps {seconds(s)}, of which the "
                             f"rebuild {seconds(rb)} ({rb / c:.2f}x the copy); the rest is planning again, content "
                             f"checks of {info.get('tables')} tables before and after, the stamp, upgrade "
                             f"0005..head and verify; median of {rounds}",
            seconds=t),
        row("adopt", "ratio the plan's steps / plain copy", f"{median(steps) / c:.2f}x",
            note="what adopt adds to the copy inside the plan: the rebuild's shape probe, part listing, count, "
                 "swap and row check, the other operations, a ledger row each", ratio_steps=s / c),
        row("adopt", "ratio adopt / plain copy", f"{ratio:.2f}x", target=f"<= {TARGET}", ok=ratio <= TARGET,
            note=f"per-round {min(ratios):.2f}-{max(ratios):.2f}", ratio=ratio),
    ]
