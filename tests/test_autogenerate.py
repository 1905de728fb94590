"""The catalogue of change kinds: plan, render a revision, run it on an embedded database holding rows.

Each case starts from a small hand-written schema (tables, views that read
each other, a materialized view), installed by a revision the planner wrote
itself (from nothing).  The case changes a copy, the planner and renderer
write the second revision, and the database must then match the changed
schema exactly (app.schema_diff) with every row kept except the declared
losses; its downgrade must give back the first schema, rows included.
Expected schemas and rows are written by hand here, never computed by the
planner.
"""
from __future__ import annotations

import dataclasses
import shutil
from decimal import Decimal

import pytest

from app import commands, revision_autogenerate
from app.autogenerate import render_revision
from app.config import PROJECT_ROOT
from app.drill import run_drill
from app.engine import connect
from app.errors import UsageError
from app.lint import lint_revisions
from app.planner import PlanRefused, plan
from app.schema import MATERIALIZED_VIEW, VIEW, Column, parse_tables, parse_views
from app.schema_diff import diff_schemas
from app.snapshot import take_snapshot

pytestmark = [pytest.mark.slow]

TABLES = """
zakaz.sales  MergeTree ORDER BY (id) PARTITION BY toYYYYMM(d)
    id      UInt32
    d       Date
    city    String DEFAULT 'msk'
    amount  Decimal(12, 2)
    note    String

zakaz.events  ReplacingMergeTree(_ver) ORDER BY (event_id)
    event_id  String
    name      String
    _ver      UInt64

zakaz.sales_by_week  SummingMergeTree ORDER BY (week)
    week  Date
    n     UInt64
"""
VIEWS = """
zakaz.v_sales: id, city, amount
zakaz.v_sales_msk: id, amount
"""
# One with its own storage, one written TO a table (zakaz.sales_by_week, TARGETS).
MVIEWS = """
zakaz.mv_city SummingMergeTree ORDER BY (city): city, total
zakaz.mv_week: week, n
"""
QUERIES = {
    "zakaz.v_sales": "SELECT id, city, amount FROM zakaz.sales",
    "zakaz.v_sales_msk": "SELECT id, amount FROM zakaz.v_sales WHERE city = 'msk'",
    "zakaz.mv_city": "SELECT city, sum(amount) AS total FROM zakaz.sales GROUP BY city",
    "zakaz.mv_week": "SELECT toMonday(d) AS week, count() AS n FROM zakaz.sales GROUP BY week",
}
# The table each materialized view written TO a table writes into (cases may add their own).
TARGETS = {"zakaz.mv_week": "zakaz.sales_by_week", "zakaz.mv_refunds": "zakaz.refunds_by_sale"}
ROWS = 60
CITIES = ("msk", "spb", "kzn")


def base_schema():
    objects = parse_tables(TABLES) + parse_views(VIEWS, VIEW, security="DEFINER") \
        + parse_views(MVIEWS, MATERIALIZED_VIEW)
    return {o.name: o for o in objects}


def replace(schema, name, **fields):
    out = dict(schema)
    out[name] = dataclasses.replace(schema[name], **fields)
    return out


def with_columns(schema, name, *columns: str):
    """``columns``: ``"name Type [DEFAULT x]"`` lines, the table's whole new column list."""
    cols = []
    for line in columns:
        col_name, _, rest = line.partition(" ")
        type_, _, default = rest.partition(" DEFAULT ")
        cols.append(Column(col_name, type_, default))
    return replace(schema, name, columns=tuple(cols))


SALES = ("id UInt32", "d Date", "city String DEFAULT 'msk'", "amount Decimal(12, 2)", "note String")


def with_column(schema, table, name, **fields):
    """``schema`` with column ``name`` of ``table`` given ``fields`` (codec, comment, ...)."""
    obj = schema[table]
    return replace(schema, table, columns=tuple(dataclasses.replace(c, **fields) if c.name == name else c
                                                for c in obj.columns))


def _without(schema, *names):
    return {k: v for k, v in schema.items() if k not in names}


# --- the catalogue: (id, change(schema, queries) -> (schema, queries), allow_loss, declared) ---------
# ``declared``: (UPGRADE_LOSES, DOWNGRADE_LOSES) as a person would write them.

