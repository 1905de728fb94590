"""A drill on a given database (``drill --url``) leaves no sample rows behind, and
says nothing before refusing a range with nothing to drill (tryout defect D3).

The drill used to load sample rows into every empty table of the given
database, one no revision creates included, and keep them: dashboards then
read fake rows.  Now sample rows go only into the scratch database.
"""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from app.cli import main
from app.drill import run_drill
from app.engine import connect
from app.warehouse import MANAGED_DATABASES

UNMANAGED = "meta.extra_empty"


def _row_counts(url: str) -> dict[str, int]:
    databases = ", ".join(f"'{d}'" for d in MANAGED_DATABASES)
    with connect(url) as conn:
        # Materialized views' storage (.inner_id. tables) included: rows derived from sample rows count.
        names = conn.exec_driver_sql(
            "SELECT database, name FROM system.tables "
            f"WHERE database IN ({databases}) AND engine LIKE '%MergeTree'").all()
        return {f"{d}.{n}": conn.exec_driver_sql(f"SELECT count() FROM {d}.`{n}`").scalar() for d, n in names}


@pytest.mark.slow
def test_drill_with_data_on_a_given_database_writes_and_leaves_no_sample_rows(database_at):
    db_url = database_at("0011")
    with connect(db_url) as conn:
        conn.exec_driver_sql(f"CREATE TABLE {UNMANAGED} (id UInt32, note String) ENGINE = MergeTree ORDER BY id")
    result = CliRunner().invoke(main, ["drill", "--url", db_url, "--yes", "--with-data"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "no sample rows are written into a given database" in lines[0]
    assert lines[-2].startswith("sample rows: none written: a given database keeps only its own rows")
    counts = _row_counts(db_url)
    assert UNMANAGED in counts and "zakaz.dim_events" in counts
    assert {n: c for n, c in counts.items() if c} == {}
    with connect(db_url) as conn:
        assert conn.exec_driver_sql("SELECT count() FROM bi.v_sales_daily").scalar() == 0


@pytest.mark.slow
def test_drill_keeps_a_given_databases_own_rows_and_checks_them(database_at):
    db_url = database_at("0012", sample_rows=3)
    before = _row_counts(db_url)
    report = run_drill(db_url, with_data=True)
    assert report.ok, report.failures
    assert report.sample_tables == [] and [r.rows_kept for r in report.results] == [True]
    assert _row_counts(db_url) == before


@pytest.mark.slow
def test_drill_with_data_on_the_scratch_database_names_the_tables_it_filled():
    report = run_drill(from_rev="0013", with_data=True)
    assert report.ok, report.failures
    assert "zakaz.dim_events" in report.sample_tables and "meta.etl_runs" in report.sample_tables
    assert report.sample_rows == "removed with the scratch database"
    result = CliRunner().invoke(main, ["drill", "--from", "0013", "--with-data", "--json"], catch_exceptions=False)
    data = json.loads(result.output)
    assert data["sample_tables"] == report.sample_tables and data["sample_rows"] == report.sample_rows


@pytest.mark.slow
def test_nothing_to_drill_is_the_only_line(database_at):
    db_url = database_at("0013")
    result = CliRunner().invoke(main, ["drill", "--url", db_url, "--yes", "--with-data"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == ["Error: nothing to drill: the database is already at 0013"]
