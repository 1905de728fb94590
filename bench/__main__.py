"""``python -m bench [NAME ...]``: run the benchmarks, print a markdown table.

With no names every benchmark runs and the table is also written to
bench/results.md (the README quotes it).  With names only those run and
nothing is written unless ``--write`` is given.  Exit code 1 if a
benchmark failed to run (missing a target is reported in the table, not an
error).
"""
from __future__ import annotations

import argparse
import compileall
import datetime as dt
import importlib
import importlib.util
import os
import platform
import sys
import time
import traceback
from pathlib import Path

from bench.harness import PROJECT_ROOT, row

# name -> (module, what it measures); the order is the table's.
BENCHMARKS = {
    "chain": ("bench.chain", "upgrade head vs the same SQL straight to chDB"),
    "verify_scale": ("bench.verify_scale", "verify and status with 10/100/1000 extra tables"),
    "synthetic_chain": ("bench.synthetic_chain", "chains of 10/100/1000 trivial revisions"),
    "cli_start": ("bench.cli_start", "CLI wall time as a subprocess"),
    "drill": ("bench.drill", "rollback drill of the whole chain (bench/drill.py)"),
    "rebuild": ("bench.rebuild", "revision 0008's rebuild with 1M rows vs a plain copy"),
    "autogenerate": ("bench.autogenerate", "0008's rebuild as the planner writes it vs by hand, 1M rows"),
    "adopt": ("bench.adopt", "adopt --apply of a legacy database, 1M rows in the rebuilt table, vs a plain copy"),
    "peer": ("bench.peer", "deploy, no-op deploy and status vs clickhouse-migrations on a 24.8 server"),
}
ALIASES = {"verify": "verify_scale", "status": "verify_scale", "synthetic": "synthetic_chain",
           "cli": "cli_start", "clickhouse-migrations": "peer"}
RESULTS = Path(__file__).resolve().parent / "results.md"


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = [f"Python {platform.python_version()}"]
    for dist in ("chdb-core", "chdb", "alembic", "SQLAlchemy", "clickhouse-sqlalchemy"):
        try:
            parts.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            continue
    return ", ".join(parts)


def markdown(rows: list[dict], seconds_total: float, names: list[str]) -> str:
    def cell(value) -> str:
        return str(value).replace("|", "\\|")

    ok_mark = {True: "yes", False: "**NO**", None: ""}
    lines = [
        f"Run {dt.datetime.now():%Y-%m-%d %H:%M} on {os.cpu_count()} cores "
        f"({platform.machine()}); {versions()}; "
        f"{', '.join(names)} in {seconds_total:.0f} s.",
        "",
        "| benchmark | case | result | target | met | note |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append("| " + " | ".join(cell(x) for x in (
            r["bench"], r["case"], r["result"], r["target"], ok_mark.get(r["ok"], r["ok"]), r["note"],
        )) + " |")
    return "\n".join(lines) + "\n"


def run_one(name: str) -> list[dict]:
    module_name, _ = BENCHMARKS[name]
    if name == "drill" and importlib.util.find_spec(module_name) is None:
        return [row("drill", "rollback drill", "skipped", note="bench/drill.py is not there yet")]
    module = importlib.import_module(module_name)
    return module.run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="What zakaz-schema costs next to the same DDL applied by hand, and how it scales.",
        epilog="benchmarks: " + "; ".join(f"{k}: {v[1]}" for k, v in BENCHMARKS.items()),
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="run only these (default: all)")
    parser.add_argument("--write", action="store_true", help="write bench/results.md for a subset too")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the table")
    args = parser.parse_args(argv)
    names = [ALIASES.get(n, n) for n in args.names] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")

    # What an installed project has: its modules compiled once.  A shell with
    # PYTHONDONTWRITEBYTECODE set would make every timed process compile
    # them again (the peer's are compiled by pip), and time that instead.
    for folder in ("app", "migrations", "bench"):
        compileall.compile_dir(str(PROJECT_ROOT / folder), quiet=1)

    rows: list[dict] = []
    failed = False
    started = time.perf_counter()
    for name in names:
        t0 = time.perf_counter()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        try:
            got = run_one(name)
        except Exception as exc:  # one broken benchmark must not hide the others
            traceback.print_exc()
            failed = True
            got = [row(name, "failed to run", "error", note=" ".join(str(exc).split())[:200])]
        rows.extend(got)
        print(f"[bench] {name} done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)

    table = markdown(rows, time.perf_counter() - started, names)
    print(table)
    if not args.names or args.write:
        args.out.write_text(table)
        print(f"[bench] wrote {args.out}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