def new_table(s, q):
    s = dict(s)
    s.update({o.name: o for o in parse_tables("""
zakaz.refunds  MergeTree ORDER BY (sale_id, ts) PARTITION BY toYYYYMM(ts) TTL ts + toIntervalDay(3650)
    sale_id  UInt32
    ts       DateTime DEFAULT now()
    amount   Decimal(12, 2) DEFAULT 0
""")})
    return s, q


def new_view_on_new_table(s, q):
    s, q = new_table(s, q)
    s.update({o.name: o for o in parse_views("zakaz.v_refunds: sale_id, amount", VIEW, security="DEFINER")})
    return s, {**q, "zakaz.v_refunds": "SELECT sale_id, amount FROM zakaz.refunds"}


CASES = [
    ("new table", new_table, False, ([], ["zakaz.refunds"])),
    ("new view over a new table", new_view_on_new_table, False, ([], ["zakaz.refunds"])),
    ("dropped table", lambda s, q: (_without(s, "zakaz.events"), q), True, (["zakaz.events"], [])),
    ("new column after another", lambda s, q: (with_columns(
        s, "zakaz.sales", "id UInt32", "d Date", "channel LowCardinality(String) DEFAULT 'web'",
        "city String DEFAULT 'msk'", "amount Decimal(12, 2)", "note String"), q),
     False, ([], ["zakaz.sales.channel"])),
    ("new first column", lambda s, q: (with_columns(s, "zakaz.sales", "batch UInt16", *SALES), q),
     False, ([], ["zakaz.sales.batch"])),
    ("dropped column", lambda s, q: (with_columns(s, "zakaz.sales", *SALES[:4]), q),
     True, (["zakaz.sales.note"], [])),
    ("widening type", lambda s, q: (with_columns(s, "zakaz.sales", *SALES[:3], "amount Decimal(18, 4)", SALES[4]), q),
     False, ([], ["zakaz.sales.amount"])),
    ("lossy type, allowed", lambda s, q: (with_columns(s, "zakaz.events", "event_id String", "name FixedString(8)",
                                                        "_ver UInt64"), q),
     True, (["zakaz.events.name"], [])),
    ("default changed", lambda s, q: (with_columns(s, "zakaz.sales", *SALES[:2], "city String DEFAULT 'spb'",
                                                    *SALES[3:]), q), False, ([], [])),
    ("default removed", lambda s, q: (with_columns(s, "zakaz.sales", *SALES[:2], "city String", *SALES[3:]), q),
     False, ([], [])),
    ("default added", lambda s, q: (with_columns(s, "zakaz.sales", *SALES[:4], "note String DEFAULT 'none'"), q),
     False, ([], [])),
    ("columns reordered", lambda s, q: (with_columns(s, "zakaz.sales", "id UInt32", "city String DEFAULT 'msk'",
                                                      "d Date", "amount Decimal(12, 2)", "note String"), q),
     False, ([], [])),
    # A TTL set or tightened deletes the rows already past it (MODIFY TTL materializes it): declared.
    ("TTL added", lambda s, q: (replace(s, "zakaz.sales", ttl="d + toIntervalYear(100)"), q),
     True, (["zakaz.sales"], [])),
    ("TTL loosened", lambda s, q: (replace(s, "zakaz.sales", ttl="d + toIntervalYear(120)"), q),
     False, ([], ["zakaz.sales"])),
    ("TTL removed", lambda s, q: (replace(s, "zakaz.sales", ttl=""), q), False, ([], ["zakaz.sales"])),
    ("codec added", lambda s, q: (with_column(s, "zakaz.sales", "amount", codec="ZSTD(3)"), q), False, ([], [])),
    ("codec changed", lambda s, q: (with_column(s, "zakaz.sales", "amount", codec="Delta(8), LZ4"), q),
     False, ([], [])),
    ("codec removed", lambda s, q: (with_column(s, "zakaz.sales", "amount", codec=""), q), False, ([], [])),
    ("comment added", lambda s, q: (with_column(s, "zakaz.sales", "note", comment="the seller's note"), q),
     False, ([], [])),
    ("comment changed", lambda s, q: (with_column(s, "zakaz.sales", "note", comment="a \\ 'quoted' note"), q),
     False, ([], [])),
    ("comment removed", lambda s, q: (with_column(s, "zakaz.sales", "note", comment=""), q), False, ([], [])),
    ("codec and comment with a type change", lambda s, q: (with_column(
        s, "zakaz.sales", "amount", type="Decimal(18, 4)", codec="ZSTD(1)", comment="in roubles"), q),
     False, ([], ["zakaz.sales.amount"])),
    # The sorting key's first column (a primary key is a prefix of it): ``id`` from BASES' ``id, d``.
    ("primary key added", lambda s, q: (
        replace(s, "zakaz.sales", primary_key=s["zakaz.sales"].order_by.split(",")[0]), q), False, ([], [])),
    ("ORDER BY changed", lambda s, q: (replace(s, "zakaz.sales", order_by="city, id"), q), False, ([], [])),
    ("PARTITION BY changed", lambda s, q: (replace(s, "zakaz.sales", partition_by=""), q), False, ([], [])),
    # Back from a plain MergeTree, merges keep one row per key again (app.merging): declared.
    ("engine changed", lambda s, q: (replace(s, "zakaz.events", engine="MergeTree"), q), False,
     ([], ["zakaz.events"])),
    # Without the version column, merges keep the last row inserted, not the newest: declared both ways.
    ("engine argument changed", lambda s, q: (replace(s, "zakaz.events", engine="ReplacingMergeTree"), q),
     True, (["zakaz.events"], ["zakaz.events"])),
    ("key column type widened", lambda s, q: (with_columns(s, "zakaz.sales", "id UInt64", *SALES[1:]), q),
     False, ([], ["zakaz.sales.id"])),
    ("view changed, its reader recreated", lambda s, q: (
        replace(s, "zakaz.v_sales", columns=s["zakaz.v_sales"].columns + (Column("d", ""),)),
        {**q, "zakaz.v_sales": "SELECT id, city, amount, d FROM zakaz.sales"}), False, ([], [])),
    ("dropped view and its reader", lambda s, q: (_without(s, "zakaz.v_sales", "zakaz.v_sales_msk"), q),
     False, ([], [])),
    ("view security", lambda s, q: (replace(s, "zakaz.v_sales", security="INVOKER"), q), False, ([], [])),
    # Rebuilt: a new view, the stored rows copied in, swapped (rebuild_materialized_view).
    ("materialized view changed, rows kept", lambda s, q: (
        replace(s, "zakaz.mv_city", columns=(Column("city", ""), Column("total", ""), Column("n", ""))),
        {**q, "zakaz.mv_city": "SELECT city, sum(amount) AS total, count() AS n FROM zakaz.sales GROUP BY city"}),
     False, ([], ["zakaz.mv_city.n"])),
    ("materialized view storage changed, rows kept", lambda s, q: (
        replace(s, "zakaz.mv_city", engine="SummingMergeTree(total)", partition_by="city"), q), False, ([], [])),
    # Its rows are the table's: MODIFY QUERY.
    ("materialized view written TO a table changed", lambda s, q: (
        s, {**q, "zakaz.mv_week": "SELECT toMonday(d) AS week, countIf(amount >= 0) AS n FROM zakaz.sales "
                                  "GROUP BY week"}), False, ([], [])),
    ("new materialized view written TO a table", lambda s, q: (
        {**s, **{o.name: o for o in parse_tables("""
zakaz.refunds_by_sale  SummingMergeTree ORDER BY (id)
    id  UInt32
    n   UInt64
""") + parse_views("zakaz.mv_refunds: id, n", MATERIALIZED_VIEW)}},
        {**q, "zakaz.mv_refunds": "SELECT id, count() AS n FROM zakaz.sales GROUP BY id"}),
     False, ([], ["zakaz.refunds_by_sale"])),
    ("new materialized view", lambda s, q: (
        {**s, **{o.name: o for o in parse_views("zakaz.mv_events MergeTree ORDER BY (name): name, n",
                                                 MATERIALIZED_VIEW)}},
        {**q, "zakaz.mv_events": "SELECT name, count() AS n FROM zakaz.events GROUP BY name"}),
     False, ([], ["zakaz.mv_events"])),
]


