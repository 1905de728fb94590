"""Cluster mode: every DDL statement ``ON CLUSTER``, MergeTree engines Replicated.

Off unless a cluster is named (``--cluster NAME``, ``alembic -x cluster=NAME``,
``Config.attributes["cluster"]`` or ``ZAKAZ_CLUSTER``).  Then, for every
statement a deploy runs or renders:

* DDL gets ``ON CLUSTER '<name>'`` (databases, tables, views, materialized
  views, ALTER, EXCHANGE/RENAME, and access statements: roles, users, grants);
* a MergeTree-family engine becomes its Replicated counterpart with an
  explicit Keeper path and replica name (``{uuid}``, ``{shard}``,
  ``{replica}`` are ClickHouse macros, expanded by each server);
* the ledger and the deploy lock are replicated too, across the whole
  cluster (their Keeper path has no ``{shard}``), so every node sees the same
  history and the same claims;
* a database using the ``Replicated`` database engine replicates DDL itself:
  statements on its objects get no ``ON CLUSTER`` and their engines get no
  Keeper arguments (the database supplies them);
* INSERTs (ledger rows, copies, backfills) and SELECTs are left alone: an
  insert goes to the node we are connected to and replication carries it.

Where each statement is placed: the ClickHouse operations when they are
rendered, from what each one is (app.operations.render); raw SQL, alembic's
own operations and the ledger's, lock's and users' DDL by reading the text
(app.cluster_rewrite).  This module holds the settings and what is read from
a live cluster.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping

from app.cluster_rewrite import ClusterRewriteError, rewrite  # noqa: F401 - re-exported for the ledger, lock and users
from app.config import ConfigError
from app.errors import CheckFailed
from app.schema import MERGE_TREE_FAMILY
from app.sql import clickhouse_error_code, quote_literal

# ClickHouse's own default_replica_path.  {uuid} is required: a table rebuild
# (operations.rebuild_table) swaps tables with EXCHANGE, which keeps each
# table's Keeper path, so a path made of names ({database}/{table}) would be
# taken by the swapped-out copy when the same table is rebuilt again.
DEFAULT_KEEPER_PATH = "/clickhouse/tables/{uuid}/{shard}"
DEFAULT_REPLICA = "{replica}"
# The ledger and the lock are never rebuilt, so a name-based path is safe,
# and it lets a replica added later join the existing history.  No {shard}:
# one copy for the whole cluster, because a deploy may connect to any node.
DEFAULT_LEDGER_KEEPER_PATH = "/clickhouse/zakaz_schema/{database}/{table}"
DEFAULT_LEDGER_REPLICA = "{shard}-{replica}"

DDL_OUTPUT_MODES = (
    "throw", "none", "null_status_on_timeout", "never_throw",
    "throw_only_active", "null_status_on_timeout_only_active", "none_only_active",
)

# option name -> environment variable (alembic -x and Config.attributes use the option name).
OPTIONS = {
    "cluster": "ZAKAZ_CLUSTER",
    "cluster_keeper_path": "ZAKAZ_CLUSTER_KEEPER_PATH",
    "cluster_replica": "ZAKAZ_CLUSTER_REPLICA",
    "cluster_ledger_keeper_path": "ZAKAZ_CLUSTER_LEDGER_KEEPER_PATH",
    "cluster_ledger_replica": "ZAKAZ_CLUSTER_LEDGER_REPLICA",
    "ddl_task_timeout": "ZAKAZ_DDL_TASK_TIMEOUT",
    "ddl_output_mode": "ZAKAZ_DDL_OUTPUT_MODE",
}

DISTRIBUTED_DDL_TIMEOUT = 159  # TIMEOUT_EXCEEDED, raised by the initiator of ON CLUSTER DDL


class DistributedDDLTimeout(CheckFailed):
    """ON CLUSTER DDL did not finish on every host within distributed_ddl_task_timeout."""

    code = DISTRIBUTED_DDL_TIMEOUT


# NO_ZOOKEEPER, TABLE_IS_READ_ONLY (a replicated table without its Keeper
# session), KEEPER_EXCEPTION: what a server without Keeper answers.
KEEPER_ERRORS = (225, 242, 999)


class KeeperUnavailable(ConfigError):
    """The server cannot reach ZooKeeper/Keeper: found before anything changed (one line, exit 2)."""


class KeeperLost(CheckFailed):
    """The server lost ZooKeeper/Keeper during a run: a step may be left open in the ledger (exit 1)."""


# On the ledger's and the lock's own INSERTs, online.  By default an INSERT
# into a Replicated table without its Keeper session retries for minutes
# (~142 s on 24.8: 20 retries, backoff up to 10 s), the release of the lock
# as long again: a deploy that lost Keeper seemed to hang, then failed anyway.
# These give up after about 2.5 s.  The step's own statements keep the
# server's defaults: a bulk INSERT that rides out a Keeper restart is wanted.
INSERT_SETTINGS = "SETTINGS insert_keeper_max_retries = 5, insert_keeper_retry_max_backoff_ms = 1000"


def is_keeper_error(exc: BaseException | None) -> bool:
    return clickhouse_error_code(exc) in KEEPER_ERRORS


@dataclass(frozen=True)
class Cluster:
    name: str
    keeper_path: str = DEFAULT_KEEPER_PATH
    replica: str = DEFAULT_REPLICA
    ledger_keeper_path: str = DEFAULT_LEDGER_KEEPER_PATH
    ledger_replica: str = DEFAULT_LEDGER_REPLICA
    ddl_task_timeout: int | None = None
    ddl_output_mode: str | None = None
    # Databases with ENGINE = Replicated: read from system.databases online;
    # offline there is no server to ask, so this is empty unless given.
    replicated_databases: frozenset[str] = field(default_factory=frozenset)
    # Shards in the cluster, read from system.clusters online; 0 = unknown (offline).
    shards: int = 0

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.{}-]+", self.name or ""):
            raise ConfigError(
                f"cluster name {self.name!r} is not a name from remote_servers "
                "(letters, digits, _ . - or a {macro})"
            )
        if "{uuid}" not in self.keeper_path:
            raise ConfigError(
                f"cluster Keeper path {self.keeper_path!r} must contain {{uuid}}: table rebuilds swap "
                "tables with EXCHANGE, which keeps each table's path, so a path made of names "
                "collides on the next rebuild (default " + DEFAULT_KEEPER_PATH + ")"
            )
        if "{table}" not in self.ledger_keeper_path and "{uuid}" not in self.ledger_keeper_path:
            raise ConfigError(
                f"ledger Keeper path {self.ledger_keeper_path!r} must contain {{table}} "
                "(the ledger and the lock need a path each)"
            )
        for label, value in (("replica name", self.replica), ("ledger replica name", self.ledger_replica)):
            if "{" not in value:
                raise ConfigError(
                    f"cluster {label} {value!r} must use a macro such as {{replica}}: "
                    "a fixed name would be the same on every replica"
                )
        if self.ddl_output_mode is not None and self.ddl_output_mode not in DDL_OUTPUT_MODES:
            raise ConfigError(
                f"distributed_ddl_output_mode {self.ddl_output_mode!r} is not one of "
                + ", ".join(DDL_OUTPUT_MODES)
            )

    @property
    def clause(self) -> str:
        return f"ON CLUSTER {quote_literal(self.name)}"

    def ddl_settings(self) -> dict[str, Any]:
        """Query settings for every statement on a cluster: ALTER waits, then the DDL waits given.

        ``alter_sync = 2``: an ALTER ON CLUSTER of a Replicated table runs on
        one replica per shard, and the others apply it from the replication
        log later.  Without the wait the next statement (0005's MATERIALIZE
        COLUMN) can reach a replica that has not got the column yet
        (NO_SUCH_COLUMN_IN_TABLE, seen in CI).
        """
        out: dict[str, Any] = {"alter_sync": 2}
        if self.ddl_task_timeout is not None:
            out["distributed_ddl_task_timeout"] = self.ddl_task_timeout
        if self.ddl_output_mode is not None:
            out["distributed_ddl_output_mode"] = self.ddl_output_mode
        return out

    def with_replicated_databases(self, names: Iterable[str]) -> "Cluster":
        return replace(self, replicated_databases=frozenset(names))

    def with_shards(self, shards: int) -> "Cluster":
        return replace(self, shards=shards)

    def replicated_engine(self, name: str, args: str | None, *, in_replicated_database: bool = False,
                          ledger: bool = False) -> str:
        """The Replicated counterpart of MergeTree-family engine ``name(args)`` on this cluster.

        ``ledger``: the ledger's or the lock's, replicated across the whole
        cluster; in a Replicated database the database supplies the path.
        """
        if in_replicated_database:
            path = replica = None
        elif ledger:
            path, replica = self.ledger_keeper_path, self.ledger_replica
        else:
            path, replica = self.keeper_path, self.replica
        return replicated_engine(name, args, keeper_path=path, replica=replica)


def from_options(attributes: Mapping[str, Any] | None = None, x: Mapping[str, str] | None = None,
                 environ: Mapping[str, str] | None = None) -> Cluster | None:
    """The cluster settings: Config.attributes, then ``-x``, then the environment; None when off."""
    attributes = attributes or {}
    x = x or {}
    environ = os.environ if environ is None else environ
    given = attributes.get("cluster")
    if isinstance(given, Cluster):
        return given
    values: dict[str, str] = {}
    for key, env in OPTIONS.items():
        value = attributes.get(key)
        if value is None or value == "":
            value = x.get(key) or environ.get(env)
        if value is not None and value != "":
            values[key] = str(value)
    name = values.pop("cluster", None)
    if not name:
        if values:
            raise ConfigError(
                f"{', '.join(sorted(values))} given without a cluster: name it with --cluster "
                "(alembic: -x cluster=NAME, or ZAKAZ_CLUSTER)"
            )
        return None
    timeout = values.get("ddl_task_timeout")
    if timeout is not None:
        try:
            timeout = int(timeout)
        except ValueError:
            raise ConfigError(f"distributed_ddl_task_timeout {timeout!r} is not a whole number of seconds") from None
    return Cluster(
        name=name,
        keeper_path=values.get("cluster_keeper_path", DEFAULT_KEEPER_PATH),
        replica=values.get("cluster_replica", DEFAULT_REPLICA),
        ledger_keeper_path=values.get("cluster_ledger_keeper_path", DEFAULT_LEDGER_KEEPER_PATH),
        ledger_replica=values.get("cluster_ledger_replica", DEFAULT_LEDGER_REPLICA),
        ddl_task_timeout=timeout,
        ddl_output_mode=values.get("ddl_output_mode"),
    )


def replicated_engine(name: str, args: str | None, *, keeper_path: str | None, replica: str | None) -> str:
    """``ReplacingMergeTree`` + ``_ver`` -> ``ReplicatedReplacingMergeTree('<path>', '<replica>', _ver)``.

    Without a path (a Replicated database supplies its own), the engine keeps
    only its own arguments.
    """
    own = (args or "").strip()
    parts = [quote_literal(keeper_path), quote_literal(replica)] if keeper_path is not None else []
    if own:
        parts.append(own)
    return f"Replicated{name}" + (f"({', '.join(parts)})" if parts else "")


def is_distributed_ddl(sql: str, cluster: Cluster | None) -> bool:
    return cluster is not None and re.search(r"\bON\s+CLUSTER\b", sql, re.I) is not None


# --- reading a live cluster -------------------------------------------------------

def replicated_databases(conn) -> frozenset[str]:
    rows = conn.exec_driver_sql("SELECT name FROM system.databases WHERE engine = 'Replicated'").all()
    return frozenset(r[0] for r in rows)


def check_cluster_exists(conn, cluster: Cluster) -> int:
    """The number of shards of ``cluster``; a clear error if the server does not know it."""
    if "{" in cluster.name:
        return 0  # a macro: the server expands it, we cannot look it up by name
    shards = conn.exec_driver_sql(
        "SELECT uniqExact(shard_num) FROM system.clusters WHERE cluster = %(c)s", {"c": cluster.name}
    ).scalar()
    if not shards:
        known = [r[0] for r in conn.exec_driver_sql(
            "SELECT DISTINCT cluster FROM system.clusters ORDER BY cluster").all()]
        raise ConfigError(
            f"cluster {cluster.name!r} is not in this server's remote_servers "
            f"(known: {', '.join(known) or 'none'}); check --cluster / ZAKAZ_CLUSTER"
        )
    return int(shards)


def apply_ddl_settings(conn, cluster: Cluster) -> None:
    """Make ``cluster.ddl_settings()`` apply to every query of ``conn``.

    Not a ``SETTINGS`` clause: on CREATE TABLE that clause means table
    settings.  Not ``SET``: over HTTP each query is its own session.  The
    drivers' per-connection settings reach every query on both protocols.
    """
    settings = cluster.ddl_settings()
    transport = getattr(conn.connection.dbapi_connection, "transport", None)
    if hasattr(transport, "ch_settings"):  # clickhouse-sqlalchemy's HTTP transport
        transport.ch_settings.update(settings)
    elif isinstance(getattr(transport, "settings", None), dict):  # clickhouse-driver Client
        transport.settings.update(settings)
    else:
        raise ConfigError("cannot apply distributed DDL settings on this driver; "
                          "set them in the server's user profile instead")


def run_ddl(conn, sql: str, cluster: Cluster | None) -> None:
    """Run DDL outside alembic (the ledger's, the lock's); a code 159 is explained like a step's,
    a server without Keeper is KeeperUnavailable."""
    try:
        conn.exec_driver_sql(sql)
    except Exception as exc:
        code = clickhouse_error_code(exc)
        if is_distributed_ddl(sql, cluster) and code == DISTRIBUTED_DDL_TIMEOUT:
            raise explain_ddl_timeout(conn, cluster, exc, sql) from exc
        if cluster is not None and code in KEEPER_ERRORS:
            text = " ".join(str(getattr(exc, "orig", exc)).split())
            raise KeeperUnavailable(
                f"ON CLUSTER {cluster.name!r}: the server cannot reach ZooKeeper/Keeper ({text[:160]}); "
                "nothing was changed. Check the Keeper ensemble and this node's <zookeeper> settings, then retry"
            ) from exc
        raise


def set_statements(cluster: Cluster | None) -> list[str]:
    """The same settings as statements, for offline SQL run by clickhouse-client."""
    if cluster is None:
        return []
    return [f"SET {k} = {quote_literal(v)}" for k, v in cluster.ddl_settings().items()]


def explain_ddl_timeout(conn, cluster: Cluster, exc: BaseException, sql: str,
                        then: str = "run the same command again with --resume") -> DistributedDDLTimeout:
    """A code 159 error as one line naming the hosts that did not finish; ``then``: what to run once they have."""
    text = " ".join(str(getattr(exc, "orig", exc)).split())
    entry = re.search(r"(query-\d+)", text)
    hosts = ""
    if entry:
        try:
            rows = conn.exec_driver_sql(
                "SELECT host, port, status FROM system.distributed_ddl_queue "
                "WHERE entry = %(e)s AND cluster = %(c)s ORDER BY host, port",
                {"e": entry.group(1), "c": cluster.name},
            ).all()
            late = [f"{h}:{p} ({s or 'unknown'})" for h, p, s in rows if s != "Finished"]
            hosts = ", ".join(late)
        except Exception:  # the queue may be unreadable (rights): say what we know
            hosts = ""
    statement = " ".join(sql.split())[:100]
    wait = f"distributed_ddl_task_timeout={cluster.ddl_task_timeout}" if cluster.ddl_task_timeout is not None \
        else "distributed_ddl_task_timeout (server default 180 s)"
    return DistributedDDLTimeout(
        f"ON CLUSTER {cluster.name!r}: {statement!r} did not finish on "
        + (hosts or "some hosts (see system.distributed_ddl_queue" + (f" entry {entry.group(1)}" if entry else "") + ")")
        + f" within {wait}; those hosts run it in the background. Check they are up and their "
        # Not `upgrade --resume`: that targets head, past the revision the operator asked for.
        f"DDL queue is moving, then {then} (statements are re-runnable); "
        "raise the wait with ZAKAZ_DDL_TASK_TIMEOUT / -x ddl_task_timeout=SECONDS"
    )


def unreplicated_tables(conn, databases: Iterable[str]) -> list[tuple[str, str]]:
    """MergeTree-family tables in ``databases`` that are not Replicated: (name, engine)."""
    params = {f"db{i}": d for i, d in enumerate(databases)}
    if not params:
        return []
    rows = conn.exec_driver_sql(
        "SELECT database, name, engine FROM system.tables "
        f"WHERE database IN ({', '.join(f'%({k})s' for k in params)}) ORDER BY database, name",
        params,
    ).all()
    return [(f"{d}.{n}", e) for d, n, e in rows if MERGE_TREE_FAMILY.match(e)]
