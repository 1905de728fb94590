"""Deploy lock for servers: two deploys against one database must not both apply.

ClickHouse has no row locks or transactions, and UPDATE/DELETE are
mutations, so the lock is insert-only like the ledger: each deploy inserts a
claim (with an expiry), then reads the live claims; the oldest live claim
wins.  The loser withdraws its claim (another insert) and waits, bounded.  A
claim left by a dead process expires on its own; one of a process that is
gone from this very host (same host name and process namespace, the pid no
longer running: a deploy killed with -9) is released at once instead of
after the ttl.  The holder renews its claim every ttl/3 from a thread on a
second connection, so a deploy longer than the ttl (a rebuild of a big
table) keeps the lock.  Inserts on one server are visible to the next read,
which is all the protocol needs.

On the embedded engine the directory lock chDB takes is the guard: a second
process cannot even open the database (see app.dbapi).

On a cluster the lock table is replicated across every node (like the
ledger), and a deploy syncs its replica before reading the claims, so claims
made through another node are seen.

No deploy host's clock is used: a claim's seq is the table's maximum plus
one and its time and expiry are the server's ``now64()``, all taken by the
server as the claim is inserted.  A host whose clock was behind by more than
the ttl made claims that were expired on arrival, and one ahead made claims
that outranked older ones; a client in another time zone shifted expiry by
hours.
"""
from __future__ import annotations

import logging
import os
import random
import re
import socket
import threading
import time
import uuid
from contextlib import contextmanager

from app import cluster as cluster_mode
from app import waiting
from app.errors import UsageError
from app.sql import quote_literal
from app.insert_order import next_seq_sql

log = logging.getLogger("zakaz_schema")

LOCK_TABLE = "zakaz_schema_lock"
DEFAULT_WAIT_SECONDS = 60.0
DEFAULT_TTL_SECONDS = 900.0


class LockTimeout(UsageError):
    """Another deploy holds the lock for longer than we were told to wait."""


def lock_ddl(schema: str, engine: str = "MergeTree", cluster: "cluster_mode.Cluster | None" = None) -> str:
    return cluster_mode.rewrite(
        f"CREATE TABLE IF NOT EXISTS {schema}.{LOCK_TABLE}\n"
        "(\n    seq UInt64,\n    claim_id String,\n    owner String,\n"
        "    action LowCardinality(String),\n    at DateTime64(3),\n    expires_at DateTime64(3)\n)\n"
        f"ENGINE = {engine}\nORDER BY seq\n"
        # Old claims are useless after expiry; TTL keeps the table small
        # without a DELETE.
        "TTL toDateTime(expires_at) + toIntervalDay(1)",
        cluster, default_database=schema, ledger=True,
    )


def _insert(conn, schema: str, claim_id: str, owner: str, action: str, ttl: float) -> None:
    values = [next_seq_sql(schema, LOCK_TABLE), quote_literal(claim_id), quote_literal(owner),
              quote_literal(action), "now64(3)", f"now64(3) + toIntervalMillisecond({max(0, round(ttl * 1000))})"]
    conn.exec_driver_sql(
        f"INSERT INTO {schema}.{LOCK_TABLE} (seq, claim_id, owner, action, at, expires_at) "
        f"{cluster_mode.INSERT_SETTINGS} VALUES ("
        + ", ".join(values) + ")"
    )


def live_claims_sql(schema: str) -> str:
    """The unexpired, unreleased claims, oldest first (also app.fastpath's "is a deploy running")."""
    return (
        f"SELECT claim_id, any(owner) AS owner, min(seq) AS first FROM {schema}.{LOCK_TABLE} "
        "GROUP BY claim_id "
        "HAVING countIf(action = 'release') = 0 "
        "AND maxIf(expires_at, action = 'claim') > now64(3) "
        "ORDER BY first, claim_id"
    )


def _live(conn, schema: str) -> list[tuple[str, str, int]]:
    rows = conn.exec_driver_sql(live_claims_sql(schema)).all()
    return [(r[0], r[1], int(r[2])) for r in rows]


def live_claims(conn, schema: str) -> list[tuple[str, str]]:
    """(claim_id, owner) of unexpired, unreleased claims, oldest first."""
    return [(claim_id, owner) for claim_id, owner, _ in _live(conn, schema)]


def _won(claims: list[tuple[str, str, int]], claim_id: str) -> bool:
    # Two claims inserted at once can take the same seq; one of them may have
    # been read before the other arrived, so a tie is no win for either:
    # both withdraw and claim again (with a seq above both).
    if not claims or claims[0][0] != claim_id:
        return False
    return len(claims) == 1 or claims[1][2] > claims[0][2]


