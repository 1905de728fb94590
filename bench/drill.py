"""Time of the rollback drill over the whole chain, schema only and with sample data.

Each case runs ``app.drill.run_drill`` on its own scratch embedded database
(created and removed inside the call, so that is part of the time) and
reports the median of three runs in-process.  Run alone with
``python -m bench.drill``.
"""
from __future__ import annotations

import statistics
import time

RUNS = 3
ROWS_PER_TABLE = 20


def _time(**kwargs) -> tuple[list[float], object]:
    from app.drill import run_drill

    times, report = [], None
    for _ in range(RUNS):
        t0 = time.perf_counter()
        report = run_drill(**kwargs)
        times.append(time.perf_counter() - t0)
        if not report.ok:
            raise RuntimeError("the drill failed while being timed: " + "; ".join(report.failures))
    return times, report


def run() -> list[dict]:
    """One row per case: median, min and max seconds of RUNS whole-chain drills."""
    import app.drill  # noqa: F401 - imports (alembic, SQLAlchemy, chDB) are not the drill's time

    rows = []
    for name, kwargs in (
        ("drill, schema only", {}),
        (f"drill, with data ({ROWS_PER_TABLE} rows per table)",
         {"with_data": True, "rows_per_table": ROWS_PER_TABLE}),
    ):
        times, report = _time(**kwargs)
        steps = len(report.results)
        rows.append({
            "benchmark": name,
            "revisions": steps,
            "median_s": round(statistics.median(times), 3),
            "min_s": round(min(times), 3),
            "max_s": round(max(times), 3),
            "per_revision_ms": round(statistics.median(times) / steps * 1000, 1),
            "runs": RUNS,
        })
    return rows


if __name__ == "__main__":  # pragma: no cover
    for row in run():
        print(row)
