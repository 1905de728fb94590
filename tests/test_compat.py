"""The two ClickHouse lines the framework meets, and what differs between them.

The embedded engine is chdb-core 26.x (current ClickHouse); production, and
the server and cluster suites (tests/server_support.py), run ClickHouse 24.8.
These tests pin which line the embedded engine is, that a schema snapshot is
the same on both lines although each prints definitions its own way, and that
parameters are written in a form both accept.
"""
from __future__ import annotations

import datetime as dt

import pytest

from app.sql import quote_literal
from app.engine import connect
from app.schema import TABLE, VIEW, Column, DbObject, parse_views
from app.snapshot import snapshot_schema
from app.verify import compare_schema

# make test-fast: pure and unit tests (pyproject.toml, marker `fast`).
pytestmark = pytest.mark.fast


def line_of(version: str) -> str:
    return version.split(".", 1)[0]


# --- which line the embedded engine is ------------------------------------------

def test_embedded_engine_is_clickhouse_26_or_later(query):
    version = query("SELECT version()")[0][0]
    major = int(line_of(version))
    assert major >= 26, f"the embedded engine is ClickHouse {version}: chdb-core 26.x or later is expected"


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


# The database line_url (tests/conftest.py) drops on the server before and after.
LINE_DATABASE = "p"


def test_snapshot_is_identical_on_both_lines_though_each_prints_it_differently(line_url):
    with connect(line_url) as conn:
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


# --- parameters both lines accept -------------------------------------------------------

def test_datetime_parameters_fit_datetime_and_datetime64_columns(db_url):
    # 24.8 rejects '... .000000' for a DateTime column; 26.x drops the fraction.
    assert quote_literal(dt.datetime(2026, 1, 2, 3, 4, 5)) == "'2026-01-02 03:04:05'"
    assert quote_literal(dt.datetime(2026, 1, 2, 3, 4, 5, 123456)) == "'2026-01-02 03:04:05.123456'"
    with connect(db_url) as conn:
        conn.exec_driver_sql("CREATE TABLE default.t (a DateTime, b DateTime64(6)) ENGINE = MergeTree ORDER BY a")
        conn.exec_driver_sql("INSERT INTO default.t VALUES (%(a)s, %(b)s)",
                             {"a": dt.datetime(2026, 1, 2, 3, 4, 5), "b": dt.datetime(2026, 1, 2, 3, 4, 5, 123456)})
        assert conn.exec_driver_sql("SELECT a, b FROM default.t").all() == [
            (dt.datetime(2026, 1, 2, 3, 4, 5), dt.datetime(2026, 1, 2, 3, 4, 5, 123456))]
