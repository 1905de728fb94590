"""Lint the revision files: replay the chain on a scratch embedded database and check each revision.

Rules (E error, W warning); a finding names its rule, revision, line and what is wrong:

* ``docstring`` (E): the revision module has no docstring.
* ``heads`` (E): the chain has more than one head.
* ``offline-sql`` (E): the revision cannot be rendered as offline SQL (``zakaz-schema sql``).
* ``replay-upgrade`` (E): the upgrade fails on top of its predecessor.
* ``replay-downgrade`` (E): the downgrade fails.
* ``downgrade-restores`` (E): after the downgrade the schema (databases, tables,
  columns, keys, view queries) is not what it was before the upgrade.
* ``view-order`` (E): a view is created before the table or column it reads,
  which the same revision creates later (the old SQL files' first-run failure).
* ``view-reference`` (E): a view or materialized view reads an object or column
  that does not exist, at creation or after a later revision dropped or changed it.
* ``nondeterministic-key`` (E): PARTITION BY / ORDER BY / PRIMARY KEY / SAMPLE BY /
  TTL calls a non-deterministic function (now(), today(), rand(), ...).
* ``destructive-drop`` (E): a table (or a materialized view's storage) or a
  column is dropped, a rebuild does not copy a column, or rows are deleted
  (TRUNCATE, ALTER DELETE, DROP PARTITION), and the step does not declare it:
  ``DOWNGRADE_LOSES`` for the downgrade, ``UPGRADE_LOSES`` for the upgrade.
* ``destructive-narrowing`` (E): a column's type changes to one that cannot hold
  every old value (MODIFY COLUMN UInt64 -> UInt32, String -> FixedString, ...), undeclared.
* ``destructive-recreate`` (E): a table is replaced by a new one (engine or
  ORDER BY change, or DROP + CREATE) without copying its rows, undeclared.
* ``loss-declaration`` (W): ``*_LOSES`` names something the step does not drop.
* ``create-if-not-exists`` (W): CREATE without IF NOT EXISTS / OR REPLACE (or ADD
  COLUMN without IF NOT EXISTS): a re-run after a half-applied revision fails.
  A CREATE right after ``DROP ... IF EXISTS`` of the same name is re-runnable.
* ``drop-if-exists`` (W): DROP (or DROP COLUMN) without IF EXISTS, for the same reason.
* ``rerun-data`` (E): a statement that moves rows repeats its effect when the
  revision is resumed after a later statement failed: an INSERT (... SELECT or
  VALUES) into a table the step neither empties first (DROP / TRUNCATE) nor
  reads in the INSERT (a guard such as ``copy_rows_once``'s emptiness check),
  or an ALTER ... UPDATE whose new value depends on the old one (or is
  random, or the time) with no WHERE on that column to skip updated rows.
* ``grant-unknown-object`` (E): GRANT / REVOKE on an object or database that does
  not exist at that statement.
* ``mv-current-time`` (W): a materialized view's query uses the current time:
  it is evaluated once per inserted block, so a time window never moves.
* ``mv-replacing-aggregate`` (W): a materialized view stores aggregates in a
  ReplacingMergeTree: every insert block writes its own partial row for a key
  and merges keep one of them, not their total.

Where the facts come from: statements from alembic's offline SQL (each
revision, both directions, as ``zakaz-schema sql`` renders them), normalised
and parsed by ClickHouse itself (``formatQuery``, ``EXPLAIN AST``,
``system.functions``); schema state from replaying the chain on a scratch
chDB directory, with a snapshot (``app.schema.snapshot_schema`` plus uuids and
view queries from ``system.tables``) before and after every step.  The chain
is upgraded revision by revision, then downgraded revision by revision, each
downgrade compared with the snapshot taken before that revision's upgrade.
Access statements never run on chDB (no access storage), so grants are checked
against the objects the chain's own statements have created at that point.
"""
from __future__ import annotations

import ast
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from app.sql import quote_literal
from app.sql import clickhouse_error_code, clickhouse_error_message
from app.schema import MATERIALIZED_VIEW, TABLE, VIEW, Schema, snapshot_schema, unwrap_type

ERROR, WARNING = "error", "warning"

RULES: dict[str, str] = {
    "docstring": ERROR,
    "heads": ERROR,
    "offline-sql": ERROR,
    "replay-upgrade": ERROR,
    "replay-downgrade": ERROR,
    "downgrade-restores": ERROR,
    "view-order": ERROR,
    "view-reference": ERROR,
    "nondeterministic-key": ERROR,
    "destructive-drop": ERROR,
    "destructive-narrowing": ERROR,
    "destructive-recreate": ERROR,
    "loss-declaration": WARNING,
    "create-if-not-exists": WARNING,
    "drop-if-exists": WARNING,
    "rerun-data": ERROR,
    "grant-unknown-object": ERROR,
    "mv-current-time": WARNING,
    "mv-replacing-aggregate": WARNING,
}

SYSTEM_DATABASES = ("system", "INFORMATION_SCHEMA", "information_schema")
UPGRADE, DOWNGRADE = "upgrade", "downgrade"
DECLARATIONS = {UPGRADE: "UPGRADE_LOSES", DOWNGRADE: "DOWNGRADE_LOSES"}


# --- results ---------------------------------------------------------------------

@dataclass(frozen=True)
class Finding:
    rule: str
    revision: str
    line: int  # in the revision file; best effort (see _Source.line)
    message: str
    path: str = ""

    @property
    def severity(self) -> str:
        return RULES[self.rule]

    def __str__(self) -> str:
        where = f"{os.path.basename(self.path)}:{self.line}" if self.path else self.revision
        return f"{where}: {self.severity} [{self.rule}] {self.message}"

    def to_dict(self) -> dict:
        return {"rule": self.rule, "severity": self.severity, "revision": self.revision,
                "line": self.line, "path": self.path, "message": self.message}


@dataclass
class LintReport:
    revisions: list[str]
    findings: list[Finding] = field(default_factory=list)
    not_replayed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict:
        return {
            "ok": self.ok, "revisions": self.revisions,
            "errors": len(self.errors), "warnings": len(self.warnings),
            "findings": [f.to_dict() for f in self.findings],
            "not_replayed": self.not_replayed, "seconds": round(self.seconds, 3),
        }


# --- revision files ------------------------------------------------------------

class _Source:
    """A revision file's lines, for pointing a finding at a line."""

    def __init__(self, path: str):
        self.path = path
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        self.lines = text.splitlines()
        self.functions: dict[str, tuple[int, int]] = {}
        for node in ast.parse(text).body:
            if isinstance(node, ast.FunctionDef):
                self.functions[node.name] = (node.lineno, node.end_lineno or node.lineno)

    def line(self, needles: Iterable[str], function: str | None = None) -> int:
        """Best effort: the first line naming one of ``needles`` (most specific
        first) inside ``function``, else anywhere in the file, else the line
        ``function`` starts at.  A revision often keeps its SQL in module
        constants (VIEW_SQL, TABLES), hence the whole-file fallback."""
        span = self.functions.get(function or "", (1, len(self.lines)))
        for needle in needles:
            if not needle:
                continue
            pattern = re.compile(r"(?<![\w.])" + re.escape(needle) + r"(?![\w])")
            for lo, hi in (span, (1, len(self.lines))):
                for n in range(lo, hi + 1):
                    if pattern.search(self.lines[n - 1]):
                        return n
        return span[0] if function in self.functions else 1


