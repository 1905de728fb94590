"""The verification revisions carry their own checks (0011's, and 0013's definers): they still catch drift.

On a real 24.8 server, where views run as a named definer.
"""
from __future__ import annotations

import pytest

import server_support as support
from app import commands
from app.runtime import StepFailed

pytestmark = [pytest.mark.server, pytest.mark.slow]


@pytest.fixture
def server_url(server) -> str:
    support.reset(server)
    yield server.url("native", support.fresh_database(server))
    support.reset(server)


def test_0011_names_each_difference_and_0013_a_view_that_does_not_run_as_its_definer(server_url):
    commands.upgrade(server_url, "0010")
    support.run_sql(server_url, "ALTER TABLE zakaz.dim_events MODIFY COLUMN tickets_left UInt64 DEFAULT 0")
    support.run_sql(server_url, "ALTER TABLE meta.etl_runs MODIFY TTL started_at + INTERVAL 1 DAY")
    with pytest.raises(StepFailed) as info:
        commands.upgrade(server_url, "0011")
    text = str(info.value)
    assert "type of zakaz.dim_events.tickets_left: expected UInt32, found UInt64" in text
    assert "TTL of meta.etl_runs: expected (none), found started_at + toIntervalDay(1)" in text
    support.run_sql(server_url, "ALTER TABLE zakaz.dim_events MODIFY COLUMN tickets_left UInt32 DEFAULT 0")
    support.run_sql(server_url, "ALTER TABLE meta.etl_runs REMOVE TTL")
    commands.upgrade(server_url, "0012", resume=True)

    support.run_sql(server_url, "ALTER TABLE zakaz.v_sales_latest MODIFY SQL SECURITY INVOKER")
    with pytest.raises(StepFailed) as info:
        commands.upgrade(server_url, "0013")
    text = str(info.value)
    assert "SQL SECURITY of zakaz.v_sales_latest: expected DEFINER, found INVOKER" in text
    assert "DEFINER of zakaz.v_sales_latest: expected zakaz_view_definer, found (none)" in text
    assert text.count("zakaz.v_") == 2  # every other view runs as the definer
