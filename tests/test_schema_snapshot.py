"""The live snapshot on real chDB, the canonical schema, and compare_schema."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from sqlalchemy import event

from app.canonical import CANONICAL, MANAGED_DATABASES
from app.engine import connect
from app.schema import (
    MATERIALIZED_VIEW,
    TABLE,
    VIEW,
    Column,
    DbObject,
    normalise_codec,
    normalise_expression,
    normalise_key,
    parse_tables,
    split_engine_full,
)
from app.snapshot import snapshot_schema
from app.verify import Finding, compare_schema

# make test-fast: pure and unit tests (pyproject.toml, marker `fast`).
pytestmark = pytest.mark.fast


@pytest.fixture
def conn(tmp_path):
    with connect(f"clickhouse+chdb:///default?path={tmp_path / 'chdb'}") as c:
        yield c


def run(conn, *statements):
    for sql in statements:
        conn.exec_driver_sql(sql)


SAMPLE = (
    "CREATE DATABASE zakaz",
    "CREATE DATABASE meta",
    "CREATE TABLE zakaz.events (event_id String, ts DateTime DEFAULT now()) "
    "ENGINE = MergeTree ORDER BY (event_id)",
    "CREATE TABLE zakaz.sales (d Date, event_id String, city LowCardinality(String) DEFAULT 'RUB', "
    "revenue Decimal(12,2) DEFAULT 0, run_id String DEFAULT toString(generateUUIDv4()), "
    "mode Enum8('full' = 1, 'incr' = 2) DEFAULT 'full', _ver UInt64, _loaded_at DateTime DEFAULT now()) "
    "ENGINE = ReplacingMergeTree(_ver) PARTITION BY toYYYYMM(d) ORDER BY (d, event_id) "
    "TTL _loaded_at + INTERVAL 30 DAY",
    "CREATE TABLE zakaz.inventory (event_id String, city String, _ver UInt64) "
    "ENGINE = ReplacingMergeTree(_ver) PARTITION BY tuple() ORDER BY (event_id, city)",
    "CREATE VIEW zakaz.v_events AS SELECT event_id, count() AS n FROM zakaz.events GROUP BY event_id",
    "CREATE MATERIALIZED VIEW zakaz.mv_inventory ENGINE = ReplacingMergeTree "
    "ORDER BY (event_id, city) PARTITION BY tuple() "
    "AS SELECT event_id, city, max(_ver) AS latest FROM zakaz.inventory GROUP BY event_id, city",
    "CREATE TABLE meta.log (a UInt32, b String MATERIALIZED 'x') ENGINE = Memory",
)


# --- snapshot on chDB ------------------------------------------------------------

def test_snapshot_normalises_tables_views_and_materialized_view(conn):
    run(conn, *SAMPLE)
    schema = snapshot_schema(conn)

    assert sorted(schema) == [
        "meta.log", "zakaz.events", "zakaz.inventory", "zakaz.mv_inventory", "zakaz.sales", "zakaz.v_events",
    ], "the .inner_id. storage of the materialized view must not be an object"

    events = schema["zakaz.events"]
    assert (events.kind, events.engine, events.order_by, events.partition_by, events.ttl) == (
        TABLE, "MergeTree", "event_id", "", "",
    )
    assert events.columns == (Column("event_id", "String"), Column("ts", "DateTime", "now()"))

    sales = schema["zakaz.sales"]
    assert sales.engine == "ReplacingMergeTree(_ver)"
    assert sales.order_by == "d, event_id"
    assert sales.partition_by == "toYYYYMM(d)"
    assert sales.ttl == "_loaded_at + toIntervalDay(30)"
    assert sales.column("revenue") == Column("revenue", "Decimal(12, 2)", "0")
    assert sales.column("city") == Column("city", "LowCardinality(String)", "'RUB'")
    assert sales.column("run_id").default == "toString(generateUUIDv4())"
    assert sales.column("mode").type == "Enum8('full' = 1, 'incr' = 2)"
    assert sales.column("_ver") == Column("_ver", "UInt64", "")

    inventory = schema["zakaz.inventory"]
    assert (inventory.order_by, inventory.partition_by) == ("event_id, city", "")

    view = schema["zakaz.v_events"]
    assert (view.kind, view.engine, view.order_by) == (VIEW, "", "")
    assert view.column_names == ("event_id", "n")

    mv = schema["zakaz.mv_inventory"]
    assert mv.kind == MATERIALIZED_VIEW
    assert (mv.engine, mv.order_by, mv.partition_by, mv.ttl) == ("ReplacingMergeTree", "event_id, city", "", "")
    assert mv.column_names == ("event_id", "city", "latest")

    log = schema["meta.log"]
    assert (log.kind, log.engine, log.order_by) == (TABLE, "Memory", "")
    assert log.column("b").default == "MATERIALIZED 'x'"


def test_snapshot_keeps_only_requested_databases(conn):
    run(conn, *SAMPLE)
    assert sorted(snapshot_schema(conn, ("meta",))) == ["meta.log"]
    assert snapshot_schema(conn, ("bi",)) == {}


def test_snapshot_issues_exactly_two_queries(conn):
    run(conn, *SAMPLE)
    statements = []

    def count(conn_, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(conn, "before_cursor_execute", count)
    try:
        schema = snapshot_schema(conn)
    finally:
        event.remove(conn, "before_cursor_execute", count)
    assert len(schema) == 6
    assert len(statements) == 2, statements
    assert "system.tables" in statements[0] and "system.columns" in statements[1]


def test_snapshot_keeps_brackets_26x_prints_out_of_keys_and_defaults(conn):
    # 26.x prints what was written, brackets included; 24.8 drops them.
    run(
        conn,
        "CREATE DATABASE zakaz",
        "CREATE TABLE zakaz.t (a UInt32, d Date, e String DEFAULT ('x'), f UInt32 DEFAULT (a + 1)) "
        "ENGINE = MergeTree PARTITION BY (toYYYYMM(d)) ORDER BY (a + 1)",
    )
    t = snapshot_schema(conn)["zakaz.t"]
    assert (t.order_by, t.partition_by) == ("a + 1", "toYYYYMM(d)")
    assert (t.column("e").default, t.column("f").default) == ("'x'", "a + 1")


# --- normalisation of what each ClickHouse line prints (measured) ----------------

@pytest.mark.parametrize("printed_24_8, printed_26_9, normal", [
    ("event_id", "(event_id)", "event_id"),            # sorting_key of ORDER BY (event_id)
    ("a + 1", "(a + 1)", "a + 1"),
    ("toYYYYMM(d)", "(toYYYYMM(d))", "toYYYYMM(d)"),   # partition_key of PARTITION BY (toYYYYMM(d))
    ("event_id, city", "event_id, city", "event_id, city"),
    ("(d, a)", "(d, a)", "d, a"),                      # partition_key of PARTITION BY (d, a)
    ("tuple()", "tuple()", ""),                        # partition_key of PARTITION BY tuple()
    ("", "", ""),                                      # no PARTITION BY / ORDER BY tuple()
    ("(a + 1) * 2, d", "(a + 1) * 2, d", "(a + 1) * 2, d"),
])
def test_normalise_key_agrees_across_lines(printed_24_8, printed_26_9, normal):
    assert normalise_key(printed_24_8) == normalise_key(printed_26_9) == normal


@pytest.mark.parametrize("printed_24_8, printed_26_9, normal", [
    ("'x'", "('x')", "'x'"),
    ("a + 1", "(a + 1)", "a + 1"),
    ("(1, 2)", "tuple(1, 2)", "(1, 2)"),
    ("now()", "now()", "now()"),
    ("(a) + (b)", "(a) + (b)", "(a) + (b)"),
])
def test_normalise_expression_agrees_across_lines(printed_24_8, printed_26_9, normal):
    assert normalise_expression(printed_24_8) == normalise_expression(printed_26_9) == normal


@pytest.mark.parametrize("printed_24_8, printed_26_9, type_, normal", [
    ("CODEC(Delta(4), ZSTD(3))", "CODEC(Delta(4), ZSTD(3))", "UInt32", "Delta(4), ZSTD(3)"),
    ("CODEC(Gorilla, LZ4)", "CODEC(Gorilla(8), LZ4)", "Float64", "Gorilla, LZ4"),
    ("CODEC(LZ4HC(0))", "CODEC(LZ4HC(0))", "UInt8", "LZ4HC(0)"),
    ("CODEC(DoubleDelta, T64, ZSTD(1))", "CODEC(DoubleDelta, T64, ZSTD(1))", "DateTime", "DoubleDelta, T64, ZSTD(1)"),
    ("", "", "String", ""),
])
def test_normalise_codec_agrees_across_lines(printed_24_8, printed_26_9, type_, normal):
    assert normalise_codec(printed_24_8, type_) == normalise_codec(printed_26_9, type_) == normal


@pytest.mark.parametrize("written, type_, normal", [
    # As a spec may write them, filled in as both lines print them (measured).
    ("Delta, ZSTD(3)", "UInt32", "Delta(4), ZSTD(3)"),
    ("ZSTD", "String", "ZSTD(1)"),
    ("LZ4HC", "UInt8", "LZ4HC(0)"),
    ("Delta", "Nullable(Int64)", "Delta(8)"),
])
def test_normalise_codec_fills_in_what_the_server_fills_in(written, type_, normal):
    assert normalise_codec(written, type_) == normal


def test_parse_tables_reads_comment_codec_and_primary_key():
    [t] = parse_tables("""