@dataclass
class _Revision:
    id: str
    parents: tuple[str, ...]
    path: str
    module: Any
    source: _Source
    statements: dict[str, list["_Statement"]] = field(default_factory=dict)

    @property
    def parent(self) -> str | None:
        """The first parent: a merge revision is rendered and reset along it."""
        return self.parents[0] if self.parents else None

    def declared(self, direction: str) -> list[str]:
        return list(getattr(self.module, DECLARATIONS[direction], ()) or ())


# --- statements -------------------------------------------------------------------

_IDENT = r"(?:`(?:[^`\\]|\\.)+`|[\w$]+|\*)"
_NAME = rf"{_IDENT}(?:\.{_IDENT})?"
_KINDS = (r"TABLE|MATERIALIZED VIEW|LIVE VIEW|WINDOW VIEW|VIEW|DICTIONARY|DATABASE|FUNCTION|"
          r"ROLE|USER|QUOTA|ROW POLICY|SETTINGS PROFILE|NAMED COLLECTION")
_CREATE = re.compile(rf"^(?P<replace>CREATE OR REPLACE |REPLACE |CREATE )(?:TEMPORARY )?(?P<kind>{_KINDS}) "
                     rf"(?P<ine>IF NOT EXISTS )?(?P<name>{_NAME})")
_DROP = re.compile(rf"^DROP (?:TEMPORARY )?(?P<kind>{_KINDS}) (?P<ie>IF EXISTS )?(?P<name>{_NAME})")
_ALTER = re.compile(rf"^ALTER TABLE (?P<name>{_NAME}) ")
_EXCHANGE = re.compile(rf"^EXCHANGE (?:TABLES|DICTIONARIES) (?P<a>{_NAME}) AND (?P<b>{_NAME})")
_RENAME = re.compile(r"^RENAME (?:TABLE|DICTIONARY) ")
_RENAME_PAIR = re.compile(rf"({_NAME}) TO ({_NAME})")
_INSERT = re.compile(rf"^INSERT INTO (?:TABLE )?(?P<name>{_NAME})(?: \((?P<cols>[^)]*)\))? ")
_FROM = re.compile(rf"\b(?:FROM|JOIN) ({_NAME})")
_ACCESS_ON = re.compile(rf"^(?P<verb>GRANT|REVOKE) .*? ON (?P<target>{_NAME}) (?:TO|FROM) ")
_TRUNCATE = re.compile(rf"^TRUNCATE (?:TABLE )?(?:IF EXISTS )?(?P<name>{_NAME})")
_DELETE_FROM = re.compile(rf"^DELETE FROM (?P<name>{_NAME})")
_MV_TO = re.compile(rf"^CREATE MATERIALIZED VIEW (?:IF NOT EXISTS )?{_NAME} TO (?P<target>{_NAME}) ")
_KEY_COMMANDS = ("MODIFY_TTL", "MODIFY_ORDER_BY", "MODIFY_SAMPLE_BY", "MODIFY_PRIMARY_KEY")


# Kinds whose names have no database part.
_GLOBAL_KINDS = ("DATABASE", "ROLE", "USER", "FUNCTION", "QUOTA", "ROW POLICY", "SETTINGS PROFILE",
                 "NAMED COLLECTION")


def _unquote(ident: str) -> str:
    if ident.startswith("`") and ident.endswith("`"):
        return re.sub(r"\\(.)", r"\1", ident[1:-1])
    return ident


def _full_name(text: str, default_db: str) -> str:
    parts = [_unquote(p) for p in re.findall(_IDENT, text)]
    return ".".join(parts) if len(parts) > 1 else f"{default_db}.{parts[0]}"


def _object_name(kind: str, text: str, default_db: str) -> str:
    return _unquote(text) if kind in _GLOBAL_KINDS else _full_name(text, default_db)


def _columns_of(text: str) -> list[str]:
    return [_unquote(c.strip()) for c in text.split(",") if c.strip()]


@dataclass
class _Statement:
    raw: str
    norm: str | None  # formatQuerySingleLine; None for a comment-only chunk

    def match(self, pattern: re.Pattern):
        return pattern.match(self.norm) if self.norm else None

    def creates(self, default_db: str) -> tuple[str, str] | None:
        """(kind, name) of what a CREATE statement creates."""
        m = self.match(_CREATE)
        if not m:
            return None
        return m.group("kind"), _object_name(m.group("kind"), m.group("name"), default_db)


def _chunks_writer(out: list[str]):
    # alembic's offline mode writes each statement (and each "-- Running ..."
    # comment) with one write() call, so recording the calls splits the SQL
    # without parsing it.
    class Recorder:
        def write(self, text: str) -> None:
            out.append(text)

        def flush(self) -> None:
            pass
    return Recorder()


_RUNNING = re.compile(r"^-- Running (upgrade|downgrade) (.*?) -> (.*?)\s*$")


def _render(cfg_factory, revision_range: str, direction: str) -> dict[str, list[str]]:
    """Offline SQL of a range, as raw statements per revision (ledger rows left out)."""
    from alembic import command as alembic_command

    from app.ledger import LEDGER_TABLE, VERSION_VIEW

    chunks: list[str] = []
    cfg = cfg_factory()
    cfg.output_buffer = _chunks_writer(chunks)
    if direction == UPGRADE:
        alembic_command.upgrade(cfg, revision_range, sql=True)
    else:
        alembic_command.downgrade(cfg, revision_range, sql=True)
    out: dict[str, list[str]] = {}
    current = None
    for chunk in chunks:
        text = chunk.strip()
        m = _RUNNING.match(text)
        if m:
            ids = m.group(3) if direction == UPGRADE else m.group(2)
            current = ids.split(",")[0].strip()
            out.setdefault(current, [])
            continue
        if current is None or not text:
            continue
        if re.search(rf"\.({LEDGER_TABLE}|{VERSION_VIEW})\b", text.split("\n", 1)[0]):
            continue
        out[current].append(text.rstrip(";").strip())
    return out


# --- what ClickHouse knows about functions ------------------------------------------

_CURRENT_TIME_24_8 = {
    "now", "now64", "nowInBlock", "today", "yesterday", "curdate", "current_date",
    "current_timestamp", "localtime", "localtimestamp", "UTCTimestamp", "UTC_timestamp",
}
_NONDETERMINISTIC_PREFIXES_24_8 = (
    "rand", "generateUUID", "generateSnowflakeID", "rowNumberIn", "blockNumber", "blockSize",
    "arrayShuffle", "arrayPartialShuffle", "arrayRandomSample", "fuzzBits", "dictGet", "dictHas",
    "joinGet", "hostName", "hostname", "FQDN", "queryID", "query_id", "initialQueryID", "uptime",
    "currentDatabase", "currentUser", "filesystem",
)


