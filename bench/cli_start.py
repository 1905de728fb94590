"""What an operator waits for at the prompt: the CLI as a subprocess, wall time.

``--help`` must stay fast (heavy imports live inside the commands); ``status``
and ``upgrade`` pay for Python, alembic, SQLAlchemy and chDB start-up, which
the interpreter's bare start puts in proportion.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bench.harness import PROJECT_ROOT, embedded_url, in_fresh_process, median, row, scratch, seconds

RUNS = 7
HELP_TARGET = 0.3
STATUS_TARGET = 0.4  # issue #19: embedded status, whole process


def cli() -> list[str]:
    script = Path(sys.executable).parent / "zakaz-schema"
    return [str(script)] if script.exists() else [sys.executable, "-m", "app"]


def wall(argv: list[str], runs: int, env: dict | None = None, fresh=None) -> tuple[float, str]:
    times = []
    out = ""
    for i in range(runs):
        args = argv + (fresh(i) if fresh else [])
        t0 = time.perf_counter()
        done = subprocess.run(args, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} exited {done.returncode}: {done.stderr.strip()[-500:]}")
        out = done.stdout
    return median(times), out


def run(runs: int = RUNS) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k != "ZAKAZ_DATABASE_URL"}
    rows = []
    bare, _ = wall([sys.executable, "-c", "pass"], runs, env)
    rows.append(row("CLI start", "python -c pass (interpreter start, for scale)", seconds(bare),
                    note=f"median of {runs}"))
    helped, _ = wall(cli() + ["--help"], runs, env)
    rows.append(row("CLI start", "zakaz-schema --help", seconds(helped), target=f"< {HELP_TARGET} s",
                    ok=helped < HELP_TARGET, note=f"median of {runs}", seconds=helped))
    with scratch() as tmp:
        url = embedded_url(tmp, "head")
        in_fresh_process("bench.verify_scale:_build", url)
        status, out = wall(cli() + ["status", "--url", url], runs, env)
        assert "pending:   none" in out, out
        rows.append(row("CLI start", "zakaz-schema status (database at head)", seconds(status),
                        target=f"<= {STATUS_TARGET} s", ok=status <= STATUS_TARGET,
                        note=f"median of {runs}; embedded; the fast path (app/fastpath.py)", seconds=status))
        upgrade, out = wall(cli() + ["upgrade", "head"], 3, env,
                            fresh=lambda i: ["--url", embedded_url(tmp, f"fresh{i}")])
        assert "(head)" in out, out
        rows.append(row("CLI start", "zakaz-schema upgrade head (fresh database)", seconds(upgrade),
                        note="median of 3; the whole chain, then the summary line", seconds=upgrade))
    return rows
