"""A planned materialized view rebuild on an embedded database: every stored row kept, whatever stops it.

The planner's rebuild_materialized_view (new view, rows copied, EXCHANGE,
old one dropped) is run by a generated revision on a database holding rows:
failed at each of its statements and resumed, and met by an insert into the
view's source during the copy, which must stop it before the swap with
nothing changed.
"""
from __future__ import annotations

from decimal import Decimal

import pytest

from alembic.operations import Operations

from app import commands
from app.cluster import Cluster
from app.engine import connect
from app.operations import rebuild
from app.operations.materialized import ModifyQuery, RebuildMaterializedView
from app.planner import plan
from app.recorder import StepFailed
from app.schema import Column
from tests.test_autogenerate import QUERIES, ROWS, TARGETS, base_schema, chain, load_rows, replace, write_revision
from tests.test_operations import format_query, offline, statements

pytestmark = [pytest.mark.slow]
__all__ = ["chain", "format_query"]  # fixtures, used by name

COUNTED = "SELECT city, sum(amount) AS total, count() AS n FROM zakaz.sales GROUP BY city"


def _revisions(folder) -> None:
    base = base_schema()
    desired = replace(base, "zakaz.mv_city", columns=(Column("city", ""), Column("total", ""), Column("n", "")))
    write_revision(folder, "0001", None, plan({}, base, desired_queries=QUERIES, desired_targets=TARGETS),
                   "Install the base")
    p = plan(base, desired, current_queries=QUERIES, desired_queries={**QUERIES, "zakaz.mv_city": COUNTED},
             current_targets=TARGETS)
    assert [c.op for s in p.upgrade for c in s.calls] == ["rebuild_materialized_view"]
    write_revision(folder, "0002", "0001", p, "Count the sales per city")


def _installed(path) -> str:
    url = f"clickhouse+chdb:///default?path={path}"
    commands.upgrade(url, "0001")
    load_rows(url)
    return url


def _state(url) -> tuple:
    with connect(url) as conn:
        columns = tuple(r[0] for r in conn.exec_driver_sql(
            "SELECT name FROM system.columns WHERE database = 'zakaz' AND table = 'mv_city' ORDER BY position"))
        total = conn.exec_driver_sql("SELECT sum(total) FROM zakaz.mv_city").scalar()
        left = [r[0] for r in conn.exec_driver_sql(
            "SELECT name FROM system.tables WHERE database = 'zakaz' AND name LIKE 'mv_city\\_\\_%'")]
    return columns, total, left


BEFORE = sum(Decimal(n) * Decimal("1.25") for n in range(ROWS))


def test_a_failure_at_any_statement_of_the_rebuild_resumes_keeping_every_row(chain, tmp_path):
    _revisions(chain)
    failed_at = []
    for k in range(1, 30):
        url = _installed(tmp_path / f"db{k}")
        try:
            commands.upgrade(url, "head", fail_at=("0002", k))
        except StepFailed:
            failed_at.append(k)
            commands.upgrade(url, "head", resume=True)
            assert _state(url) == (("city", "total", "n"), BEFORE, []), k
            continue
        assert _state(url) == (("city", "total", "n"), BEFORE, [])
        break
    # The probe, the new view, the copy, the swap and the drops: each one failed once.
    assert len(failed_at) >= 7, failed_at


def test_rows_written_during_the_copy_stop_the_rebuild_before_the_swap(chain, tmp_path, monkeypatch):
    _revisions(chain)
    url = _installed(tmp_path / "db")
    copy = rebuild._copy

    def copy_then_insert(operation, table, sql, total=None):
        copy(operation, table, sql, total)
        # An ETL load between the copy and the swap: it reaches both views.
        rebuild.op.get_bind().exec_driver_sql(
            "INSERT INTO zakaz.sales (id, d, city, amount, note) VALUES (999, '2026-06-01', 'msk', 10, 'late')")

    monkeypatch.setattr(rebuild, "_copy", copy_then_insert)
    with pytest.raises(StepFailed, match=r"its stored parts changed during the copy.*nothing was swapped"):
        commands.upgrade(url, "head")
    # Untouched: the old view, its rows and the late one; no new view left behind.
    assert _state(url) == (("city", "total"), BEFORE + 10, [])
    monkeypatch.setattr(rebuild, "_copy", copy)
    commands.upgrade(url, "head", resume=True)
    assert _state(url) == (("city", "total", "n"), BEFORE + 10, [])
    with connect(url) as conn:
        conn.exec_driver_sql("INSERT INTO zakaz.sales (id, d, city, amount, note) "
                             "VALUES (1000, '2026-06-02', 'spb', 1, 'after')")
        assert conn.exec_driver_sql("SELECT sum(n) FROM zakaz.mv_city").scalar() == 1
    assert _state(url)[1] == BEFORE + 11


def test_offline_the_rebuild_is_new_view_copy_swap_and_a_written_to_view_modifies_its_query(format_query):
    """What `zakaz-schema sql` shows: the statements a clean run sends, placed on a cluster like the others."""
    for cluster, on in ((None, ""), (Cluster("zakaz"), " ON CLUSTER 'zakaz'")):
        ctx, buf = offline(cluster)
        with Operations.context(ctx) as op:
            op.rebuild_materialized_view("zakaz.mv", COUNTED, engine="SummingMergeTree", order_by="(city)",
                                         copy="city, total")
            op.modify_query("zakaz.mv_to", "SELECT 1 AS a")
            op.create_materialized_view("zakaz.mv_to", "SELECT 1 AS a", to="zakaz.t")
        engine = ("ReplicatedSummingMergeTree('/clickhouse/tables/{uuid}/{shard}', '{replica}')" if cluster
                  else "SummingMergeTree")
        assert [format_query(sql) for sql in statements(buf)] == [format_query(sql) for sql in (
            f"DROP TABLE IF EXISTS zakaz.mv__rebuild{on} SYNC",
            f"CREATE MATERIALIZED VIEW zakaz.mv__rebuild{on} ENGINE = {engine} ORDER BY (city) AS {COUNTED}",
            "INSERT INTO zakaz.mv__rebuild (city, total) SELECT city, total FROM zakaz.mv "
            "SETTINGS optimize_on_insert = 0",
            f"EXCHANGE TABLES zakaz.mv AND zakaz.mv__rebuild{on}",
            f"DROP TABLE IF EXISTS zakaz.mv__rebuild{on} SYNC",
            f"ALTER TABLE zakaz.mv_to{on} MODIFY QUERY SELECT 1 AS a",
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS zakaz.mv_to{on} TO zakaz.t AS SELECT 1 AS a")]
        assert [type(o) for o in ctx.impl.operations][:2] == [RebuildMaterializedView, ModifyQuery]
    for o in ctx.impl.operations:
        assert "\n" not in o.describe() and o.name in o.describe()