# The base a case starts from, where it is not base_schema() itself (the removal of what
# the base does not have).
BASES = {
    "TTL loosened": lambda s: replace(s, "zakaz.sales", ttl="d + toIntervalYear(100)"),
    "TTL removed": lambda s: replace(s, "zakaz.sales", ttl="d + toIntervalYear(100)"),
    "codec changed": lambda s: with_column(s, "zakaz.sales", "amount", codec="ZSTD(1)"),
    "codec removed": lambda s: with_column(s, "zakaz.sales", "amount", codec="ZSTD(1)"),
    "comment changed": lambda s: with_column(s, "zakaz.sales", "note", comment="free text"),
    "comment removed": lambda s: with_column(s, "zakaz.sales", "note", comment="free text"),
    "primary key added": lambda s: replace(s, "zakaz.sales", order_by="id, d"),
}


@pytest.fixture
def chain(tmp_path, monkeypatch):
    """An empty migrations folder of this test's own, with the project's env.py and template."""
    folder = tmp_path / "migrations"
    (folder / "versions").mkdir(parents=True)
    for name in ("env.py", "script.py.mako"):
        shutil.copy(PROJECT_ROOT / "migrations" / name, folder / name)
    monkeypatch.setenv("ZAKAZ_MIGRATIONS", str(folder))
    return folder


