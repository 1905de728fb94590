"""The two ClickHouse lines the embedded engine runs on, and what differs between them.

`make test` runs the suite on chdb-core 26.x (current ClickHouse), `make
test-compat` runs it again on PyPI chdb 2.1.1 (ClickHouse 24.8, production's
line).  These tests prove which line a run was on, that a schema snapshot is
the same on both although each line prints definitions its own way, and pin
what app.dbapi does so that chdb 2.x behaves like a server.
"""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap

import pytest

from app import dbapi
from app.engine import connect
from app.schema import TABLE, VIEW, Column, DbObject, parse_views, snapshot_schema
from app.verify import compare_schema

EXPECT_ENV = "ZAKAZ_EXPECT_CLICKHOUSE"


def line_of(version: str) -> str:
    return version.split(".", 1)[0]


def run_python(script: str) -> subprocess.CompletedProcess:
    # A separate process: what is checked here could crash or hang the
    # engine, and must not take the test run down with it.
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)],
                          capture_output=True, text=True, timeout=120)


# --- which line this run is on ---------------------------------------------------

def test_suite_runs_on_the_clickhouse_line_it_claims(query):
    expected = os.environ.get(EXPECT_ENV)
    if not expected:
        pytest.skip(f"{EXPECT_ENV} is unset: `make test` sets it to 26. and `make test-compat` to 24.8")
    version = query("SELECT version()")[0][0]
    assert version.startswith(expected), f"expected ClickHouse {expected}*, the engine is {version}"
    assert dbapi.engine_line() == ("chdb2" if version.startswith("24.") else "chdb-core")


# --- one normalised schema, two ways of printing it --------------------------------

DDL = (
    "CREATE DATABASE p",
    "CREATE TABLE p.one (event_id String, ts DateTime DEFAULT (now()), c String DEFAULT ('x'), "
    "n UInt32 DEFAULT (1 + 2)) ENGINE = MergeTree ORDER BY (event_id)",
    "CREATE TABLE p.two (d Date, event_id String, _ver UInt64) ENGINE = ReplacingMergeTree(_ver) "
    "PARTITION BY (toYYYYMM(d), event_id) ORDER BY (d, event_id) TTL d + INTERVAL 30 DAY",
    "CREATE TABLE p.three (a UInt8) ENGINE = MergeTree PARTITION BY tuple() ORDER BY tuple()",
    "CREATE VIEW p.v AS SELECT event_id, (SELECT max(ts) FROM p.one) AS last_ts, "
    "(SELECT count() FROM p.one) AS n FROM p.one",
)

# What system.tables / system.columns print for DDL, measured on chdb 2.1.1
# (24.8.4.1) and chdb-core 26.9 (26.9.2.1).  Only the differences are listed.
RAW = {
    "24": {
        "one.sorting_key": "event_id",
        "one.ts.default": "now()",
        "one.c.default": "'x'",
        "one.n.default": "1 + 2",
        "v.last_ts.type": "DateTime",
        "v.n.type": "UInt64",
    },
    "26": {
        "one.sorting_key": "(event_id)",
        "one.ts.default": "(now())",
        "one.c.default": "('x')",
        "one.n.default": "(1 + 2)",
        "v.last_ts.type": "Nullable(DateTime)",
        "v.n.type": "Nullable(UInt64)",
    },
}

EXPECTED_TABLES = {
    "p.one": DbObject(
        "p.one", TABLE,
        (Column("event_id", "String"), Column("ts", "DateTime", "now()"),
         Column("c", "String", "'x'"), Column("n", "UInt32", "1 + 2")),
        engine="MergeTree", order_by="event_id",
    ),
    "p.two": DbObject(
        "p.two", TABLE,
        (Column("d", "Date"), Column("event_id", "String"), Column("_ver", "UInt64")),
        engine="ReplacingMergeTree(_ver)", order_by="d, event_id",
        partition_by="toYYYYMM(d), event_id", ttl="d + toIntervalDay(30)",
    ),
    "p.three": DbObject("p.three", TABLE, (Column("a", "UInt8"),), engine="MergeTree"),
}


def test_snapshot_is_identical_on_both_lines_though_each_prints_it_differently(db_url):
    with connect(db_url) as conn:
        for sql in DDL:
            conn.exec_driver_sql(sql)
        version = conn.exec_driver_sql("SELECT version()").scalar()
        tables = dict(conn.exec_driver_sql(
            "SELECT name, sorting_key FROM system.tables WHERE database = 'p'").all())
        columns = {
            (t, n): (ty, d) for t, n, ty, d in conn.exec_driver_sql(
                "SELECT table, name, type, default_expression FROM system.columns WHERE database = 'p'").all()
        }
        live = snapshot_schema(conn, ["p"])

    raw = RAW.get(line_of(version))
    if raw is None:
        pytest.fail(f"ClickHouse {version} is neither line measured here (24.8, 26.x): measure and add it")
    printed = {
        "one.sorting_key": tables["one"],
        "one.ts.default": columns["one", "ts"][1],
        "one.c.default": columns["one", "c"][1],
        "one.n.default": columns["one", "n"][1],
        "v.last_ts.type": columns["v", "last_ts"][0],
        "v.n.type": columns["v", "n"][0],
    }
    assert printed == raw, "this line prints DDL differently than measured: the normalisation may be stale"

    # The same normalised objects on either line.
    assert {name: live[name] for name in EXPECTED_TABLES} == EXPECTED_TABLES
    assert live["p.v"].kind == VIEW and live["p.v"].column_names == ("event_id", "last_ts", "n")
    expected = dict(EXPECTED_TABLES)
    expected.update({o.name: o for o in parse_views("p.v: event_id, last_ts, n", VIEW)})
    assert compare_schema(live, expected) == []


