"""app.snapshot beyond the schema model, app.schema_diff, and app.fingerprint's probe, on real chDB."""
from __future__ import annotations

import pytest

from app.engine import connect
from app.fingerprint import DataProbe, unstored_columns
from app.schema import MATERIALIZED_VIEW, TABLE, VIEW, Column, DbObject
from app.lint.replay_rules import _restore_difference
from app.schema_diff import ASPECTS, Difference, diff_databases, diff_schemas
from app.verify import finding
from app.snapshot import take_snapshot

pytestmark = pytest.mark.fast


@pytest.fixture
def conn(db_url):
    with connect(db_url) as c:
        yield c


def run(conn, *statements):
    for sql in statements:
        conn.exec_driver_sql(sql)


# --- the neutral diff (pure) ------------------------------------------------------------

T = DbObject("z.t", TABLE, (Column("a", "Int32"), Column("b", "String", "'x'")), engine="MergeTree", order_by="a")
V = DbObject("z.v", VIEW, (Column("a", "Int32"),), security="INVOKER")


def test_diff_of_equal_schemas_is_empty():
    assert diff_schemas({"z.t": T, "z.v": V}, {"z.t": T, "z.v": V}) == []


def test_diff_names_each_aspect_with_both_sides():
    after = DbObject("z.t", TABLE, (Column("b", "String", "'y'"), Column("a", "Int64"), Column("c", "UInt8")),
                     engine="ReplacingMergeTree", order_by="a")
    assert diff_schemas({"z.t": T}, {"z.t": after}) == [
        Difference("z.t", "", "engine", "MergeTree", "ReplacingMergeTree"),
        Difference("z.t", "a", "type", "Int32", "Int64"),
        Difference("z.t", "b", "default", "'x'", "'y'"),
        Difference("z.t", "c", "column", "", "UInt8"),
        Difference("z.t", "", "column_order", "a, b", "b, a"),
    ]


def test_diff_names_codec_comment_and_primary_key():
    after = DbObject("z.t", TABLE, (Column("a", "Int32", "", "ZSTD(1)"), Column("b", "String", "'x'", "", "note")),
                     engine="MergeTree", order_by="a", primary_key="a")
    assert diff_schemas({"z.t": T}, {"z.t": after}) == [
        Difference("z.t", "", "primary_key", "", "a"),
        Difference("z.t", "a", "codec", "", "ZSTD(1)"),
        Difference("z.t", "b", "comment", "", "note"),
    ]


@pytest.mark.parametrize("aspect, label", [("primary_key", "PRIMARY KEY"), ("codec", "CODEC"),
                                           ("comment", "COMMENT")])
def test_verify_and_lint_word_every_aspect(aspect, label):
    assert aspect in ASPECTS
    d = Difference("z.t", "" if aspect == "primary_key" else "a", aspect, "x", "")
    target = "z.t" if aspect == "primary_key" else "z.t.a"
    assert str(finding(d, {"z.t": T})) == f"{label} of {target}: expected x, found (none)"
    assert _restore_difference(d) == f"{label} of {target}: was x, now (none)"


def test_diff_presence_and_scope():
    other = DbObject("other.t", TABLE, ())
    diffs = diff_schemas({"z.t": T}, {"z.v": V, "other.t": other})
    # other.t is outside the databases `before` has objects in: not counted.
    assert diffs == [Difference("z.t", "", "object", TABLE, ""), Difference("z.v", "", "object", "", VIEW)]
    assert diffs[0].removed and diffs[1].added
    assert diff_schemas({"z.t": T}, {"other.t": other}, databases=["other"])[0].added


def test_diff_of_views_compares_column_names_only_and_security_where_stated():
    typed = DbObject("z.v", VIEW, (Column("a", "Nullable(Int32)"), Column("n", "UInt64")), security="DEFINER")
    assert diff_schemas({"z.v": V}, {"z.v": typed}) == [
        Difference("z.v", "", "security", "INVOKER", "DEFINER"),
        Difference("z.v", "n", "column", "", "n"),
    ]
    unstated = DbObject("z.v", VIEW, (Column("a", ""),))
    assert diff_schemas({"z.v": unstated}, {"z.v": typed})[0].aspect == "column"


def test_diff_of_another_kind_is_one_difference():
    mv = DbObject("z.t", MATERIALIZED_VIEW, (Column("x", "Int8"),))
    assert diff_schemas({"z.t": T}, {"z.t": mv}) == [Difference("z.t", "", "kind", TABLE, MATERIALIZED_VIEW)]


def test_diff_of_databases():
    assert diff_databases({"a", "b"}, {"b", "c"}) == [
        Difference("a", "", "database", "a", ""), Difference("c", "", "database", "", "c")]


# --- the snapshot's extras ------------------------------------------------------------------

