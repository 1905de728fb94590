"""The clickhouse+chdb dialect and its DB-API adapter, on real chDB."""
from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap
from decimal import Decimal

import pytest
import sqlalchemy as sa

from app import dbapi
from app.engine import ConnectionFailed, connect

# make test-fast: pure and unit tests (pyproject.toml, marker `fast`).
pytestmark = pytest.mark.fast


def test_parameters_and_result_types(db_url):
    with connect(db_url) as conn:
        row = conn.execute(sa.text(
            "SELECT :s AS s, :n AS n, :d AS d, 'lit%' AS pct, "
            "toDecimal64(12.34, 2) AS dec, toDateTime64('2026-01-02 03:04:05.123456', 6) AS ts, "
            "['a', 'b'] AS arr, CAST(NULL AS Nullable(UInt32)) AS nul, toUInt64(18446744073709551615) AS big"
        ), {"s": "it's a \\ test", "n": 42, "d": dt.date(2026, 1, 2)}).one()
        assert row.s == "it's a \\ test"
        assert row.n == 42
        assert row.d == "2026-01-02"  # a date parameter is a literal string in ClickHouse
        assert row.pct == "lit%"
        assert row.dec == Decimal("12.34")
        assert row.ts == dt.datetime(2026, 1, 2, 3, 4, 5, 123456)
        assert row.arr == ["a", "b"]
        assert row.nul is None
        assert row.big == 18446744073709551615
        cursor = conn.connection.dbapi_connection.cursor()
        cursor.execute("SELECT toLowCardinality('x') AS lc, toFixedString('RUB', 3) AS c")
        assert [d[1] for d in cursor.description] == ["LowCardinality(String)", "FixedString(3)"]


def test_percent_is_interpolated_only_with_parameters(db_url):
    probe = "SELECT 'x%y' LIKE 'x%', formatDateTime(toDate('2026-11-05'), '%Y-%m')"
    with connect(db_url) as conn:
        assert conn.exec_driver_sql(probe).one() == (1, "2026-11")
        assert conn.exec_driver_sql(probe, {}).one() == (1, "2026-11")
        assert conn.execute(sa.text(probe)).one() == (1, "2026-11")  # compiled: the compiler doubles %
        assert conn.exec_driver_sql("SELECT %(p)s, 'x%%' LIKE 'x%%'", {"p": "50%"}).one() == ("50%", 1)
        cursor = conn.connection.dbapi_connection.cursor()
        cursor.execute("SELECT '%s%%'")
        assert cursor.fetchone() == ("%s%%",)


def test_errors_carry_clickhouse_code(db_url):
    with connect(db_url) as conn:
        with pytest.raises(sa.exc.ProgrammingError) as info:
            conn.exec_driver_sql("SELECT * FROM zakaz.no_such_table")
        assert isinstance(info.value.orig, dbapi.ProgrammingError)
        assert info.value.orig.code in (60, 81)
        with pytest.raises(sa.exc.DBAPIError) as info:
            conn.exec_driver_sql("SELEC 1")
        assert info.value.orig.code == 62


def test_reflection_of_tables_views_columns_engines(db_url):
    from clickhouse_sqlalchemy import Table, engines

    with connect(db_url) as conn:
        conn.exec_driver_sql("CREATE DATABASE r")
        conn.exec_driver_sql(
            "CREATE TABLE r.t (a UInt32, b Nullable(String) DEFAULT 'x', d DateTime DEFAULT now()) "
            "ENGINE = ReplacingMergeTree(a) PARTITION BY toYYYYMM(d) ORDER BY a"
        )
        conn.exec_driver_sql("CREATE VIEW r.v AS SELECT a FROM r.t")
        insp = sa.inspect(conn)
        assert insp.get_table_names(schema="r") == ["t"]
        assert insp.get_view_names(schema="r") == ["v"]
        cols = {c["name"]: c for c in insp.get_columns("t", schema="r")}
        assert str(cols["b"]["type"]) == "Nullable(String)"
        assert cols["d"]["default"] == "now()"
        table = Table("t", sa.MetaData(), schema="r", autoload_with=conn)
        assert isinstance(table.engine, engines.ReplacingMergeTree)
        conn.execute(table.insert(), [{"a": 1, "b": "50%"}, {"a": 2, "b": None}])
        assert conn.execute(sa.select(table.c.b).order_by(table.c.a)).scalars().all() == ["50%", None]


def test_second_process_gets_a_clear_error(db_url, tmp_path):
    path = str(tmp_path / "db")
    with connect(db_url) as conn:
        conn.exec_driver_sql("SELECT 1")
        script = textwrap.dedent(f"""
            import sys
            from app.engine import ConnectionFailed, connect
            try:
                with connect({db_url!r}) as c:
                    c.exec_driver_sql("SELECT 1")
            except ConnectionFailed as exc:
                print(exc)
                sys.exit(3)
        """)
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stderr
    assert f"embedded database {path} is in use by another process (pid" in result.stdout
    assert len(result.stdout.strip().splitlines()) == 1


def test_unwritable_path_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConnectionFailed, match="cannot be created"):
        with connect(f"clickhouse+chdb:///default?path={blocker}/db"):
            pass
