"""Our alembic implementation for ClickHouse, driven through alembic's own Operations."""
from __future__ import annotations

import io

import pytest
import sqlalchemy as sa
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from clickhouse_sqlalchemy import engines, types

import app.impl  # noqa: F401 - registers ClickHouseImpl
from app.engine import connect

# make test-fast: pure and unit tests (pyproject.toml, marker `fast`).
pytestmark = pytest.mark.fast


def _ops(conn, **opts):
    return Operations(MigrationContext.configure(conn, opts=opts))


def test_create_table_with_engine_rename_and_non_transactional(db_url):
    with connect(db_url) as conn:
        op = _ops(conn)
        assert type(op.impl).__name__ == "ClickHouseImpl"
        assert op.impl.transactional_ddl is False
        op.execute("CREATE DATABASE IF NOT EXISTS z")
        op.create_table(
            "events", sa.Column("event_id", types.String), sa.Column("d", types.Date),
            schema="z",
            info={"clickhouse_engine": engines.ReplacingMergeTree(order_by=("event_id",), partition_by=sa.text("toYYYYMM(d)"))},
        )
        row = conn.exec_driver_sql(
            "SELECT engine, sorting_key, partition_key FROM system.tables WHERE database = 'z' AND name = 'events'"
        ).one()
        assert row[0] == "ReplacingMergeTree" and "event_id" in row[1] and row[2] == "toYYYYMM(d)"
        op.rename_table("events", "events_v2", schema="z")
        names = conn.exec_driver_sql("SELECT name FROM system.tables WHERE database = 'z'").scalars().all()
        assert names == ["events_v2"]


def test_rename_table_renders_rename_table_offline():
    buf = io.StringIO()
    from clickhouse_sqlalchemy.drivers.native.base import ClickHouseDialect_native

    ctx = MigrationContext.configure(dialect=ClickHouseDialect_native(), opts={"as_sql": True, "output_buffer": buf})
    Operations(ctx).rename_table("a", "b", schema="zakaz")
    assert buf.getvalue().strip() == "RENAME TABLE zakaz.a TO zakaz.b;"


def test_version_table_writes_are_not_executed(db_url):
    """alembic's own INSERT/UPDATE/DELETE on alembic_version never reach the server."""
    from alembic.runtime.migration import HeadMaintainer

    with connect(db_url) as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": "alembic_version"})
        seen = []
        sa.event.listen(conn, "before_cursor_execute", lambda *a, **k: seen.append(a[2]))
        maintainer = HeadMaintainer(ctx, ())
        maintainer._insert_version("0001")
        maintainer._update_version("0001", "0002")
        maintainer._delete_version("0002")
        assert seen == []