@dataclass
class _Functions:
    nondeterministic: set[str]
    current_time: set[str]
    aggregate: set[str]

    @staticmethod
    def load(conn) -> "_Functions":
        has_deterministic = conn.exec_driver_sql(
            "SELECT count() FROM system.columns "
            "WHERE database = 'system' AND table = 'functions' AND name = 'deterministic'"
        ).scalar()
        if not has_deterministic:
            return _Functions._load_24_8(conn)
        rows = conn.exec_driver_sql(
            "SELECT name, alias_to, deterministic, is_aggregate, case_insensitive, categories "
            "FROM system.functions"
        ).all()
        nondet, current, agg = set(), set(), set()
        by_name = {r[0]: r for r in rows}
        for name, alias_to, deterministic, is_aggregate, case_insensitive, categories in rows:
            base = by_name.get(alias_to, (name, "", deterministic, is_aggregate, 0, categories))
            det, is_agg, cats = base[2], base[3], base[5] or ""
            keys = {name, name.lower()} if case_insensitive else {name}
            if det == 0:
                nondet |= keys
                # now(), today(), ...: the non-deterministic date functions,
                # not the time zone ones (constant on a server).
                if "Date" in cats and "imezone" not in (alias_to or name):
                    current |= keys
            if is_agg:
                agg |= keys
        return _Functions(nondet, current, agg)

    @staticmethod
    def _load_24_8(conn) -> "_Functions":
        # ClickHouse 24.8 (the production servers): system.functions has
        # no `deterministic` column and empty categories.  The current-time
        # functions and the families of other non-deterministic ones a key or
        # a view could call are named here, as 26.x classes them.
        rows = conn.exec_driver_sql(
            "SELECT name, is_aggregate, case_insensitive FROM system.functions"
        ).all()
        nondet, current, agg = set(), set(), set()
        for name, is_aggregate, case_insensitive in rows:
            keys = {name, name.lower()} if case_insensitive else {name}
            if name in _CURRENT_TIME_24_8:
                current |= keys
            if name in _CURRENT_TIME_24_8 or name.startswith(_NONDETERMINISTIC_PREFIXES_24_8):
                nondet |= keys
            if is_aggregate:
                agg |= keys
        return _Functions(nondet, current, agg)

    def _lookup(self, name: str, names: set[str]) -> bool:
        return name in names or name.lower() in names

    def is_nondeterministic(self, name: str) -> bool:
        return self._lookup(name, self.nondeterministic)

    def is_current_time(self, name: str) -> bool:
        return self._lookup(name, self.current_time)

    def is_aggregate(self, name: str) -> bool:
        # sumIf, maxState, ...: combinators are not listed in system.functions.
        for suffix in ("", "If", "Array", "Map", "State", "Merge", "MergeState", "ForEach",
                       "Distinct", "OrDefault", "OrNull", "Resample", "SimpleState"):
            base = name[: -len(suffix)] if suffix and name.endswith(suffix) else name
            if (not suffix or name.endswith(suffix)) and self._lookup(base, self.aggregate):
                return True
        return False


def _explain_ast(conn, sql: str) -> list[tuple[int, str]]:
    """EXPLAIN AST as (depth, label) lines; the parse only, nothing is resolved."""
    rows = conn.exec_driver_sql("EXPLAIN AST " + sql).all()
    return [(len(line) - len(line.lstrip(" ")), line.strip()) for (line,) in rows]


def _subtrees(tree: list[tuple[int, str]], label_prefixes: tuple[str, ...]) -> list[list[tuple[int, str]]]:
    found = []
    for i, (depth, label) in enumerate(tree):
        if label.startswith(label_prefixes):
            j = i + 1
            while j < len(tree) and tree[j][0] > depth:
                j += 1
            found.append(tree[i:j])
    return found


def _function_names(nodes: list[tuple[int, str]]) -> list[str]:
    return [m.group(1) for _, label in nodes if (m := re.match(r"Function (\S+)", label))]


# --- schema state of the scratch database ------------------------------------------

@dataclass
class _State:
    databases: frozenset[str]
    schema: Schema
    uuids: dict[str, str]
    queries: dict[str, str]  # view / materialized view -> its SELECT

    def data_holding(self, name: str) -> bool:
        obj = self.schema.get(name)
        return obj is not None and (obj.kind == TABLE or (obj.kind == MATERIALIZED_VIEW and bool(obj.engine)))


def _is_bookkeeping(name: str, url_db: str) -> bool:
    db, _, table = name.partition(".")
    return db == url_db and (table.startswith("zakaz_schema_") or table == "alembic_version")


def _snapshot(conn, url_db: str) -> _State:
    excluded = ", ".join(quote_literal(d) for d in SYSTEM_DATABASES)
    # Databases and what snapshot_schema leaves out (uuids, view queries) in one query.
    rows = conn.exec_driver_sql(
        "SELECT '', name, '', '', '' FROM system.databases "
        f"WHERE name NOT IN ({excluded}) "
        "UNION ALL "
        "SELECT database, name, toString(uuid), engine, as_select "
        f"FROM system.tables WHERE database NOT IN ({excluded})"
    ).all()
    databases = sorted(name for db, name, *_ in rows if db == "")
    schema = {n: o for n, o in snapshot_schema(conn, databases).items() if not _is_bookkeeping(n, url_db)}
    uuids, queries = {}, {}
    for db, name, uuid, engine, as_select in rows:
        full = f"{db}.{name}"
        if db == "" or full not in schema:
            continue
        uuids[full] = uuid
        if engine in ("View", "MaterializedView"):
            queries[full] = as_select
    return _State(frozenset(databases), schema, uuids, queries)


# --- column types: what a change can lose -------------------------------------------



def _int_kind(t: str) -> tuple[bool, int] | None:
    m = re.fullmatch(r"(U?)Int(\d+)", t)
    return (m.group(1) == "U", int(m.group(2))) if m else None


def _enum_values(t: str) -> set[str] | None:
    if not t.startswith(("Enum8(", "Enum16(")):
        return None
    return set(re.findall(r"'((?:[^'\\]|\\.)*)'\s*=", t))


