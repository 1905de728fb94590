"""The ClickHouse operations as Alembic operations: registered, rendered, placed on a cluster, recorded.

Rendered statements are checked with ClickHouse's own parser (``formatQuery``
on chDB, which parses ON CLUSTER and Replicated engines it cannot run).
"""
from __future__ import annotations

import io

import pytest
import sqlalchemy as sa
from alembic.operations import Operations, ops
from alembic.runtime.migration import MigrationContext
from clickhouse_sqlalchemy import engines, types
from clickhouse_sqlalchemy.drivers.native.base import ClickHouseDialect_native

import app.impl  # noqa: F401 - registers ClickHouseImpl and the operations
from app import operations
from app.cluster import Cluster
from app.cluster_rewrite import ClusterRewriteError
from app.engine import connect
from app.operations import definitions as d
from app.operations.render import Placement

# make test-fast: pure and unit tests (pyproject.toml, marker `fast`).
pytestmark = pytest.mark.fast

C = Cluster("zakaz")
COLUMNS = "event_id String\nd Date\n_ver UInt64"


@pytest.fixture
def format_query(db_url):
    with connect(db_url) as conn:
        yield lambda sql: " ".join(conn.exec_driver_sql("SELECT formatQuery(%(q)s)", {"q": sql}).scalar().split())


def offline(cluster: Cluster | None = None) -> tuple[MigrationContext, io.StringIO]:
    buf = io.StringIO()
    ctx = MigrationContext.configure(dialect=ClickHouseDialect_native(), opts={"as_sql": True, "output_buffer": buf})
    ctx.impl.cluster = cluster
    return ctx, buf


def statements(buf: io.StringIO) -> list[str]:
    return [s.strip() for s in buf.getvalue().split(";\n") if s.strip()]


def test_every_operation_is_on_op_and_alembic_keeps_its_own():
    for cls in d.ALL:
        name = next(n for n, v in vars(cls).items() if isinstance(v, classmethod))
        assert getattr(Operations, name).__globals__["op_cls"] is cls, name
    # alembic's own, with SQLAlchemy columns, are untouched (tests and autogenerate use them).
    for name, own in (("create_table", ops.CreateTableOp), ("drop_table", ops.DropTableOp),
                      ("add_column", ops.AddColumnOp), ("drop_column", ops.DropColumnOp),
                      ("execute", ops.ExecuteSQLOp)):
        assert getattr(Operations, name).__globals__["op_cls"] is own, name
    ctx, buf = offline()
    Operations(ctx).create_table("t", sa.Column("a", types.String), schema="z",
                                 info={"clickhouse_engine": engines.MergeTree(order_by=("a",))})
    assert statements(buf)[0].startswith("CREATE TABLE z.t")  # alembic's, not ours


def test_operations_describe_themselves_in_one_line():
    examples = [
        d.CreateDatabase("zakaz"), d.DropDatabase("zakaz"),
        d.CreateTable("zakaz.t", COLUMNS, "ReplacingMergeTree(_ver)", "event_id"), d.DropTable("zakaz.t"),
        d.AddColumn("zakaz.t", "c String"), d.DropColumn("zakaz.t", "c"), d.ModifyColumn("zakaz.t", "c UInt8"),
        d.RemoveColumnProperty("zakaz.t", "c", "CODEC"), d.ModifyTtl("zakaz.t", "d + toIntervalDay(1)"),
        d.RemoveTtl("zakaz.t"),
        d.CreateView("zakaz.v", "SELECT 1"), d.DropView("zakaz.v"),
        d.CreateMaterializedView("zakaz.mv", "SELECT 1 AS a", "MergeTree", "a"),
        d.SetViewSecurity("zakaz.v", "DEFINER", "u"), d.ExchangeTables("zakaz.a", "zakaz.b"),
        d.CopyRowsOnce("zakaz.t", "a", "SELECT 1"), d.RebuildTable("zakaz.t", COLUMNS, "MergeTree", "d", "event_id"),
        d.CreateRole("r"), d.DropRole("r"), d.Grant("INSERT, SELECT", "zakaz.*", "r"),
        d.Access("REVOKE SELECT\n ON zakaz.t FROM r"), d.Run("SYSTEM\nFLUSH LOGS"),
    ]
    assert {type(e) for e in examples} == set(d.ALL)
    for e in examples:
        text = e.describe()
        assert text and "\n" not in text, e


# --- placed on a cluster from the operation's structure ---------------------------------

