"""How the framework scales with the length of the chain.

A scratch migrations folder (the project's env.py and script.py.mako) gets
a chain of N generated revisions, written with ``app.operations`` like the
real ones: the first creates a database, each of the others replaces one
view (``CREATE OR REPLACE VIEW synth.v_latest AS SELECT <n> ...``).  The
revisions are trivial on purpose, and add no objects: opening an embedded
database costs ~1 ms per table it holds, which bench.verify_scale measures;
here only the length of the chain grows.  For N = 10, 100, 1000: ``upgrade head`` on a fresh embedded
database (time per revision should stay flat) and ``status`` afterwards
(target: under 2 s at 1000).  Each timed call runs in a fresh process.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from bench.harness import PROJECT_ROOT, embedded_url, median, row, scratch, seconds

SIZES = (10, 100, 1000)
STATUS_RUNS = 3
STATUS_TARGET = 2.0

REVISION = '''"""Synthetic revision {n} of {total} (bench/synthetic_chain.py)."""
from app.operations import {op}

revision = "{rev}"
down_revision = {down!r}
branch_labels = None
depends_on = None

DOWNGRADE_LOSES: list[str] = []


def upgrade() -> None:
    {upgrade}


def downgrade() -> None:
    {downgrade}
'''


def make_chain(folder: Path, total: int) -> Path:
    """A migrations folder with ``total`` generated revisions; returns its path."""
    target = folder / f"migrations_{total}"
    (target / "versions").mkdir(parents=True)
    for name in ("env.py", "script.py.mako"):
        shutil.copy(PROJECT_ROOT / "migrations" / name, target / name)
    for n in range(1, total + 1):
        rev = f"{n:04d}"
        if n == 1:
            op, up, down = "create_database, drop_database", 'create_database("synth")', 'drop_database("synth")'
        else:
            op = "create_view"
            up = f'create_view("synth.v_latest", "SELECT {n} AS revision")'
            down = f'create_view("synth.v_latest", "SELECT {n - 1} AS revision")'
        (target / "versions" / f"{rev}_synthetic.py").write_text(REVISION.format(
            n=n, total=total, op=op, rev=rev, down=f"{n - 1:04d}" if n > 1 else None,
            upgrade=up, downgrade=down))
    return target


def time_upgrade(url: str, script_location: str) -> dict:
    from app import commands
    from bench.harness import QueryLog, warm_imports

    warm_imports()
    with QueryLog() as log:
        t0 = time.perf_counter()
        steps = commands.upgrade(url, "head", script_location=script_location)
        spent = time.perf_counter() - t0
    return {"seconds": spent, "steps": len(steps), "queries": log.count}


def time_status(url: str, script_location: str) -> dict:
    import os

    from app import commands
    from bench.harness import QueryLog, warm_imports

    warm_imports()
    os.environ["ZAKAZ_MIGRATIONS"] = script_location
    with QueryLog() as log:
        t0 = time.perf_counter()
        st = commands.status(url)
        spent = time.perf_counter() - t0
    assert not st.pending, st.pending[:3]
    return {"seconds": spent, "queries": log.count, "heads": st.heads}


def run(sizes=SIZES) -> list[dict]:
    from bench.harness import in_fresh_process

    rows = []
    totals: dict[int, float] = {}
    with scratch() as tmp:
        for total in sizes:
            chain = str(make_chain(tmp, total))
            url = embedded_url(tmp, f"db{total}")
            up = in_fresh_process("bench.synthetic_chain:time_upgrade", url, chain)
            assert up["steps"] == total, up
            statuses = [in_fresh_process("bench.synthetic_chain:time_status", url, chain)
                        for _ in range(STATUS_RUNS)]
            st = median(s["seconds"] for s in statuses)
            totals[total] = up["seconds"]
            rows.append(row("synthetic chain", f"upgrade head, {total} revisions",
                            f"{seconds(up['seconds'])} ({up['seconds'] / total * 1000:.1f} ms/revision)",
                            note=f"{up['queries']} statements ({up['queries'] / total:.1f}/revision)",
                            seconds=up["seconds"]))
            rows.append(row("synthetic chain", f"status after {total} revisions", seconds(st),
                            target=f"< {STATUS_TARGET:.0f} s" if total >= 1000 else "",
                            ok=(st < STATUS_TARGET) if total >= 1000 else None,
                            note=f"median of {STATUS_RUNS}; {statuses[0]['queries']} statements",
                            seconds=st))
    if len(totals) > 2:
        # Marginal cost per revision between sizes, so the fixed cost of a run
        # (connect, ledger checks, imports done lazily) does not flatter the
        # larger chains.
        a, b, c = sorted(totals)[-3:]
        early = (totals[b] - totals[a]) / (b - a)
        late = (totals[c] - totals[b]) / (c - b)
        rows.append(row("synthetic chain", f"marginal time per revision, {b}->{c} vs {a}->{b}",
                        f"{late * 1000:.1f} vs {early * 1000:.1f} ms ({late / early:.2f}x)",
                        target="flat (~1x)", ok=late / early < 1.5, growth=late / early))
    return rows