def test_snapshot_has_databases_definitions_and_row_counts_and_no_bookkeeping(conn):
    run(conn,
        "CREATE DATABASE zakaz", "CREATE DATABASE bi",
        "CREATE TABLE zakaz.t (a Int32) ENGINE = MergeTree ORDER BY a",
        "INSERT INTO zakaz.t VALUES (1), (2)",
        "CREATE VIEW zakaz.v SQL SECURITY INVOKER AS SELECT a FROM zakaz.t",
        "CREATE TABLE zakaz.zakaz_schema_ledger (x Int8) ENGINE = Memory")
    snap = take_snapshot(conn, ["zakaz", "bi", "meta"])
    assert snap.databases == {"zakaz", "bi"}, "an empty database is part of the snapshot"
    assert sorted(snap.schema) == ["zakaz.t", "zakaz.v"], "the ledger is not the warehouse's"
    assert snap.total_rows == {"zakaz.t": 2}
    assert snap.queries == {"zakaz.v": "SELECT a FROM zakaz.t"}
    assert snap.definitions["zakaz.v"] == "SELECT a FROM zakaz.t"
    assert "SQL SECURITY" in snap.creates["zakaz.v"] and snap.schema["zakaz.v"].security == "INVOKER"
    assert snap.definitions["zakaz.t"].startswith("CREATE TABLE zakaz.t")
    assert snap.uuids["zakaz.t"] != snap.uuids["zakaz.v"]
    assert "default" in take_snapshot(conn).databases, "by default every non-system database"


def test_snapshot_parts_tell_which_columns_are_not_stored(conn):
    run(conn, "CREATE DATABASE zakaz",
        "CREATE TABLE zakaz.t (a Int32) ENGINE = MergeTree ORDER BY a",
        "INSERT INTO zakaz.t VALUES (1)",
        "ALTER TABLE zakaz.t ADD COLUMN loaded DateTime DEFAULT now()",
        "INSERT INTO zakaz.t VALUES (2, now())")
    snap = take_snapshot(conn, ["zakaz"], parts=True)
    assert len(snap.parts["zakaz.t"]) == 2
    assert snap.stored[("zakaz.t", "a")] == 2 and snap.stored[("zakaz.t", "loaded")] == 1
    assert unstored_columns(snap) == {"zakaz.t.loaded": "now()"}


# --- the data probe ------------------------------------------------------------------------

def test_probe_reads_a_table_again_only_when_its_parts_change(conn):
    run(conn, "CREATE DATABASE zakaz",
        "CREATE TABLE zakaz.t (a Int32, s String) ENGINE = MergeTree ORDER BY a",
        "CREATE TABLE zakaz.u (a Int32) ENGINE = MergeTree ORDER BY a",
        "INSERT INTO zakaz.t VALUES (1, 'x'), (2, 'y')",
        "INSERT INTO zakaz.u VALUES (1)")
    probe = DataProbe(conn)
    sent: list[str] = []
    from sqlalchemy import event

    event.listen(conn, "before_cursor_execute", lambda *a: sent.append(a[2]))
    first = probe.take(take_snapshot(conn, ["zakaz"], parts=True))
    assert first.prints["zakaz.t"][0] == 2 and first.prints["zakaz.u"][0] == 1
    reads = [s for s in sent if "cityHash64" in s]
    assert len(reads) == 1 and "zakaz`.`t" in reads[0] and "zakaz`.`u" in reads[0]

    sent.clear()
    run(conn, "INSERT INTO zakaz.u VALUES (2)")
    second = probe.take(take_snapshot(conn, ["zakaz"], parts=True))
    reads = [s for s in sent if "cityHash64" in s]
    assert len(reads) == 1 and "zakaz`.`u" in reads[0] and "zakaz`.`t" not in reads[0]
    assert second.prints["zakaz.t"] == first.prints["zakaz.t"] and second.prints["zakaz.u"][0] == 2


def test_probe_sees_a_table_created_again_with_other_rows(conn):
    """Part names restart in a new table: its uuid tells it apart."""
    run(conn, "CREATE DATABASE zakaz",
        "CREATE TABLE zakaz.t (a Int32) ENGINE = MergeTree ORDER BY a",
        "INSERT INTO zakaz.t VALUES (1)")
    probe = DataProbe(conn)
    before = probe.take(take_snapshot(conn, ["zakaz"], parts=True))
    run(conn, "DROP TABLE zakaz.t SYNC",
        "CREATE TABLE zakaz.t (a Int32) ENGINE = MergeTree ORDER BY a",
        "INSERT INTO zakaz.t VALUES (5)")
    after = probe.take(take_snapshot(conn, ["zakaz"], parts=True))
    assert before.prints["zakaz.t"][0] == after.prints["zakaz.t"][0] == 1
    assert before.prints["zakaz.t"][1] != after.prints["zakaz.t"][1]


def test_probe_sees_rows_rewritten_in_place(conn):
    run(conn, "CREATE DATABASE zakaz",
        "CREATE TABLE zakaz.t (a Int32, s String) ENGINE = MergeTree ORDER BY a",
        "INSERT INTO zakaz.t VALUES (1, 'x')")
    probe = DataProbe(conn)
    before = probe.take(take_snapshot(conn, ["zakaz"], parts=True))
    run(conn, "ALTER TABLE zakaz.t UPDATE s = 'changed' WHERE 1 SETTINGS mutations_sync = 2")
    after = probe.take(take_snapshot(conn, ["zakaz"], parts=True))
    assert before.prints["zakaz.t"][1] != after.prints["zakaz.t"][1]


def test_probe_reads_tables_without_parts_every_time(conn):
    run(conn, "CREATE DATABASE zakaz", "CREATE TABLE zakaz.m (a Int32) ENGINE = Memory",
        "INSERT INTO zakaz.m VALUES (1)")
    probe = DataProbe(conn)
    before = probe.take(take_snapshot(conn, ["zakaz"], parts=True))
    run(conn, "INSERT INTO zakaz.m VALUES (2)")
    assert before.prints["zakaz.m"][0] == 1
    assert probe.take(take_snapshot(conn, ["zakaz"], parts=True)).prints["zakaz.m"][0] == 2