RENDERED = [
    # (operation, the single-server statement, the cluster one): compared as ClickHouse parses them
    (d.CreateDatabase("zakaz"), "CREATE DATABASE IF NOT EXISTS zakaz",
     "CREATE DATABASE IF NOT EXISTS zakaz ON CLUSTER zakaz"),
    (d.CreateTable("zakaz.t", COLUMNS, "ReplacingMergeTree(_ver)", "event_id", "toYYYYMM(d)", "d + toIntervalDay(1)"),
     "CREATE TABLE IF NOT EXISTS zakaz.t (`event_id` String, `d` Date, `_ver` UInt64) ENGINE = "
     "ReplacingMergeTree(_ver) PARTITION BY toYYYYMM(d) ORDER BY event_id TTL d + toIntervalDay(1)",
     "CREATE TABLE IF NOT EXISTS zakaz.t ON CLUSTER zakaz (`event_id` String, `d` Date, `_ver` UInt64) ENGINE = "
     "ReplicatedReplacingMergeTree('/clickhouse/tables/{uuid}/{shard}', '{replica}', _ver) "
     "PARTITION BY toYYYYMM(d) ORDER BY event_id TTL d + toIntervalDay(1)"),
    (d.CreateTable("zakaz.l", "a UInt8", "Log", "tuple()"), None, None),
    (d.CreateTable("zakaz.k", "a UInt8 COMMENT 'it\\'s a' CODEC(ZSTD(1))\nb String", "MergeTree", "(a, b)",
                   primary_key="(a)"),
     "CREATE TABLE IF NOT EXISTS zakaz.k (`a` UInt8 COMMENT 'it\\'s a' CODEC(ZSTD(1)), `b` String) "
     "ENGINE = MergeTree PRIMARY KEY (a) ORDER BY (a, b)",
     "CREATE TABLE IF NOT EXISTS zakaz.k ON CLUSTER zakaz (`a` UInt8 COMMENT 'it\\'s a' CODEC(ZSTD(1)), "
     "`b` String) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{uuid}/{shard}', '{replica}') "
     "PRIMARY KEY (a) ORDER BY (a, b)"),
    (d.RemoveColumnProperty("zakaz.t", "c", "COMMENT"), "ALTER TABLE zakaz.t MODIFY COLUMN c REMOVE COMMENT",
     "ALTER TABLE zakaz.t ON CLUSTER zakaz MODIFY COLUMN c REMOVE COMMENT"),
    (d.ModifyTtl("zakaz.t", "d + toIntervalDay(1)"), "ALTER TABLE zakaz.t MODIFY TTL d + toIntervalDay(1)",
     "ALTER TABLE zakaz.t ON CLUSTER zakaz MODIFY TTL d + toIntervalDay(1)"),
    (d.RemoveTtl("zakaz.t"), "ALTER TABLE zakaz.t REMOVE TTL", "ALTER TABLE zakaz.t ON CLUSTER zakaz REMOVE TTL"),
    (d.AddColumn("zakaz.t", "c String DEFAULT 'x'", after="d"), "ALTER TABLE zakaz.t ADD COLUMN IF NOT EXISTS `c` "
     "String DEFAULT 'x' AFTER d", "ALTER TABLE zakaz.t ON CLUSTER zakaz ADD COLUMN IF NOT EXISTS `c` String "
     "DEFAULT 'x' AFTER d"),
    (d.DropColumn("zakaz.t", "c"), "ALTER TABLE zakaz.t DROP COLUMN IF EXISTS c",
     "ALTER TABLE zakaz.t ON CLUSTER zakaz DROP COLUMN IF EXISTS c"),
    (d.ModifyColumn("zakaz.t", "c UInt8"), "ALTER TABLE zakaz.t MODIFY COLUMN `c` UInt8",
     "ALTER TABLE zakaz.t ON CLUSTER zakaz MODIFY COLUMN `c` UInt8"),
    (d.CreateView("zakaz.v", "SELECT 'ENGINE = MergeTree' AS a"),
     "CREATE OR REPLACE VIEW zakaz.v AS SELECT 'ENGINE = MergeTree' AS a",
     "CREATE OR REPLACE VIEW zakaz.v ON CLUSTER zakaz AS SELECT 'ENGINE = MergeTree' AS a"),
    (d.DropView("zakaz.v"), "DROP VIEW IF EXISTS zakaz.v SYNC", "DROP VIEW IF EXISTS zakaz.v ON CLUSTER zakaz SYNC"),
    (d.CreateMaterializedView("zakaz.mv", "SELECT 1 AS a", "SummingMergeTree", "a", "tuple()"),
     "CREATE MATERIALIZED VIEW IF NOT EXISTS zakaz.mv ENGINE = SummingMergeTree PARTITION BY tuple() "
     "ORDER BY a AS SELECT 1 AS a",
     "CREATE MATERIALIZED VIEW IF NOT EXISTS zakaz.mv ON CLUSTER zakaz ENGINE = ReplicatedSummingMergeTree("
     "'/clickhouse/tables/{uuid}/{shard}', '{replica}') PARTITION BY tuple() ORDER BY a AS SELECT 1 AS a"),
    (d.ExchangeTables("zakaz.a", "zakaz.b"), "EXCHANGE TABLES zakaz.a AND zakaz.b",
     "EXCHANGE TABLES zakaz.a AND zakaz.b ON CLUSTER zakaz"),
    (d.DropTable("zakaz.t"), "DROP TABLE IF EXISTS zakaz.t SYNC",
     "DROP TABLE IF EXISTS zakaz.t ON CLUSTER zakaz SYNC"),
    (d.DropDatabase("zakaz"), "DROP DATABASE IF EXISTS zakaz SYNC",
     "DROP DATABASE IF EXISTS zakaz ON CLUSTER zakaz SYNC"),
    (d.CreateRole("r"), "CREATE ROLE IF NOT EXISTS r", "CREATE ROLE IF NOT EXISTS r ON CLUSTER zakaz"),
    (d.Grant("INSERT, SELECT", "zakaz.*", "r"), "GRANT INSERT, SELECT ON zakaz.* TO r",
     "GRANT ON CLUSTER zakaz INSERT, SELECT ON zakaz.* TO r"),
    (d.DropRole("r"), "DROP ROLE IF EXISTS r", "DROP ROLE IF EXISTS r ON CLUSTER zakaz"),
]


