"""Adoption of databases it must not adopt as they are, and adoptions interrupted half-way; real chDB.

Each refusal leaves the database untouched and says in one line what
blocks it and what a person must decide; an interrupted adoption is
recorded in the ledger and resumed by running ``adopt --apply`` again.
"""
from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from app import adopt, ledger, replay
from app.cli import main
from app.config import PROJECT_ROOT
from app.engine import connect
from app.operations import rebuild
from legacy_fixtures import variants
from test_adopt import ROWS, _state, adopted, cache, legacy  # noqa: F401 - cache is a fixture

pytestmark = pytest.mark.slow


def _ledger(url) -> list[dict]:
    with connect(url) as conn:
        return ledger.read_rows(conn, "default")


def test_a_table_under_a_chain_name_with_no_column_in_common_is_refused_naming_it(db_url, cache):
    before = legacy(db_url, extra=[
        "DROP TABLE zakaz.dim_city_alias SYNC",
        "CREATE TABLE zakaz.dim_city_alias (region_code UInt16, region_name String) ENGINE = MergeTree ORDER BY region_code",
        "INSERT INTO zakaz.dim_city_alias VALUES (1, 'north'), (2, 'south')",
    ])
    before = _state(db_url)
    plan = adopt.plan_adoption(db_url, cache_dir=cache)
    assert not plan.adoptable and plan.revision is None
    [reason] = plan.refusals
    assert reason.startswith("zakaz.dim_city_alias has no column in common with the table the revisions create")
    assert "rename it (RENAME TABLE zakaz.dim_city_alias TO ...)" in reason
    result = CliRunner().invoke(main, ["adopt", "--apply", "--url", db_url])
    assert result.exit_code == 1
    [error] = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert "zakaz.dim_city_alias" in error and "nothing was changed" in error
    assert _state(db_url) == before