def is_narrowing(old: str, new: str) -> bool:
    """True if a column of type ``old`` changed to ``new`` may lose values.

    Widening is recognised for the usual cases (bigger integers, Nullable,
    LowCardinality, wider Decimal, FixedString/UUID -> String, Date ->
    DateTime, Enum with added values); anything else counts as narrowing.
    """
    if old == new:
        return False
    (o, o_null), (n, n_null) = unwrap_type(old), unwrap_type(new)
    if o_null and not n_null:
        return True
    if o == n:
        return False
    oi, ni = _int_kind(o), _int_kind(n)
    if oi and ni:
        (o_unsigned, o_bits), (n_unsigned, n_bits) = oi, ni
        if o_unsigned == n_unsigned:
            return n_bits < o_bits
        return not (o_unsigned and not n_unsigned and n_bits > o_bits)
    if oi and n in ("Float64",) and oi[1] <= 32 or (o == "Float32" and n == "Float64"):
        return False
    od = re.fullmatch(r"Decimal\((\d+),\s*(\d+)\)", o)
    nd = re.fullmatch(r"Decimal\((\d+),\s*(\d+)\)", n)
    if od and nd:
        (op_, os_), (np_, ns_) = map(int, od.groups()), map(int, nd.groups())
        return not (ns_ >= os_ and np_ - ns_ >= op_ - os_)
    if n == "String" and (o.startswith("FixedString(") or o in ("UUID",)):
        return False
    of, nf = re.fullmatch(r"FixedString\((\d+)\)", o), re.fullmatch(r"FixedString\((\d+)\)", n)
    if of and nf:
        return int(nf.group(1)) < int(of.group(1))
    if (o, n) in (("Date", "Date32"), ("Date", "DateTime")) or (
            o.startswith("DateTime") and n.startswith("DateTime64")):
        return False
    ov, nv = _enum_values(o), _enum_values(n)
    if ov is not None and nv is not None:
        return not ov <= nv
    return True


# --- the linter ----------------------------------------------------------------------

