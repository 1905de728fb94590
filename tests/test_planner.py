"""The planner's decisions, read from the plan: order, refusals, declared losses, the rendered text.

Pure and fast: what the steps do to a database is proven in
tests/test_autogenerate.py; here each expected step list is written by hand.
"""
from __future__ import annotations

import dataclasses

import pytest

from app.autogenerate import render_revision
from app.canonical import CANONICAL
from app.errors import EXIT_USAGE, UsageError
from app.planner import Call, PlanRefused, plan
from app.replay import revision_states
from app.schema import MATERIALIZED_VIEW, VIEW, Column, parse_tables, parse_views

pytestmark = pytest.mark.fast

TABLES = parse_tables("""
zakaz.t  MergeTree ORDER BY (id) PARTITION BY toYYYYMM(d)
    id    UInt32
    d     Date
    s     String DEFAULT 'x'
    n     Nullable(UInt8)
""")
BASE = {o.name: o for o in TABLES}


def changed(schema, name, **fields):
    return {**schema, name: dataclasses.replace(schema[name], **fields)}


def columns(*specs):
    out = []
    for spec in specs:
        name, _, rest = spec.partition(" ")
        type_, _, default = rest.partition(" DEFAULT ")
        out.append(Column(name, type_, default))
    return tuple(out)


def calls(steps):
    return [c for s in steps for c in s.calls]


def test_equal_schemas_make_an_empty_plan():
    p = plan(BASE, dict(BASE))
    assert p.empty and p.upgrade == () and p.downgrade == ()


def test_new_column_goes_where_the_schema_puts_it():
    desired = changed(BASE, "zakaz.t", columns=columns("first UInt8", "id UInt32", "d Date", "mid String",
                                                        "s String DEFAULT 'x'", "n Nullable(UInt8)"))
    p = plan(BASE, desired)
    assert calls(p.upgrade) == [
        Call("add_column_if_not_exists", ("zakaz.t", "first UInt8"), (("first", True),)),
        Call("add_column_if_not_exists", ("zakaz.t", "mid String"), (("after", "d"),)),
    ]
    assert calls(p.downgrade) == [Call("drop_column_if_exists", ("zakaz.t", "first")),
                                  Call("drop_column_if_exists", ("zakaz.t", "mid"))]
    assert p.downgrade_loses == ["zakaz.t.first", "zakaz.t.mid"] and p.upgrade_loses == []


def test_dropping_a_table_or_column_is_refused_in_one_line_naming_it():
    without_table = {}
    with pytest.raises(PlanRefused) as err:
        plan(BASE, without_table)
    assert "zakaz.t" in str(err.value) and "\n" not in str(err.value)
    assert isinstance(err.value, UsageError) and err.value.exit_code == EXIT_USAGE
    with pytest.raises(PlanRefused, match=r"^zakaz\.t\.s: dropping the column deletes its values"):
        plan(BASE, changed(BASE, "zakaz.t", columns=BASE["zakaz.t"].columns[:2] + BASE["zakaz.t"].columns[3:]))


def test_allowed_drops_are_declared_for_the_upgrade():
    p = plan(BASE, {}, allow_loss=True)
    assert calls(p.upgrade) == [Call("drop_table_if_exists", ("zakaz.t",)), Call("drop_database", ("zakaz",))]
    assert p.upgrade_loses == ["zakaz.t"] and p.downgrade_loses == []
    assert calls(p.downgrade)[:2] == [Call("create_database", ("zakaz",)), calls(plan({}, BASE).upgrade)[1]]


def test_type_changes_widen_refuse_or_declare():
    widened = changed(BASE, "zakaz.t", columns=columns("id UInt32", "d Date", "s String DEFAULT 'x'",
                                                        "n Nullable(UInt16)"))
    p = plan(BASE, widened)
    assert calls(p.upgrade) == [Call("modify_column", ("zakaz.t", "n Nullable(UInt16)"))]
    # The way back narrows: declared for the downgrade.
    assert calls(p.downgrade) == [Call("modify_column", ("zakaz.t", "n Nullable(UInt8)"))]
    assert p.downgrade_loses == ["zakaz.t.n"]

    lossy = changed(BASE, "zakaz.t", columns=columns("id UInt32", "d Date", "s String DEFAULT 'x'", "n UInt8"))
    with pytest.raises(PlanRefused, match=r"^zakaz\.t\.n: Nullable\(UInt8\) -> UInt8 may lose values \(NULLs"):
        plan(BASE, lossy)
    assert plan(BASE, lossy, allow_loss=True).upgrade_loses == ["zakaz.t.n"]

    impossible = changed(BASE, "zakaz.t", columns=columns("id UInt32", "d UUID", "s String DEFAULT 'x'",
                                                           "n Nullable(UInt8)"))
    with pytest.raises(PlanRefused, match=r"^zakaz\.t\.d: Date -> UUID is impossible"):
        plan(BASE, impossible, allow_loss=True)


