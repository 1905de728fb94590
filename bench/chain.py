"""The full chain: ``upgrade head`` through zakaz-schema against the same SQL applied by hand.

"By hand" is the offline SQL of the chain (``commands.offline_sql(url,
"head")``), split into statements and sent one by one straight to chDB
(``chdb.connect(path).query``: no SQLAlchemy, no alembic).  It is measured
twice: the migration statements alone (what a DBA would paste), and with the
ledger statements the offline SQL also carries (ledger DDL + one INSERT per
revision).  Access statements (CREATE ROLE, GRANT) cannot run on chDB; both
sides check them with ``SELECT formatQuery(...)`` instead.

Each round runs the framework and both replays on fresh databases,
interleaved, each in a fresh process with imports and alembic's loading of
the chain done before the clock starts (bench.harness explains why one
process per run); the ratio is taken per round, the table shows medians.
The target (<= 1.5, issue #16) is checked against the migration statements
alone: the ledger is part of what the framework costs.

What the framework sends that the offline SQL does not, and so is in the
ratio: a "started" ledger row before each revision (it shares its INSERT
with the previous revision's "applied" row, so n + 1 inserts for n
revisions), the ledger check and the one read of its rows (alembic plans
from them too), revision 0008's shape probe and row counts, and revision 0011's
schema check (a snapshot of system tables and a ``SELECT * FROM view LIMIT
0`` per view), which runs online only.  The breakdown rows show each.
"""
from __future__ import annotations

import re
import time

from app.replay import embedded_url as database_url
from bench.harness import QueryLog, embedded_url, median, row, scratch, seconds

ROUNDS = 7
TARGET = 1.5  # issue #16


_VIEW_SECURITY = re.compile(r"ALTER TABLE \S+ MODIFY (DEFINER = \S+ )?SQL SECURITY ")


def statements_of(sql: str) -> list[tuple[str, str]]:
    """Offline SQL as (kind, statement): kind is "ledger", "access" or "ddl"."""
    from app.impl import ACCESS_STATEMENT

    out = []
    for chunk in re.split(r";[ \t]*\n", sql):
        text = "\n".join(line for line in chunk.splitlines() if not line.lstrip().startswith("--")).strip()
        if not text:
            continue
        if "zakaz_schema_ledger" in text or "alembic_version" in text:
            kind = "ledger"
        elif ACCESS_STATEMENT.match(text) or _VIEW_SECURITY.match(text):
            # Offline SQL is written for a server: a named DEFINER cannot run on
            # chDB (no users), so these are checked like access statements.
            kind = "access"
        else:
            kind = "ddl"
        out.append((kind, text))
    return out


def replay(path: str, statements: list[tuple[str, str]], kinds=("ddl", "access", "ledger")) -> dict[str, float]:
    """Send the statements straight to chDB; seconds spent per kind (and "total")."""
    import chdb

    from app.sql import quote_literal

    spent = {"connect": 0.0, "ddl": 0.0, "access": 0.0, "ledger": 0.0}
    t_all = time.perf_counter()
    conn = chdb.connect(path)
    spent["connect"] = time.perf_counter() - t_all
    try:
        for kind, sql in statements:
            if kind not in kinds:
                continue
            t0 = time.perf_counter()
            if kind == "access":
                conn.query(f"SELECT formatQuery({quote_literal(sql)})")
            else:
                conn.query(sql)
            spent[kind] += time.perf_counter() - t0
    finally:
        conn.close()
    spent["total"] = time.perf_counter() - t_all
    return spent


def framework(url: str) -> float:
    from app import commands

    t0 = time.perf_counter()
    commands.upgrade(url, "head")
    return time.perf_counter() - t0


def one_round(mode: str, path: str, statements_file: str) -> dict:
    """One timed run in a fresh process (see bench.harness.in_fresh_process)."""
    import json

    from app import commands
    from bench.harness import warm_imports

    warm_imports()
    stmts = [tuple(s) for s in json.loads(open(statements_file).read())]
    # Alembic's side of the warm-up: load the chain and run env.py offline.
    commands.offline_sql(embedded_url_for(path + "-offline"), "head")
    if mode == "profile":
        with QueryLog() as log:
            total = framework(embedded_url_for(path))
        return {"total": total, "count": log.count, "by_kind": log.by_kind()}
    cpu0 = cpu_seconds()
    if mode == "fw":
        got = {"total": framework(embedded_url_for(path))}
    else:
        got = replay(path, stmts, ("ddl", "access") if mode == "bare" else ("ddl", "access", "ledger"))
    got["cpu"] = cpu_seconds() - cpu0
    return got