zakaz.t  MergeTree PRIMARY KEY (id) ORDER BY (id, d)
    id   UInt32  COMMENT 'the id, it\\'s \\\\ CODEC(x)'  CODEC(Delta, ZSTD)
    d    Date DEFAULT today() CODEC(ZSTD(3))
    s    String COMMENT 'a DEFAULT b'
""")
    assert t.columns == (Column("id", "UInt32", "", "Delta(4), ZSTD(1)", "the id, it's \\ CODEC(x)"),
                         Column("d", "Date", "today()", "ZSTD(3)"),
                         Column("s", "String", "", "", "a DEFAULT b"))
    assert (t.order_by, t.primary_key) == ("id, d", "id")
    assert t.columns[0].spec == "UInt32 COMMENT 'the id, it\\'s \\\\ CODEC(x)' CODEC(Delta(4), ZSTD(1))"
    # A primary key that is the sorting key is no primary key of its own.
    [u] = parse_tables("zakaz.u  MergeTree PRIMARY KEY (a, b) ORDER BY (a, b)\n    a UInt8\n    b UInt8")
    assert u.primary_key == ""


CODEC_DDL = (
    "CREATE DATABASE p",
    "CREATE TABLE p.c (id UInt32 COMMENT 'the id' CODEC(Delta, ZSTD(3)), d Date DEFAULT today() "
    "COMMENT 'it''s a \\'date\\'' CODEC(ZSTD), x Float64 CODEC(Gorilla, LZ4), n String COMMENT 'a\\nb', "
    "s String) ENGINE = MergeTree PRIMARY KEY (id) ORDER BY (id, d)",
    "CREATE TABLE p.k (a UInt8, b UInt8) ENGINE = MergeTree PRIMARY KEY (a, b) ORDER BY (a, b)",
)


@pytest.fixture(params=["embedded", pytest.param("server", marks=pytest.mark.server)])
def line_conn(request, tmp_path):
    """The embedded engine (26.x), or a 24.8 server without database ``p``."""
    url = (f"clickhouse+chdb:///default?path={tmp_path / 'chdb'}" if request.param == "embedded"
           else request.getfixturevalue("server").url("native"))
    with connect(url) as c:
        c.exec_driver_sql("DROP DATABASE IF EXISTS p SYNC")
        yield c
        c.exec_driver_sql("DROP DATABASE IF EXISTS p SYNC")


def test_snapshot_reads_codec_comment_and_primary_key_alike_on_both_lines(line_conn):
    run(line_conn, *CODEC_DDL)
    schema = snapshot_schema(line_conn, ["p"])
    assert schema["p.c"].columns == (
        Column("id", "UInt32", "", "Delta(4), ZSTD(3)", "the id"),
        Column("d", "Date", "today()", "ZSTD(1)", "it's a 'date'"),
        Column("x", "Float64", "", "Gorilla, LZ4"),
        Column("n", "String", "", "", "a\nb"),
        Column("s", "String"),
    )
    assert (schema["p.c"].order_by, schema["p.c"].primary_key) == ("id, d", "id")
    assert schema["p.k"].primary_key == ""
    # The canonical form of the same table compares equal.
    expected = {o.name: o for o in parse_tables("""