def test_default_changes():
    cols = BASE["zakaz.t"].columns
    p = plan(BASE, changed(BASE, "zakaz.t", columns=cols[:2] + columns("s String") + cols[3:]))
    assert calls(p.upgrade) == [Call("modify_column", ("zakaz.t", "s REMOVE DEFAULT"))]
    assert calls(p.downgrade) == [Call("modify_column", ("zakaz.t", "s String DEFAULT 'x'"))]
    p = plan(BASE, changed(BASE, "zakaz.t", columns=cols[:2] + columns("s String DEFAULT 'y'") + cols[3:]))
    assert calls(p.upgrade) == [Call("modify_column", ("zakaz.t", "s String DEFAULT 'y'"))]


def with_s(**fields):
    """BASE with column ``s`` (``String DEFAULT 'x'``) given ``fields``."""
    cols = BASE["zakaz.t"].columns
    return changed(BASE, "zakaz.t", columns=cols[:2] + (dataclasses.replace(cols[2], **fields),) + cols[3:])


def test_codec_changes_are_modify_column_and_remove_codec():
    p = plan(BASE, with_s(codec="ZSTD(3)"))
    assert calls(p.upgrade) == [Call("modify_column", ("zakaz.t", "s CODEC(ZSTD(3))"))]
    assert calls(p.downgrade) == [Call("remove_column_property", ("zakaz.t", "s", "CODEC"))]
    assert p.changes == ["modify column zakaz.t.s: codec ZSTD(3)"]
    # From one codec to another: set, nothing removed.
    p = plan(with_s(codec="ZSTD(3)"), with_s(codec="Delta(4), LZ4"))
    assert calls(p.upgrade) == [Call("modify_column", ("zakaz.t", "s CODEC(Delta(4), LZ4)"))]


def test_comment_changes_are_modify_column_and_remove_comment():
    p = plan(BASE, with_s(comment="it's the city"))
    assert calls(p.upgrade) == [Call("modify_column", ("zakaz.t", "s COMMENT 'it\\'s the city'"))]
    assert calls(p.downgrade) == [Call("remove_column_property", ("zakaz.t", "s", "COMMENT"))]
    assert p.changes == ["modify column zakaz.t.s: comment 'it\\'s the city'"]


def test_a_type_or_default_change_carries_codec_and_comment_in_the_whole_definition():
    p = plan(with_s(codec="ZSTD(1)", comment="c"), with_s(default="'y'", codec="LZ4", comment="c"))
    assert calls(p.upgrade) == [Call("modify_column", ("zakaz.t", "s String DEFAULT 'y' COMMENT 'c' CODEC(LZ4)"))]
    # Removing a codec and a default at once: each removal first, then nothing is left to set.
    p = plan(with_s(codec="ZSTD(1)"), with_s(default="", codec=""))
    assert calls(p.upgrade) == [Call("modify_column", ("zakaz.t", "s REMOVE DEFAULT")),
                                Call("remove_column_property", ("zakaz.t", "s", "CODEC"))]
    assert calls(p.downgrade) == [Call("modify_column", ("zakaz.t", "s String DEFAULT 'x' CODEC(ZSTD(1))"))]