def write_revision(folder, revision, down, p, message) -> str:
    text = render_revision(p, message=message, revision=revision, down_revision=down)
    compile(text, "revision", "exec")
    (folder / "versions" / f"{revision}_autogenerated.py").write_text(text, encoding="utf-8")
    return text


def load_rows(url) -> None:
    with connect(url) as conn:
        conn.exec_driver_sql(
            "INSERT INTO zakaz.sales (id, d, city, amount, note) SELECT number, toDate('2026-01-01') + number * 7, "
            f"['{CITIES[0]}', '{CITIES[1]}', '{CITIES[2]}'][number % 3 + 1], number * 1.25, "
            f"concat('n', toString(number)) FROM numbers({ROWS})")
        conn.exec_driver_sql(
            "INSERT INTO zakaz.events (event_id, name, _ver) "
            "SELECT toString(number), concat('ev', toString(number)), 1 FROM numbers(10)")


# Per table: the hand-known content (id-ordered), compared on the columns both sides still have.
def table_rows(conn, table, columns):
    order = "id" if table == "zakaz.sales" else "event_id"
    return conn.exec_driver_sql(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}").all()


def expected_sales(columns):
    values = {
        "id": lambda n: n, "d": None, "city": lambda n: CITIES[n % 3],
        "amount": lambda n: Decimal(n) * Decimal("1.25"), "note": lambda n: f"n{n}",
    }
    return [tuple(values[c](n) for c in columns) for n in range(ROWS)]


def check_state(url, schema, lost_columns: set[str]):
    with connect(url) as conn:
        snap = take_snapshot(conn, ["zakaz"])
        assert diff_schemas(schema, snap.schema, ["zakaz"]) == []
        if "zakaz.sales" in schema:
            cols = [c for c in ("id", "city", "amount", "note")
                    if schema["zakaz.sales"].column(c) and f"zakaz.sales.{c}" not in lost_columns]
            assert table_rows(conn, "zakaz.sales", cols) == expected_sales(cols)
        if "zakaz.events" in schema and "zakaz.events" not in lost_columns:
            ids = [r[0] for r in table_rows(conn, "zakaz.events", ["event_id"])]
            assert sorted(ids) == sorted(str(n) for n in range(10))
        # Written by mv_week on every insert into zakaz.sales, whatever happened to the view.
        assert conn.exec_driver_sql("SELECT sum(n) FROM zakaz.sales_by_week").scalar() == ROWS
        return snap