class _Lint:
    def __init__(self, conn, url_db: str, cfg_factory, revisions: list[_Revision], checked: set[str]):
        self.conn = conn
        self.url_db = url_db
        self.cfg_factory = cfg_factory
        self.revisions = revisions
        self.by_id = {r.id: r for r in revisions}
        self.checked = checked
        self.findings: list[Finding] = []
        self.not_replayed: list[str] = []
        self.functions = _Functions.load(conn)
        # Engines of the tables the chain's CREATE statements make (for a
        # materialized view written TO one of them).
        self.engines: dict[str, str] = {}
        self.nondeterministic_found: set[str] = set()

    # -- output ---------------------------------------------------------------
    def report(self, rule: str, rev: _Revision, message: str, needles: Iterable[str] = (),
               function: str | None = None, force: bool = False) -> None:
        if rev.id not in self.checked and not force:
            return
        line = rev.source.line(needles, function)
        finding = Finding(rule, rev.id, line, message, rev.path)
        if finding not in self.findings:
            self.findings.append(finding)

    @staticmethod
    def _needles(name: str) -> list[str]:
        """Ways a revision may spell ``db.table[.column]``, most specific first."""
        parts = name.split(".")
        out = [name]
        if len(parts) == 3:
            out += [f"{parts[0]}.{parts[1]}", parts[2]]
        elif len(parts) == 2:
            out.append(parts[1])
        return out

    # -- statements --------------------------------------------------------------
    def render_statements(self) -> None:
        raw: dict[str, dict[str, list[str]]] = {r.id: {} for r in self.revisions}
        try:
            for rev_id, stmts in _render(self.cfg_factory, "base:heads", UPGRADE).items():
                raw[rev_id][UPGRADE] = stmts
            for head in [r.id for r in self.revisions if self._is_head(r.id)]:
                for rev_id, stmts in _render(self.cfg_factory, f"{head}:base", DOWNGRADE).items():
                    raw[rev_id].setdefault(DOWNGRADE, stmts)
        except Exception:
            # Render revision by revision to name the one that fails.
            for rev in self.revisions:
                for direction, rng in ((UPGRADE, f"{rev.parent or 'base'}:{rev.id}"),
                                       (DOWNGRADE, f"{rev.id}:{rev.parent or 'base'}")):
                    if direction in raw[rev.id]:
                        continue
                    try:
                        raw[rev.id][direction] = _render(self.cfg_factory, rng, direction).get(rev.id, [])
                    except Exception as exc:
                        raw[rev.id][direction] = []
                        self.report("offline-sql", rev,
                                    f"the {direction} cannot be rendered as offline SQL "
                                    f"(`zakaz-schema sql`): {_one_line(exc)}", function=direction)
        flat = [s for rev in self.revisions for d in (UPGRADE, DOWNGRADE) for s in raw[rev.id].get(d, [])]
        normalised = self.conn.exec_driver_sql(
            "SELECT arrayMap(q -> formatQuerySingleLineOrNull(q), %(qs)s)", {"qs": flat}
        ).scalar() if flat else []
        it = iter(normalised)
        for rev in self.revisions:
            for d in (UPGRADE, DOWNGRADE):
                rev.statements[d] = [_Statement(s, next(it)) for s in raw[rev.id].get(d, [])]

    def _is_head(self, rev_id: str) -> bool:
        return not any(rev_id in r.parents for r in self.revisions)

    def _ancestors(self, rev_id: str) -> set[str]:
        """``rev_id`` and every revision it builds on."""
        out, todo = set(), [rev_id]
        while todo:
            r = todo.pop()
            if r not in out and r in self.by_id:
                out.add(r)
                todo.extend(self.by_id[r].parents)
        return out

    def _heads(self) -> list[str]:
        """The scratch database's heads, as the ledger's version view has them."""
        try:
            rows = self.conn.exec_driver_sql(
                f"SELECT version_num FROM `{self.url_db}`.alembic_version").all()
        except Exception:
            return []  # no ledger yet (fresh or reset)
        return sorted(r[0] for r in rows)

    def _applied(self, rev_id: str) -> bool:
        return any(rev_id in self._ancestors(h) for h in self._heads())

    def check_statements(self) -> None:
        """Checks that need only the statements: re-run safety, keys, MVs, grants."""
        objects: set[str] = set()
        databases: set[str] = {self.url_db, "default"}
        for rev in self.revisions:
            for direction in (UPGRADE, DOWNGRADE):
                stmts = rev.statements.get(direction, [])
                self._check_rerun(rev, direction, stmts)
                self._check_rerun_data(rev, direction, stmts)
                for st in stmts:
                    self._check_keys(rev, direction, st)
                    created = st.creates(self.url_db)
                    if direction == UPGRADE and created and created[0] == "MATERIALIZED VIEW":
                        self._check_materialized_view(rev, st)
            # Grants: the chain's own statements say what exists at each one.
            for st in rev.statements.get(UPGRADE, []):
                self._check_access(rev, st, objects, databases)
                self._track_names(st, objects, databases)

    def _check_rerun(self, rev: _Revision, direction: str, stmts: list[_Statement]) -> None:
        dropped_if_exists: set[str] = set()
        for st in stmts:
            if not st.norm:
                continue
            m = st.match(_DROP)
            if m:
                name = _object_name(m.group("kind"), m.group("name"), self.url_db)
                if m.group("ie"):
                    dropped_if_exists.add(name)
                else:
                    self.report("drop-if-exists", rev,
                                f"{direction}: DROP {m.group('kind')} {name} without IF EXISTS fails "
                                "when the revision is re-run after a partial failure",
                                self._needles(name), direction)
                continue
            m = st.match(_CREATE)
            if m:
                kind, name = st.creates(self.url_db)
                if m.group("replace") == "CREATE " and not m.group("ine") and name not in dropped_if_exists:
                    self.report("create-if-not-exists", rev,
                                f"{direction}: CREATE {kind} {name} without IF NOT EXISTS (or OR REPLACE) "
                                "fails when the revision is re-run after a partial failure",
                                self._needles(name), direction)
                continue
            m = st.match(_ALTER)
            if m:
                table = _full_name(m.group("name"), self.url_db)
                for rule, verb, guard in (("create-if-not-exists", "ADD", "IF NOT EXISTS"),
                                          ("drop-if-exists", "DROP", "IF EXISTS")):
                    for col in re.findall(rf"\({verb} COLUMN (?!{guard} )({_IDENT})", st.norm):
                        column = f"{table}.{_unquote(col)}"
                        self.report(rule, rev, f"{direction}: {verb} COLUMN {column} without {guard} "
                                    "fails when the revision is re-run", self._needles(column), direction)

    def _check_rerun_data(self, rev: _Revision, direction: str, stmts: list[_Statement]) -> None:
        """Row-moving statements a resume would repeat (rows copied twice, values changed twice)."""
        emptied: set[str] = set()  # dropped or truncated earlier in the step: a re-run empties it again
        for st in stmts:
            if not st.norm:
                continue
            if (m := st.match(_DROP)) and m.group("kind") == "TABLE":
                emptied.add(_full_name(m.group("name"), self.url_db))
            elif m := st.match(_TRUNCATE):
                emptied.add(_full_name(m.group("name"), self.url_db))
            elif m := st.match(_INSERT):
                target = _full_name(m.group("name"), self.url_db)
                sources = {_full_name(t, self.url_db) for t in _FROM.findall(st.norm[m.end():])}
                if target in emptied or target in sources:
                    continue
                shape = "SELECT" if sources else "VALUES"
                self.report("rerun-data", rev,
                            f"{direction}: INSERT INTO {target} ... {shape} runs again when the revision is "
                            "resumed after a later statement fails, and its rows are then there twice: use "
                            f"copy_rows_once(), or guard it (read {target} in the INSERT so it skips what "
                            "a first run wrote)",
                            [f"INSERT INTO {target}", *self._needles(target)], direction)
            elif (m := st.match(_ALTER)) and "(UPDATE " in st.norm:
                table = _full_name(m.group("name"), self.url_db)
                for column, why in self._repeated_updates(st):
                    self.report("rerun-data", rev,
                                f"{direction}: ALTER TABLE {table} UPDATE {column} = ... {why}, so a resume "
                                f"after a later statement fails changes {column} again: add a WHERE on {column} "
                                "that skips rows already updated",
                                [f"UPDATE {column}", *self._needles(table)], direction)

    def _repeated_updates(self, st: _Statement) -> list[tuple[str, str]]:
        """Assignments of an ALTER ... UPDATE that a second run would change again: (column, why)."""
        out = []
        for command in _subtrees(_explain_ast(self.conn, st.norm), ("AlterCommand UPDATE",)):
            depth = command[0][0]
            children = [sub for sub in _subtrees(command[1:], ("",)) if sub[0][0] == depth + 1]
            assignments = _subtrees(command, ("Assignment ",))
            predicate = next((c for c in children
                              if not any(label.startswith("Assignment ") for _, label in c)), [])
            guarded = {label.split(" ", 1)[1].split(".")[-1] for _, label in predicate
                       if label.startswith("Identifier ")}
            assigned = {a[0][1].split(" ")[1] for a in assignments}
            for assignment in assignments:
                column = assignment[0][1].split(" ")[1]
                reads = {label.split(" ", 1)[1].split(".")[-1] for _, label in assignment[1:]
                         if label.startswith("Identifier ")}
                random = [f for f in _function_names(assignment)
                          if self.functions.is_nondeterministic(f) or self.functions.is_current_time(f)]
                if column in guarded:
                    continue
                if reads & assigned:
                    out.append((column, f"reads {', '.join(sorted(reads & assigned))}, which it changes"))
                elif random:
                    out.append((column, f"calls {random[0]}(), which gives another value each run"))
        return out

    def _check_keys(self, rev: _Revision, direction: str, st: _Statement) -> None:
        if not st.norm:
            return
        created = st.match(_CREATE)
        is_storage = created and created.group("kind") in ("TABLE", "MATERIALIZED VIEW")
        is_alter = st.match(_ALTER) and re.search(r"\(MODIFY (TTL|ORDER BY|SAMPLE BY|PRIMARY KEY) ", st.norm)
        if not (is_storage or is_alter):
            return
        try:
            tree = _explain_ast(self.conn, st.norm)
        except Exception:
            return  # does not parse: the replay reports it
        if created and created.group("kind") == "TABLE" and direction == UPGRADE:
            storage = _subtrees(tree, ("Storage definition",))
            if storage:
                self.engines[st.creates(self.url_db)[1]] = next(iter(_function_names(storage[0])), "")
        parts = _subtrees(tree, ("Storage definition",)) + _subtrees(
            tree, tuple(f"AlterCommand {c}" for c in _KEY_COMMANDS))
        bad = sorted({f for part in parts for f in _function_names(part)
                      if self.functions.is_nondeterministic(f)})
        if bad:
            self.nondeterministic_found.add(rev.id)
            name = st.creates(self.url_db)[1] if created else \
                _full_name(st.match(_ALTER).group("name"), self.url_db)
            self.report("nondeterministic-key", rev,
                        f"{direction}: {name}: PARTITION BY / ORDER BY / TTL uses "
                        f"{', '.join(b + '()' for b in bad)}, which gives a different value each time",
                        [f"{b}()" for b in bad] + self._needles(name), direction)

    def _check_materialized_view(self, rev: _Revision, st: _Statement) -> None:
        name = st.creates(self.url_db)[1]
        try:
            tree = _explain_ast(self.conn, st.norm)
        except Exception:
            return
        query = [n for part in _subtrees(tree, ("SelectWithUnionQuery",))[:1] for n in part]
        functions = _function_names(query)
        now = sorted({f for f in functions if self.functions.is_current_time(f)})
        if now:
            self.report("mv-current-time", rev,
                        f"materialized view {name} filters on the current time "
                        f"({', '.join(f + '()' for f in now)}): "
                        "it is evaluated once per inserted block, so rows never leave the window; "
                        "filter on time in a view over it instead",
                        [f"{f}()" for f in now] + self._needles(name), UPGRADE)
        engine = ""
        storage = _subtrees(tree, ("Storage definition",))
        if storage:
            engine = next(iter(_function_names(storage[0])), "")
        elif (m := st.match(_MV_TO)):
            engine = self.engines.get(_full_name(m.group("target"), self.url_db), "")
        aggregates = sorted({f for f in functions if self.functions.is_aggregate(f)})
        if aggregates and engine.startswith("ReplacingMergeTree"):
            self.report("mv-replacing-aggregate", rev,
                        f"materialized view {name} stores aggregates ({', '.join(aggregates)}) in a "
                        "ReplacingMergeTree: each insert block writes its own partial row per key and "
                        "merges keep one of them, not their total (AggregatingMergeTree or "
                        "SummingMergeTree add them up)",
                        self._needles(name), UPGRADE)

    def _track_names(self, st: _Statement, objects: set[str], databases: set[str]) -> None:
        if not st.norm:
            return
        created = st.creates(self.url_db)
        if created:
            kind, name = created
            if kind == "DATABASE":
                databases.add(name)
            elif kind not in _GLOBAL_KINDS:
                objects.add(name)
            return
        m = st.match(_DROP)
        if m:
            if m.group("kind") == "DATABASE":
                db = _unquote(m.group("name"))
                databases.discard(db)
                objects.difference_update({o for o in objects if o.split(".", 1)[0] == db})
            else:
                objects.discard(_full_name(m.group("name"), self.url_db))
            return
        if st.match(_RENAME):
            for a, b in _RENAME_PAIR.findall(st.norm):
                a, b = _full_name(a, self.url_db), _full_name(b, self.url_db)
                if a in objects:
                    objects.discard(a)
                    objects.add(b)

    def _check_access(self, rev: _Revision, st: _Statement, objects: set[str], databases: set[str]) -> None:
        m = st.match(_ACCESS_ON)
        if not m:
            return
        parts = [_unquote(p) for p in re.findall(_IDENT, m.group("target"))]
        if parts[0] == "*":
            return
        if len(parts) == 1:
            parts = [self.url_db, parts[0]]
        db, name = parts[0], parts[1]
        if name == "*":
            missing = db not in databases
            what = f"database {db}"
        else:
            missing = f"{db}.{name}" not in objects
            what = f"{db}.{name}"
        if missing:
            self.report("grant-unknown-object", rev,
                        f"{m.group('verb')} on {what}, which does not exist at that point of the chain "
                        "(a grant on a missing object fails on a server)",
                        self._needles(f"{db}.{name}" if name != "*" else f"{db}.*"), UPGRADE)

    # -- replay ---------------------------------------------------------------------
    def _alembic(self, direction: str, target: str) -> None:
        from alembic import command as alembic_command

        cfg = self.cfg_factory(connection=self.conn, allow_data_loss=True)
        (alembic_command.upgrade if direction == UPGRADE else alembic_command.downgrade)(cfg, target)

    def _reset(self, at: str | None) -> None:
        """Empty the scratch database, then upgrade it to ``at`` in one run."""
        state = _snapshot(self.conn, self.url_db)
        for db in state.databases:
            if db in (self.url_db, "default"):
                for (name,) in self.conn.exec_driver_sql(
                        f"SELECT name FROM system.tables WHERE database = {quote_literal(db)} "
                        "AND NOT startsWith(name, '.inner')").all():
                    self.conn.exec_driver_sql(f"DROP TABLE IF EXISTS `{db}`.`{name}` SYNC")
            else:
                self.conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{db}` SYNC")
        if at:
            self._alembic(UPGRADE, at)

    def replay(self) -> None:
        """Upgrade revision by revision, then downgrade revision by revision.

        Each downgrade is compared with the snapshot taken before that
        revision's upgrade.  Revisions not asked for are passed in one
        alembic run each way.  After a failure or a wrong downgrade the
        scratch database is rebuilt from nothing, so one bad revision does
        not spoil the checks of the others.
        """
        last = max((i for i, r in enumerate(self.revisions) if r.id in self.checked), default=-1)
        plan = self.revisions[: last + 1]
        states: dict[str, tuple[_State, _State]] = {}
        replayed: list[_Revision] = []
        broken = False
        for i, rev in enumerate(plan):
            if rev.id not in self.checked:
                continue
            if rev.parent and not self._applied(rev.parent):
                try:
                    self._alembic(UPGRADE, rev.parent)
                except Exception as exc:
                    failed = self._failed_revision(exc) or rev
                    self.report("replay-upgrade", failed,
                                f"the upgrade fails, so {rev.id} cannot be replayed: {_step_error(exc)}",
                                self._failing_names(exc), UPGRADE, force=True)
                    self.not_replayed = [r.id for r in plan[i:] if r.id in self.checked]
                    broken = True
                    break
            heads = self._heads()
            before = states[rev.parent][1] if rev.parent in states and heads == [rev.parent] else \
                _snapshot(self.conn, self.url_db)
            try:
                self._alembic(UPGRADE, rev.id)
            except Exception as exc:
                self._upgrade_failed(rev, exc)
                self.not_replayed = [r.id for r in plan[i + 1:] if r.id in self.checked]
                broken = True
                break
            after = _snapshot(self.conn, self.url_db)
            states[rev.id] = (before, after)
            replayed.append(rev)
            self._check_losses(rev, UPGRADE, before, after)
            self._recheck_views(rev, before, after)
        if broken:
            # The failed step left half a revision behind: start again from
            # the last good state.
            self._reset(replayed[-1].id if replayed else None)
        pre: _State | None = None  # the state right before the next downgrade
        for rev in reversed(replayed):
            before = states[rev.id][0]
            try:
                heads = self._heads()
                if rev.id not in heads:
                    if len(heads) == 1 and rev.id in self._ancestors(heads[0]):
                        self._alembic(DOWNGRADE, rev.id)  # revisions not asked for, in one run
                    else:
                        self._reset(rev.id)
                    pre = None
                if pre is None:
                    pre = _snapshot(self.conn, self.url_db)
                self._alembic(DOWNGRADE, f"{rev.id}@-1")
            except Exception as exc:
                failed = self._failed_revision(exc) or rev
                self.report("replay-downgrade", failed, f"the downgrade fails: {_step_error(exc)}",
                            self._failing_names(exc), DOWNGRADE, force=True)
                self._reset(rev.parent)
                pre = None
                continue
            down = _snapshot(self.conn, self.url_db)
            self._check_losses(rev, DOWNGRADE, pre, down)
            pre = down
            differences = _restore_differences(before, down)
            if differences:
                shown = "; ".join(differences[:6])
                if len(differences) > 6:
                    shown += f"; and {len(differences) - 6} more"
                self.report("downgrade-restores", rev,
                            f"the downgrade does not restore the schema from before the upgrade: {shown}",
                            (), DOWNGRADE)
                self._reset(rev.parent)
                pre = None

    # -- replay helpers ---------------------------------------------------------------
    def _failed_revision(self, exc: BaseException) -> _Revision | None:
        return self.by_id.get(getattr(exc, "revision", None) or "")

    def _failing_names(self, exc: BaseException) -> list[str]:
        sql = getattr(exc.__cause__, "statement", None) or ""
        names = re.findall(r"\b([A-Za-z_]\w*\.[A-Za-z_]\w*)\b", sql)
        return names[:1] + [n.split(".", 1)[1] for n in names[:1]]

    def _upgrade_failed(self, rev: _Revision, exc: BaseException) -> None:
        code = clickhouse_error_code(exc)
        text = _step_error(exc)
        sql = getattr(exc.__cause__, "statement", None) or ""
        norm = self.conn.exec_driver_sql(
            "SELECT formatQuerySingleLineOrNull(%(q)s)", {"q": sql}).scalar() if sql else None
        st = _Statement(sql, norm)
        created = st.creates(self.url_db)
        if created and created[0] in ("VIEW", "MATERIALIZED VIEW"):
            view = created[1]
            missing = _missing_name(text, code)
            later = self._created_after(rev, view, missing)
            if later:
                self.report("view-order", rev,
                            f"view {view} is created before {later}, which this revision creates after it: "
                            f"the first run fails ({text})",
                            self._needles(view), UPGRADE)
            else:
                self.report("view-reference", rev,
                            f"view {view} reads an object or column that does not exist at this point: {text}",
                            self._needles(view), UPGRADE)
            return
        if code == 36 and "deterministic" in text or "does not depend on any of the columns" in text:
            if rev.id in self.nondeterministic_found:
                return  # already reported from the statement, with its line
            name = created[1] if created else ""
            self.report("nondeterministic-key", rev, f"upgrade: {text}",
                        self._needles(name) if name else self._failing_names(exc), UPGRADE)
            return
        self.report("replay-upgrade", rev, f"the upgrade fails on top of {rev.parent or 'base'}: {text}",
                    self._failing_names(exc), UPGRADE)

    def _created_after(self, rev: _Revision, view: str, missing: str | None) -> str | None:
        """The missing object (or column) if ``rev`` creates it after ``view``."""
        if not missing:
            return None
        stmts = rev.statements.get(UPGRADE, [])
        view_at = next((i for i, s in enumerate(stmts)
                        if (s.creates(self.url_db) or ("", ""))[1] == view), None)
        if view_at is None:
            return None
        for s in stmts[view_at + 1:]:
            created = s.creates(self.url_db)
            if created and (created[1] == missing or created[1].endswith("." + missing)):
                return created[1]
            m = s.match(_ALTER)
            if m and re.search(rf"\(ADD COLUMN (?:IF NOT EXISTS )?`?{re.escape(missing)}`? ", s.norm or ""):
                return f"column {_full_name(m.group('name'), self.url_db)}.{missing}"
        return None

    def _check_losses(self, rev: _Revision, direction: str, before: _State, after: _State) -> None:
        declared = rev.declared(direction)
        lost = _losses(before, after, rev.statements.get(direction, []), self.url_db)
        attr = DECLARATIONS[direction]
        for rule, target, message in lost:
            if any(target == d or target.startswith(d + ".") for d in declared):
                continue
            self.report(rule, rev, f"{direction}: {message}, and {attr} does not declare {target}",
                        self._needles(target), direction)
        for d in declared:
            if not any(t == d or t.startswith(d + ".") or d.startswith(t + ".") for _, t, _ in lost):
                self.report("loss-declaration", rev,
                            f"{attr} declares {d}, but the {direction} does not drop it",
                            [d, attr], None)
        # deletes found in statements (not visible in an empty scratch database)
        for st in rev.statements.get(direction, []):
            target = _deleted_rows_of(st, self.url_db)
            if target and target in before.schema and not any(
                    target == d or target.startswith(d + ".") for d in declared):
                self.report("destructive-drop", rev,
                            f"{direction}: deletes rows of {target} ({(st.norm or '')[:60]}...), "
                            f"and {attr} does not declare {target}", self._needles(target), direction)

    def _recheck_views(self, rev: _Revision, before: _State, after: _State) -> None:
        """A revision that drops or changes objects may break views of earlier revisions.

        Only views whose query names a changed object (or a view that does)
        are selected from: added columns break nothing, so they do not count.
        """
        changed = set()
        for name, obj in before.schema.items():
            new = after.schema.get(name)
            if new is None or (obj.kind == VIEW and new != obj):
                changed.add(name)
            elif obj.kind != VIEW and (after.uuids.get(name) != before.uuids.get(name) or any(
                    new.column(c.name) is None or new.column(c.name).type != c.type for c in obj.columns)):
                changed.add(name)
        culprits = sorted(changed)
        pending = dict(after.queries)
        while changed:
            affected = {v: q for v, q in pending.items() if any(_mentions(q, c) for c in changed)}
            changed = set()
            for name, query in sorted(affected.items()):
                del pending[name]
                changed.add(name)
                obj = after.schema[name]
                sql = f"SELECT * FROM {_quoted(name)} LIMIT 0" if obj.kind == VIEW else \
                    f"SELECT * FROM ({query}) LIMIT 0"
                try:
                    self.conn.exec_driver_sql(sql).all()
                except Exception as exc:
                    culprit = next((c for c in culprits if _mentions(query, c)), culprits[0])
                    self.report("view-reference", rev,
                                f"{'view' if obj.kind == VIEW else 'materialized view'} {name} no longer works "
                                f"after this revision: {_one_line(exc)}",
                                self._needles(culprit), UPGRADE)


def _mentions(query: str, name: str) -> bool:
    # Views may name tables with or without their database: the bare name
    # counts too (an extra check costs a query, a missed one a broken view).
    return re.search(r"(?<![\w`])`?" + re.escape(name.split(".", 1)[1]) + r"`?(?![\w`])", query) is not None


def _quoted(name: str) -> str:
    db, table = name.split(".", 1)
    return f"`{db}`.`{table}`"


def _one_line(exc: BaseException) -> str:
    return clickhouse_error_message(exc)


def _step_error(exc: BaseException) -> str:
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    return _one_line(cause)


def _missing_name(text: str, code: int) -> str | None:
    for pattern in (r"identifier '([^']+)'", r"[Tt]able ([\w.`]+) does(?:n't| not) exist",
                    r"identifier `([^`]+)`", r"Missing columns: '([^']+)'"):
        m = re.search(pattern, text)
        if m:
            return m.group(1).replace("`", "")
    return None


