"""What a statement that runs for more than a few seconds is waiting for, said while it waits.

A deploy that sits silent for minutes cannot be told from one that hangs.
A statement still running after ``FIRST_REPORT`` seconds gets a line on
stderr (a JSON object with ``--json``, app.progress's choice) saying what
it waits for, then another when that changes, or every ``REPEAT`` seconds:

* a distributed DDL entry (``system.distributed_ddl_queue``) and the hosts
  that have not finished it (ON CLUSTER: a replica that is down);
* a mutation (``system.mutations``): parts still to do, its latest failure
  (an ALTER waits for it under ``mutations_sync`` / ``alter_sync``);
* otherwise the statement itself (``system.processes``): rows read, elapsed;
* the deploy lock held by another deploy (``DeployLockNotice``, app.lock).

It works as app.progress does: the statement carries a comment tag, found
in ``system.processes`` by a poll on a second connection, opened only once
the statement is slow.  The tag leads the statement (a trailing comment
would be read as data by ``INSERT ... VALUES``).  One thread per process
watches every statement; a fast statement costs an event and a list entry.
Nothing here may fail a migration: a poll that fails ends the watching.
"""
from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, TextIO

from app import cluster as cluster_mode
from app import progress

log = logging.getLogger("zakaz_schema")

FIRST_REPORT = 3.0
REPEAT = 10.0
POLL = 1.0
TAG = "zakaz_wait_"

_ALTER = re.compile(r"^\s*ALTER\s+TABLE\s+(?:`([^`]+)`|([\w]+))(?:\.(?:`([^`]+)`|([\w]+)))?", re.I)


@dataclass(frozen=True)
class Wait:
    """One reading: what the statement waits for (``kind``), since when, and the facts behind the line."""

    kind: str  # "distributed_ddl", "mutation", "query", "deploy_lock"
    elapsed: float
    text: str
    detail: dict = field(default_factory=dict)
    # What makes a new reading worth a line before REPEAT: another entry, mutation or set of late hosts.
    key: tuple = ()


# --- what a reading says (pure) -------------------------------------------------------------------

def ddl_wait(entry: str, cluster: str, hosts: list[tuple[str, int, str]], elapsed: float) -> Wait | None:
    """``hosts``: (host, port, status) of one distributed DDL entry; None when every host finished."""
    late = [(h, p, s or "unknown") for h, p, s in hosts if s != "Finished"]
    if not late:
        return None
    names = ", ".join(f"{h}:{p} ({s})" for h, p, s in late)
    return Wait("distributed_ddl", elapsed,
                f"distributed DDL {entry} on cluster {cluster!r} not finished on {names} "
                f"({len(hosts) - len(late)} of {len(hosts)} hosts done)",
                {"entry": entry, "cluster": cluster, "hosts_not_finished": [f"{h}:{p}" for h, p, _ in late],
                 "statuses": [s for _, _, s in late], "hosts": len(hosts)},
                key=("distributed_ddl", entry, tuple(late)))


def mutation_wait(table: str, mutation_id: str, command: str, parts_to_do: int, fail_reason: str,
                  elapsed: float) -> Wait:
    failure = " ".join((fail_reason or "").split())
    command = " ".join(command.split())
    if command.startswith("(") and command.endswith(")"):  # 26.x wraps the command in parentheses, 24.8 does not
        command = command[1:-1]
    text = (f"mutation {mutation_id} on {table} ({command[:80]}): "
            f"{parts_to_do} part{'' if parts_to_do == 1 else 's'} to do")
    if failure:
        text += f"; latest failure: {failure[:200]}"
    return Wait("mutation", elapsed, text,
                {"table": table, "mutation_id": mutation_id, "parts_to_do": parts_to_do,
                 "latest_fail_reason": failure or None},
                key=("mutation", mutation_id, bool(failure)))


def query_wait(read_rows: int, total_rows: int, elapsed: float) -> Wait:
    rows = f"{progress.format_count(read_rows)} rows read"
    if total_rows > read_rows:
        rows += f" of ~{progress.format_count(total_rows)}"
    return Wait("query", elapsed, f"the statement itself: running, {rows}",
                {"read_rows": read_rows, "total_rows_approx": total_rows or None}, key=("query",))


def lock_wait(schema: str, holder: str, waited: float, limit: float) -> Wait:
    return Wait("deploy_lock", waited,
                f"the deploy lock on {schema}, held by {holder} (waiting up to {limit:g} s, --lock-wait)",
                {"schema": schema, "holder": holder, "lock_wait_seconds": limit}, key=("deploy_lock", holder))


_SECRET = re.compile(r"(\bIDENTIFIED\b.*?\bBY\s+)'(?:[^'\\]|\\.)*'", re.I)