def _id(case) -> str:
    return case.values[0][0] if hasattr(case, "values") else case[0]


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_change_kind(case, chain, tmp_path):
    name, change, allow_loss, (upgrade_loses, downgrade_loses) = case
    base, queries = BASES.get(name, lambda s: s)(base_schema()), dict(QUERIES)
    desired, desired_queries = change(base, queries)
    url = f"clickhouse+chdb:///default?path={tmp_path / 'db'}"

    write_revision(chain, "0001", None, plan({}, base, desired_queries=queries, desired_targets=TARGETS),
                   "Install the base")
    p = plan(base, desired, allow_loss=allow_loss, current_queries=queries, desired_queries=desired_queries,
             current_targets=TARGETS)
    assert not p.empty
    assert (p.upgrade_loses, p.downgrade_loses) == (upgrade_loses, downgrade_loses)
    text = write_revision(chain, "0002", "0001", p, "The change")
    assert "op.run(" not in text and "Why: TODO" in text

    commands.upgrade(url, "0001")
    load_rows(url)
    with connect(url) as conn:
        mv_before = conn.exec_driver_sql("SELECT sum(total) FROM zakaz.mv_city").scalar()
    commands.upgrade(url, "head", allow_data_loss=allow_loss)
    check_state(url, desired, set(upgrade_loses))
    if "zakaz.mv_city" in desired and "zakaz.mv_city" not in upgrade_loses:
        with connect(url) as conn:
            assert conn.exec_driver_sql("SELECT sum(total) FROM zakaz.mv_city").scalar() == mv_before

    commands.downgrade(url, "0001", allow_data_loss=True)
    check_state(url, base, set(upgrade_loses) | set(downgrade_loses))
    if "zakaz.mv_city" not in set(upgrade_loses) | set(downgrade_loses):
        with connect(url) as conn:
            assert conn.exec_driver_sql("SELECT sum(total) FROM zakaz.mv_city").scalar() == mv_before


def test_rebuilt_table_still_feeds_its_materialized_view(chain, tmp_path):
    """The rebuild swaps a new table in under the materialized view's source name."""
    base = base_schema()
    desired = replace(base, "zakaz.sales", order_by="city, id")
    url = f"clickhouse+chdb:///default?path={tmp_path / 'db'}"
    write_revision(chain, "0001", None, plan({}, base, desired_queries=QUERIES, desired_targets=TARGETS),
                   "Install the base")
    write_revision(chain, "0002", "0001", plan(base, desired, current_queries=QUERIES), "Sort sales by city")
    commands.upgrade(url, "head")
    with connect(url) as conn:
        conn.exec_driver_sql("INSERT INTO zakaz.sales (id, d, city, amount, note) "
                             "VALUES (1, '2026-01-01', 'msk', 2.5, 'x')")
        assert conn.exec_driver_sql("SELECT sum(total) FROM zakaz.mv_city").scalar() == Decimal("2.5")


def test_an_unchanged_materialized_view_spelled_out_plans_nothing(chain, monkeypatch):
    """The chain's head holds the view's SELECT, not its CREATE: the same SELECT, however typed, is no change."""
    base = base_schema()
    write_revision(chain, "0001", None, plan({}, base, desired_queries=QUERIES, desired_targets=TARGETS),
                   "Install the base")
    retyped = {**QUERIES, "zakaz.mv_city": "select city,\n  sum(amount) as total from zakaz.sales group by city"}
    monkeypatch.setattr(revision_autogenerate, "load_canonical", lambda: base)
    monkeypatch.setattr(revision_autogenerate, "canonical_queries", lambda: retyped)
    assert revision_autogenerate.plan_revision("Nothing", script_location=str(chain)).empty

    changed = {**retyped, "zakaz.mv_city": "SELECT city, sum(amount) AS total FROM zakaz.sales "
                                            "WHERE amount > 0 GROUP BY city"}
    monkeypatch.setattr(revision_autogenerate, "canonical_queries", lambda: changed)
    generated = revision_autogenerate.plan_revision("Positive only", script_location=str(chain))
    assert generated.plan.changes == [
        "rebuild materialized view zakaz.mv_city (its SELECT changed), keeping its rows"]


# Revisions written one after another, each from the last one's schema: what lint and the drill read.
# A chain-only change: the new table's TTL loosened (deletes nothing; the way back tightens it, declared).
CHAIN_ONLY = {"TTL loosened": lambda s, q: (replace(s, "zakaz.refunds", ttl="ts + toIntervalDay(7300)"), q)}
CHAINED = ["new view over a new table", "widening type", "ORDER BY changed", "view changed, its reader recreated",
           "view security", "new materialized view", "materialized view changed, rows kept",
           "materialized view storage changed, rows kept",
           "materialized view written TO a table changed", "new materialized view written TO a table",
           "engine changed", "codec added", "comment added", "TTL loosened", "primary key added"]