def test_ttl_changes_are_modify_ttl_and_remove_ttl():
    p = plan(BASE, changed(BASE, "zakaz.t", ttl="d + toIntervalYear(1)"), allow_loss=True)
    assert calls(p.upgrade) == [Call("modify_ttl", ("zakaz.t", "d + toIntervalYear(1)"))]
    assert calls(p.downgrade) == [Call("remove_ttl", ("zakaz.t",))]
    assert p.changes == ["set TTL of zakaz.t to d + toIntervalYear(1) (deletes the rows already past it)"]
    # Loosened: deletes nothing the old TTL kept; the way back tightens it.
    p = plan(changed(BASE, "zakaz.t", ttl="d + toIntervalYear(1)"),
             changed(BASE, "zakaz.t", ttl="d + toIntervalYear(2)"))
    assert calls(p.upgrade) == [Call("modify_ttl", ("zakaz.t", "d + toIntervalYear(2)"))]
    assert p.upgrade_loses == [] and p.downgrade_loses == ["zakaz.t"]


def test_a_ttl_added_or_tightened_deletes_rows_and_is_declared():
    """MODIFY TTL materializes the TTL at once (materialize_ttl_after_modify = 1): rows past it go."""
    for old, new in (("", "d + toIntervalYear(1)"), ("d + toIntervalYear(2)", "d + toIntervalYear(1)"),
                     ("d + toIntervalDay(400)", "d + toIntervalYear(1)"),
                     ("d + toIntervalYear(1)", "d + toIntervalYear(1) WHERE n = 0")):
        before, after = changed(BASE, "zakaz.t", ttl=old), changed(BASE, "zakaz.t", ttl=new)
        with pytest.raises(PlanRefused, match=rf"^zakaz\.t: TTL .* deletes the rows already past it; "
                                              rf"{'keep the old TTL' if old else 'leave the TTL out'} in"):
            plan(before, after)
        p = plan(before, after, allow_loss=True)
        assert p.upgrade_loses == ["zakaz.t"], (old, new)
        assert p.loss_notes("upgrade") == {"zakaz.t": f"rows already past TTL {new} are deleted"}
    # Removed, or as long in another unit: nothing more expires.
    for old, new in (("d + toIntervalYear(1)", ""), ("d + toIntervalDay(28)", "d + toIntervalMonth(1)")):
        assert plan(changed(BASE, "zakaz.t", ttl=old), changed(BASE, "zakaz.t", ttl=new)).upgrade_loses == []
    # A rebuild that brings a TTL in declares it too.
    rebuilt = changed(BASE, "zakaz.t", order_by="d, id", ttl="d + toIntervalYear(1)")
    assert plan(BASE, rebuilt, allow_loss=True).upgrade_loses == ["zakaz.t"]


def test_a_ttl_goes_before_the_column_it_reads_and_comes_after_a_new_one():
    cols = BASE["zakaz.t"].columns
    unkeyed = {"zakaz.t": dataclasses.replace(BASE["zakaz.t"], partition_by="")}  # d in no key
    with_ttl = changed(unkeyed, "zakaz.t", ttl="d + toIntervalYear(1)")
    # A TTL over a new column comes after the column.
    over_new = changed(unkeyed, "zakaz.t", columns=cols + columns("ts DateTime"), ttl="ts + toIntervalYear(1)")
    assert [c.op for c in calls(plan(unkeyed, over_new, allow_loss=True).upgrade)] == [
        "add_column_if_not_exists", "modify_ttl"]
    # A TTL removed goes before the column it read is dropped; back, the column comes first.
    p = plan(with_ttl, changed(unkeyed, "zakaz.t", columns=(cols[0],) + cols[2:]), allow_loss=True)
    assert [c.op for c in calls(p.upgrade)] == ["remove_ttl", "drop_column_if_exists"]
    assert [c.op for c in calls(p.downgrade)] == ["add_column_if_not_exists", "modify_ttl"]
    # Moved from a column that goes to one that comes: neither order works, the table is rebuilt.
    moved = changed(unkeyed, "zakaz.t", columns=(cols[0],) + cols[2:] + columns("ts DateTime"),
                    ttl="ts + toIntervalYear(1)")
    p = plan(with_ttl, moved, allow_loss=True)
    assert [c.op for c in calls(p.upgrade)] == ["rebuild_table"]
    assert p.changes == ["rebuild table zakaz.t (TTL), copying every row"]  # n and old rows past the TTL go
    assert dict(calls(p.upgrade)[0].kwargs)["ttl"] == "ts + toIntervalYear(1)"