def _deleted_rows_of(st: _Statement, default_db: str) -> str | None:
    for pattern in (_TRUNCATE, _DELETE_FROM):
        m = st.match(pattern)
        if m:
            return _full_name(m.group("name"), default_db)
    m = st.match(_ALTER)
    if m and re.search(r"\((DELETE WHERE|DROP PARTITION|DROP PART) ", st.norm or ""):
        return _full_name(m.group("name"), default_db)
    return None


def _copies(stmts: list[_Statement], default_db: str) -> dict[str, list[str] | None]:
    """Tables whose rows a step carries into a replacement: table -> copied columns (None: all).

    Two shapes of rebuild: INSERT INTO work SELECT ... FROM t, then EXCHANGE
    TABLES t AND work (or RENAME work TO t); or RENAME t TO old, then INSERT
    INTO t SELECT ... FROM old.
    """
    inserts: list[tuple[str, list[str] | None, set[str]]] = []
    swaps: list[tuple[str, str]] = []
    renamed_from: dict[str, str] = {}
    for st in stmts:
        if (m := st.match(_INSERT)):
            rest = st.norm[m.end():]
            sources = {_full_name(s, default_db) for s in _FROM.findall(rest)}
            cols = _columns_of(m.group("cols")) if m.group("cols") else None
            inserts.append((_full_name(m.group("name"), default_db), cols, sources))
        elif (m := st.match(_EXCHANGE)):
            a, b = _full_name(m.group("a"), default_db), _full_name(m.group("b"), default_db)
            swaps += [(a, b), (b, a)]
        elif st.match(_RENAME):
            for a, b in _RENAME_PAIR.findall(st.norm):
                a, b = _full_name(a, default_db), _full_name(b, default_db)
                swaps.append((b, a))  # b now holds what a held
                renamed_from[a] = b
    out: dict[str, list[str] | None] = {}
    for target, cols, sources in inserts:
        for table, work in swaps:
            if work == target and table in sources:
                out[table] = cols
        for table, old in renamed_from.items():
            if target == table and old in sources:
                out[table] = cols
    return out