@contextmanager
def deploy_lock(conn, schema: str, *, wait: float = DEFAULT_WAIT_SECONDS,
                ttl: float = DEFAULT_TTL_SECONDS, owner: str | None = None, poll: float = 0.5,
                cluster: "cluster_mode.Cluster | None" = None, create_table: bool = True):
    """Hold the deploy lock of ``schema`` for the ``with`` block.

    ``create_table=False``: the caller made sure the table exists
    (``ledger.ensure(..., lock=True)`` does, without DDL when it is there).
    """
    owner = owner or default_owner()
    if create_table:
        cluster_mode.run_ddl(conn, lock_ddl(schema, cluster=cluster), cluster)
    deadline = time.monotonic() + wait
    notice = waiting.DeployLockNotice(schema, wait)  # a wait of more than a few seconds is said
    while True:
        claim_id = str(uuid.uuid4())
        if cluster is not None:
            # The claim's seq is this node's maximum + 1: with the claims made
            # through other nodes in, not only the ones replicated so far.
            conn.exec_driver_sql(f"SYSTEM SYNC REPLICA {schema}.{LOCK_TABLE}")
        _insert(conn, schema, claim_id, owner, "claim", ttl)
        if cluster is not None:
            # Claims inserted through other nodes reach this one by replication.
            conn.exec_driver_sql(f"SYSTEM SYNC REPLICA {schema}.{LOCK_TABLE}")
        claims = _live(conn, schema)
        if _won(claims, claim_id):
            break
        _insert(conn, schema, claim_id, owner, "release", ttl)
        dead = [(c, o) for c, o, _ in claims if c != claim_id and _gone_from_here(o)]
        for dead_claim, dead_owner in dead:
            log.warning("released the deploy lock of %s: that process is no longer running on this host", dead_owner)
            _insert(conn, schema, dead_claim, f"{owner}, for {dead_owner} (gone)", "release", ttl)
        if dead:
            continue
        holder = next((o for c, o, _ in claims if c != claim_id), "another deploy")
        if time.monotonic() >= deadline:
            raise LockTimeout(
                f"another deploy ({holder}) holds the deploy lock on {schema}; waited {wait:g} s. "
                f"Retry later, raise --lock-wait, or if that deploy died, wait for its lock to expire (ttl {ttl:g} s)"
            )
        notice.held_by(holder)
        # Jitter: two deploys that tied would otherwise tie again.
        time.sleep(poll * random.uniform(0.5, 1.5))
    renewal = _Renewal(conn, schema, claim_id, owner, ttl)
    renewal.start()
    done = False
    try:
        yield claim_id
        done = True
    finally:
        renewal.stop.set()
        renewal.join()
        try:
            if getattr(conn, "invalidated", False):
                # A statement cut short (Ctrl-C over the native protocol) left the
                # connection invalid: SQLAlchemy reconnects only after a rollback.
                conn.rollback()
            _insert(conn, schema, claim_id, owner, "release", ttl)
        except Exception:
            if done:
                raise
            # What stopped the block is the one line to report, not this; the
            # claim expires after its ttl (or is released as gone from this host).
            log.debug("could not release the deploy lock of %s (ttl %g s)", owner, ttl, exc_info=True)


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")  # e.g. pid:[4026531836]
    except OSError:
        return ""


def default_owner() -> str:
    """Who claims: this process, this host and, where there is one, its process namespace
    (containers on one host share a host name, each with its own pids)."""
    ns = _pid_namespace()
    return f"pid {os.getpid()} on {socket.gethostname()}" + (f" ({ns})" if ns else "")


_OWNER = re.compile(r"^pid (\d+) on (\S+) \((pid:\[\d+\])\)$")


def _gone_from_here(owner: str) -> bool:
    """A claim of a process of this host and namespace that is no longer running."""
    m = _OWNER.match(owner)
    if not m or m.group(2) != socket.gethostname() or m.group(3) != _pid_namespace():
        return False
    pid = int(m.group(1))
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists (another user's): alive
        return False
    return False


class _Renewal(threading.Thread):
    """Renews a held claim every ttl/3 on a connection of its own (the deploy's is busy).

    Best effort: if it cannot, the claim expires as a dead deploy's would.
    """

    def __init__(self, conn, schema: str, claim_id: str, owner: str, ttl: float):
        super().__init__(name="zakaz-lock-renewal", daemon=True)
        self.engine, self.schema, self.claim_id, self.owner, self.ttl = conn.engine, schema, claim_id, owner, ttl
        self.stop = threading.Event()

    def run(self) -> None:
        conn = None
        try:
            while not self.stop.wait(self.ttl / 3):
                if conn is None:
                    conn = self.engine.connect()
                _insert(conn, self.schema, self.claim_id, self.owner, "claim", self.ttl)
        except Exception as exc:
            log.debug("deploy lock: renewal stopped: %s", exc)
        finally:
            if conn is not None:
                conn.close()
