"""Progress of long copies (app/progress.py): the formatting, the reporting choice, and a 1M-row rebuild.

The copies are made to last ~6 s whatever the machine: the new table has a
DEFAULT that sleeps a few microseconds per row (no CPU used), and small
blocks, so the copy advances block by block as one of a table larger than
an insert block does (with the default 1M-row insert blocks, 1M rows read
in a fraction of a second and are then written in one piece).
"""
from __future__ import annotations

import io
import json
import threading
import time
from types import SimpleNamespace

import pytest

from app import progress
from app.progress import Sample, format_count, format_duration, format_line
from stderr_lines import StderrLines

ROWS = 1_000_000
COLUMNS = "id UInt64\nevent_id String\nd Date\nqty Int32"
SLOW = COLUMNS + "\npause UInt8 DEFAULT sleepEachRow(0.000006)"
SMALL_BLOCKS = {"max_block_size": 65536, "min_insert_block_size_rows": 65536, "max_threads": 1,
                "max_insert_threads": 1}


# --- formatting (fast) ------------------------------------------------------------------------------

@pytest.mark.fast
def test_counts_and_durations_read_as_written_by_hand():
    assert [format_count(n) for n in (0, 999, 1000, 1234, 12345, 123456, 999_999, 2_500_000_000)] == [
        "0", "999", "1.00k", "1.23k", "12.3k", "123k", "1.00M", "2.50G"]
    assert [format_duration(s) for s in (0, 7, 59.4, 125, 3599, 3720)] == [
        "0 s", "7 s", "59 s", "2 min 05 s", "59 min 59 s", "1 h 02 min"]


@pytest.mark.fast
def test_rate_and_time_left_come_from_rows_read_so_far():
    # 250k of 1M rows in 5 s: 50k rows/s, 750k rows left, 15 s.
    s = Sample(rows=250_000, written=0, total=1_000_000, elapsed=5.0)
    assert (s.rate, s.eta, s.fraction) == (50_000.0, 15.0, 0.25)
    assert format_line("rebuild_table zakaz.t", s, width=100) == (
        "rebuild_table zakaz.t  [#####...............]   25%  250k/1.00M rows  50.0k rows/s  15 s left")
    # Every row read, the last insert block still being written.
    assert format_line("rebuild_table zakaz.t", Sample(1_000_000, 0, 1_000_000, 4.0), width=100).endswith(
        "100%  1.00M/1.00M rows  250k rows/s  writing")
    # No total (the server's estimate is 0): rows and rate only; nothing known at the start.
    assert format_line("copy_rows_once zakaz.t", Sample(3_000, 0, None, 2.0)) == (
        "copy_rows_once zakaz.t  3.00k rows  1.50k rows/s")
    assert Sample(0, 0, 10, 0.0).eta is None
    # A narrow terminal drops the bar, never the numbers' start.
    assert format_line("rebuild_table zakaz.t", s, width=60).startswith("rebuild_table zakaz.t   25%  250k/1.00M rows")


