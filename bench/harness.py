"""What every benchmark module shares: scratch databases, clocks, query counts, rows.

Machines here are small and shared, so a benchmark never trusts one timing:
it repeats, takes the median, and compares two things measured in the same
run (a ratio) rather than a number against last week's.
"""
from __future__ import annotations

import contextlib
import os
import re
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Iterator

# app.replay (alembic, SQLAlchemy) is imported inside the two helpers below:
# in_fresh_process workers import this module, and bench.peer's profiles time
# those imports phase by phase, so they must not be loaded before the profile.

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def row(bench: str, case: str, result: str, *, target: str = "", ok: bool | None = None,
        note: str = "", **values: Any) -> dict:
    """One line of the results table; ``values`` keeps the raw numbers for callers."""
    return {"bench": bench, "case": case, "result": result, "target": target,
            "ok": ok, "note": note, **values}


def median(xs) -> float:
    return statistics.median(xs)


def seconds(s: float) -> str:
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s"


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


@contextlib.contextmanager
def scratch(prefix: str = "zakaz-bench-") -> Iterator[Path]:
    """A temporary folder on disk, removed afterwards: several benchmark databases each.

    Not app.replay's scratch folder (memory-backed where it can be): a
    benchmark database stands for a user's database or a server's data,
    which are on disk.  The drill's own scratch database is the drill's.
    """
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def embedded_url(folder: Path, name: str = "db") -> str:
    from app.replay import embedded_url as database_url

    return database_url(folder / name)


@contextlib.contextmanager
def env(**values: str | None) -> Iterator[None]:
    """Set environment variables for the duration (``None`` removes one)."""
    old = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# --- what was sent to the database ------------------------------------------------

LEDGER_NAMES = ("zakaz_schema_ledger", "alembic_version")
LOCK_NAME = "zakaz_schema_lock"
# One view per statement, or all of them in one UNION ALL (app.schema_check.unreadable_views).
VIEW_CHECK = re.compile(r"^SELECT (\* FROM \S+ LIMIT 0$|'[^']+' AS view, toTypeName\(tuple\(\*\)\))")


def kind_of(statement: str) -> str:
    """A coarse label for where a statement's time belongs."""
    s = " ".join(statement.split())
    head = s[:40].upper()
    if LOCK_NAME in s and "system." not in s:
        return "deploy lock"
    if any(n in s for n in LEDGER_NAMES) and not head.startswith("SELECT COUNT() FROM SYSTEM"):
        if head.startswith("INSERT"):
            return "ledger writes"
        if head.startswith(("SELECT", "EXISTS")):
            return "ledger reads"
        return "ledger setup"
    if "system." in s:
        return "system tables (reflection, checks)"
    if head.startswith("SELECT FORMATQUERY"):
        return "access statements checked (formatQuery)"
    if VIEW_CHECK.match(s):
        return "view SELECT checks (0011, 0013)"
    return "migration statements"


class QueryLog:
    """Every statement SQLAlchemy sends, with its time (a before/after_cursor_execute pair)."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, float]] = []
        self._started: float | None = None

    def _before(self, conn, cursor, statement, parameters, context, executemany):
        self._started = time.perf_counter()

    def _after(self, conn, cursor, statement, parameters, context, executemany):
        self.entries.append((statement, time.perf_counter() - (self._started or time.perf_counter())))

    def __enter__(self) -> "QueryLog":
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        event.listen(Engine, "before_cursor_execute", self._before)
        event.listen(Engine, "after_cursor_execute", self._after)
        return self

    def __exit__(self, *exc) -> None:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        event.remove(Engine, "before_cursor_execute", self._before)
        event.remove(Engine, "after_cursor_execute", self._after)

    @property
    def count(self) -> int:
        return len(self.entries)

    def by_kind(self) -> dict[str, tuple[int, float]]:
        out: dict[str, list] = {}
        for statement, spent in self.entries:
            slot = out.setdefault(kind_of(statement), [0, 0.0])
            slot[0] += 1
            slot[1] += spent
        return {k: (n, t) for k, (n, t) in out.items()}


# --- one embedded session per process ------------------------------------------------
#
# Measured on chdb-core 26.9: after the first chDB session of a process is
# closed, each later session leaks ~5 threads and the first run of several
# query pipelines in it (aggregations, scalar sub-queries, FINAL) costs
# 20-70 ms instead of 2-5 ms; revision 0011's view checks went from ~70 ms in
# a process's first session to ~400 ms by its fourth.  An operator's process
# (the CLI, alembic) opens one session, so every timed run here gets a fresh
# process of its own, with imports done before the clock starts.

def in_fresh_process(target: str, *args: Any, timeout: float = 600) -> Any:
    """Call ``module:function(*args)`` in a new interpreter; its JSON-able return value."""
    import json
    import subprocess
    import sys

    env_vars = dict(os.environ)
    env_vars["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env_vars.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", "from bench.harness import _worker; _worker()", target, json.dumps(args)],
        cwd=PROJECT_ROOT, env=env_vars, capture_output=True, text=True, timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{target} failed in its worker process:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _worker() -> None:
    import importlib
    import json
    import sys

    target, args = sys.argv[1], json.loads(sys.argv[2])
    module, _, function = target.partition(":")
    result = getattr(importlib.import_module(module), function)(*args)
    print(json.dumps(result))


def warm_imports() -> None:
    """Import what an upgrade imports lazily, so a timed run measures the work, not imports."""
    import alembic.command  # noqa: F401
    import chdb  # noqa: F401

    import app.canonical  # noqa: F401
    import app.commands  # noqa: F401
    import app.dialect  # noqa: F401
    import app.impl  # noqa: F401
    import app.operations  # noqa: F401
    import app.runtime  # noqa: F401
    import app.schema  # noqa: F401
    import app.schema_check  # noqa: F401
    import app.snapshot  # noqa: F401
    import app.verify  # noqa: F401