def test_a_primary_key_change_is_a_rebuild_and_a_new_table_states_its_primary_key():
    keyed = changed(BASE, "zakaz.t", order_by="id, d", primary_key="id")
    p = plan(changed(BASE, "zakaz.t", order_by="id, d"), keyed)
    assert calls(p.upgrade) == [Call(
        "rebuild_table", ("zakaz.t", "id UInt32\nd Date\ns String DEFAULT 'x'\nn Nullable(UInt8)"),
        (("engine", "MergeTree"), ("order_by", "(id, d)"), ("partition_by", "toYYYYMM(d)"),
         ("copy", "id, d, s, n"), ("primary_key", "(id)")))]
    assert p.changes == ["rebuild table zakaz.t (PRIMARY KEY), keeping every row"]
    assert dict(calls(p.downgrade)[0].kwargs).get("primary_key") is None
    p = plan({}, keyed)
    create = next(c for c in calls(p.upgrade) if c.op == "create_table_if_not_exists")
    assert dict(create.kwargs)["primary_key"] == "(id)"


def test_what_alter_cannot_change_is_a_rebuild_copying_the_shared_columns():
    key_retyped = changed(BASE, "zakaz.t", order_by="d, id",
                          columns=columns("id UInt64", "d Date", "s String DEFAULT 'x'", "extra String"))
    with pytest.raises(PlanRefused, match=r"^zakaz\.t\.n: the rebuild drops the column"):
        plan(BASE, key_retyped)
    p = plan(BASE, key_retyped, allow_loss=True)
    assert calls(p.upgrade) == [Call(
        "rebuild_table", ("zakaz.t", "id UInt64\nd Date\ns String DEFAULT 'x'\nextra String"),
        (("engine", "MergeTree"), ("order_by", "(d, id)"), ("partition_by", "toYYYYMM(d)"), ("copy", "id, d, s")))]
    assert p.upgrade_loses == ["zakaz.t.n"]
    assert p.downgrade_loses == ["zakaz.t.id", "zakaz.t.extra"]  # UInt64 back to UInt32; the new column
    # A key column's type alone forces it too.
    only_type = changed(BASE, "zakaz.t", columns=columns("id UInt64", "d Date", "s String DEFAULT 'x'",
                                                          "n Nullable(UInt8)"))
    assert [c.op for c in calls(plan(BASE, only_type).upgrade)] == ["rebuild_table"]


VIEWED = {
    **BASE,
    **{o.name: o for o in parse_views("zakaz.b_reader: id\nzakaz.z_base: id, d", VIEW, security="DEFINER")},
}
QUERIES = {"zakaz.z_base": "SELECT id, d FROM zakaz.t", "zakaz.b_reader": "SELECT id FROM zakaz.z_base"}


def named(call: Call) -> str:
    if call.op == "grant":
        return f"grant {call.args[0]} on {call.args[1]} to {dict(call.kwargs)['to']}"
    return f"{call.op} {call.args[0]}"


def test_views_come_after_what_they_read_and_go_before_it():
    p = plan(BASE, VIEWED, desired_queries=QUERIES)
    assert [named(c) for c in calls(p.upgrade)] == [
        "create_view zakaz.z_base", "grant SELECT on zakaz.z_base to zakaz_reader", "set_view_security zakaz.z_base",
        "create_view zakaz.b_reader", "grant SELECT on zakaz.b_reader to zakaz_reader",
        "set_view_security zakaz.b_reader"]
    assert [named(c) for c in calls(p.downgrade)] == [
        "access REVOKE SELECT ON zakaz.b_reader FROM zakaz_reader", "drop_view zakaz.b_reader",
        "access REVOKE SELECT ON zakaz.z_base FROM zakaz_reader", "drop_view zakaz.z_base"]
    assert p.downgrade_loses == []