@pytest.mark.fast
def test_json_with_json_a_bar_on_a_terminal_else_nothing(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(progress, "_mode", None)
    assert (progress.mode(io.StringIO()), progress.mode(Tty())) == ("off", "bar")
    progress.configure(as_json=True)
    assert (progress.mode(io.StringIO()), progress.mode(Tty())) == ("json", "json")
    progress.configure(as_json=False)
    assert progress.mode(io.StringIO()) == "off"
    assert progress.tagged("INSERT INTO t SELECT 1", None) == "INSERT INTO t SELECT 1"
    assert progress.tagged("INSERT INTO t SELECT 1", "zakaz_progress_x") == "INSERT INTO t SELECT 1 /* zakaz_progress_x */"


@pytest.mark.fast
def test_upgrade_downgrade_drill_and_smoke_pass_json_to_the_progress_choice(monkeypatch):
    from click.testing import CliRunner

    from app import cli, commands, fastpath

    seen = []
    monkeypatch.setattr(progress, "_mode", None)
    monkeypatch.setattr(fastpath, "nothing_to_upgrade", lambda *a, **k: None)
    monkeypatch.setattr(commands, "upgrade", lambda *a, **k: seen.append(progress._mode) or [])
    monkeypatch.setattr(commands, "downgrade", lambda *a, **k: seen.append(progress._mode) or [])
    monkeypatch.setattr(cli, "_summary", lambda *a, **k: None)
    import app.drill
    import app.smoke

    report = SimpleNamespace(ok=True, to_dict=dict)
    monkeypatch.setattr(app.drill, "run_drill", lambda *a, **k: seen.append(progress._mode) or report)
    monkeypatch.setattr(app.smoke, "run_smoke_checks", lambda *a, **k: seen.append(progress._mode) or report)
    url = ["--url", "clickhouse+native://u@127.0.0.1:1/default"]
    for args in (["upgrade", "--json"], ["upgrade"], ["downgrade", "-1", "--json"], ["downgrade", "-1"]):
        result = CliRunner().invoke(cli.main, args + url)
        assert result.exit_code == 0, result.output
        assert progress._mode is None  # the choice ends with the command
    # The scratch databases of drill and smoke copy rows too (item 3 of issue 20: the same reporter).
    for args in (["drill", "--json"], ["smoke", "--json"]):
        result = CliRunner().invoke(cli.main, args)
        assert result.exit_code == 0, result.output
        assert progress._mode is None
    assert seen == ["json", None, "json", None, "json", "json"]


# --- a 1M-row rebuild ------------------------------------------------------------------------------

def _rebuild_with_progress(conn, monkeypatch, db: str) -> tuple[list[tuple[float, dict]], float, float]:
    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext

    import app.impl  # noqa: F401 - registers the operations
    from app import operations

    conn.exec_driver_sql(f"CREATE DATABASE IF NOT EXISTS {db}")
    conn.exec_driver_sql(f"CREATE TABLE {db}.t (id UInt64, event_id String, d Date, qty Int32) "
                         "ENGINE = MergeTree ORDER BY id")
    conn.exec_driver_sql(f"INSERT INTO {db}.t SELECT number, toString(number % 5000), "
                         f"toDate('2024-01-01') + number % 365, number % 100 FROM numbers({ROWS})")
    # Small blocks make many parts, and a merge of them during the copy makes
    # the rebuild stop (rightly: rows written meanwhile could not be told apart).
    conn.exec_driver_sql(f"SYSTEM STOP MERGES {db}.t")
    stderr = StderrLines()
    monkeypatch.setattr("sys.stderr", stderr)
    monkeypatch.setattr(progress, "_mode", progress.JSON)
    ctx = MigrationContext.configure(conn)
    t0 = time.monotonic()
    with Operations.context(ctx):
        operations.rebuild_table(f"{db}.t", SLOW, engine="MergeTree", order_by="(event_id, d)",
                                 partition_by="toYYYYMM(d)", copy="id, event_id, d, qty")
    t1 = time.monotonic()
    assert conn.exec_driver_sql(f"SELECT count(), max(id) FROM {db}.t").one() == (ROWS, ROWS - 1)
    events = [(t, json.loads(line)) for t, line in stderr.timed]
    assert all(e["event"] == "progress" and e["table"] == f"{db}.t" for _, e in events)
    return events, t0, t1


def _assert_steady_progress(events, t0: float, t1: float, max_gap: float = 2.0) -> None:
    *running, (_, done) = [e for e in events]
    assert done["done"] is True and done["rows"] == ROWS, done
    assert len(running) >= 2, events
    times = [t0] + [t for t, _ in running] + [events[-1][0]]
    # The copy is ~6 s of the rebuild; the lines are at most 2 s apart through all of it.
    assert max(b - a for a, b in zip(times, times[1:])) <= max_gap, times
    rows = [e["rows"] for _, e in running]
    assert rows == sorted(rows) and any(0 < r < ROWS for r in rows), rows
    mid = next(e for _, e in running if 0 < e["rows"] < ROWS)
    assert mid["total_rows"] == ROWS and mid["rows_per_second"] > 0 and mid["eta_seconds"] > 0, mid


@pytest.mark.server
@pytest.mark.slow
def test_a_1m_row_rebuild_on_the_server_prints_progress_at_least_every_2_s(server, monkeypatch):
    from app.engine import connect

    db = "zprogress"
    with connect(server.url("native")) as admin:
        admin.exec_driver_sql(f"DROP DATABASE IF EXISTS {db} SYNC")
        admin.exec_driver_sql("DROP USER IF EXISTS zprogress_deployer")
        settings = ", ".join(f"{k} = {v}" for k, v in SMALL_BLOCKS.items())
        admin.exec_driver_sql(f"CREATE USER zprogress_deployer IDENTIFIED BY 'Progress-1' SETTINGS {settings}")
        admin.exec_driver_sql("GRANT SHOW, SELECT, INSERT, ALTER, CREATE, DROP, SYSTEM ON *.* TO zprogress_deployer")
    try:
        with connect(server.url("native", user="zprogress_deployer", password="Progress-1")) as conn:
            events, t0, t1 = _rebuild_with_progress(conn, monkeypatch, db)
        assert t1 - t0 > 4, "the copy must last long enough to show progress"
        _assert_steady_progress(events, t0, t1)
    finally:
        with connect(server.url("native")) as admin:
            admin.exec_driver_sql(f"DROP DATABASE IF EXISTS {db} SYNC")
            admin.exec_driver_sql("DROP USER IF EXISTS zprogress_deployer")


@pytest.mark.slow
def test_progress_on_the_embedded_engine_from_a_second_chdb_session(db_url, monkeypatch):
    """chDB has system.processes; the adapter runs one query at a time, the poller has its own session."""
    from app.engine import connect

    with connect(db_url) as conn:
        for name, value in SMALL_BLOCKS.items():
            conn.exec_driver_sql(f"SET {name} = {value}")
        events, t0, t1 = _rebuild_with_progress(conn, monkeypatch, "zprogress")
    _assert_steady_progress(events, t0, t1)


@pytest.mark.fast
def test_no_progress_no_thread_and_no_tag_when_off_or_when_the_connection_cannot_be_polled(monkeypatch):
    monkeypatch.setattr(progress, "_mode", progress.OFF)
    with progress.watching(object(), "rebuild_table", "z.t", 10) as tag:
        assert tag is None
        assert not [t for t in threading.enumerate() if t.name == "zakaz-progress"]
    monkeypatch.setattr(progress, "_mode", progress.JSON)
    with progress.watching(object(), "rebuild_table", "z.t", 10) as tag:  # no engine, no dialect
        assert tag is None
    assert not [t for t in threading.enumerate() if t.name == "zakaz-progress"]


def test_a_short_copy_prints_no_progress_even_with_json(db_url):
    """A fresh install's rebuild (0008) and backfill (0009) take milliseconds: nothing on stderr."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "app", "upgrade", "--json", "--url", db_url],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    json.loads(done.stdout)  # stdout stays one JSON document
    assert '"progress"' not in done.stderr, done.stderr


@pytest.mark.cluster
@pytest.mark.slow
def test_a_rebuild_on_the_cluster_reports_progress(cluster, monkeypatch):
    """Cluster mode: the copy is one INSERT ... SELECT on the node we are connected to, polled there."""
    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext

    import app.impl  # noqa: F401 - registers the operations
    from app import cluster as cluster_mode
    from app import operations
    from app.engine import connect
    from app.runtime import prepare_cluster

    rows, db, on = 300_000, "zprogress_cluster", "ON CLUSTER 'zakaz'"
    cluster.sql("ch1", f"DROP DATABASE IF EXISTS {db} {on} SYNC")
    try:
        with connect(cluster.url("ch1")) as conn:
            # Sent with every query, as cluster mode's own settings are (app.cluster.apply_ddl_settings).
            conn.connection.dbapi_connection.transport.settings.update(SMALL_BLOCKS)
            conn.exec_driver_sql(f"CREATE DATABASE {db} {on}")
            conn.exec_driver_sql(f"CREATE TABLE {db}.t {on} (id UInt64, event_id String, d Date, qty Int32) "
                                 "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{uuid}/{shard}', '{replica}') "
                                 "ORDER BY id")
            conn.exec_driver_sql(f"INSERT INTO {db}.t SELECT number, toString(number % 5000), "
                                 f"toDate('2024-01-01') + number % 365, number % 100 FROM numbers({rows})")
            conn.exec_driver_sql(f"SYSTEM STOP MERGES {db}.t")  # see _rebuild_with_progress
            stderr = StderrLines()
            monkeypatch.setattr("sys.stderr", stderr)
            monkeypatch.setattr(progress, "_mode", progress.JSON)
            ctx = MigrationContext.configure(conn)
            ctx.impl.cluster = prepare_cluster(conn, cluster_mode.Cluster("zakaz"))
            with Operations.context(ctx):
                # ~20 µs per row: a ~6 s copy of 300k rows.
                operations.rebuild_table(f"{db}.t", COLUMNS + "\npause UInt8 DEFAULT sleepEachRow(0.00002)",
                                         engine="MergeTree", order_by="(event_id, d)", partition_by="toYYYYMM(d)",
                                         copy="id, event_id, d, qty")
        for node in cluster.nodes:
            cluster.sql(node, f"SYSTEM SYNC REPLICA {db}.t")
            assert cluster.sql(node, f"SELECT count(), max(id) FROM {db}.t") == [(rows, rows - 1)], node
            assert cluster.sql(node, f"SELECT engine FROM system.tables WHERE database = '{db}' AND name = 't'") == [
                ("ReplicatedMergeTree",)], node
        events = [json.loads(line) for line in stderr.lines]
        copies = [e for e in events if e["event"] == "progress"]
        *running, done = copies
        assert done["done"] is True and done["rows"] == rows and done["table"] == f"{db}.t", done
        assert running and all(not e["done"] for e in running), copies
        read = [e["rows"] for e in running]
        assert read == sorted(read) and any(0 < r < rows for r in read), read
        assert cluster.password not in "\n".join(stderr.lines)
    finally:
        cluster.sql("ch1", f"DROP DATABASE IF EXISTS {db} {on} SYNC")
