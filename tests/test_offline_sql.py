"""Offline SQL (`zakaz-schema sql`, `alembic upgrade --sql`) builds what an online upgrade builds."""
from __future__ import annotations

import re

import pytest

from app import commands
from app.snapshot import take_snapshot
from app.engine import connect
from app.impl import ACCESS_STATEMENT

# A revision whose SQL holds "%" where ClickHouse reads it: a date format, a
# LIKE pattern, a column DEFAULT, and the ledger message (its docstring).
PERCENT_REVISION = '''"""Monthly sales: 100% of the rows, by formatDateTime(ts, '%Y-%m')."""
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

DOWNGRADE_LOSES = ["zakaz.month_probe"]


def upgrade():
    op.create_table_if_not_exists("zakaz.month_probe",
                                  "ts DateTime\\nmonth String DEFAULT formatDateTime(ts, '%Y-%m')",
                                  engine="MergeTree", order_by="ts")
    op.create_view("bi.v_month_probe",
                   "SELECT formatDateTime(toDateTime('2026-11-05 10:00:00'), '%Y-%m') AS m, "
                   "'50%' LIKE '5%' AS pct_like FROM system.one")


def downgrade():
    op.drop_view("bi.v_month_probe")
    op.drop_table_if_exists("zakaz.month_probe")
'''

# How a view runs (0012): offline SQL is written for a server; online, the
# embedded engine leaves out the DEFINER = user clause (it has no users) and
# skips materialized views (op.set_view_security).
_VIEW_SECURITY = re.compile(r"^ALTER TABLE (?P<name>\S+) MODIFY (?P<definer>DEFINER = \S+ )?SQL SECURITY ", re.I)


def _as_embedded_runs_it(conn, sql: str) -> str | None:
    if ACCESS_STATEMENT.match(sql):
        return None  # checked and skipped online: chDB has no access storage
    m = _VIEW_SECURITY.match(sql)
    if m is None:
        return sql
    db, name = m["name"].split(".")
    engine = conn.exec_driver_sql(
        "SELECT engine FROM system.tables WHERE database = %(d)s AND name = %(n)s", {"d": db, "n": name}).scalar()
    if engine == "MaterializedView":
        return None
    return sql.replace(m["definer"] or "", "", 1)


def _statements(script: str) -> list[str]:
    out = []
    for chunk in script.split(";\n\n"):
        sql = "\n".join(line for line in chunk.splitlines() if not line.startswith("--")).strip()
        if sql:
            out.append(sql)
    return out


@pytest.fixture
def chain_with_percent(versions_copy, monkeypatch):
    (versions_copy / "versions" / "0014_month_probe.py").write_text(PERCENT_REVISION)
    monkeypatch.setenv("ZAKAZ_MIGRATIONS", str(versions_copy))
    return versions_copy


@pytest.mark.slow
def test_offline_sql_of_the_whole_chain_builds_the_online_schema(chain_with_percent, tmp_path):
    online_url = f"clickhouse+chdb:///default?path={tmp_path / 'online'}"
    offline_url = f"clickhouse+chdb:///default?path={tmp_path / 'offline'}"
    commands.upgrade(online_url, "head")
    with connect(online_url) as conn:
        online = take_snapshot(conn)
        assert conn.exec_driver_sql("SELECT m, pct_like FROM bi.v_month_probe").one() == ("2026-11", 1)

    script = commands.offline_sql(offline_url, "head")
    assert "'%Y-%m'" in script and "%%" not in script
    with connect(offline_url) as conn:
        for sql in _statements(script):
            sql = _as_embedded_runs_it(conn, sql)
            if sql is not None:
                conn.exec_driver_sql(sql)
        offline = take_snapshot(conn)
        assert conn.exec_driver_sql("SELECT m, pct_like FROM bi.v_month_probe").one() == ("2026-11", 1)
        conn.exec_driver_sql("INSERT INTO zakaz.month_probe (ts) VALUES ('2026-11-05 10:00:00')")
        assert conn.exec_driver_sql("SELECT month FROM zakaz.month_probe").scalar() == "2026-11"

    assert "bi.v_month_probe" in online.definitions
    assert offline.databases == online.databases
    assert offline.schema == online.schema
    for name, definition in online.definitions.items():
        assert offline.definitions.get(name) == definition, name
    assert offline.definitions.keys() == online.definitions.keys()
    status = commands.status(offline_url)
    assert status.heads == ["0014"] and not status.pending
    assert status.steps == 14  # the offline script's ledger inserts


@pytest.mark.fast
def test_alembic_sql_keeps_percent_as_written(chain_with_percent):
    script = commands.offline_sql("clickhouse+native://deploy:s3cret@db.example:9000/default", "0013:0014")
    assert "formatDateTime(toDateTime('2026-11-05 10:00:00'), '%Y-%m')" in script
    assert "'50%' LIKE '5%'" in script
    assert "100% of the rows" in script  # the ledger row's message