def test_new_objects_get_the_grants_of_the_access_rules_and_lose_them_when_dropped():
    # warehouse.md, Access: zakaz_etl writes zakaz's stg/fact/dim/dm tables; zakaz_reader reads every view.
    new = {o.name: o for o in parse_tables("""
zakaz.fact_refunds  MergeTree ORDER BY (id)
    id  UInt32

zakaz.audit_log  MergeTree ORDER BY (id)
    id  UInt32

meta.etl_notes  MergeTree ORDER BY (id)
    id  UInt32
""") + parse_views("bi.v_refunds: id", VIEW) + parse_views(
        "meta.mv_refunds MergeTree ORDER BY (id): id", MATERIALIZED_VIEW)}
    queries = {"bi.v_refunds": "SELECT id FROM zakaz.fact_refunds",
               "meta.mv_refunds": "SELECT id FROM zakaz.fact_refunds"}
    p = plan({}, new, desired_queries=queries)
    assert [named(c) for c in calls(p.upgrade) if c.op in ("grant", "access")] == [
        "grant INSERT, SELECT on zakaz.fact_refunds to zakaz_etl",
        "grant SELECT on bi.v_refunds to zakaz_reader",
        "grant SELECT on meta.mv_refunds to zakaz_reader"]
    down = [named(c) for c in calls(p.downgrade)]
    for name, revoke in (("zakaz.fact_refunds", "REVOKE INSERT, SELECT ON zakaz.fact_refunds FROM zakaz_etl"),
                         ("bi.v_refunds", "REVOKE SELECT ON bi.v_refunds FROM zakaz_reader"),
                         ("meta.mv_refunds", "REVOKE SELECT ON meta.mv_refunds FROM zakaz_reader")):
        assert down.index(f"access {revoke}") == down.index(
            f"drop_{'table_if_exists' if name.startswith('zakaz') else 'view'} {name}") - 1
    assert not any("audit_log" in line or "etl_notes" in line for line in down if line.startswith("access"))


def test_a_changed_view_recreates_its_readers_in_both_directions():
    desired = changed(VIEWED, "zakaz.z_base", columns=(Column("id", ""), Column("d", ""), Column("s", "")))
    new_queries = {**QUERIES, "zakaz.z_base": "SELECT id, d, s FROM zakaz.t"}
    p = plan(VIEWED, desired, current_queries=QUERIES, desired_queries=new_queries)
    created = [(c.args[0], c.args[1]) for c in calls(p.upgrade) if c.op == "create_view"]
    assert created == [("zakaz.z_base", "SELECT id, d, s FROM zakaz.t"),
                       ("zakaz.b_reader", "SELECT id FROM zakaz.z_base")]
    restored = [(c.args[0], c.args[1]) for c in calls(p.downgrade) if c.op == "create_view"]
    assert restored == [("zakaz.z_base", "SELECT id, d FROM zakaz.t"),
                        ("zakaz.b_reader", "SELECT id FROM zakaz.z_base")]


def test_only_views_reading_a_changed_column_are_recreated():
    """A column added (and dropped by the way back) changes nothing for a view that does not read it."""
    added = changed(VIEWED, "zakaz.t", columns=BASE["zakaz.t"].columns + columns("note String"))
    p = plan(VIEWED, added, current_queries=QUERIES)
    assert [named(c) for c in calls(p.upgrade)] == ["add_column_if_not_exists zakaz.t"]
    assert [named(c) for c in calls(p.downgrade)] == ["drop_column_if_exists zakaz.t"]
    # Retyping a column one view reads recreates that view and the view reading it, not the others.
    reads_d = {**QUERIES, "zakaz.z_base": "SELECT id, d FROM zakaz.t"}
    retyped = changed(VIEWED, "zakaz.t", columns=columns("id UInt32", "d Date32", "s String DEFAULT 'x'",
                                                          "n Nullable(UInt8)"))
    p = plan(VIEWED, retyped, current_queries=reads_d)
    assert [c.args[0] for c in calls(p.upgrade) if c.op == "create_view"] == ["zakaz.z_base", "zakaz.b_reader"]
    assert p.changes[1] == "recreate view zakaz.z_base (it reads zakaz.t.d, which changed)"
    # SELECT * reads every column; count(*) reads none.
    for query, recreated in (("SELECT * FROM zakaz.t", True), ("SELECT t.* FROM zakaz.t AS t", True),
                             ("SELECT id, count(*) AS d FROM zakaz.t GROUP BY id", False)):
        p = plan(VIEWED, added, current_queries={**QUERIES, "zakaz.z_base": query})
        assert ("create_view" in [c.op for c in calls(p.downgrade)]) is recreated, query
    # What ClickHouse's analyzer says a view reads (app.dependencies) wins over its text.
    p = plan(VIEWED, retyped, current_queries=reads_d, view_reads={"zakaz.z_base": {"zakaz.t": {"id"}}})
    assert [c.op for c in calls(p.upgrade)] == ["rebuild_table"]  # d is in the partition key
    p = plan(VIEWED, added, current_queries=QUERIES, view_reads={"zakaz.z_base": {"zakaz.t": None}})
    assert [c.args[0] for c in calls(p.downgrade) if c.op == "create_view"] == ["zakaz.z_base", "zakaz.b_reader"]