def cpu_seconds() -> float:
    """CPU time of this process, all threads: less sensitive to other load than wall time."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def embedded_url_for(path: str) -> str:
    return database_url(path)


def run(rounds: int = ROUNDS) -> list[dict]:
    import json

    from app import commands
    from bench.harness import in_fresh_process

    with scratch() as tmp:
        stmts = statements_of(commands.offline_sql(embedded_url(tmp, "offline"), "head"))
        counts = {k: sum(1 for kind, _ in stmts if kind == k) for k in ("ddl", "access", "ledger")}
        statements_file = tmp / "statements.json"
        statements_file.write_text(json.dumps(stmts))

        n = 0

        def timed_run(mode: str) -> dict:
            nonlocal n
            n += 1
            return in_fresh_process("bench.chain:one_round", mode, str(tmp / f"db{n}"), str(statements_file))

        fw, bare, with_ledger, r_bare, r_ledger, r_cpu = [], [], [], [], [], []
        for i in range(rounds):
            # Alternate the order so neither side always runs first.
            order = ["fw", "bare", "ledger"] if i % 2 == 0 else ["ledger", "bare", "fw"]
            runs = {mode: timed_run(mode) for mode in order}
            got = {mode: r["total"] for mode, r in runs.items()}
            fw.append(got["fw"])
            bare.append(got["bare"])
            with_ledger.append(got["ledger"])
            r_bare.append(got["fw"] / got["bare"])
            r_ledger.append(got["fw"] / got["ledger"])
            r_cpu.append(runs["fw"]["cpu"] / runs["bare"]["cpu"])

        # One more of each, instrumented, to say where the time goes.
        prof = timed_run("profile")
        rp = timed_run("ledger")

    ratio = median(r_bare)
    rows = [
        row("chain", "upgrade head, in-process (framework)", seconds(median(fw)),
            note=f"median of {rounds}; {prof['count']} statements sent", seconds=median(fw)),
        row("chain", "same SQL straight to chDB, migration statements only", seconds(median(bare)),
            note=f"{counts['ddl']} DDL/DML + {counts['access']} access statements (formatQuery)",
            seconds=median(bare)),
        row("chain", "same SQL straight to chDB, with the ledger statements", seconds(median(with_ledger)),
            note=f"+ {counts['ledger']} ledger statements (DDL + one INSERT per revision)",
            seconds=median(with_ledger)),
        row("chain", "ratio framework / migration statements only", f"{ratio:.2f}x",
            target=f"<= {TARGET}", ok=ratio <= TARGET,
            note=f"per-round ratios {min(r_bare):.2f}-{max(r_bare):.2f}", ratio=ratio),
        row("chain", "ratio framework / with the ledger statements", f"{median(r_ledger):.2f}x",
            note=f"per-round ratios {min(r_ledger):.2f}-{max(r_ledger):.2f}", ratio=median(r_ledger)),
        row("chain", "ratio of CPU time, framework / migration statements only", f"{median(r_cpu):.2f}x",
            note="process CPU (all threads): steadier than wall time on a busy machine",
            ratio=median(r_cpu)),
    ]
    accounted = 0.0
    replay_of = {"migration statements": rp["ddl"], "access statements checked (formatQuery)": rp["access"],
                 "ledger writes": rp["ledger"]}
    for kind, (count, spent) in sorted(prof["by_kind"].items(), key=lambda kv: -kv[1][1]):
        accounted += spent
        note = f"replay: {seconds(replay_of[kind])}" if kind in replay_of else "not in the offline SQL"
        rows.append(row("chain", f"where the time goes: {kind}", f"{count} stmts, {seconds(spent)}", note=note))
    rows.append(row("chain", "where the time goes: Python (alembic, framework, connect)",
                    seconds(prof["total"] - accounted),
                    note=f"instrumented run {seconds(prof['total'])}; replay connect {seconds(rp['connect'])}"))
    return rows
