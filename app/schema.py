"""The schema as plain data, and how ClickHouse's printed definitions normalise into it.

Both the canonical schema (``app.canonical``) and a live snapshot (``app.snapshot``) are a
``Schema``: objects keyed by ``"db.name"``, with their columns, engine and keys
in one normalised text form, so comparing them is plain equality.  ClickHouse
24.8 and 26.x print the same definitions differently (measured on chDB 2.1.1 =
24.8.4 and chdb-core 26.9.2); every such difference is absorbed by
``normalise_type``, ``normalise_expression``, ``normalise_key`` and
``normalise_codec`` below and nowhere else.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from app.sql import quote_literal


TABLE = "table"
VIEW = "view"
MATERIALIZED_VIEW = "materialized_view"


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    # The DEFAULT expression, '' if none.  A MATERIALIZED / ALIAS / EPHEMERAL
    # column keeps its keyword in front ("MATERIALIZED 'x'") so it can never
    # compare equal to a DEFAULT one.
    default: str = ""
    # The compression codecs inside CODEC(...), normalised (``normalise_codec``): ``Delta(4), ZSTD(1)``; '' for
    # the server's default.
    codec: str = ""
    # The COMMENT text itself (unquoted), '' for none.
    comment: str = ""

    @property
    def spec(self) -> str:
        """The column as DDL after its name: ``DateTime DEFAULT now() COMMENT 'x' CODEC(ZSTD(1))``.

        COMMENT before CODEC: 24.8's parser accepts no other order.
        """
        out = self.type
        if self.default:
            kind = self.default.split(" ", 1)[0]
            out = f"{out} {self.default}" if kind in _OTHER_DEFAULT_KINDS else f"{out} DEFAULT {self.default}"
        if self.comment:
            out += f" COMMENT {quote_string(self.comment)}"
        if self.codec:
            out += f" CODEC({self.codec})"
        return out.strip()


@dataclass(frozen=True)
class DbObject:
    name: str  # "db.table"
    kind: str  # "table" | "view" | "materialized_view"
    columns: tuple[Column, ...]
    engine: str = ""  # "ReplacingMergeTree(_ver)", "MergeTree"; "" for views
    order_by: str = ""
    partition_by: str = ""
    ttl: str = ""
    # The PRIMARY KEY when it is not the ORDER BY (a prefix of it), normalised
    # like it; '' when it is (ClickHouse's default, and every spec table's).
    primary_key: str = ""
    # How a view runs: "DEFINER" (with its definer's rights), "INVOKER" (with
    # its reader's) or "NONE".  '' for tables, and in an expectation that
    # does not state it.  The definer's name is not here: on the embedded
    # engine there are no named users (see app.schema_check.definer_findings).
    security: str = ""

    @property
    def database(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def table(self) -> str:
        return self.name.split(".", 1)[1]

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)


Schema = dict[str, DbObject]

# The migration tool's own objects (app.ledger's table and view, app.lock's
# table): beside the warehouse, never part of it.  Spelled out here so the
# pure modules need not import the modules that write them.
BOOKKEEPING_NAMES = ("zakaz_schema_ledger", "alembic_version", "zakaz_schema_lock")

_OTHER_DEFAULT_KINDS = ("MATERIALIZED", "ALIAS", "EPHEMERAL")

# Clauses of a MergeTree definition as system.tables.engine_full prints them.
# COMMENT is not part of engine_full today but is cut off in case it appears.
ENGINE_CLAUSES = ("PARTITION BY", "PRIMARY KEY", "ORDER BY", "SAMPLE BY", "TTL", "SETTINGS", "COMMENT")


# --- text scanning -----------------------------------------------------------

def _scan(text: str):
    """Yield ``(index, char, depth)`` for each character outside quotes.

    ``depth`` is the bracket depth around the character; a bracket itself
    counts at the level it opens from / closes back to.
    """
    depth = 0
    quote = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"`":
            quote = ch
        elif ch in "([":
            yield i, ch, depth
            depth += 1
        elif ch in ")]":
            depth -= 1
            yield i, ch, depth
        else:
            yield i, ch, depth
        i += 1


def _wrapped_in_parens(text: str) -> bool:
    """True if ``text`` is one bracketed group: ``(a, b)`` but not ``(a) + (b)``."""
    if not text.startswith("("):
        return False
    for i, ch, depth in _scan(text):
        if ch == ")" and depth == 0:
            return i == len(text) - 1
    return False


def _has_top_level_comma(text: str) -> bool:
    return any(ch == "," and depth == 0 for _, ch, depth in _scan(text))


def _collapse_spaces(text: str) -> str:
    """Runs of whitespace outside quotes become one space."""
    out = []
    quote = ""
    prev_space = False
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            out.append(ch)
            if ch == "\\" and i + 1 < len(text):
                out.append(text[i + 1])
                i += 2
                continue
            if ch == quote:
                quote = ""
        elif ch.isspace():
            if not prev_space:
                out.append(" ")
            prev_space = True
            i += 1
            continue
        else:
            if ch in "'\"`":
                quote = ch
            out.append(ch)
        prev_space = False
        i += 1
    return "".join(out).strip()


# --- normalisation -----------------------------------------------------------

def quote_string(text: str) -> str:
    """``text`` as a ClickHouse string literal, on one line (a column list has one column a line)."""
    return quote_literal(text).replace("\n", "\\n")


# Bytes of a fixed-size value: the argument Delta takes when none is written.
_DELTA_SIZES = {
    "Int8": 1, "UInt8": 1, "Int16": 2, "UInt16": 2, "Date": 2, "Int32": 4, "UInt32": 4, "Float32": 4,
    "Date32": 4, "DateTime": 4, "Int64": 8, "UInt64": 8, "Float64": 8,
}
# Codecs whose argument the server fills in when none is written, and with what.
_CODEC_DEFAULTS = {"ZSTD": "1", "LZ4HC": "0"}


def normalise_codec(text: str, type_: str = "") -> str:
    """A CODEC as both ClickHouse lines print it, without ``CODEC(...)``: ``Delta(4), ZSTD(1)``.

    Both fill in ``ZSTD`` as ``ZSTD(1)``, ``LZ4HC`` as ``LZ4HC(0)`` and
    ``Delta`` as ``Delta(<bytes of the type>)`` (done here for a spec that
    leaves them out; a type not listed needs the argument written); 26.x
    prints ``Gorilla`` as ``Gorilla(<bytes>)``, 24.8 as ``Gorilla``: the
    argument goes.
    """
    text = _collapse_spaces(text or "")
    if text.startswith("CODEC(") and _wrapped_in_parens(text[5:]):
        text = text[6:-1].strip()
    if not text:
        return ""
    bounds = [i for i, ch, depth in _scan(text) if ch == "," and depth == 0]
    parts = [text[a + 1:b].strip() for a, b in zip([-1] + bounds, bounds + [len(text)])]
    base, _ = unwrap_type(type_)
    out = []
    for part in parts:
        name = part.split("(", 1)[0].strip()
        if name == "Gorilla":
            part = name
        elif part == name and name in _CODEC_DEFAULTS:
            part = f"{name}({_CODEC_DEFAULTS[name]})"
        elif part == name == "Delta" and base in _DELTA_SIZES:
            part = f"Delta({_DELTA_SIZES[base]})"
        out.append(part)
    return ", ".join(out)


def normalise_type(text: str) -> str:
    """A column type in the form both ClickHouse lines print.

    24.8 and 26.9 print every type the warehouse uses identically
    (``Decimal(12, 2)``, ``Enum8('full' = 1, 'incr' = 2)``,
    ``LowCardinality(String)``, ``Nullable(UInt32)``, ``FixedString(3)``), so
    only whitespace is normalised, for types written by hand.
    """
    return _collapse_spaces(text or "")


def unwrap_type(type_: str) -> tuple[str, bool]:
    """(base type, nullable) with LowCardinality/Nullable stripped in any order."""
    nullable = False
    while True:
        if type_.startswith("LowCardinality("):
            type_ = type_[len("LowCardinality("):-1]
        elif type_.startswith("Nullable("):
            type_, nullable = type_[len("Nullable("):-1], True
        else:
            return type_, nullable


def normalise_expression(text: str) -> str:
    """A DEFAULT or TTL expression in a form both ClickHouse lines agree on.

    26.x keeps the brackets a statement was written with around a whole
    expression (``DEFAULT ('x')`` is printed ``('x')``, ``DEFAULT (a + 1)`` is
    ``(a + 1)``); 24.8 drops them.  Such grouping brackets are stripped.  A
    bracketed list with a top-level comma is a tuple, not a grouping, and is
    left alone.  Both lines print ``INTERVAL 30 DAY`` as ``toIntervalDay(30)``
    and drop a TTL's implicit ``DELETE``.  A tuple literal is ``(1, 2)`` on
    24.8 and ``tuple(1, 2)`` on 26.x: the bracket form is kept.
    """
    text = _collapse_spaces(text or "")
    while _wrapped_in_parens(text) and not _has_top_level_comma(text[1:-1]):
        text = text[1:-1].strip()
    if text.startswith("tuple(") and _wrapped_in_parens(text[5:]) and _has_top_level_comma(text[6:-1]):
        text = text[5:]
    return text


def normalise_key(text: str) -> str:
    """An ORDER BY / PARTITION BY / PRIMARY KEY in one form: ``a, b``, ``event_id``, ``''``.

    - A one-column key written ``ORDER BY (event_id)`` is ``(event_id)`` in
      system.tables on 26.x and ``event_id`` on 24.8: grouping brackets go.
    - A multi-column sorting key is ``a, b`` on both lines, but a
      multi-column partition key is ``(a, b)`` on both: the outer brackets of
      a whole-key tuple go, so the spec's ``ORDER BY (a, b)`` is ``a, b``.
    - ``PARTITION BY tuple()`` is printed ``tuple()`` by both lines, a table
      without PARTITION BY has ``''``; both mean "one partition", so both are
      ``''`` (as is the spec's ``(none)``).  ``ORDER BY tuple()`` is already
      ``''`` in sorting_key on both lines.
    """
    text = _collapse_spaces(text or "")
    if text == "(none)":
        return ""
    if _wrapped_in_parens(text):
        text = text[1:-1].strip()
    if not _has_top_level_comma(text):
        text = normalise_expression(text)
    return "" if text == "tuple()" else text


def split_engine_full(engine_full: str) -> dict[str, str]:
    """``engine_full`` (or a spec line like it) cut at its clauses.

    ``"ReplacingMergeTree(_ver) PARTITION BY toYYYYMM(d) ORDER BY (a, b) TTL x SETTINGS ..."``
    gives ``{"ENGINE": "ReplacingMergeTree(_ver)", "PARTITION BY": "toYYYYMM(d)",
    "ORDER BY": "(a, b)", "TTL": "x", "SETTINGS": "..."}``, raw, not normalised.
    Keywords inside brackets or quotes (an engine's string arguments) are not
    clause starts.
    """
    text = _collapse_spaces(engine_full or "")
    starts: list[tuple[int, str]] = []
    for i, ch, depth in _scan(text):
        if ch != " " or depth:
            continue
        rest = text[i + 1:]
        for clause in ENGINE_CLAUSES:
            if rest.startswith(clause + " "):
                starts.append((i, clause))
                break
    parts = {"ENGINE": text[: starts[0][0]] if starts else text}
    for n, (pos, clause) in enumerate(starts):
        end = starts[n + 1][0] if n + 1 < len(starts) else len(text)
        parts[clause] = text[pos + 1 + len(clause):end].strip()
    return parts


# The clause sits before a view's AS (after its column list, or after a
# materialized view's storage); the first match is that one, since a string
# in the query comes later.
_SQL_SECURITY = re.compile(r"\s(?:DEFINER = (`[^`]*`|\S+) )?SQL SECURITY (DEFINER|INVOKER|NONE) AS ")


def view_security(create_table_query: str, kind: str = VIEW) -> str:
    """``DEFINER`` / ``INVOKER`` / ``NONE`` from a view's CREATE statement; '' for a table.

    Created without the clause, a view runs as ``INVOKER`` (the server's
    default_normal_view_sql_security, never changed here) and a materialized
    view as ``NONE`` (ignore_empty_sql_security_in_create_view_query, on by
    default on both lines); both lines print the clause only once it was
    given or ALTERed, so the default is filled in here.
    """
    if kind == TABLE:
        return ""
    m = _SQL_SECURITY.search(create_table_query or "")
    return m.group(2) if m else ("INVOKER" if kind == VIEW else "NONE")


def without_sql_security(create_table_query: str) -> str:
    """A CREATE statement without its DEFINER / SQL SECURITY clause (compared as ``security``)."""
    return _SQL_SECURITY.sub(" AS ", create_table_query or "", count=1)


def view_definer(create_table_query: str) -> str | None:
    """The ``DEFINER = name`` of a view's CREATE statement, unquoted, or None."""
    m = _SQL_SECURITY.search(create_table_query or "")
    return m.group(1).strip("`") if m and m.group(1) else None


# The MergeTree engines, whose Replicated counterparts a cluster deploy uses.
MERGE_TREE_FAMILY = re.compile(
    r"^(Replacing|Summing|Aggregating|Collapsing|VersionedCollapsing|Graphite|Coalescing)?MergeTree$"
)
_STRING_LITERAL = re.compile(r"^'(?:[^'\\]|\\.|'')*'$", re.S)


def logical_engine(engine: str) -> str:
    """``ReplicatedReplacingMergeTree('/p', '{replica}', _ver)`` -> ``ReplacingMergeTree(_ver)``.

    Replication is how a table is deployed, not what it is: the canonical
    schema and frozen revision checks compare the logical engine.
    """
    m = re.match(r"^Replicated(\w*MergeTree)\s*(?:\((.*)\))?\s*$", engine or "", re.S)
    if not m or not MERGE_TREE_FAMILY.match(m.group(1)):
        return engine
    args = m.group(2) or ""
    commas = [i for i, ch, depth in _scan(args) if ch == "," and depth == 0]
    # The Keeper path and replica name are the first two arguments when both are strings.
    ends = commas + [len(args)]
    if (len(ends) >= 2 and _STRING_LITERAL.match(args[:ends[0]].strip())
            and _STRING_LITERAL.match(args[ends[0] + 1:ends[1]].strip())):
        rest = args[ends[1] + 1:].strip() if len(ends) > 2 else ""
    else:
        rest = args.strip()
    return m.group(1) + (f"({rest})" if rest else "")


# --- the written form (app.canonical, and revisions that freeze a schema) ---

def _engine_fields(clause: str) -> dict[str, str]:
    parts = split_engine_full(clause)
    return {
        "engine": parts["ENGINE"],
        "order_by": normalise_key(parts.get("ORDER BY", "")),
        "partition_by": normalise_key(parts.get("PARTITION BY", "")),
        "ttl": normalise_expression(parts.get("TTL", "")),
        "primary_key": implicit_primary_key(parts.get("PRIMARY KEY", ""), parts.get("ORDER BY", "")),
    }


def implicit_primary_key(primary_key: str, order_by: str) -> str:
    """A PRIMARY KEY normalised, '' when it is the ORDER BY (as a table without one has it)."""
    key = normalise_key(primary_key)
    return "" if key == normalise_key(order_by) else key


_ESCAPE = re.compile(r"\\(.)|''", re.S)


def _unquote(literal: str) -> str:
    """The text of a string literal: ``'it\\'s'`` and ``'it''s'`` are ``it's``."""
    return _ESCAPE.sub(lambda m: "'" if m.group(1) is None else {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)),
                       literal[1:-1])


def _clause_start(text: str, keyword: str) -> int:
    """Where `` KEYWORD`` starts outside quotes and brackets, or -1."""
    for i, ch, depth in _scan(text):
        if ch == " " and not depth and text.startswith(f" {keyword}", i) \
                and text[i + 1 + len(keyword):i + 2 + len(keyword)] in (" ", "("):
            return i
    return -1


def _column(line: str) -> Column:
    """``name Type [DEFAULT expr] [COMMENT 'text'] [CODEC(...)]`` (the order ClickHouse prints)."""
    name, rest = line.split(None, 1)
    rest = _collapse_spaces(rest)
    codec = comment = ""
    at = _clause_start(rest, "CODEC")
    if at >= 0:
        rest, codec = rest[:at], rest[at + 1:]
    at = _clause_start(rest, "COMMENT")
    if at >= 0:
        rest, comment = rest[:at], _unquote(rest[at + len(" COMMENT "):].strip())
    type_, _, default = rest.partition(" DEFAULT ")
    return Column(name, normalise_type(type_), normalise_expression(default),
                  normalise_codec(codec, normalise_type(type_)), comment)


def parse_tables(text: str) -> list[DbObject]:
    """Tables written as DDL-like blocks: ``db.name  <engine clause>`` then ``column type [DEFAULT expr]`` lines."""
    objects = []
    for block in text.strip().split("\n\n"):
        head, *column_lines = block.strip().splitlines()
        name, clause = head.split(None, 1)
        objects.append(DbObject(
            name=name,
            kind=TABLE,
            columns=tuple(_column(line.strip()) for line in column_lines),
            **_engine_fields(clause),
        ))
    return objects


def parse_views(text: str, kind: str, security: str = "") -> list[DbObject]:
    """Views written one per line: ``db.name [storage clause]: col, col, ...``.

    ``security``: how every one of them must run (``DEFINER``), if that is expected.
    """
    objects = []
    for line in text.strip().splitlines():
        head, _, names = line.rpartition(":")
        name, _, clause = head.strip().partition(" ")
        columns = tuple(Column(n.strip(), "") for n in names.split(","))
        fields = _engine_fields(clause) if clause else {}
        objects.append(DbObject(name=name, kind=kind, columns=columns, security=security, **fields))
    return objects