p.c  MergeTree PRIMARY KEY id ORDER BY (id, d)
    id  UInt32 COMMENT 'the id' CODEC(Delta, ZSTD(3))
    d   Date DEFAULT today() COMMENT 'it\\'s a \\'date\\'' CODEC(ZSTD)
    x   Float64 CODEC(Gorilla(8), LZ4)
    n   String COMMENT 'a\\nb'
    s   String

p.k  MergeTree ORDER BY (a, b)
    a   UInt8
    b   UInt8
""")}
    assert compare_schema(schema, expected) == []


def test_codec_comment_and_primary_key_drift_is_reported():
    [t] = parse_tables("zakaz.t  MergeTree ORDER BY (a, b)\n    a UInt8 COMMENT 'x'\n    b UInt8 CODEC(ZSTD(1))")
    live = dataclasses.replace(t, primary_key="a", columns=(Column("a", "UInt8"), Column("b", "UInt8", codec="LZ4")))
    findings = compare_schema({t.name: live}, {t.name: t})
    assert [str(f) for f in findings] == [
        "PRIMARY KEY of zakaz.t: expected (none), found a",
        "COMMENT of zakaz.t.a: expected x, found (none)",
        "CODEC of zakaz.t.b: expected ZSTD(1), found LZ4",
    ]
    assert all(f.fatal for f in findings)


def test_split_engine_full_ignores_keywords_inside_arguments():
    assert split_engine_full("Kafka('x ORDER BY y') SETTINGS a = 1") == {
        "ENGINE": "Kafka('x ORDER BY y')", "SETTINGS": "a = 1",
    }
    assert split_engine_full(
        "ReplacingMergeTree(_ver) PARTITION BY toYYYYMM(d) ORDER BY (a, d) "
        "TTL ts + toIntervalDay(30) SETTINGS index_granularity = 8192"
    ) == {
        "ENGINE": "ReplacingMergeTree(_ver)", "PARTITION BY": "toYYYYMM(d)", "ORDER BY": "(a, d)",
        "TTL": "ts + toIntervalDay(30)", "SETTINGS": "index_granularity = 8192",
    }


# --- the canonical schema is valid ClickHouse and round-trips ---------------------

def _create_table(obj: DbObject) -> str:
    columns = ", ".join(f"`{c.name}` {c.spec}" for c in obj.columns)
    sql = f"CREATE TABLE {obj.name} ({columns}) ENGINE = {obj.engine}"
    if obj.partition_by:
        sql += f" PARTITION BY ({obj.partition_by})"
    sql += f" ORDER BY ({obj.order_by or 'tuple()'})"
    if obj.ttl:
        sql += f" TTL {obj.ttl}"
    return sql


def _create_view(obj: DbObject) -> str:
    # Only the output names matter to the snapshot; the query is a stand-in.
    if obj.kind == VIEW:
        security = f"SQL SECURITY {obj.security} " if obj.security else ""
        return f"CREATE VIEW {obj.name} {security}AS SELECT " + ", ".join(f"NULL AS `{c.name}`" for c in obj.columns)
    storage = f"ENGINE = {obj.engine} ORDER BY ({obj.order_by or 'tuple()'})"
    if obj.partition_by:
        storage += f" PARTITION BY ({obj.partition_by})"
    return (
        f"CREATE MATERIALIZED VIEW {obj.name} {storage} AS SELECT "
        + ", ".join(f"'' AS `{c.name}`" for c in obj.columns)
        + " FROM system.one"
    )


def test_canonical_has_the_spec_counts():
    kinds = [o.kind for o in CANONICAL.values()]
    assert (kinds.count(TABLE), kinds.count(VIEW), kinds.count(MATERIALIZED_VIEW)) == (24, 16, 1)
    assert {o.database for o in CANONICAL.values()} == set(MANAGED_DATABASES)
    assert all(c.type == "" for o in CANONICAL.values() if o.kind != TABLE for c in o.columns)
    assert all(c.type for o in CANONICAL.values() if o.kind == TABLE for c in o.columns)


# The spec lives in ../shared/spec/warehouse.md beside the checkout; the tests
# read a copy kept in the repo so that they run in a fresh clone too.
SPEC = Path(__file__).resolve().parent / "data" / "warehouse.md"
SHARED_SPEC = Path(__file__).resolve().parents[2] / "shared" / "spec" / "warehouse.md"


def _spec_objects(text: str) -> dict[str, tuple]:
    """(engine, order_by, partition_by, ttl, columns) per object, read from the spec's markdown."""
    objects = {}
    tables = text.split("## Tables")[1].split("## Views")[0]
    for block in tables.split("#### ")[1:]:
        name, header, *rest = block.strip().splitlines()
        engine, *clauses = (part.strip() for part in header.split("·"))
        keys = {k: c[len(k):].strip() for c in clauses for k in ("ORDER BY", "PARTITION BY", "TTL") if c.startswith(k)}
        columns = tuple(
            Column(*(cell.strip() for cell in row.strip().strip("|").split("|")))
            for row in rest if row.startswith("| ") and not row.startswith("| column")
        )
        objects[name.strip()] = (
            engine, normalise_key(keys["ORDER BY"]), normalise_key(keys["PARTITION BY"]), keys.get("TTL", ""), columns,
        )
    database = None
    for line in text.split("## Views")[1].split("## Access")[0].splitlines():
        if re.fullmatch(r"(zakaz|meta|bi):", line):
            database = line[:-1]
        elif m := re.match(r"- `(\w+)` \(([^)]*)\)", line):
            objects[f"{database}.{m[1]}"] = tuple(Column(n.strip(), "") for n in m[2].split(","))
    return objects