def test_a_view_whose_select_is_unknown_is_refused():
    with pytest.raises(PlanRefused, match=r"^zakaz\.b_reader: its SELECT is not known"):
        plan(BASE, VIEWED, desired_queries={"zakaz.z_base": QUERIES["zakaz.z_base"]})
    # Dropping it needs its SELECT too: the downgrade must create it again.
    with pytest.raises(PlanRefused, match=r"needed by the downgrade"):
        plan(VIEWED, BASE)


def test_view_security_alone():
    p = plan(VIEWED, changed(VIEWED, "zakaz.z_base", security="INVOKER"), current_queries=QUERIES)
    assert calls(p.upgrade) == [Call("set_view_security", ("zakaz.z_base", "INVOKER"))]
    assert calls(p.downgrade) == [Call("set_view_security", ("zakaz.z_base", "DEFINER"),
                                       (("definer", "zakaz_view_definer"),))]


MV = {o.name: o for o in parse_views("zakaz.mv SummingMergeTree ORDER BY (d): d, n", MATERIALIZED_VIEW)}
MV_QUERIES = {"zakaz.mv": "SELECT d, count() AS n FROM zakaz.t GROUP BY d"}


def test_a_changed_materialized_view_is_rebuilt_keeping_its_rows():
    old = {**BASE, **MV}
    new_queries = {"zakaz.mv": "SELECT d, countIf(id > 0) AS n FROM zakaz.t GROUP BY d"}
    p = plan(old, old, current_queries=MV_QUERIES, desired_queries=new_queries)
    assert calls(p.upgrade) == [Call("rebuild_materialized_view", ("zakaz.mv", new_queries["zakaz.mv"]), (
        ("engine", "SummingMergeTree"), ("order_by", "(d)"), ("copy", "d, n")))]
    assert p.changes == ["rebuild materialized view zakaz.mv (its SELECT changed), keeping its rows"]
    assert p.upgrade_loses == [] and p.downgrade_loses == []
    # A stored column that goes is a loss; one that comes is filled with its default.
    wider = {**old, "zakaz.mv": dataclasses.replace(MV["zakaz.mv"], columns=columns("d", "n", "ids"))}
    wider_queries = {"zakaz.mv": "SELECT d, count() AS n, uniq(id) AS ids FROM zakaz.t GROUP BY d"}
    p = plan(old, wider, current_queries=MV_QUERIES, desired_queries=wider_queries)
    assert dict(calls(p.upgrade)[0].kwargs)["copy"] == "d, n" and p.downgrade_loses == ["zakaz.mv.ids"]
    assert p.loss_notes() == {"zakaz.mv.ids": "dropped with its values"}
    with pytest.raises(PlanRefused, match=r"^zakaz\.mv\.ids: rebuilding the materialized view"):
        plan(wider, old, current_queries=wider_queries, desired_queries=MV_QUERIES)
    # Nothing in common: the rows cannot be carried over.
    other = {**old, "zakaz.mv": dataclasses.replace(MV["zakaz.mv"], columns=columns("day", "rows"), order_by="day")}
    other_queries = {"zakaz.mv": "SELECT d AS day, count() AS rows FROM zakaz.t GROUP BY d"}
    with pytest.raises(PlanRefused, match=r"^zakaz\.mv: recreating the materialized view \(its SELECT changed\)"):
        plan(old, other, current_queries=MV_QUERIES, desired_queries=other_queries)
    p = plan(old, other, allow_loss=True, current_queries=MV_QUERIES, desired_queries=other_queries)
    assert [c.op for c in calls(p.upgrade)] == ["drop_view", "create_materialized_view"]
    assert p.upgrade_loses == ["zakaz.mv"] and p.downgrade_loses == ["zakaz.mv"]


