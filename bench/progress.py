"""What progress reporting costs a 1M-row ``rebuild_table`` on a 24.8 server: on vs off, one run.

Issue 20: progress must cost under 5% of the copy time.  Each case fills a
fresh table with 1,000,000 rows and rebuilds it (new partition and sort key),
progress off, then on (JSON lines, the most a poll does: a line per poll),
alternating, ``REPS`` times; the table shows medians of the copy (the one
INSERT ... SELECT; its minimum too) and of the whole rebuild.  Cases:

- ``plain``: server defaults; the copy is shorter than the first report
  (app.progress.FIRST_REPORT), so "on" costs a thread and nothing else;
- ``cpu``: the copy made ~5 s of CPU (small blocks, one thread, a DEFAULT
  hashing each row): the poller competes with it for the same 2 cores;
- ``sleep``: tests/test_progress.py's copy (~6 s, a DEFAULT sleeping per row).

Copies vary by ~10% from run to run on a shared 2-core machine, more than
progress costs; so the table also shows what progress does, measured alone:
``fixed`` (a watcher started and stopped around a copy, no poll) and
``polls`` (the copy's polls times what one poll takes), as a share of the copy;
and the server's CPU time for the copy and for the polls (system.query_log).

The server is a local clickhouse-server process (tests/local_servers.py).
Run: ``.venv/bin/python -m bench.progress``.
"""
from __future__ import annotations

import io
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ROWS = 1_000_000
REPS = {"plain": 5, "cpu": 5, "sleep": 3}
COLUMNS = "id UInt64\nevent_id String\nd Date\nqty Int32"
SMALL_BLOCKS = ("max_block_size = 65536, min_insert_block_size_rows = 65536, max_threads = 1, "
                "max_insert_threads = 1")
CASES = {
    "plain": ("", COLUMNS),
    "cpu": (SMALL_BLOCKS, COLUMNS + "\nh String DEFAULT hex(SHA256(repeat(event_id, 1200)))"),
    "sleep": (SMALL_BLOCKS, COLUMNS + "\npause UInt8 DEFAULT sleepEachRow(0.000006)"),
}


class Lines(io.TextIOBase):
    def __init__(self):
        self.count = 0

    def isatty(self):
        return False

    def write(self, text):
        self.count += text.count("\n")
        return len(text)


def one(url: str, columns: str, on: bool) -> dict:
    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext

    import app.impl  # noqa: F401
    from app import operations, progress
    from app.engine import connect
    from app.operations import rebuild

    copy_time = []
    plain_copy = rebuild._copy

    def timed_copy(*args, **kw):
        t0 = time.perf_counter()
        plain_copy(*args, **kw)
        copy_time.append(time.perf_counter() - t0)

    stderr, polls = Lines(), []
    rebuild._copy = timed_copy
    progress._mode = progress.JSON if on else progress.OFF
    real_stderr, sys.stderr = sys.stderr, stderr
    try:
        with connect(url) as conn:
            conn.exec_driver_sql("DROP DATABASE IF EXISTS zbench SYNC")
            conn.exec_driver_sql("CREATE DATABASE zbench")
            conn.exec_driver_sql("CREATE TABLE zbench.t (id UInt64, event_id String, d Date, qty Int32) "
                                 "ENGINE = MergeTree ORDER BY id")
            conn.exec_driver_sql(f"INSERT INTO zbench.t SELECT number, toString(number % 5000), "
                                 f"toDate('2024-01-01') + number % 365, number % 100 FROM numbers({ROWS})")
            begin = conn.exec_driver_sql("SELECT toString(now64(6))").scalar()
            with Operations.context(MigrationContext.configure(conn)):
                t0 = time.perf_counter()
                operations.rebuild_table("zbench.t", columns, engine="MergeTree", order_by="(event_id, d)",
                                         partition_by="toYYYYMM(d)", copy="id, event_id, d, qty")
                total = time.perf_counter() - t0
            end = conn.exec_driver_sql("SELECT toString(now64(6))").scalar()
            assert conn.exec_driver_sql("SELECT count() FROM zbench.t").scalar() == ROWS
            # Server CPU (user + system) of the copy and of the polls, from the query log:
            # contention from other processes moves wall time far more than it moves CPU time.
            conn.exec_driver_sql("SYSTEM FLUSH LOGS")
            cpu = "ProfileEvents['UserTimeMicroseconds'] + ProfileEvents['SystemTimeMicroseconds']"
            copy_cpu, poll_cpu = conn.exec_driver_sql(
                f"SELECT sumIf({cpu}, query LIKE 'INSERT INTO zbench.t__rebuild%'), "
                f"sumIf({cpu}, query LIKE '%FROM system.processes%') FROM system.query_log "
                f"WHERE type = 'QueryFinish' AND user = currentUser() "
                f"AND event_time_microseconds BETWEEN '{begin}' AND '{end}'").one()
            for _ in range(20):  # what one poll costs, on an idle server
                t = time.perf_counter()
                conn.exec_driver_sql(progress._poll_sql("zakaz_progress_none")).all()
                polls.append(time.perf_counter() - t)
            conn.exec_driver_sql("DROP DATABASE zbench SYNC")
    finally:
        sys.stderr = real_stderr
        rebuild._copy = plain_copy
    return {"copy": copy_time[0], "total": total, "lines": stderr.count, "poll": statistics.median(polls),
            "copy_cpu": copy_cpu / 1e6, "poll_cpu": poll_cpu / 1e6}