@pytest.mark.skipif(not SHARED_SPEC.exists(), reason="../shared/spec/warehouse.md is not beside the checkout")
def test_spec_copy_is_current():
    assert SPEC.read_text() == SHARED_SPEC.read_text(), (
        f"{SPEC} differs from {SHARED_SPEC}: copy it again (cp {SHARED_SPEC} {SPEC})")


def test_canonical_transcribes_the_spec():
    spec = _spec_objects(SPEC.read_text())
    assert sorted(spec) == sorted(CANONICAL)
    for name, facts in spec.items():
        obj = CANONICAL[name]
        if obj.kind == TABLE:
            assert (obj.engine, obj.order_by, obj.partition_by, obj.ttl, obj.columns) == facts, name
        else:
            assert obj.columns == facts, name


def test_canonical_builds_on_chdb_and_round_trips(conn):
    run(conn, *(f"CREATE DATABASE {d}" for d in MANAGED_DATABASES))
    run(conn, *(_create_table(o) for o in CANONICAL.values() if o.kind == TABLE))
    run(conn, *(_create_view(o) for o in CANONICAL.values() if o.kind != TABLE))
    live = snapshot_schema(conn, MANAGED_DATABASES)
    assert sorted(live) == sorted(CANONICAL)
    assert compare_schema(live, CANONICAL) == []


