"""The guard of raw SQL in cluster mode: ON CLUSTER and Replicated engines placed by reading the text.

The ClickHouse operations (app.operations) are placed on the cluster when
they are rendered, from what they are.  SQL written as text has no such
structure: ``op.run`` / ``op.access`` statements, alembic's own operations
(``op.create_table`` & co., compiled), and the ledger's, the lock's and the
users' DDL.  For those, this module reads the statement: it is recognised by
its leading keywords and object name, ``ON CLUSTER`` goes where the
ClickHouse grammar puts it for that statement, a MergeTree-family engine
becomes Replicated, and a DDL statement it does not recognise raises instead
of silently running on one node only.

Why a textual rewrite and not the ClickHouse parser: offline SQL
(``zakaz-schema sql --cluster``) has no server to parse with.
tests/test_cluster_sql.py checks every statement of the rendered chain with
``formatQuery`` (ClickHouse's own parser, through chDB) and checks that
removing the cluster parts gives back the single-server statement exactly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.errors import CheckFailed
from app.schema import MERGE_TREE_FAMILY

if TYPE_CHECKING:
    from app.cluster import Cluster


class ClusterRewriteError(CheckFailed):
    """A DDL statement whose ON CLUSTER place this module does not know."""


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
        + "; use an app.operations function or extend app/cluster_rewrite.py"
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
            engine = cluster.replicated_engine(name, args, in_replicated_database=in_replicated_db, ledger=ledger)
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
