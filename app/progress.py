"""Progress of a long copy (``rebuild_table``, ``copy_rows_once``) while its one INSERT ... SELECT runs.

The copy stays one statement (splitting it would change what a failure
leaves behind); a thread reads its progress from ``system.processes`` over a
second connection, finding it by a comment tag in the statement's text
(works the same over native, HTTP and chDB, no driver option needed).
``read_rows`` (rows read from the source) is the progress: ``written_rows``
moves in insert blocks of up to ~1M rows.

Where it goes (``configure``, set by the CLI; plain alembic gets the default):
a bar on stderr when stderr is a terminal; with ``--json``, one JSON object
per line on stderr (stdout stays the command's one JSON document); else
nothing.  Nothing here may fail a migration: a poll that fails ends the
reporting, not the copy.

chDB: ``system.processes`` works, but the DB-API adapter runs one query at a
time per process, so the poller opens its own chDB session on the same path.
"""
from __future__ import annotations

import json
import logging
import shutil
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, TextIO

log = logging.getLogger("zakaz_schema")

OFF, BAR, JSON = "off", "bar", "json"
BAR_INTERVAL = 0.5
JSON_INTERVAL = 1.0
# Nothing is shown for a copy shorter than this: no flicker, no second connection.
FIRST_REPORT = 1.0
BAR_CELLS = 20
TAG = "zakaz_progress_"  # what the poll looks for (app.waiting leaves a copy with progress alone)

_mode: str | None = None  # None: BAR when stderr is a terminal, else OFF


def configure(*, as_json: bool) -> Callable[[], None]:
    """The CLI's choice for this command: JSON lines with ``--json``, else a bar on a terminal.

    Returns what puts the previous choice back (a process may run several commands: tests).
    """
    global _mode
    before, _mode = _mode, JSON if as_json else None

    def restore() -> None:
        global _mode
        _mode = before
    return restore


def mode(stream: TextIO | None = None) -> str:
    if _mode is not None:
        return _mode
    stream = stream or sys.stderr
    try:
        return BAR if stream.isatty() else OFF
    except (AttributeError, ValueError):
        return OFF


# --- formatting (pure) ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Sample:
    """One reading of the copy: rows read so far, rows written, the total if known, seconds since it started."""

    rows: int
    written: int
    total: int | None
    elapsed: float

    @property
    def rate(self) -> float | None:
        """Rows per second since the start."""
        return self.rows / self.elapsed if self.elapsed > 0 else None

    @property
    def eta(self) -> float | None:
        """Seconds left at the average rate; None while unknown."""
        if not self.total or not self.rate:
            return None
        return max(self.total - self.rows, 0) / self.rate

    @property
    def fraction(self) -> float | None:
        return min(self.rows / self.total, 1.0) if self.total else None


def format_count(n: float) -> str:
    """1234 -> "1.23k", 1000000 -> "1.00M": three significant digits."""
    text = str(int(n))
    for limit, suffix in ((1e3, "k"), (1e6, "M"), (1e9, "G")):
        if abs(n) >= limit * 0.9995:
            value = n / limit
            digits = 2 if value < 9.995 else 1 if value < 99.95 else 0
            text = f"{value:.{digits}f}{suffix}"
    return text


def format_duration(seconds: float) -> str:
    """"7 s", "2 min 05 s", "1 h 02 min"."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def format_line(label: str, sample: Sample, width: int = 100) -> str:
    """The bar's text: label, bar, percent, rows, rate, time left; fits ``width``."""
    rows = format_count(sample.rows) + (f"/{format_count(sample.total)}" if sample.total else "") + " rows"
    rate = f"{format_count(sample.rate)} rows/s" if sample.rate else ""
    if sample.eta is None:
        left = ""
    elif sample.total and sample.rows >= sample.total:
        left = "writing"
    else:
        left = f"{format_duration(sample.eta)} left"
    tail = "  ".join(p for p in (rows, rate, left) if p)
    if sample.fraction is None:
        return f"{label}  {tail}"[:width]
    percent = f"{sample.fraction * 100:3.0f}%"
    bar = ""
    # A bar of a fixed size, kept when the longest tail still fits: it does not jump between redraws.
    if width >= len(label) + BAR_CELLS + 50:
        done = int(sample.fraction * BAR_CELLS)
        bar = "[" + "#" * done + "." * (BAR_CELLS - done) + "]  "
    return f"{label}  {bar}{percent}  {tail}"[:width]


def json_line(operation: str, table: str, sample: Sample, done: bool = False) -> str:
    return json.dumps({
        "event": "progress", "operation": operation, "table": table, "done": done,
        "rows": sample.rows, "written_rows": sample.written, "total_rows": sample.total,
        "elapsed_seconds": round(sample.elapsed, 3),
        "rows_per_second": round(sample.rate, 1) if sample.rate else None,
        "eta_seconds": round(sample.eta, 1) if sample.eta is not None else None,
    })


# --- reading system.processes ---------------------------------------------------------------------

def _poll_sql(tag: str) -> str:
    # The tag is split in the poll's own text, so the poll never finds itself.
    head, tail = tag[:8], tag[8:]
    return ("SELECT read_rows, written_rows, total_rows_approx, elapsed FROM system.processes "
            f"WHERE position(query, concat('{head}', '{tail}')) > 0 LIMIT 1")