# --- what app.dbapi makes chdb 2.x do like a server (checked on both lines) ----------

def test_default_database_keeps_its_tables_across_connections_and_processes(db_url):
    with connect(db_url) as conn:
        conn.exec_driver_sql("CREATE TABLE default.kept (a UInt8) ENGINE = MergeTree ORDER BY a")
        conn.exec_driver_sql("INSERT INTO default.kept VALUES (7)")
        assert conn.exec_driver_sql("SELECT currentDatabase()").scalar() == "default"
    with connect(db_url) as conn:
        assert conn.exec_driver_sql("SELECT a FROM kept").all() == [(7,)]
    result = run_python(f"""
        from app.engine import connect
        with connect({db_url!r}) as conn:
            print(conn.exec_driver_sql("SELECT sum(a) FROM default.kept").scalar())
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "7"


def test_use_belongs_to_the_connection_that_ran_it(db_url):
    with connect(db_url) as first:
        first.exec_driver_sql("CREATE DATABASE other")
        first.exec_driver_sql("USE other")
        with connect(db_url) as second:
            assert second.exec_driver_sql("SELECT currentDatabase()").scalar() == "default"
        assert first.exec_driver_sql("SELECT currentDatabase()").scalar() == "other"


def test_drops_after_a_materialized_view_drop_neither_hang_nor_fail(tmp_path):
    # On chdb 2.1 a plain DROP of a materialized view made the next DROP
    # crash inside the engine and sleep forever, and DROP ... SYNC answered
    # Code 341 after dropping only the view's inner table.
    url = f"clickhouse+chdb:///default?path={tmp_path / 'db'}"
    result = run_python(f"""
        from app.engine import connect
        statements = [
            "CREATE DATABASE d",
            "CREATE TABLE d.t (a UInt8) ENGINE = MergeTree ORDER BY a",
            "CREATE MATERIALIZED VIEW d.mv ENGINE = MergeTree ORDER BY a AS SELECT a FROM d.t",
            "INSERT INTO d.t VALUES (1)",
            "CREATE VIEW d.v AS SELECT a FROM d.mv",
            "DROP TABLE d.mv",
            "DROP VIEW d.v",
            "DROP TABLE IF EXISTS d.t SYNC",
            "CREATE TABLE d.t (a UInt8) ENGINE = MergeTree ORDER BY a",
            "DROP TABLE d.t",
            "CREATE TABLE d.t (a UInt8) ENGINE = MergeTree ORDER BY a",
        ]
        with connect({url!r}) as conn:
            for sql in statements:
                conn.exec_driver_sql(sql)
            print(conn.exec_driver_sql(
                "SELECT groupArray(name) FROM (SELECT name FROM system.tables WHERE database = 'd' ORDER BY name)"
            ).scalar())
            conn.exec_driver_sql("DROP DATABASE d")
            print(conn.exec_driver_sql("SELECT count() FROM system.databases WHERE name = 'd'").scalar())
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["['t']", "0"]


def test_dropping_the_current_database_leaves_the_connection_usable(tmp_path):
    # On chdb 2.1 every later statement on the path failed at start-up, and
    # the process crashed at exit.
    url = f"clickhouse+chdb:///default?path={tmp_path / 'db'}"
    result = run_python(f"""
        from app.engine import connect
        with connect({url!r}) as conn:
            conn.exec_driver_sql("CREATE DATABASE gone")
            conn.exec_driver_sql("USE gone")
            conn.exec_driver_sql("DROP DATABASE gone")
            conn.exec_driver_sql("CREATE TABLE default.after (a UInt8) ENGINE = Memory")
            print(conn.exec_driver_sql("SELECT count() FROM default.after").scalar())
        with connect({url!r}) as conn:
            print(conn.exec_driver_sql("SELECT 1").scalar())
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["0", "1"]


def test_memory_url_keeps_state_between_statements():
    with connect("clickhouse+chdb:///default") as conn:
        conn.exec_driver_sql("CREATE TABLE default.m (a UInt8) ENGINE = MergeTree ORDER BY a")
        conn.exec_driver_sql("INSERT INTO default.m VALUES (1), (2)")
        assert conn.exec_driver_sql("SELECT count() FROM default.m").scalar() == 2


def test_datetime_parameters_fit_datetime_and_datetime64_columns(db_url):
    # 24.8 rejects '... .000000' for a DateTime column; 26.x drops the fraction.
    with connect(db_url) as conn:
        conn.exec_driver_sql("CREATE TABLE default.t (a DateTime, b DateTime64(6)) ENGINE = MergeTree ORDER BY a")
        conn.exec_driver_sql("INSERT INTO default.t VALUES (%(a)s, %(b)s)",
                             {"a": dt.datetime(2026, 1, 2, 3, 4, 5), "b": dt.datetime(2026, 1, 2, 3, 4, 5, 123456)})
        assert conn.exec_driver_sql("SELECT a, b FROM default.t").all() == [
            (dt.datetime(2026, 1, 2, 3, 4, 5), dt.datetime(2026, 1, 2, 3, 4, 5, 123456))]


def test_nested_exception_text_of_24_8_gives_one_clean_message():
    # As chdb 2.1.1 reports a bad DateTime literal in INSERT ... VALUES.
    text = ("Code: 6. DB::Exception: Code: 6. DB::Exception: Cannot parse string "
            "'2026-11-24 08:18:22.000000' as DateTime: syntax error at position 19. (CANNOT_PARSE_TEXT)")
    error = dbapi.error_from_chdb(RuntimeError(text))
    assert isinstance(error, dbapi.DataError) and error.code == 6
    assert str(error) == ("Code: 6. Cannot parse string '2026-11-24 08:18:22.000000' as DateTime: "
                          "syntax error at position 19. (CANNOT_PARSE_TEXT)")