@pytest.mark.parametrize("operation, single, clustered", RENDERED, ids=[type(r[0]).__name__ for r in RENDERED])
def test_each_operation_renders_for_one_server_and_for_a_cluster(operation, single, clustered, format_query):
    for cluster, expected in ((None, single), (C, clustered)):
        ctx, buf = offline(cluster)
        Operations(ctx).invoke(operation)
        [sql] = statements(buf)
        formatted = format_query(sql)
        if expected is not None:
            assert formatted == format_query(expected)
        elif cluster is not None:  # a Log table: ON CLUSTER, never Replicated
            assert " ON CLUSTER zakaz " in formatted and "ENGINE = Log" in formatted
        assert ctx.impl.operations == [operation]


def test_a_replicated_database_takes_no_on_cluster_and_gives_the_keeper_path(format_query):
    ctx, buf = offline(C.with_replicated_databases({"zakaz"}))
    ctx.impl.default_database = "zakaz"
    assert ctx.impl.placement == Placement(C.with_replicated_databases({"zakaz"}), "zakaz")
    op = Operations(ctx)
    op.create_table_if_not_exists("zakaz.t", COLUMNS, engine="ReplacingMergeTree(_ver)", order_by="event_id")
    op.create_table_if_not_exists("meta.t", COLUMNS, engine="MergeTree", order_by="event_id")
    op.add_column_if_not_exists("t", "c String")  # unqualified: the URL's database
    op.create_database("zakaz")  # the database itself is not replicated by itself
    op.grant("SELECT", "zakaz.t", to="r")  # nor are access entities
    out = [format_query(s) for s in statements(buf)]
    assert "ON CLUSTER" not in out[0] and "ENGINE = ReplicatedReplacingMergeTree(_ver)" in out[0]
    assert "meta.t ON CLUSTER zakaz" in out[1] and "ReplicatedMergeTree('/clickhouse/tables/{uuid}/{shard}'" in out[1]
    assert out[2] == format_query("ALTER TABLE t ADD COLUMN IF NOT EXISTS c String")
    assert out[3] == format_query("CREATE DATABASE IF NOT EXISTS zakaz ON CLUSTER 'zakaz'")
    assert out[4] == format_query("GRANT ON CLUSTER 'zakaz' SELECT ON zakaz.t TO r")


def test_data_moving_operations_wait_for_replicas_and_copy_on_this_node(format_query):
    ctx, buf = offline(C)
    with Operations.context(ctx) as op:
        op.copy_rows_once("zakaz.t", "a", "SELECT 1")
        op.rebuild_table("zakaz.t", COLUMNS, engine="MergeTree", order_by="d", copy="event_id, d")
    assert statements(buf) == [
        "SYSTEM SYNC REPLICA zakaz.t",
        "INSERT INTO zakaz.t (a)\nSELECT * FROM (SELECT 1)\nWHERE (SELECT count() FROM zakaz.t) = 0\n"
        "SETTINGS optimize_on_insert = 0",
        "DROP TABLE IF EXISTS zakaz.t__rebuild ON CLUSTER 'zakaz' SYNC",
        "CREATE TABLE zakaz.t__rebuild ON CLUSTER 'zakaz'\n(\n    event_id String,\n    d Date,\n    _ver UInt64\n)\n"
        "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{uuid}/{shard}', '{replica}')\nORDER BY d",
        "SYSTEM SYNC REPLICA zakaz.t",
        "INSERT INTO zakaz.t__rebuild (event_id, d) SELECT event_id, d FROM zakaz.t SETTINGS optimize_on_insert = 0",
        "SYSTEM SYNC REPLICA ON CLUSTER 'zakaz' zakaz.t__rebuild",
        "EXCHANGE TABLES zakaz.t AND zakaz.t__rebuild ON CLUSTER 'zakaz'",
        "DROP TABLE IF EXISTS zakaz.t__rebuild ON CLUSTER 'zakaz' SYNC",
    ]
    for sql in statements(buf):
        format_query(sql)  # each parses as ClickHouse
    assert [type(o) for o in ctx.impl.operations] == [d.CopyRowsOnce, d.RebuildTable]  # not its statements


