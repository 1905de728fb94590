"""Revision 0008's table rebuild with a million rows, against a plain copy.

0008 changes the partition key of ``zakaz.stg_qtickets_sheets_inventory``:
new table, ``INSERT ... SELECT`` of every row, row counts compared, swap,
old table dropped (app.operations.rebuild_table).  The baseline is the copy
alone: ``INSERT INTO copy SELECT`` of the same columns into a table with the
same definition as the rebuild's new one.  Each round fills a fresh database
at 0007 with 1,000,000 rows (``numbers(1000000)``), times the plain copy,
then ``upgrade 0008``; each timed part runs in a fresh process.
"""
from __future__ import annotations

import time

from bench.harness import embedded_url, in_fresh_process, median, row, scratch, seconds

ROWS = 1_000_000
ROUNDS = 3
TABLE = "zakaz.stg_qtickets_sheets_inventory"
COPY = "zakaz.bench_plain_copy"


def fill(url: str, rows: int) -> None:
    from app import commands
    from app.engine import connect

    commands.upgrade(url, "0007")
    with connect(url) as conn:
        conn.exec_driver_sql(
            f"INSERT INTO {TABLE} (event_id, city, tickets_total, tickets_left, _ver, hash_low_card) "
            "SELECT concat('ev-', toString(number % 50000)), concat('city-', toString(number % 97)), "
            "toUInt32(number % 1000), toUInt32(number % 700), number, toString(number % 64) "
            f"FROM numbers({int(rows)})"
        )


def plain_copy(url: str) -> dict:
    import importlib.util

    from app.config import SCRIPT_LOCATION
    from app.engine import connect
    from app.operations import definitions, render
    from bench.harness import warm_imports

    warm_imports()
    # The same definition the rebuild creates, read from the revision itself.
    path = next((SCRIPT_LOCATION / "versions").glob("0008_*.py"))
    spec = importlib.util.spec_from_file_location("rev0008", path)
    rev = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rev)
    columns = """
        event_id String
        city String
        tickets_total UInt32 DEFAULT 0
        tickets_left UInt32 DEFAULT 0
        _ver UInt64
        hash_low_card LowCardinality(String)
        _loaded_at DateTime DEFAULT now()
    """
    with connect(url) as conn:
        table = definitions.CreateTable(COPY, columns, "ReplacingMergeTree(_ver)", "(event_id, city)",
                                        "toYYYYMM(_loaded_at)")
        conn.exec_driver_sql(render.create_table(table, render.Placement(), if_not_exists=False))
        t0 = time.perf_counter()
        conn.exec_driver_sql(f"INSERT INTO {COPY} ({rev.KEPT}) SELECT {rev.KEPT} FROM {TABLE}")
        spent = time.perf_counter() - t0
        copied = conn.exec_driver_sql(f"SELECT count() FROM {COPY}").scalar()
        conn.exec_driver_sql(f"DROP TABLE {COPY} SYNC")
    return {"seconds": spent, "rows": copied}


def rebuild(url: str) -> dict:
    from app import commands
    from bench.harness import warm_imports

    warm_imports()
    t0 = time.perf_counter()
    steps = commands.upgrade(url, "0008")
    spent = time.perf_counter() - t0
    return {"seconds": spent, "step_ms": steps[0]["duration_ms"], "statements": steps[0]["statements"]}


def run(rows: int = ROWS, rounds: int = ROUNDS) -> list[dict]:
    copies, rebuilds, ratios = [], [], []
    with scratch() as tmp:
        for i in range(rounds):
            url = embedded_url(tmp, f"db{i}")
            in_fresh_process("bench.rebuild:fill", url, rows)
            copy = in_fresh_process("bench.rebuild:plain_copy", url)
            assert copy["rows"] == rows, copy
            rb = in_fresh_process("bench.rebuild:rebuild", url)
            copies.append(copy["seconds"])
            rebuilds.append(rb["seconds"])
            ratios.append(rb["seconds"] / copy["seconds"])
    c, r = median(copies), median(rebuilds)
    return [
        row("rebuild 0008", f"plain INSERT INTO copy SELECT, {rows:,} rows", seconds(c),
            note=f"{rows / c / 1e6:.2f} M rows/s; median of {rounds}", seconds=c),
        row("rebuild 0008", f"upgrade 0007 -> 0008 (rebuild), {rows:,} rows", seconds(r),
            note=f"{rows / r / 1e6:.2f} M rows/s, the whole upgrade command; median of {rounds}", seconds=r),
        row("rebuild 0008", "ratio rebuild / plain copy", f"{median(ratios):.2f}x",
            note=f"per-round {min(ratios):.2f}-{max(ratios):.2f}; the rest is the shape probe, "
                 "two counts, the swap, the drop and the ledger", ratio=median(ratios)),
    ]