# --- compare_schema on hand-built schemas ----------------------------------------

def _table(name="zakaz.t", columns=None, **fields):
    cols = columns if columns is not None else (
        Column("a", "String"), Column("b", "UInt32", "0"), Column("c", "DateTime", "now()"),
    )
    return DbObject(name, TABLE, tuple(cols), **{
        "engine": "ReplacingMergeTree(_ver)", "order_by": "a", "partition_by": "toYYYYMM(c)", "ttl": "", **fields,
    })


def _view(name="zakaz.v", names=("a", "b"), types=None):
    types = types or ("",) * len(names)
    return DbObject(name, VIEW, tuple(Column(n, t) for n, t in zip(names, types)))


def _schema(*objects):
    return {o.name: o for o in objects}


def _kinds(findings):
    return [(f.kind, f.object, f.column) for f in findings]


def test_identical_schemas_have_no_findings():
    s = _schema(_table(), _view())
    assert compare_schema(dict(s), s) == []


def test_missing_object():
    findings = compare_schema(_schema(_table()), _schema(_table(), _view()))
    assert _kinds(findings) == [("missing_object", "zakaz.v", "")]
    assert str(findings[0]) == "missing view zakaz.v"
    assert findings[0].fatal


def test_unmanaged_object_only_in_managed_databases():
    live = _schema(_table(), _table("zakaz.extra"), _table("other.extra"))
    findings = compare_schema(live, _schema(_table()))
    assert _kinds(findings) == [("unmanaged_object", "zakaz.extra", "")]
    assert not findings[0].fatal  # reported, left untouched, not drift
    assert _kinds(compare_schema(live, _schema(_table()), managed_databases=("zakaz", "other"))) == [
        ("unmanaged_object", "other.extra", ""), ("unmanaged_object", "zakaz.extra", ""),
    ]


def test_ledger_and_version_view_are_ignored():
    live = _schema(_table(), _table("zakaz.zakaz_schema_ledger"), _view("zakaz.alembic_version", ("version_num",)))
    assert compare_schema(live, _schema(_table())) == []