def opener(conn: Any) -> Callable[[], tuple[Callable[[str], list], Callable[[], None]]]:
    """How to open a poller's own connection: (run a query -> rows, close); also app.waiting's."""
    if getattr(conn.dialect, "driver", "") == "chdb":
        path = conn.connection.dbapi_connection.path
        # The package the copy's engine imported (app.dbapi); never imported here.
        chdb = sys.modules["chdb"]

        def open_chdb():
            session = chdb.connect(path)
            return (lambda sql: json.loads(session.query(sql, "JSONCompact").bytes() or b'{"data": []}')["data"],
                    session.close)
        return open_chdb
    engine = conn.engine

    def open_server():
        second = engine.connect()
        return (lambda sql: [tuple(r) for r in second.exec_driver_sql(sql).all()], second.close)
    return open_server


class _Watcher(threading.Thread):
    def __init__(self, open_connection: Callable, tag: str, report: Callable[[Sample], None], interval: float,
                 total: int | None):
        super().__init__(name="zakaz-progress", daemon=True)
        self.open = open_connection
        self.tag, self.report, self.interval, self.total = tag, report, interval, total
        self.stopped = threading.Event()
        self.last: Sample | None = None

    def run(self) -> None:
        if self.stopped.wait(FIRST_REPORT):
            return
        with polling(self.open, "progress") as query:
            sql = _poll_sql(self.tag)
            while query is not None and not self.stopped.is_set():
                rows = query(sql)
                if rows:
                    read, written, approx, elapsed = rows[0]
                    # The server's estimate grows as parts are scheduled: unknown while it trails the rows read.
                    total = self.total if self.total is not None else (int(approx) if approx > read else None)
                    self.last = Sample(int(read), int(written), total, float(elapsed))
                    if not self.stopped.is_set():
                        self.report(self.last)
                self.stopped.wait(self.interval)


@contextmanager
def polling(opener: Callable[[], tuple[Callable, Callable]], what: str) -> Iterator[Callable | None]:
    """A watching thread's second connection: its ``query``, or None when it cannot be had; closed after.

    Watching is best effort (here and in app.waiting): a connection that
    cannot be opened, or a poll that fails, ends the watching, never the
    statement watched.
    """
    try:
        query, close = opener()
    except Exception as exc:
        log.debug("%s: no second connection: %s", what, exc)
        yield None
        return
    try:
        yield query
    except Exception as exc:
        log.debug("%s: polling stopped: %s", what, exc)
    finally:
        try:
            close()
        except Exception:
            pass


def tagged(sql: str, tag: str | None) -> str:
    """The statement with the tag the poller looks for (a trailing comment), or unchanged."""
    return f"{sql} /* {tag} */" if tag else sql


@contextmanager
def watching(conn: Any, operation: str, table: str, total: int | None = None,
             stream: TextIO | None = None) -> Iterator[str | None]:
    """Report the progress of the statement run inside the block, tagged with the yielded tag.

    ``conn``: the SQLAlchemy connection running it; ``total``: rows the copy
    will read, when known (else the server's estimate).  Yields None, and
    changes nothing, when progress is off.
    """
    stream = stream or sys.stderr
    how = mode(stream)
    try:
        open_connection = opener(conn) if how != OFF else None
    except Exception as exc:  # an unusual connection: no progress, the copy runs as ever
        log.debug("progress: cannot poll this connection: %s", exc)
        open_connection = None
    if open_connection is None:
        yield None
        return
    tag = f"{TAG}{uuid.uuid4().hex}"
    label = f"{operation} {table}"
    lock = threading.Lock()
    drawn = [False]
    reported = [False]

    def write(text: str) -> None:
        with lock:
            try:
                stream.write(text)
                stream.flush()
            except (OSError, ValueError):
                pass

    def report(sample: Sample) -> None:
        reported[0] = True
        if how == JSON:
            write(json_line(operation, table, sample) + "\n")
        else:
            width = shutil.get_terminal_size((100, 20)).columns - 1
            write("\r" + format_line(label, sample, width) + "\x1b[K")
            drawn[0] = True

    watcher = _Watcher(open_connection, tag, report, JSON_INTERVAL if how == JSON else BAR_INTERVAL, total)
    started = time.monotonic()
    watcher.start()
    ok = False
    try:
        yield tag
        ok = True
    finally:
        watcher.stopped.set()
        watcher.join(timeout=5)
        if how == BAR and drawn[0]:
            write("\r\x1b[K")
        elif how == JSON and ok and reported[0]:
            # A copy too short to report anything says nothing at its end either.  Done: a rebuild knows how many rows it copied; a backfill's count is not known exactly
            # (rows read include its guard's), so it is null rather than a guess.
            rows = total
            elapsed = time.monotonic() - started
            write(json.dumps({
                "event": "progress", "operation": operation, "table": table, "done": True,
                "rows": rows, "written_rows": rows, "total_rows": rows, "elapsed_seconds": round(elapsed, 3),
                "rows_per_second": round(rows / elapsed, 1) if rows and elapsed > 0 else None,
                "eta_seconds": 0}) + "\n")