def test_a_materialized_view_over_a_retyped_column_is_rebuilt():
    """Its stored column has the type its SELECT gave it: left alone, a widened value is cut on insert."""
    summed = {**BASE, **{o.name: o for o in parse_views("zakaz.mv SummingMergeTree ORDER BY (d): d, total",
                                                        MATERIALIZED_VIEW)}}
    queries = {"zakaz.mv": "SELECT d, sum(n) AS total FROM zakaz.t GROUP BY d"}
    retyped = changed(summed, "zakaz.t", columns=columns("id UInt32", "d Date", "s String DEFAULT 'x'",
                                                          "n Nullable(UInt16)"))
    p = plan(summed, retyped, current_queries=queries)
    assert [c.op for c in calls(p.upgrade)] == ["modify_column", "rebuild_materialized_view"]
    assert p.changes[1] == "rebuild materialized view zakaz.mv (it reads zakaz.t.n, which changed), keeping its rows"
    assert [c.op for c in calls(p.downgrade)] == ["modify_column", "rebuild_materialized_view"]
    # One that reads other columns is left alone, and so is one over a column that is only added.
    counted = {**summed, "zakaz.mv": dataclasses.replace(summed["zakaz.mv"])}
    counting = {"zakaz.mv": "SELECT d, count() AS total FROM zakaz.t GROUP BY d"}
    assert [c.op for c in calls(plan(counted, retyped, current_queries=counting).upgrade)] == ["modify_column"]


TO = {**BASE, **{o.name: o for o in parse_tables("""
zakaz.t_daily  SummingMergeTree ORDER BY (d)
    d      Date
    n      UInt64
""") + parse_views("zakaz.mv_to: d, n", MATERIALIZED_VIEW)}}
TO_QUERIES = {"zakaz.mv_to": "SELECT d, count() AS n FROM zakaz.t GROUP BY d"}


def test_a_materialized_view_written_to_a_table_changes_in_place():
    """Its rows are the table's: a new SELECT is MODIFY QUERY, nothing is lost either way."""
    p = plan(BASE, TO, desired_queries=TO_QUERIES, desired_targets={"zakaz.mv_to": "zakaz.t_daily"})
    create = next(c for c in calls(p.upgrade) if c.op == "create_materialized_view")
    assert create == Call("create_materialized_view", ("zakaz.mv_to", TO_QUERIES["zakaz.mv_to"]),
                          (("to", "zakaz.t_daily"),))
    assert p.downgrade_loses == ["zakaz.t_daily"]  # the table's rows, not the view's
    new_queries = {"zakaz.mv_to": "SELECT d, countIf(id > 0) AS n FROM zakaz.t GROUP BY d"}
    targets = {"zakaz.mv_to": "zakaz.t_daily"}
    p = plan(TO, TO, current_queries=TO_QUERIES, desired_queries=new_queries, current_targets=targets)
    assert calls(p.upgrade) == [Call("modify_query", ("zakaz.mv_to", new_queries["zakaz.mv_to"]))]
    assert calls(p.downgrade) == [Call("modify_query", ("zakaz.mv_to", TO_QUERIES["zakaz.mv_to"]))]
    assert p.upgrade_loses == [] and p.downgrade_loses == []
    # A column it reads retyped: the same SELECT again gives the view its new column types.
    retyped = changed(TO, "zakaz.t", columns=columns("id UInt32", "d Date32", "s String DEFAULT 'x'",
                                                      "n Nullable(UInt8)"), partition_by="")
    p = plan(changed(TO, "zakaz.t", partition_by=""), retyped, current_queries=TO_QUERIES, current_targets=targets)
    assert calls(p.upgrade)[1:] == [Call("modify_query", ("zakaz.mv_to", TO_QUERIES["zakaz.mv_to"]))]
    # Another table to write to: dropped and created again, its rows stay where they were written.
    moved = {**TO, "zakaz.t_daily2": dataclasses.replace(TO["zakaz.t_daily"], name="zakaz.t_daily2")}
    p = plan(moved, moved, current_queries=TO_QUERIES, current_targets=targets,
             desired_targets={"zakaz.mv_to": "zakaz.t_daily2"})
    assert [(c.op, dict(c.kwargs).get("to")) for c in calls(p.upgrade)] == [
        ("drop_view", None), ("create_materialized_view", "zakaz.t_daily2")]
    assert p.upgrade_loses == []
    with pytest.raises(PlanRefused, match=r"^zakaz\.mv_to: the table this materialized view is written TO is not"):
        plan(BASE, TO, desired_queries=TO_QUERIES)
    with pytest.raises(PlanRefused, match=r"^zakaz\.mv: a materialized view cannot move between"):
        plan({**BASE, **MV, "zakaz.t_daily": TO["zakaz.t_daily"]},
             {**TO, "zakaz.mv": dataclasses.replace(TO["zakaz.mv_to"], name="zakaz.mv")},
             current_queries=MV_QUERIES, desired_targets={"zakaz.mv": "zakaz.t_daily"})