def shown(sql: str, width: int = 70) -> str:
    """The statement on one line, shortened, a password it sets masked (as the server's own logs do)."""
    text = _SECRET.sub(r"\1'***'", " ".join(sql.split()))
    return text if len(text) <= width else text[:width - 1] + "…"


def line(wait: Wait, where: str) -> str:
    """The stderr line: ``where`` names the step and statement."""
    return f"waiting {progress.format_duration(wait.elapsed)}: {where}: {wait.text}"


def json_line(wait: Wait, fields: dict) -> str:
    return json.dumps({"event": "waiting", **fields, "waiting_for": wait.kind,
                       "elapsed_seconds": round(wait.elapsed, 1), "detail": wait.detail, "message": wait.text})


def altered_table(sql: str, default_database: str) -> tuple[str, str] | None:
    """(database, table) of an ``ALTER TABLE``: its mutations are what it may wait for."""
    m = _ALTER.match(sql)
    if not m:
        return None
    first, second = m.group(1) or m.group(2), m.group(3) or m.group(4)
    return (first, second) if second else (default_database, first)


# --- reading the server ---------------------------------------------------------------------------

def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _optional(query: Callable[[str], list], sql: str) -> list:
    """A table that may not be readable here (no Keeper, no rights): nothing known, the rest still said."""
    try:
        return query(sql)
    except Exception as exc:
        log.debug("waiting: %s", exc)
        return []


def _read(query: Callable[[str], list], statement: "_Statement") -> Wait | None:
    """One reading of what ``statement`` waits for; None while it is not seen running."""
    head, tail = statement.tag[:6], statement.tag[6:]  # split: the poll must not find itself
    rows = query("SELECT elapsed, read_rows, total_rows_approx FROM system.processes "
                  f"WHERE position(query, concat('{head}', '{tail}')) > 0 LIMIT 1")
    if not rows:
        return None
    elapsed, read_rows, total = float(rows[0][0]), int(rows[0][1]), int(rows[0][2])
    if statement.cluster:
        # The entry this statement made: the newest of the cluster's since it started.
        entries = _optional(query, "SELECT entry, host, port, status FROM system.distributed_ddl_queue "
                            f"WHERE cluster = {_quote(statement.cluster)} "
                            f"AND query_create_time >= now() - toIntervalSecond({int(elapsed) + 5}) "
                            "ORDER BY entry DESC, host, port")
        if entries:
            newest = entries[0][0]
            found = ddl_wait(newest, statement.cluster,
                             [(h, int(p), s) for e, h, p, s in entries if e == newest], elapsed)
            if found:
                return found
    if statement.table:
        db, table = statement.table
        mutations = _optional(query, "SELECT mutation_id, command, parts_to_do, latest_fail_reason "
                              "FROM system.mutations "
                              f"WHERE database = {_quote(db)} AND table = {_quote(table)} AND NOT is_done "
                              "ORDER BY create_time LIMIT 1")
        if mutations:
            mutation_id, command, parts, reason = mutations[0]
            return mutation_wait(f"{db}.{table}", mutation_id, command, int(parts), reason, elapsed)
    return query_wait(read_rows, total, elapsed)


# --- reporting ------------------------------------------------------------------------------------

class _Output:
    """Where lines go: JSON lines with --json (app.progress's choice), else text, on ``stream``."""

    def __init__(self, stream: TextIO | None):
        self.stream = stream or sys.stderr
        self.last: tuple | None = None
        self.at = 0.0

    def say(self, wait: Wait, where: str, fields: dict) -> None:
        now = time.monotonic()
        if self.last == wait.key and now - self.at < REPEAT:
            return
        self.last, self.at = wait.key, now
        as_json = progress.mode(self.stream) == progress.JSON  # read while the command runs: its choice
        text = json_line(wait, fields) if as_json else line(wait, where)
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass


@dataclass(eq=False)  # one statement is itself, whatever its fields
class _Statement:
    tag: str
    open_connection: Callable
    where: str
    fields: dict
    cluster: str | None
    table: tuple[str, str] | None
    output: _Output
    started: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    # Set once its second connection is closed (or was never opened): the statement's caller waits
    # for it, as app.progress joins its watcher, so no poll outlives the statement (chDB: its path
    # may be closed or reopened right after).
    closed: threading.Event = field(default_factory=threading.Event)
    watched: bool = False
    guard: threading.Lock = field(default_factory=threading.Lock)

    def finish(self) -> None:
        with self.guard:
            self.done.set()
            watched = self.watched
        if watched:
            self.closed.wait(5)

    def begin_watching(self) -> bool:
        """False when the statement ended first (then nothing is opened)."""
        with self.guard:
            self.watched = not self.done.is_set()
            return self.watched