def test_a_chain_of_generated_revisions_passes_lint_and_the_drill_with_data(chain):
    by_id = {**{_id(c): (c.values[0] if hasattr(c, "values") else c)[1] for c in CASES}, **CHAIN_ONLY}
    schema, queries = base_schema(), dict(QUERIES)
    write_revision(chain, "0001", None, plan({}, schema, desired_queries=queries, desired_targets=TARGETS),
                   "Install the base")
    for n, name in enumerate(CHAINED, start=2):
        desired, desired_queries = by_id[name](schema, queries)
        p = plan(schema, desired, current_queries=queries, desired_queries=desired_queries, current_targets=TARGETS,
                 desired_targets=TARGETS)
        write_revision(chain, f"{n:04d}", f"{n - 1:04d}", p, name.capitalize())
        schema, queries = desired, desired_queries

    report = lint_revisions(script_location=str(chain))
    # Left for the author: the Why line to write (a warning), and nothing
    # else: lint passes with no edits.  It counts the widening's
    # rebuild_materialized_view swap as recreating zakaz.mv_city, and the
    # loosened TTL's way back (a tightening, declared) as the loss it is.
    assert {(f.rule, f.revision) for f in report.findings} == {
        ("docstring-why", f"{n:04d}") for n in range(1, len(CHAINED) + 2)}, [f.message for f in report.findings]
    assert report.ok
    drill = run_drill(with_data=True, script_location=str(chain), rows_per_table=30)
    assert drill.ok, drill.failures
    assert [r.revision for r in drill.results] == [f"{n:04d}" for n in range(1, len(CHAINED) + 2)]
    assert all(r.rows_kept for r in drill.results), [(r.revision, r.notes) for r in drill.results]


def test_a_generated_ttl_revision_needs_the_flag_while_the_table_holds_rows(chain, tmp_path):
    """MODIFY TTL deletes the rows already past it at once: refused without --allow-data-loss, nothing changed."""
    base = base_schema()
    desired = replace(base, "zakaz.sales", ttl="d + toIntervalYear(1)")
    with pytest.raises(PlanRefused, match=r"^zakaz\.sales: TTL d \+ toIntervalYear\(1\) deletes the rows already"):
        plan(base, desired, current_queries=QUERIES)
    write_revision(chain, "0001", None, plan({}, base, desired_queries=QUERIES, desired_targets=TARGETS),
                   "Install the base")
    p = plan(base, desired, allow_loss=True, current_queries=QUERIES)
    text = write_revision(chain, "0002", "0001", p, "Keep a year of sales")
    assert 'UPGRADE_LOSES = ["zakaz.sales"]' in text
    assert "rows already past TTL d + toIntervalYear(1) are deleted" in text
    url = f"clickhouse+chdb:///default?path={tmp_path / 'db'}"
    commands.upgrade(url, "0001")
    load_rows(url)
    with connect(url) as conn:
        conn.exec_driver_sql("INSERT INTO zakaz.sales (id, d, city, amount, note) "
                             "VALUES (1000, '2001-01-01', 'msk', 1, 'expired')")
    with pytest.raises(UsageError, match=r"upgrade would drop data from: zakaz\.sales \(holding 61 rows\).*--allow-data-loss"):
        commands.upgrade(url, "head")
    with connect(url) as conn:
        assert conn.exec_driver_sql("SELECT count() FROM zakaz.sales").scalar() == ROWS + 1
        assert conn.exec_driver_sql("SELECT engine_full FROM system.tables WHERE database = 'zakaz' "
                                    "AND name = 'sales'").scalar().find("TTL") < 0
    commands.upgrade(url, "head", allow_data_loss=True)
    with connect(url) as conn:
        assert conn.exec_driver_sql("SELECT count() FROM zakaz.sales WHERE note = 'expired'").scalar() == 0
    # An empty table has no rows at risk: no flag needed.
    commands.downgrade(url, "0001", allow_data_loss=True)
    with connect(url) as conn:
        conn.exec_driver_sql("TRUNCATE TABLE zakaz.sales")
    commands.upgrade(url, "head")