def _losses(before: _State, after: _State, stmts: list[_Statement],
            default_db: str) -> list[tuple[str, str, str]]:
    """What a step loses: (rule, "db.table[.column]", message)."""
    out = []
    copies = _copies(stmts, default_db)
    for name, obj in sorted(before.schema.items()):
        if not before.data_holding(name):
            continue
        new = after.schema.get(name)
        what = "materialized view" if obj.kind == MATERIALIZED_VIEW else "table"
        if new is None:
            out.append(("destructive-drop", name, f"drops {what} {name} with its rows"))
            continue
        replaced = after.uuids.get(name) != before.uuids.get(name)
        if replaced and name not in copies:
            changes = [label for label, a, b in (
                ("engine", obj.engine, new.engine), ("ORDER BY", obj.order_by, new.order_by),
                ("PARTITION BY", obj.partition_by, new.partition_by)) if a != b]
            how = f"changes {'/'.join(changes)} by creating it anew" if changes else "drops and creates it again"
            out.append(("destructive-recreate", name,
                        f"{how} without copying its rows ({what} {name})"))
            continue
        copied = copies.get(name) if replaced else None
        for col in obj.columns:
            got = new.column(col.name)
            target = f"{name}.{col.name}"
            if got is None:
                out.append(("destructive-drop", target, f"drops column {target} with its values"))
            elif copied is not None and col.name not in copied:
                out.append(("destructive-drop", target,
                            f"rebuilds {name} without copying column {col.name} (its values are reset)"))
            elif obj.kind == TABLE and is_narrowing(col.type, got.type):
                out.append(("destructive-narrowing", target,
                            f"changes {target} from {col.type} to {got.type}, which cannot hold every old value"))
    return out