def test_raw_sql_is_placed_by_the_guard_which_refuses_what_it_does_not_know(format_query):
    ctx, buf = offline(C)
    op = Operations(ctx)
    op.run("ALTER TABLE zakaz.t MATERIALIZE COLUMN c SETTINGS mutations_sync = 2")
    op.access("GRANT SELECT ON zakaz.t TO r")
    assert [format_query(s) for s in statements(buf)] == [format_query(s) for s in (
        "ALTER TABLE zakaz.t ON CLUSTER 'zakaz' MATERIALIZE COLUMN c SETTINGS mutations_sync = 2",
        "GRANT ON CLUSTER 'zakaz' SELECT ON zakaz.t TO r")]
    with pytest.raises(ClusterRewriteError):
        op.run("UNDROP TABLE zakaz.t")


def test_the_operations_of_a_step_are_kept_online_and_reset_per_step(db_url):
    with connect(db_url) as conn:
        ctx = MigrationContext.configure(conn)
        op = Operations(ctx)
        ctx.impl.reset_step("0001")
        op.create_database("z")
        op.create_table_if_not_exists("z.t", COLUMNS, engine="MergeTree", order_by="d")
        op.run("INSERT INTO z.t (event_id) VALUES ('a')")
        assert [o.describe() for o in ctx.impl.operations] == [
            "create database z", "create table z.t (MergeTree)", "run INSERT INTO z.t (event_id) VALUES ('a')"]
        assert ctx.impl.statements == 3
        ctx.impl.reset_step("0002")
        assert ctx.impl.operations == []
        assert conn.exec_driver_sql("SELECT count() FROM z.t").scalar() == 1


def test_the_functions_older_revisions_import_are_the_operations():
    ctx, buf = offline()
    with Operations.context(ctx):
        operations.create_table("zakaz.t", COLUMNS, engine="MergeTree", order_by="d")
        operations.drop_column("zakaz.t", "d")
        operations.create_view("zakaz.v", "SELECT 1")
    assert [type(o) for o in ctx.impl.operations] == [d.CreateTable, d.DropColumn, d.CreateView]
    assert statements(buf)[1] == "ALTER TABLE zakaz.t DROP COLUMN IF EXISTS d"


def test_access_operations_are_counted_checked_and_skipped_on_the_embedded_engine(db_url):
    with connect(db_url) as conn:
        ctx = MigrationContext.configure(conn)
        op = Operations(ctx)
        ctx.impl.reset_step("0010")
        op.create_role("zakaz_reader")
        op.grant("SELECT", "zakaz.t", to="zakaz_reader")
        assert ctx.impl.statements == 2  # a failure injected at either still hits it
        assert ctx.impl.skipped == ["CREATE ROLE IF NOT EXISTS zakaz_reader",
                                    "GRANT SELECT ON zakaz.t TO zakaz_reader"]


# The database line_url (tests/conftest.py) drops on the server before and after.
LINE_DATABASE = "z"


def test_removing_a_codec_comment_or_ttl_twice_is_safe_online(line_url):
    """ClickHouse refuses to REMOVE what is not there (code 36): a re-run skips what is gone."""
    with connect(line_url) as conn:
        ctx = MigrationContext.configure(conn)
        op = Operations(ctx)
        op.create_database("z")
        op.create_table_if_not_exists("z.t", "c String COMMENT 'x' CODEC(ZSTD(1))\nd Date", engine="MergeTree",
                                      order_by="d", ttl="d + toIntervalYear(1)")
        for _ in range(2):
            op.remove_column_property("z.t", "c", "CODEC")
            op.remove_column_property("z.t", "c", "COMMENT")
            op.remove_ttl("z.t")
        assert conn.exec_driver_sql("SELECT compression_codec, comment FROM system.columns "
                                    "WHERE database = 'z' AND table = 't' AND name = 'c'").one() == ("", "")
        assert " TTL " not in conn.exec_driver_sql(
            "SELECT engine_full FROM system.tables WHERE database = 'z' AND name = 't'").scalar()
        # Which is what the skip is for: the statement itself fails a second time.
        with pytest.raises(Exception, match="doesn't have"):
            conn.exec_driver_sql("ALTER TABLE z.t MODIFY COLUMN c REMOVE CODEC")
