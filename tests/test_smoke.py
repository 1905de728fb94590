"""Smoke checks on real chDB: the real chain passes, and each check fails on a view broken for it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import main
from app.smoke import run_smoke_checks

VIEWS = 17  # 16 views and the materialized view (warehouse.md)
INVARIANTS = {"inventory: sold = total - left", "freshness: the sample's dates", "roi: zakaz divides safely",
              "roi: bi divides safely", "mv: sums of the orders"}


def edit(folder: Path, prefix: str, old: str, new: str) -> None:
    path = next((folder / "versions").glob(f"{prefix}_*.py"))
    # The upgrade's SQL, not the frozen copies of earlier views a downgrade restores (0009's).
    upgrade, downgrade = path.read_text().split("\ndef downgrade", 1)
    assert upgrade.count(old) == 1, f"{old!r} is not unique in {path.name}"
    path.write_text(upgrade.replace(old, new) + "\ndef downgrade" + downgrade)


@pytest.mark.slow
def test_real_chain_passes_every_check():
    report = run_smoke_checks(rows_per_table=30, seed=7)
    assert [c for c in report.checks if not c.ok] == []
    names = [c.name for c in report.checks]
    assert names[:2] == ["upgrade to head", "load sample"]
    assert sum(1 for n in names if n.startswith("select ")) == VIEWS
    assert INVARIANTS <= set(names)
    assert "with zero spend" in report.check("roi: bi divides safely").detail
    assert report.ok


@pytest.mark.slow
def test_each_check_fails_on_a_view_broken_for_it(versions_copy):
    # Each breakage keeps the views' column names, so 0011 (verify) still passes.
    edit(versions_copy, "0009", "toInt64(tickets_total) - toInt64(tickets_left) AS tickets_sold",
         "toInt64(tickets_total) + toInt64(tickets_left) AS tickets_sold")
    edit(versions_copy, "0009", "CAST(max(date) AS Nullable(Date)) AS latest_date",
         "CAST(min(date) AS Nullable(Date)) AS latest_date")
    edit(versions_copy, "0002", "if(a.spend = 0, 0, s.net_revenue / a.spend) AS roas",
         "s.net_revenue / a.spend AS roas")
    edit(versions_copy, "0002", "if(v.spend = 0, 0, toFloat64(s.revenue) / toFloat64(v.spend)) AS roas",
         "toFloat64(s.revenue) / toFloat64(v.spend) AS roas")
    edit(versions_copy, "0004", "max(sale_ts) AS latest_sale_ts,\n               sum(tickets_sold) AS",
         "max(sale_ts) AS latest_sale_ts,\n               sum(tickets_sold) * 2 AS")
    edit(versions_copy, "0002", "WHERE report_date >= today() - 14", "WHERE report_date > today()")

    report = run_smoke_checks(script_location=str(versions_copy))
    failed = {c.name: c.detail for c in report.checks if not c.ok}
    assert set(failed) == INVARIANTS | {"select zakaz.v_sales_14d"}
    assert "tickets_sold != total - left" in failed["inventory: sold = total - left"]
    assert "sales: latest_date" in failed["freshness: the sample's dates"]
    assert "infinite or NaN" in failed["roi: zakaz divides safely"]
    assert "spend is 0 but roas is not 0" in failed["roi: bi divides safely"]
    assert "differ" in failed["mv: sums of the orders"]
    assert failed["select zakaz.v_sales_14d"] == "no rows from the sample"
    assert not report.ok


def test_a_failing_upgrade_is_the_failed_check(versions_copy):
    (versions_copy / "versions" / "0014_broken.py").write_text(
        '"""Broken on purpose."""\nfrom app.operations import run\n\n'
        'revision = "0014"\ndown_revision = "0013"\nbranch_labels = None\ndepends_on = None\n\n'
        'def upgrade():\n    run("ALTER TABLE zakaz.no_such_table ADD COLUMN x UInt8")\n\n'
        'def downgrade():\n    pass\n')
    report = run_smoke_checks(script_location=str(versions_copy))
    assert [(c.name, c.ok) for c in report.checks] == [("upgrade to head", False)]
    assert "no_such_table" in report.checks[0].detail


@pytest.mark.slow
def test_cli_smoke_on_an_empty_database_then_refused_once_it_has_rows(db_url):
    runner = CliRunner()
    refused = runner.invoke(main, ["smoke", "--url", db_url])
    assert refused.exit_code == 2 and "--yes" in refused.output
    ok = runner.invoke(main, ["smoke", "--url", db_url, "--yes", "--rows", "20", "--json"])
    assert ok.exit_code == 0, ok.output
    data = json.loads(ok.output)
    assert data["ok"] is True and data["failed"] == [] and data["rows_per_table"] == 20
    # Now it holds sample rows: a second run must not mix more in.
    again = runner.invoke(main, ["smoke", "--url", db_url, "--yes"])
    assert again.exit_code == 2 and "already holds rows" in again.output


def test_cli_smoke_exit_1_names_the_failing_check(versions_copy):
    edit(versions_copy, "0009", "toInt64(tickets_total) - toInt64(tickets_left) AS tickets_sold",
         "toInt64(tickets_total) + toInt64(tickets_left) AS tickets_sold")
    result = CliRunner().invoke(main, ["smoke", "--script-location", str(versions_copy)])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == "FAILED: inventory: sold = total - left"