def test_missing_column():
    live = _schema(_table(columns=(Column("a", "String"), Column("b", "UInt32", "0"))))
    findings = compare_schema(live, _schema(_table()))
    assert _kinds(findings) == [("missing_column", "zakaz.t", "c")]
    assert str(findings[0]) == "missing column zakaz.t.c (expected DateTime DEFAULT now())"
    assert findings[0].expected == "DateTime DEFAULT now()"


def test_unmanaged_column():
    cols = _table().columns + (Column("x", "String"),)
    findings = compare_schema(_schema(_table(columns=cols)), _schema(_table()))
    assert _kinds(findings) == [("unmanaged_column", "zakaz.t", "x")]
    assert findings[0].fatal
    assert str(findings[0]) == "unmanaged column zakaz.t.x (String)"


def test_type():
    cols = (Column("a", "LowCardinality(String)"),) + _table().columns[1:]
    findings = compare_schema(_schema(_table(columns=cols)), _schema(_table()))
    assert [(f.kind, f.column, f.expected, f.actual) for f in findings] == [
        ("type", "a", "String", "LowCardinality(String)"),
    ]


def test_default():
    cols = _table().columns[:2] + (Column("c", "DateTime"),)
    findings = compare_schema(_schema(_table(columns=cols)), _schema(_table()))
    assert [(f.kind, f.column, f.expected, f.actual) for f in findings] == [("default", "c", "now()", "")]
    assert str(findings[0]) == "DEFAULT of zakaz.t.c: expected now(), found (none)"


@pytest.mark.parametrize("field, value", [
    ("engine", "MergeTree"),
    ("order_by", "a, b"),
    ("partition_by", ""),
    ("ttl", "c + toIntervalDay(30)"),
])
def test_object_fields(field, value):
    findings = compare_schema(_schema(_table(**{field: value})), _schema(_table()))
    assert [(f.kind, f.object, f.expected, f.actual) for f in findings] == [
        (field, "zakaz.t", getattr(_table(), field), value),
    ]
    assert findings[0].fatal


def test_kind():
    live = _schema(_view("zakaz.t", ("a", "b", "c")))
    findings = compare_schema(live, _schema(_table()))
    assert [(f.kind, f.expected, f.actual) for f in findings] == [("kind", TABLE, VIEW)]
    assert str(findings[0]) == "zakaz.t is a view, expected a table"


def test_column_order_is_reported_but_not_fatal():
    cols = _table().columns
    live = _schema(_table(columns=(cols[1], cols[0], cols[2])))
    findings = compare_schema(live, _schema(_table()))
    assert [(f.kind, f.expected, f.actual) for f in findings] == [("column_order", "a, b, c", "b, a, c")]
    assert not findings[0].fatal
    assert findings[0].to_dict()["fatal"] is False


def test_missing_column_is_not_also_an_order_difference():
    cols = _table().columns
    live = _schema(_table(columns=(cols[0], cols[2])))
    assert _kinds(compare_schema(live, _schema(_table()))) == [("missing_column", "zakaz.t", "b")]


def test_views_compare_output_names_and_order_only():
    expected = _schema(_view(names=("a", "b", "c")))
    typed = _schema(_view(names=("a", "b", "c"), types=("String", "Nullable(UInt32)", "Date")))
    assert compare_schema(typed, expected) == []
    renamed = _schema(_view(names=("a", "s.b", "c")))
    assert _kinds(compare_schema(renamed, expected)) == [
        ("missing_column", "zakaz.v", "b"), ("unmanaged_column", "zakaz.v", "s.b"),
    ]
    reordered = _schema(_view(names=("c", "a", "b")))
    assert _kinds(compare_schema(reordered, expected)) == [("column_order", "zakaz.v", "")]


def test_materialized_view_compares_storage_and_names():
    mv = DbObject("zakaz.mv", MATERIALIZED_VIEW, (Column("a", ""),), "ReplacingMergeTree", "a", "", "")
    live = dataclasses.replace(mv, columns=(Column("a", "String"),), order_by="a, b")
    assert _kinds(compare_schema(_schema(live), _schema(mv))) == [("order_by", "zakaz.mv", "")]