def fixed_cost() -> float:
    """Seconds progress adds to a copy shorter than the first report: a thread started and joined."""
    from app import progress

    progress._mode = progress.JSON
    server_conn = SimpleNamespace(dialect=SimpleNamespace(driver="native"), engine=None)  # never polled
    real_stderr, sys.stderr = sys.stderr, Lines()
    try:
        times = []
        for _ in range(200):
            t0 = time.perf_counter()
            with progress.watching(server_conn, "rebuild_table", "zbench.t", ROWS):
                pass
            times.append(time.perf_counter() - t0)
    finally:
        sys.stderr = real_stderr
    return statistics.median(times)


def main() -> None:
    sys.path.insert(0, str(PROJECT_ROOT / "tests"))
    import local_servers

    from app.engine import connect
    from bench.harness import scratch

    user, password = "bench_admin", "bench-pw-progress"
    with scratch("zakaz-bench-progress-") as tmp:
        server = local_servers.LocalServer(tmp / "server", user, password)
        server.start()
        try:
            admin = f"clickhouse+native://{user}:{password}@127.0.0.1:{server.native_port}/default"
            fixed = fixed_cost()
            print(f"{'case':6} {'progress':8} {'copy median':>12} {'min':>7} {'rebuild':>9} {'measured':>9} "
                  f"{'lines':>6} {'poll':>7} {'fixed+polls':>12} {'copy CPU':>9} {'poll CPU':>9}  copies (s)")
            for case, (settings, columns) in CASES.items():
                with connect(admin) as conn:
                    conn.exec_driver_sql("DROP USER IF EXISTS bench_progress")
                    conn.exec_driver_sql("CREATE USER bench_progress IDENTIFIED BY 'bench-progress'"
                                         + (f" SETTINGS {settings}" if settings else ""))
                    conn.exec_driver_sql("GRANT SHOW, SELECT, INSERT, ALTER, CREATE, DROP, SYSTEM ON *.* "
                                         "TO bench_progress")
                url = f"clickhouse+native://bench_progress:bench-progress@127.0.0.1:{server.native_port}/default"
                runs = {False: [], True: []}
                for _ in range(REPS[case]):
                    for on in (False, True):
                        runs[on].append(one(url, columns, on))
                off_copy = statistics.median(r["copy"] for r in runs[False])
                for on in (False, True):
                    copy = statistics.median(r["copy"] for r in runs[on])
                    fastest = min(r["copy"] for r in runs[on])
                    total = statistics.median(r["total"] for r in runs[on])
                    over = f"{(copy - off_copy) / off_copy * 100:+.1f}%" if on else ""
                    lines = statistics.median(r["lines"] for r in runs[on])
                    poll = statistics.median(r["poll"] for r in runs[on]) * 1000
                    copies = " ".join(f"{r['copy']:.3f}" for r in runs[on])
                    alone = f"{(fixed + lines * poll / 1000) / off_copy * 100:.2f}%" if on else ""
                    copy_cpu = statistics.median(r["copy_cpu"] for r in runs[on])
                    poll_cpu = statistics.median(r["poll_cpu"] for r in runs[on]) * 1000
                    print(f"{case:6} {'on' if on else 'off':8} {copy:11.3f}s {fastest:6.3f}s {total:8.3f}s {over:>9} "
                          f"{lines:6.0f} {poll:5.1f}ms {alone:>12} {copy_cpu:8.2f}s {poll_cpu:7.1f}ms  {copies}",
                          flush=True)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