def test_materialized_view_storage():
    old = {**BASE, **MV}
    # Its own PRIMARY KEY is a storage change no operation makes.
    keyed = changed(old, "zakaz.mv", order_by="d, n", primary_key="d")
    with pytest.raises(PlanRefused, match=r"^zakaz\.mv: no operation creates a materialized view whose PRIMARY KEY"):
        plan(old, keyed, allow_loss=True, current_queries=MV_QUERIES)
    p = plan(old, changed(old, "zakaz.mv", engine="MergeTree"), current_queries=MV_QUERIES)
    assert p.changes == ["rebuild materialized view zakaz.mv (its storage changed), keeping its rows"]
    # A table it reads changing (a column it does not read) does not rebuild it.
    widened = changed(old, "zakaz.t", columns=columns("id UInt32", "d Date", "s LowCardinality(String) DEFAULT 'x'",
                                                       "n Nullable(UInt8)"))
    assert [c.op for c in calls(plan(old, widened, current_queries=MV_QUERIES).upgrade)] == ["modify_column"]


def test_rendered_revision_reads_like_a_hand_written_one():
    desired = changed(BASE, "zakaz.t", columns=BASE["zakaz.t"].columns + columns("note String DEFAULT ''"))
    text = render_revision(plan(BASE, desired), message='Add t.note: a """free""" text \\ note',
                           revision="0014", down_revision="0013")
    namespace: dict = {}
    exec(compile(text, "rev", "exec"), namespace)  # noqa: S102 - our own generated text
    assert namespace["__doc__"].splitlines()[0] == 'Add t.note: a """free""" text \\ note'
    assert "- add column zakaz.t.note String DEFAULT '' after n" in namespace["__doc__"]
    assert "Why: TODO" in namespace["__doc__"]
    assert (namespace["revision"], namespace["down_revision"]) == ("0014", "0013")
    assert namespace["DOWNGRADE_LOSES"] == ["zakaz.t.note"] and "UPGRADE_LOSES" not in namespace
    assert """    op.add_column_if_not_exists("zakaz.t", "note String DEFAULT ''", after="n")\n""" in text
    assert """    op.drop_column_if_exists("zakaz.t", "note")\n""" in text
    assert all(len(line) <= 110 for line in text.splitlines())
    with pytest.raises(ValueError):
        render_revision(plan(BASE, BASE), message="x", revision="0014", down_revision="0013")


@pytest.mark.replay
def test_the_real_chain_at_head_is_the_canonical_schema():
    head = revision_states().states[-1]
    p = plan(head.schema, CANONICAL, current_queries=head.queries)
    assert p.empty and p.downgrade == ()
    # The materialized view's SELECT is kept as such, not as its CREATE statement.
    assert head.queries["zakaz.mv_qtickets_sales_latest"].startswith("SELECT event_id, city, max(sale_ts)")
    assert set(head.queries) == {n for n, o in head.schema.items() if o.kind != "table"}


def test_a_view_over_an_object_that_does_not_exist_is_refused():
    with pytest.raises(PlanRefused, match=r"^zakaz\.z_base: reads zakaz\.missing, which the upgraded schema"):
        plan(BASE, VIEWED, desired_queries={**QUERIES, "zakaz.z_base": "SELECT id, d FROM zakaz.missing AS t"})
    # A name inside a string is data.
    quoted = "SELECT id, d, 'zakaz.gone' AS src FROM zakaz.t"
    p = plan(BASE, VIEWED, desired_queries={**QUERIES, "zakaz.z_base": quoted})
    assert not p.empty
