"""The declared-vs-actual loss check (app/losses.py) on plain schemas; lint's rules run it on real replays."""
from __future__ import annotations

import pytest

from app import losses
from app.losses import DROP, NARROWING, RECREATE, Loss, check_declared, schema_losses
from app.schema import MATERIALIZED_VIEW, TABLE, VIEW, Column, DbObject

pytestmark = pytest.mark.fast


def table(name, *columns, engine="MergeTree", order_by="id", kind=TABLE):
    return DbObject(name, kind, tuple(Column(*c) for c in columns), engine=engine, order_by=order_by)


SALES = table("z.sales", ("id", "UInt64"), ("amount", "Decimal(12, 2)"), ("note", "String"))
BEFORE = {
    "z.sales": SALES,
    "z.v": table("z.v", ("id", "UInt64"), engine="", order_by="", kind=VIEW),
    "z.mv_to": table("z.mv_to", ("id", "UInt64"), engine="", order_by="", kind=MATERIALIZED_VIEW),
    "z.mv": table("z.mv", ("id", "UInt64"), kind=MATERIALIZED_VIEW),
}


def test_nothing_lost_when_nothing_changes_or_only_views_go():
    assert schema_losses(BEFORE, BEFORE) == []
    after = {"z.sales": SALES, "z.mv": BEFORE["z.mv"]}  # a view and a view written TO a table hold no rows
    assert schema_losses(BEFORE, after) == []


def test_drops_narrowings_and_recreates():
    after = {
        "z.sales": table("z.sales", ("id", "UInt32"), ("amount", "Decimal(18, 4)")),
        "z.mv_to": BEFORE["z.mv_to"],
    }
    lost = schema_losses(BEFORE, after)
    assert [(x.kind, x.target) for x in lost] == [
        (DROP, "z.mv"), (NARROWING, "z.sales.id"), (DROP, "z.sales.note")]
    assert "UInt64 to UInt32" in lost[1].message

    rebuilt = {**BEFORE, "z.sales": table("z.sales", *[(c.name, c.type) for c in SALES.columns], order_by="amount")}
    assert [(x.kind, x.target) for x in schema_losses(BEFORE, rebuilt, replaced={"z.sales"})] == [
        (RECREATE, "z.sales")]
    assert "ORDER BY" in schema_losses(BEFORE, rebuilt, replaced={"z.sales"})[0].message
    copied = schema_losses(BEFORE, rebuilt, replaced={"z.sales"}, copies={"z.sales": ["id", "amount"]})
    assert [(x.kind, x.target) for x in copied] == [(DROP, "z.sales.note")]
    assert schema_losses(BEFORE, rebuilt, replaced={"z.sales"}, copies={"z.sales": None}) == []


def test_declarations_against_losses():
    lost = [Loss(DROP, "z.sales.note", ""), Loss(DROP, "z.mv", ""), Loss(NARROWING, "z.sales.id", "")]
    check = check_declared(["z.sales", "z.other", "z.mv.id"], lost)
    # A table covers its columns; a column of a dropped object counts as used, but does not cover it.
    assert [x.target for x in check.declared] == ["z.sales.note", "z.sales.id"]
    assert [x.target for x in check.undeclared] == ["z.mv"] and not check.ok
    assert check.unused == ["z.other"]
    assert check_declared([], []).ok


def test_declared_reads_both_directions():
    class Module:
        DOWNGRADE_LOSES = ["z.sales"]

    assert losses.declared(Module, losses.DOWNGRADE) == ["z.sales"]
    assert losses.declared(Module, losses.UPGRADE) == []
    assert losses.covers(["z.sales"], "z.sales.note") and not losses.covers(["z.sales"], "z.sales_old")


def test_a_rebuild_to_a_coarser_merge_key_loses_rows_even_with_every_column_copied():
    replacing = table("z.sales", ("id", "UInt64"), ("note", "String"), engine="ReplacingMergeTree", order_by="id, note")
    coarser = table("z.sales", ("id", "UInt64"), ("note", "String"), engine="ReplacingMergeTree", order_by="id")
    lost = schema_losses({"z.sales": replacing}, {"z.sales": coarser}, replaced={"z.sales"},
                         copies={"z.sales": None})
    assert [(x.kind, x.target) for x in lost] == [(losses.MERGE, "z.sales")]
    assert "no longer tells rows apart by note" in lost[0].message
    assert schema_losses({"z.sales": coarser}, {"z.sales": replacing}, replaced={"z.sales"},
                         copies={"z.sales": None}) == []