def test_findings_come_in_a_stable_order():
    live = _schema(
        _table("zakaz.b", columns=(Column("z", "String"), Column("a", "UInt8"))),
        _table("zakaz.a", engine="MergeTree"),
        _table("zakaz.c"),
    )
    expected = _schema(_table("zakaz.c"), _table("zakaz.b"), _table("zakaz.a"), _view("zakaz.d"))
    findings = compare_schema(live, expected)
    assert _kinds(findings) == [
        ("engine", "zakaz.a", ""),
        ("type", "zakaz.b", "a"),
        ("missing_column", "zakaz.b", "b"),
        ("missing_column", "zakaz.b", "c"),
        ("unmanaged_column", "zakaz.b", "z"),
        ("missing_object", "zakaz.d", ""),
    ]
    assert findings == compare_schema(dict(reversed(list(live.items()))), expected)


def test_finding_to_dict():
    f = Finding("missing_column", "zakaz.fact_qtickets_sales", "_loaded_at", "DateTime DEFAULT now()", "")
    assert str(f) == "missing column zakaz.fact_qtickets_sales._loaded_at (expected DateTime DEFAULT now())"
    assert f.to_dict() == {
        "kind": "missing_column", "object": "zakaz.fact_qtickets_sales", "column": "_loaded_at",
        "expected": "DateTime DEFAULT now()", "actual": "", "fatal": True,
        "message": "missing column zakaz.fact_qtickets_sales._loaded_at (expected DateTime DEFAULT now())",
    }


# --- how views run (SQL SECURITY) ---------------------------------------------------

def test_snapshot_reads_how_each_view_runs(conn):
    run(conn, "CREATE DATABASE zakaz",
        "CREATE TABLE zakaz.t (a UInt8) ENGINE = MergeTree ORDER BY a",
        "CREATE VIEW zakaz.plain AS SELECT a FROM zakaz.t",
        # A string that looks like the clause must not be read as it.
        "CREATE VIEW zakaz.definer SQL SECURITY DEFINER AS SELECT 'x) SQL SECURITY INVOKER AS ' AS a",
        "CREATE VIEW zakaz.altered AS SELECT a FROM zakaz.t",
        "ALTER TABLE zakaz.altered MODIFY SQL SECURITY DEFINER",
        "ALTER TABLE zakaz.altered MODIFY SQL SECURITY INVOKER",
        "CREATE MATERIALIZED VIEW zakaz.mv ENGINE = MergeTree ORDER BY a AS SELECT a FROM zakaz.t",
        "CREATE MATERIALIZED VIEW zakaz.mv2 ENGINE = MergeTree ORDER BY a AS SELECT a FROM zakaz.t",
        "ALTER TABLE zakaz.mv2 MODIFY SQL SECURITY DEFINER")
    live = snapshot_schema(conn, ["zakaz"])
    assert {n: o.security for n, o in live.items()} == {
        "zakaz.t": "", "zakaz.plain": "INVOKER", "zakaz.definer": "DEFINER",
        # ALTERed back: the explicit clause equals never having had one.
        "zakaz.altered": "INVOKER",
        "zakaz.mv": "NONE", "zakaz.mv2": "DEFINER",
    }


def test_security_is_compared_only_where_the_expectation_states_it():
    live = _schema(DbObject("zakaz.v", VIEW, (Column("a", ""),), security="INVOKER"))
    unstated = _schema(DbObject("zakaz.v", VIEW, (Column("a", ""),)))
    stated = _schema(DbObject("zakaz.v", VIEW, (Column("a", ""),), security="DEFINER"))
    assert compare_schema(live, unstated) == []
    assert [str(f) for f in compare_schema(live, stated)] == [
        "SQL SECURITY of zakaz.v: expected DEFINER, found INVOKER"]


def test_view_definer_and_the_clause_removed_from_a_definition():
    from app.schema import view_definer, without_sql_security

    server = ("CREATE MATERIALIZED VIEW zakaz.mv (`a` UInt8) ENGINE = MergeTree ORDER BY a "
              "SETTINGS index_granularity = 8192 DEFINER = zakaz_view_definer SQL SECURITY DEFINER AS SELECT a FROM t")
    assert view_definer(server) == "zakaz_view_definer"
    assert view_definer("CREATE VIEW v (`a` UInt8) DEFINER = `odd name` SQL SECURITY DEFINER AS SELECT 1") == "odd name"
    assert view_definer("CREATE VIEW v (`a` UInt8) SQL SECURITY INVOKER AS SELECT 1") is None
    assert without_sql_security(server) == ("CREATE MATERIALIZED VIEW zakaz.mv (`a` UInt8) ENGINE = MergeTree "
                                            "ORDER BY a SETTINGS index_granularity = 8192 AS SELECT a FROM t")