def test_a_database_in_use_by_another_process_gets_the_lock_message_and_is_untouched(db_url, cache):
    before = legacy(db_url, extra=variants("key-type"))
    with connect(db_url) as conn:
        conn.exec_driver_sql("SELECT 1")
        busy = subprocess.run([sys.executable, "-m", "app", "adopt", "--apply", "--url", db_url],
                              cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert busy.returncode == 2, busy.stdout + busy.stderr
    assert "is in use by another process (pid" in busy.stderr
    assert busy.stderr.strip().count("\n") == 0 and "Traceback" not in busy.stderr
    assert _state(db_url) == before


def _merge_after_listing(monkeypatch, table: str) -> None:
    """The ETL writes into ``table`` and a merge runs right after the rebuild listed its parts."""
    listed = rebuild._parts

    def parts_then_write(name):
        seen = listed(name)
        if name == table and rebuild._online():
            bind = rebuild.op.get_bind()
            bind.exec_driver_sql(f"INSERT INTO {table} (event_date, sale_date, event_id, city, _ver) "
                                 "VALUES ('2024-05-01', '2024-05-01', 'late', 'moscow', 1)")
            bind.exec_driver_sql(f"OPTIMIZE TABLE {table} FINAL")
        return seen

    monkeypatch.setattr(rebuild, "_parts", parts_then_write)


def test_rows_written_during_the_rebuild_stop_it_the_table_stays_and_the_message_says_pause_writes(
        db_url, cache, monkeypatch):
    table = "zakaz.dm_sales_daily"
    legacy(db_url, extra=variants("key-type"))
    plan = adopt.plan_adoption(db_url, cache_dir=cache)
    assert [op.kind for op in plan.operations if op.target == table] == ["rebuild_table"]
    with connect(db_url) as conn:
        shape = conn.exec_driver_sql(
            "SELECT sorting_key, partition_key FROM system.tables WHERE database = 'zakaz' AND name = 'dm_sales_daily'"
        ).one()
    _merge_after_listing(monkeypatch, table)
    with pytest.raises(adopt.AdoptionStepFailed) as failed:
        adopt.apply_adoption(db_url, plan, cache_dir=cache)
    message = str(failed.value)
    assert "\n" not in message and f"rebuild_table {table}" in message
    assert f"pause writes into {table}" in message and "adopt --apply` again to resume" in message
    with connect(db_url) as conn:
        # The original is untouched: its shape, and every row (the late one included).
        assert conn.exec_driver_sql(
            "SELECT type FROM system.columns WHERE database = 'zakaz' AND table = 'dm_sales_daily' AND name = 'city'"
        ).scalar() == "String"
        assert conn.exec_driver_sql(
            "SELECT sorting_key, partition_key FROM system.tables WHERE database = 'zakaz' AND name = 'dm_sales_daily'"
        ).one() == shape
        assert conn.exec_driver_sql(f"SELECT count() FROM {table}").scalar() == ROWS + 1
    rows = _ledger(db_url)
    assert [r["status"] for r in rows][-1] == "failed" and rows[-1]["direction"] == "adopt"
    assert ledger.current_heads(rows) == []
    # `upgrade` does not run over a half-adopted database.
    refused = CliRunner().invoke(main, ["upgrade", "--url", db_url])
    assert refused.exit_code != 0 and "adoption at 0004 is failed" in refused.output, refused.output
    assert "--mark-" not in refused.output

    # Writes paused: the same command resumes the adoption in the same ledger step.
    monkeypatch.undo()
    before = _state(db_url)
    resumed = adopt.plan_adoption(db_url, cache_dir=cache)
    assert resumed.resume and resumed.resume["step_id"] == rows[0]["step_id"]
    assert resumed.revision == plan.revision
    kept = {t: c for t, c in before["columns"].items() if not t.endswith("__rebuild")}
    adopted(db_url, cache, {**before, "columns": kept})
    rows = _ledger(db_url)
    assert {r["step_id"] for r in rows if r["direction"] == "adopt"} == {rows[0]["step_id"]}


def test_a_crash_after_the_swap_is_resumed_not_copied_again(db_url, cache, monkeypatch):
    """The process dies right after a rebuild swapped the tables: the copy is done.  The next
    adopt --apply finds the old table left beside it, checks every row of it is in the new one,
    drops it, and goes on with the steps not done yet."""
    table = "zakaz.dm_vk_ads_daily"
    before = legacy(db_url, extra=variants("partition", "key-type"))
    plan = adopt.plan_adoption(db_url, cache_dir=cache)
    rebuilt = [op.target for op in plan.operations if op.kind == "rebuild_table"]
    assert rebuilt == ["zakaz.dm_sales_daily", table]
    swap = rebuild.exchange_tables

    def swap_then_crash(a, b):
        swap(a, b)
        if a == table and rebuild._online():  # the plan renders its SQL offline through it too
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(rebuild, "exchange_tables", swap_then_crash)
    with pytest.raises(KeyboardInterrupt):
        adopt.apply_adoption(db_url, plan, cache_dir=cache)
    monkeypatch.undo()
    rows = _ledger(db_url)
    assert rows[-1]["status"] == "started" and f"rebuild table {table}" in rows[-1]["message"]

    resumed = adopt.plan_adoption(db_url, cache_dir=cache)
    assert resumed.resume and f"{table}__rebuild is left from an interrupted rebuild" in " ".join(resumed.notes)
    # The steps before the interrupted one are done, and the plan says so (not "no ledger").
    done = [op.target for op in plan.operations].index(table)
    assert done >= 1 and (resumed.resume["steps_done"], resumed.resume["steps_total"]) == (done, len(plan.operations))
    monkeypatch.setattr(replay, "cache_dirs", lambda _=None: [cache])
    header = CliRunner().invoke(main, ["adopt", "--url", db_url]).output.splitlines()[0]
    assert f"; an adoption in progress (step {done} of {len(plan.operations)} done); " in header, header
    monkeypatch.undo()
    [finish] = [op for op in resumed.operations if op.kind == "rebuild_table"]
    assert finish.target == table and finish.reason.startswith("finish the interrupted rebuild")
    copies = []
    copy = rebuild._copy

    def counted(*args, **kwargs):
        if rebuild._online():
            copies.append(args)
        copy(*args, **kwargs)

    monkeypatch.setattr(rebuild, "_copy", counted)
    adopt.apply_adoption(db_url, resumed, cache_dir=cache)
    monkeypatch.undo()
    assert [c for c in copies if c[1] in rebuilt] == []  # nothing copied again (0008's own rebuild aside)
    adopted_rows = [r for r in _ledger(db_url) if r["direction"] == "adopt"]
    assert {r["step_id"] for r in adopted_rows} == {rows[0]["step_id"]}
    assert adopted_rows[-1]["status"] == "stamped"
    with connect(db_url) as conn:
        assert conn.exec_driver_sql("SELECT count() FROM system.tables WHERE name LIKE '%__rebuild'").scalar() == 0
        from app.fingerprint import fingerprints
        after = fingerprints(conn, before["columns"])
    assert {t: after[t] for t in before["columns"]} == before["fingerprints"]


def test_a_change_no_conversion_makes_is_refused_naming_the_column(db_url, cache):
    before = legacy(db_url, extra=[
        "DROP TABLE zakaz.dim_events SYNC",
        """CREATE TABLE zakaz.dim_events (
            event_id String, event_name String, city LowCardinality(String), start_date Nullable(Date),
            end_date Nullable(Date), tickets_total Array(UInt32), tickets_left UInt32 DEFAULT 0,
            _ver UInt64, _loaded_at DateTime DEFAULT now()
        ) ENGINE = ReplacingMergeTree(_ver) PARTITION BY tuple() ORDER BY event_id""",
    ])
    plan = adopt.plan_adoption(db_url, cache_dir=cache)
    assert not plan.adoptable and plan.revision is None
    [reason] = plan.refusals
    assert "zakaz.dim_events.tickets_total: Array(UInt32) -> UInt32 is impossible" in reason, reason
    assert "then adopt again" in reason
    with pytest.raises(adopt.NoMatchingRevision, match="nothing was changed"):
        adopt.apply_adoption(db_url, plan, cache_dir=cache)
    assert _state(db_url) == before
