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

Why a textual rewrite and not the ClickHouse parser: offline SQL
(``zakaz-schema sql --cluster``) has no server to parse with, and one rule
set must serve both modes.  The rewrite is narrow on purpose: a statement is
recognised by its leading keywords and object name, ``ON CLUSTER`` goes where
the ClickHouse grammar puts it for that statement, and a DDL statement it
does not recognise raises instead of silently running on one node only.
tests/test_cluster_sql.py checks every statement of the rendered chain with
``formatQuery`` (ClickHouse's own parser, through chDB) and checks that
removing the cluster parts gives back the single-server statement exactly.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping

from app.config import ConfigError
from app.sql import quote_literal
from app.sql import clickhouse_error_code

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

MERGE_TREE_FAMILY = re.compile(
    r"^(Replacing|Summing|Aggregating|Collapsing|VersionedCollapsing|Graphite|Coalescing)?MergeTree$"
)
DISTRIBUTED_DDL_TIMEOUT = 159  # TIMEOUT_EXCEEDED, raised by the initiator of ON CLUSTER DDL


class ClusterRewriteError(Exception):
    """A DDL statement whose ON CLUSTER place this module does not know."""


class DistributedDDLTimeout(Exception):
    """ON CLUSTER DDL did not finish on every host within distributed_ddl_task_timeout."""

    code = DISTRIBUTED_DDL_TIMEOUT


# NO_ZOOKEEPER, TABLE_IS_READ_ONLY (a replicated table without its Keeper
# session), KEEPER_EXCEPTION: what a server without Keeper answers.
KEEPER_ERRORS = (225, 242, 999)


class KeeperUnavailable(ConfigError):
    """The server cannot reach ZooKeeper/Keeper: found before anything changed (one line, exit 2)."""


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
        """Query settings for distributed DDL waits, only those given."""
        out: dict[str, Any] = {}
        if self.ddl_task_timeout is not None:
            out["distributed_ddl_task_timeout"] = self.ddl_task_timeout
        if self.ddl_output_mode is not None:
            out["distributed_ddl_output_mode"] = self.ddl_output_mode
        return out

    def with_replicated_databases(self, names: Iterable[str]) -> "Cluster":
        return replace(self, replicated_databases=frozenset(names))

    def with_shards(self, shards: int) -> "Cluster":
        return replace(self, shards=shards)


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


# --- a small lexer: enough of ClickHouse's to find names and clauses -----------

@dataclass(frozen=True)
class _Token:
    kind: str  # "word", "quoted" (identifier), "string", "punct"
    text: str
    start: int
    end: int
    depth: int  # bracket depth the token sits at

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "word" else ""

    @property
    def name(self) -> str:
        """The identifier it denotes (quotes removed)."""
        if self.kind == "quoted":
            return self.text[1:-1].replace(self.text[0] * 2, self.text[0]).replace("\\" + self.text[0], self.text[0])
        return self.text


def _tokens(sql: str) -> list[_Token]:
    out: list[_Token] = []
    i, n, depth = 0, len(sql), 0
    while i < n:
        ch = sql[i]
        if ch.isspace():
            i += 1
        elif sql.startswith("--", i) or ch == "#":
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif ch in "'\"`":
            j = i + 1
            while j < n:
                if sql[j] == "\\":
                    j += 2
                    continue
                if sql[j] == ch:
                    if j + 1 < n and sql[j + 1] == ch:  # doubled quote
                        j += 2
                        continue
                    break
                j += 1
            out.append(_Token("string" if ch == "'" else "quoted", sql[i:j + 1], i, j + 1, depth))
            i = j + 1
        elif ch.isalnum() or ch in "_$":
            j = i
            while j < n and (sql[j].isalnum() or sql[j] in "_$"):
                j += 1
            out.append(_Token("word", sql[i:j], i, j, depth))
            i = j
        else:
            if ch in ")]":
                depth -= 1
            out.append(_Token("punct", ch, i, i + 1, depth))
            if ch in "([":
                depth += 1
            i += 1
    return out


class _Cursor:
    def __init__(self, sql: str):
        self.sql = sql
        self.toks = _tokens(sql)
        self.i = 0

    def peek(self, k: int = 0) -> _Token | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def words(self, *expected: str) -> bool:
        """Consume the keywords if they come next."""
        for k, word in enumerate(expected):
            tok = self.peek(k)
            if tok is None or tok.upper != word:
                return False
        self.i += len(expected)
        return True

    def name(self) -> tuple[str | None, str, int]:
        """``[db.]name`` -> (db, name, end offset)."""
        first = self._ident()
        tok = self.peek()
        if tok is not None and tok.text == "." and tok.kind == "punct":
            self.i += 1
            second = self._ident()
            return first.name, second.name, second.end
        return None, first.name, first.end

    def names(self) -> tuple[list[tuple[str | None, str]], int]:
        """A comma-separated list of names (``user@'host'`` included) -> (names, end offset)."""
        found = []
        while True:
            db, name, end = self.name()
            tok = self.peek()
            if tok is not None and tok.text == "@":
                self.i += 1
                end = self.toks[self.i].end
                self.i += 1
            found.append((db, name))
            tok = self.peek()
            if tok is None or tok.text != ",":
                return found, end
            self.i += 1

    def _ident(self) -> _Token:
        tok = self.peek()
        if tok is None or tok.kind not in ("word", "quoted"):
            raise ClusterRewriteError(f"expected a name at {self.sql[tok.start:tok.start + 40] if tok else 'end'!r}")
        self.i += 1
        return tok

    def on_cluster_next(self) -> bool:
        """True if ``ON CLUSTER`` comes next (the statement already has one)."""
        a, b = self.peek(), self.peek(1)
        return a is not None and b is not None and a.upper == "ON" and b.upper == "CLUSTER"


# Statements that are not DDL: sent as they are.
_PASSTHROUGH = {"INSERT", "SELECT", "WITH", "SYSTEM", "SET", "SHOW", "DESC", "DESCRIBE",
                "EXPLAIN", "USE", "EXISTS", "CHECK", "KILL", "WATCH"}
_ACCESS_KINDS = (("ROW", "POLICY"), ("SETTINGS", "PROFILE"), ("ROLE",), ("USER",), ("QUOTA",),
                 ("POLICY",), ("PROFILE",))


@dataclass(frozen=True)
class _Plan:
    insert_at: int | None          # where " ON CLUSTER ..." goes; None: append at the end
    database: str | None           # the database of the object (None: not in a database)
    per_database: bool = True      # False: the statement is about a database or a global entity
    has_on_cluster: bool = False
    engine: bool = False           # CREATE TABLE / MATERIALIZED VIEW: look for ENGINE


def _plan(sql: str, default_database: str) -> _Plan | None:
    """Where ON CLUSTER goes in ``sql``; None for statements that take none."""
    c = _Cursor(sql)
    first = c.peek()
    second = c.peek(1)
    if first is not None and first.upper == "SET" and second is not None and second.upper == "DEFAULT":
        raise ClusterRewriteError(
            "SET DEFAULT ROLE has no ON CLUSTER form: use ALTER USER ... DEFAULT ROLE in cluster mode"
        )
    if first is None or first.upper in _PASSTHROUGH or first.text == "(":
        return None

    def after_name(*, engine: bool = False, uuid: bool = False) -> _Plan:
        db, _, end = c.name()
        if uuid and c.words("UUID"):
            end = c.peek().end
            c.i += 1
        return _Plan(end, db or default_database, has_on_cluster=c.on_cluster_next(), engine=engine)

    def after_names(*, per_database: bool) -> _Plan:
        names, end = c.names()
        db = names[0][0] or default_database
        return _Plan(end, db if per_database else None, per_database=per_database,
                     has_on_cluster=c.on_cluster_next())

    def database_level() -> _Plan:
        c.words("IF", "NOT", "EXISTS") or c.words("IF", "EXISTS")
        _, name, end = c.name()
        return _Plan(end, name, per_database=False, has_on_cluster=c.on_cluster_next())

    def at_end(per_database: bool) -> _Plan:
        db, _, _ = c.name()
        has = any(t.upper == "ON" and c.toks[k + 1].upper == "CLUSTER"
                  for k, t in enumerate(c.toks[:-1]) if t.depth == 0)
        return _Plan(None, (db or default_database) if per_database else None,
                     per_database=per_database, has_on_cluster=has)

    def access_kind() -> bool:
        return any(c.words(*kind) for kind in _ACCESS_KINDS)

    verb = first.upper
    c.i += 1
    if verb == "CREATE" or verb == "ATTACH":
        c.words("OR", "REPLACE")
        if c.words("TEMPORARY"):
            return None  # session-local, cannot be ON CLUSTER
        if c.words("DATABASE"):
            return database_level()
        if access_kind():
            c.words("IF", "NOT", "EXISTS")
            return after_names(per_database=False)
        if c.words("FUNCTION"):
            c.words("IF", "NOT", "EXISTS")
            return after_names(per_database=False)
        if c.words("TABLE"):
            c.words("IF", "NOT", "EXISTS")
            return after_name(engine=True, uuid=True)
        if c.words("MATERIALIZED", "VIEW"):
            c.words("IF", "NOT", "EXISTS")
            return after_name(engine=True, uuid=True)
        if c.words("VIEW") or c.words("DICTIONARY"):
            c.words("IF", "NOT", "EXISTS")
            return after_name(uuid=True)
    elif verb in ("DROP", "DETACH"):
        if c.words("DATABASE"):
            return database_level()
        if access_kind():
            c.words("IF", "EXISTS")
            return after_names(per_database=False)
        if c.words("FUNCTION"):
            c.words("IF", "EXISTS")
            return after_names(per_database=False)
        c.words("TEMPORARY")
        if c.words("TABLE") or c.words("VIEW") or c.words("DICTIONARY"):
            c.words("IF", "EXISTS")
            return after_names(per_database=True)
    elif verb == "ALTER":
        if c.words("DATABASE"):
            return database_level()
        if access_kind():
            c.words("IF", "EXISTS")
            return after_names(per_database=False)
        if c.words("TABLE"):
            return after_name()
    elif verb == "TRUNCATE":
        c.words("TABLE")
        c.words("IF", "EXISTS")
        return after_name()
    elif verb == "OPTIMIZE":
        if c.words("TABLE"):
            return after_name()
    elif verb == "RENAME":
        if c.words("DATABASE"):
            return at_end(per_database=False)
        if c.words("TABLE") or c.words("DICTIONARY"):
            return at_end(per_database=True)
    elif verb == "EXCHANGE":
        if c.words("TABLES") or c.words("DICTIONARIES"):
            return at_end(per_database=True)
    elif verb in ("GRANT", "REVOKE"):
        return _Plan(first.end, None, per_database=False, has_on_cluster=c.on_cluster_next())
    raise ClusterRewriteError(
        "cannot tell where ON CLUSTER goes in: " + " ".join(sql.split())[:120]
        + "; use an app.operations function or extend app/cluster.py"
    )


def _engine_span(sql: str) -> tuple[int, int, str, str | None] | None:
    """The ENGINE clause of a CREATE TABLE / MATERIALIZED VIEW: (start, end, name, args)."""
    toks = _tokens(sql)
    for k, tok in enumerate(toks):
        if tok.depth:
            continue
        if tok.upper == "AS" and k + 1 < len(toks) and (
            toks[k + 1].upper in ("SELECT", "WITH") or toks[k + 1].text == "("
        ):
            return None  # the query part starts: no ENGINE before it
        if tok.upper != "ENGINE":
            continue
        j = k + 1
        if j < len(toks) and toks[j].text == "=":
            j += 1
        if j >= len(toks) or toks[j].kind != "word":
            return None
        name_tok = toks[j]
        if j + 1 < len(toks) and toks[j + 1].text == "(":
            close = next(t for t in toks[j + 2:] if t.text == ")" and t.depth == tok.depth)
            return name_tok.start, close.end, name_tok.text, sql[toks[j + 1].end:close.start]
        return name_tok.start, name_tok.end, name_tok.text, None
    return None


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


def rewrite(sql: str, cluster: Cluster | None, *, default_database: str = "default",
            ledger: bool = False) -> str:
    """``sql`` as it must run on ``cluster`` (unchanged when ``cluster`` is None).

    ``ledger``: the statement creates the ledger or the lock table, replicated
    across the whole cluster with ``ledger_keeper_path`` / ``ledger_replica``.
    """
    if cluster is None:
        return sql
    plan = _plan(sql, default_database)
    if plan is None:
        return sql
    in_replicated_db = plan.per_database and plan.database in cluster.replicated_databases
    out = sql
    if plan.engine:
        span = _engine_span(sql)
        if span and MERGE_TREE_FAMILY.match(span[2]):
            start, end, name, args = span
            if in_replicated_db:
                path = replica = None
            elif ledger:
                path, replica = cluster.ledger_keeper_path, cluster.ledger_replica
            else:
                path, replica = cluster.keeper_path, cluster.replica
            engine = replicated_engine(name, args, keeper_path=path, replica=replica)
            out = out[:start] + engine + out[end:]
    if in_replicated_db or plan.has_on_cluster:
        return out
    if plan.insert_at is None:
        body = out.rstrip()
        semicolon = body.endswith(";")
        body = body.rstrip(";").rstrip()
        return f"{body} {cluster.clause}" + (";" if semicolon else "") + out[len(out.rstrip()):]
    # insert_at was measured on ``sql``; the engine (later in the text) does not move it.
    return out[:plan.insert_at] + " " + cluster.clause + out[plan.insert_at:]


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
    """Make distributed_ddl_task_timeout / _output_mode apply to every query of ``conn``.

    Not a ``SETTINGS`` clause: on CREATE TABLE that clause means table
    settings.  Not ``SET``: over HTTP each query is its own session.  The
    drivers' per-connection settings reach every query on both protocols.
    """
    settings = cluster.ddl_settings()
    if not settings:
        return
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


def explain_ddl_timeout(conn, cluster: Cluster, exc: BaseException, sql: str) -> DistributedDDLTimeout:
    """A code 159 error as one line naming the hosts that did not finish."""
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
        "DDL queue is moving, then `zakaz-schema upgrade --resume` (statements are re-runnable); "
        "raise the wait with ZAKAZ_DDL_TASK_TIMEOUT / -x ddl_task_timeout=SECONDS"
    )


# --- reading a schema ---------------------------------------------------------------

def logical_engine(engine: str) -> str:
    """``ReplicatedReplacingMergeTree('/p', '{replica}', _ver)`` -> ``ReplacingMergeTree(_ver)``.

    Replication is how a table is deployed, not what it is: the canonical
    schema and frozen revision checks compare the logical engine.
    """
    m = re.match(r"^Replicated(\w*MergeTree)\s*(?:\((.*)\))?\s*$", engine or "", re.S)
    if not m or not MERGE_TREE_FAMILY.match(m.group(1)):
        return engine
    args = m.group(2) or ""
    toks = [t for t in _tokens(args) if t.depth == 0]
    # The Keeper path and replica name are the first two arguments when both are strings.
    if len(toks) >= 3 and toks[0].kind == "string" and toks[1].text == "," and toks[2].kind == "string":
        rest = args[toks[2].end:].strip().lstrip(",").strip()
    else:
        rest = args.strip()
    return m.group(1) + (f"({rest})" if rest else "")


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