def _restore_differences(before: _State, after: _State) -> list[str]:
    from app.verify import compare_schema

    out = []
    for db in sorted(before.databases - after.databases):
        out.append(f"database {db} is not restored")
    for db in sorted(after.databases - before.databases):
        out.append(f"database {db} is left behind")
    for name in sorted(set(before.schema) | set(after.schema)):
        old, new = before.schema.get(name), after.schema.get(name)
        if old == new:
            if old is not None and old.kind != TABLE and before.queries.get(name) != after.queries.get(name):
                out.append(f"{old.kind.replace('_', ' ')} {name} is restored with a different query")
            continue
        if new is None:
            out.append(f"{old.kind.replace('_', ' ')} {name} is not restored")
        elif old is None:
            out.append(f"{new.kind.replace('_', ' ')} {name} is left behind")
        else:
            for f in compare_schema({name: new}, {name: old}):
                if f.kind == "missing_column":
                    out.append(f"column {f.target} is not restored")
                elif f.kind == "unmanaged_column":
                    out.append(f"column {f.target} is left behind")
                else:
                    out.append(str(f).replace("expected", "was").replace("found", "now"))
    return out


# --- entry point -------------------------------------------------------------------------

def lint_revisions(revisions: Sequence[str] | None = None, *,
                   script_location: str | None = None) -> LintReport:
    """Lint ``revisions`` (ids; default all) of the chain in ``script_location``.

    Builds a throwaway embedded database in a temporary directory; nothing
    outside it is touched.  Unknown revision ids raise alembic's CommandError.
    """
    from app import commands
    from app.engine import connect

    t0 = time.perf_counter()
    scratch_dir = tempfile.mkdtemp(prefix="zakaz-lint-")
    url = f"clickhouse+chdb:///default?path={scratch_dir}/db"
    try:
        def cfg_factory(**attributes):
            return commands.alembic_config(url, script_location=script_location, **attributes)

        script = commands.script_directory(cfg_factory())
        ordered = list(reversed(list(script.walk_revisions("base", "heads"))))
        revs = []
        for s in ordered:
            parents = tuple(s.down_revision) if isinstance(s.down_revision, (tuple, list)) else (
                (s.down_revision,) if s.down_revision else ())
            revs.append(_Revision(s.revision, parents, s.path, s.module, _Source(s.path)))
        wanted = [script.get_revision(r).revision for r in revisions] if revisions else [r.id for r in revs]
        checked = set(wanted)
        report = LintReport(revisions=[r.id for r in revs if r.id in checked])
        with connect(url) as conn:
            linter = _Lint(conn, "default", cfg_factory, revs, checked)
            heads = [r for r in revs if linter._is_head(r.id)]
            for rev in revs:
                doc = (rev.module.__doc__ or "").strip()
                if not doc or "TODO" in doc:
                    linter.report("docstring", rev, f"revision {rev.id} has "
                                  f"{'the template' + chr(39) + 's TODO in its' if doc else 'no'} docstring: "
                                  "say what changes and why, and what a downgrade loses", ("TODO",), None)
            if len(heads) > 1:
                for rev in heads:
                    others = ", ".join(h.id for h in heads if h is not rev)
                    linter.report("heads", rev, f"{rev.id} is one of {len(heads)} heads (also {others}): "
                                  "merge them or re-point down_revision",
                                  ["down_revision"], None)
            linter.render_statements()
            linter.check_statements()
            linter.replay()
        report.findings = sorted(linter.findings, key=lambda f: (f.revision, f.line, f.rule))
        report.not_replayed = linter.not_replayed
        report.seconds = time.perf_counter() - t0
        return report
    finally:
        shutil.rmtree(scratch_dir, ignore_errors=True)
