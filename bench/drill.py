"""Time of the rollback drill over the whole chain, schema only and with sample data.

Each timed run is ``app.drill.run_drill`` on its own scratch embedded
database (created and removed inside the call, so that is part of the time),
in a fresh process with imports done before the clock starts (see
bench.harness: later chDB sessions of a process are slower).  Runs of the
two cases alternate; the table shows medians.  The notes split the time into
the migration steps themselves (each revision up, down and up again, as the
ledger times them) and everything the drill adds: snapshots, view checks,
sample loads and checksums, alembic's per-call setup.
"""
from __future__ import annotations

import time

from bench.harness import median, row, seconds

RUNS = 3
ROWS_PER_TABLE = 20
WITH_DATA_TARGET = 4.0  # seconds, issue #16


def one_run(with_data: bool) -> dict:
    """One timed drill in this (fresh) process."""
    from app import commands
    from app.drill import run_drill
    from bench.harness import embedded_url, scratch, warm_imports

    warm_imports()
    import app.sample_data  # noqa: F401

    with scratch() as tmp:
        commands.offline_sql(embedded_url(tmp, "offline"), "head")  # alembic loads the chain once
    t0 = time.perf_counter()
    report = run_drill(with_data=with_data, rows_per_table=ROWS_PER_TABLE)
    total = time.perf_counter() - t0
    if not report.ok:
        raise RuntimeError("the drill failed while being timed: " + "; ".join(report.failures))
    steps_ms = sum(r.up_ms + r.down_ms + r.reup_ms for r in report.results)
    return {"total": total, "steps": steps_ms / 1000, "revisions": len(report.results)}


def run(runs: int = RUNS) -> list[dict]:
    """One row per case: median seconds of ``runs`` whole-chain drills, and the data overhead."""
    from bench.harness import in_fresh_process

    got: dict[bool, list[dict]] = {False: [], True: []}
    for i in range(runs):
        for with_data in ((False, True) if i % 2 == 0 else (True, False)):
            got[with_data].append(in_fresh_process("bench.drill:one_run", with_data))

    rows = []
    for with_data, case in ((False, "drill whole chain, schema only"),
                            (True, f"drill whole chain, with data ({ROWS_PER_TABLE} rows per table)")):
        totals = [r["total"] for r in got[with_data]]
        steps = median([r["steps"] for r in got[with_data]])
        revisions = got[with_data][0]["revisions"]
        target = {"target": f"<= {WITH_DATA_TARGET:.0f} s", "ok": median(totals) <= WITH_DATA_TARGET} if with_data else {}
        rows.append(row(
            "drill", case, seconds(median(totals)), **target,
            note=(f"median of {runs} (range {seconds(min(totals))}-{seconds(max(totals))}); "
                  f"{revisions} revisions x up/down/up: migration steps {seconds(steps)}, "
                  f"drill checks and setup {seconds(median(totals) - steps)}"),
            seconds=median(totals), revisions=revisions,
        ))
    ratio = rows[1]["seconds"] / rows[0]["seconds"]
    rows.append(row("drill", "ratio with data / schema only", f"{ratio:.2f}x",
                    note="sample loads into every new table; 4 fingerprints per revision, "
                         "each reading only the tables whose data parts changed",
                    ratio=ratio))
    return rows


if __name__ == "__main__":  # pragma: no cover
    for r in run():
        print(f"{r['case']:<55} {r['result']:>10}  {r['note']}")