class _Sentry(threading.Thread):
    """The one thread that looks at statements still running after FIRST_REPORT seconds."""

    def __init__(self):
        super().__init__(name="zakaz-waiting", daemon=True)
        self.changed = threading.Condition()
        self.running: list[_Statement] = []

    def add(self, statement: _Statement) -> None:
        with self.changed:
            self.running.append(statement)
            self.changed.notify()

    def remove(self, statement: _Statement) -> None:
        with self.changed:
            if statement in self.running:
                self.running.remove(statement)

    def run(self) -> None:
        while True:
            with self.changed:
                while not self.running:
                    self.changed.wait()
                statement = self.running[0]
            if statement.done.wait(max(0.0, statement.started + FIRST_REPORT - time.monotonic())):
                self.remove(statement)
                continue
            if statement.begin_watching():
                try:
                    _watch(statement)
                finally:
                    statement.closed.set()
            self.remove(statement)


def _watch(statement: _Statement) -> None:
    with progress.polling(statement.open_connection, "waiting") as query:
        while query is not None and not statement.done.is_set():
            wait = _read(query, statement)
            if wait is not None and not statement.done.is_set():
                statement.output.say(wait, statement.where, statement.fields)
            statement.done.wait(POLL)


_sentry: _Sentry | None = None
_sentry_lock = threading.Lock()


def _the_sentry() -> _Sentry:
    global _sentry
    with _sentry_lock:
        if _sentry is None or not _sentry.is_alive():
            _sentry = _Sentry()
            _sentry.start()
        return _sentry


@contextmanager
def watching(conn: Any, sql: str, *, revision: str | None, index: int, cluster: str | None = None,
             default_database: str = "default", stream: TextIO | None = None) -> Iterator[str | None]:
    """Say what the statement run inside the block waits for, if it is slow; yields the tag to lead it with.

    ``conn``: the SQLAlchemy connection running it; ``cluster``: the cluster
    name when the statement is ON CLUSTER DDL.  Yields None (nothing
    watched) for a connection that cannot be polled.
    """
    try:
        open_connection = progress.opener(conn)
    except Exception as exc:  # an unusual connection: the statement runs as ever
        log.debug("waiting: cannot poll this connection: %s", exc)
        open_connection = None
    if open_connection is None:
        yield None
        return
    tag = f"{TAG}{uuid.uuid4().hex}"
    where = f"{revision} statement {index} ({shown(sql)})" if revision else shown(sql)
    statement = _Statement(tag, open_connection, where, {"revision": revision, "statement": index,
                                                         "sql": shown(sql, 200)},
                           cluster, altered_table(sql, default_database), _Output(stream))
    sentry = _the_sentry()
    sentry.add(statement)
    try:
        yield tag
    finally:
        statement.finish()
        sentry.remove(statement)


@contextmanager
def statement(impl: Any, construct: Any, sql: str | None) -> Iterator[Any]:
    """For app.impl: ``construct`` as it must run, led by a tag while it is watched.

    Online only (offline SQL stays as written); raw and rendered SQL only
    (alembic's own constructs are compiled later, and are quick); never a
    copy whose progress app.progress reports already.
    """
    from sqlalchemy.sql.elements import TextClause

    plain = isinstance(construct, str) or (isinstance(construct, TextClause) and not construct._bindparams)
    if impl.as_sql or sql is None or not plain or progress.TAG in sql:
        yield construct
        return
    on_cluster = impl.cluster.name if cluster_mode.is_distributed_ddl(sql, impl.cluster) else None
    with watching(impl.connection, sql.replace("\\:", ":"), revision=impl.current_revision,
                  index=impl.statements, cluster=on_cluster, default_database=impl.default_database) as tag:
        if tag is None:
            yield construct
        elif isinstance(construct, str):
            yield tagged(construct, tag)
        else:
            yield type(construct)(tagged(construct.text, tag))


def tagged(sql: str, tag: str | None) -> str:
    """The statement led by the tag the poll looks for, or unchanged."""
    return f"/* {tag} */ {sql}" if tag else sql


class DeployLockNotice:
    """app.lock's wait for another deploy's lock, said like a slow statement's (after FIRST_REPORT s)."""

    def __init__(self, schema: str, limit: float, stream: TextIO | None = None):
        self.schema, self.limit, self.started = schema, limit, time.monotonic()
        self.output: _Output | None = None
        self.stream = stream

    def held_by(self, holder: str) -> None:
        waited = time.monotonic() - self.started
        if waited < FIRST_REPORT:
            return
        self.output = self.output or _Output(self.stream)
        wait = lock_wait(self.schema, holder, waited, self.limit)
        self.output.say(wait, "before the first step", {"revision": None, "statement": None})
