"""``verify`` and ``status`` as the managed databases grow.

A database at head gets 10, 100, then 1000 extra tables (five columns each)
in the managed database ``zakaz``; ``verify`` reports them as unmanaged
objects, which is the work it does on a real warehouse with integration
tables of its own.  Time (median) and the number of statements sent (a
SQLAlchemy ``before_cursor_execute`` listener): the count must not grow with
the number of tables.  Each timed call runs in a fresh process.
"""
from __future__ import annotations

import time

from bench.harness import embedded_url, median, row, scratch, seconds

SIZES = (10, 100, 1000)
RUNS = 3


def grow_to(url: str, have: int, want: int) -> None:
    from app.engine import connect

    with connect(url) as conn:
        for i in range(have, want):
            conn.exec_driver_sql(
                f"CREATE TABLE IF NOT EXISTS zakaz.bench_extra_{i:04d} "
                "(id UInt64, name String, city LowCardinality(String), amount Decimal(12, 2), "
                "loaded_at DateTime DEFAULT now()) ENGINE = MergeTree ORDER BY id"
            )


def time_call(verb: str, url: str) -> dict:
    from app import commands
    from bench.harness import QueryLog, warm_imports

    warm_imports()
    fn = {"verify": commands.verify, "status": commands.status}[verb]
    with QueryLog() as log:
        t0 = time.perf_counter()
        result = fn(url)
        spent = time.perf_counter() - t0
    objects = result["objects"] if verb == "verify" else None
    return {"seconds": spent, "queries": log.count, "objects": objects}


def run(sizes=SIZES, runs: int = RUNS) -> list[dict]:
    from bench.harness import in_fresh_process

    rows = []
    queries: dict[str, set] = {"verify": set(), "status": set()}
    with scratch() as tmp:
        url = embedded_url(tmp)
        in_fresh_process("bench.verify_scale:_build", url)
        have = 0
        for size in sizes:
            in_fresh_process("bench.verify_scale:grow_to", url, have, size)
            have = size
            for verb in ("verify", "status"):
                got = [in_fresh_process("bench.verify_scale:time_call", verb, url) for _ in range(runs)]
                queries[verb].add(got[0]["queries"])
                note = f"{got[0]['queries']} statements"
                if verb == "verify":
                    note += f"; {got[0]['objects']} objects compared"
                rows.append(row("verify/status scale", f"{verb}, {size} extra tables",
                                seconds(median(g["seconds"] for g in got)), note=note,
                                seconds=median(g["seconds"] for g in got), queries=got[0]["queries"]))
    for verb, counts in queries.items():
        rows.append(row("verify/status scale", f"{verb}: statements sent at {', '.join(map(str, sizes))} tables",
                        ", ".join(map(str, sorted(counts))), target="constant", ok=len(counts) == 1))
    return rows


def _build(url: str) -> None:
    from app import commands

    commands.upgrade(url, "head")
