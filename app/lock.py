"""Deploy lock for servers: two deploys against one database must not both apply.

ClickHouse has no row locks or transactions, and UPDATE/DELETE are
mutations, so the lock is insert-only like the ledger: each deploy inserts a
claim (with an expiry), then reads the live claims; the oldest live claim
wins.  The loser withdraws its claim (another insert) and waits, bounded.  A
claim left by a dead process expires on its own.  Inserts on one server are
visible to the next read, which is all the protocol needs.

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

import os
import random
import socket
import time
import uuid
from contextlib import contextmanager

from app import cluster as cluster_mode
from app import waiting
from app.errors import UsageError
from app.sql import quote_literal
from app.insert_order import next_seq_sql

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
        f"INSERT INTO {schema}.{LOCK_TABLE} (seq, claim_id, owner, action, at, expires_at) VALUES ("
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
    owner = owner or f"pid {os.getpid()} on {socket.gethostname()}"
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
        holder = next((o for c, o, _ in claims if c != claim_id), "another deploy")
        if time.monotonic() >= deadline:
            raise LockTimeout(
                f"another deploy ({holder}) holds the deploy lock on {schema}; waited {wait:g} s. "
                f"Retry later, raise --lock-wait, or if that deploy died, wait for its lock to expire (ttl {ttl:g} s)"
            )
        notice.held_by(holder)
        # Jitter: two deploys that tied would otherwise tie again.
        time.sleep(poll * random.uniform(0.5, 1.5))
    try:
        yield claim_id
    finally:
        _insert(conn, schema, claim_id, owner, "release", ttl)
