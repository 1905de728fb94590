"""The revision chain on real chDB: builds the canonical warehouse, re-runs cleanly,
downgrades to the ledger alone, keeps rows through every data-carrying change."""
from __future__ import annotations

import subprocess
import sys

import pytest

from app import commands
from app.canonical import CANONICAL, MANAGED_DATABASES
from app.config import PROJECT_ROOT
from app.engine import connect
from app.snapshot import snapshot_schema
from app.verify import compare_schema


def snapshot(url):
    with connect(url) as conn:
        return snapshot_schema(conn, MANAGED_DATABASES)


def ledger_count(query):
    return query("SELECT count() FROM default.zakaz_schema_ledger")[0][0]


@pytest.mark.slow
def test_upgrade_head_builds_exactly_the_canonical_warehouse(db_url, query):
    commands.upgrade(db_url, "head")
    live = snapshot(db_url)
    kinds = [o.kind for o in live.values()]
    assert kinds.count("table") == 24
    assert kinds.count("view") == 16
    assert kinds.count("materialized_view") == 1
    assert [str(f) for f in compare_schema(live, CANONICAL)] == []
    for name, obj in live.items():
        if obj.kind != "table":
            query(f"SELECT * FROM {name} LIMIT 1")  # every view is selectable


def test_second_upgrade_is_a_no_op(db_url, query):
    commands.upgrade(db_url, "head")
    before, rows_before = snapshot(db_url), ledger_count(query)
    steps = commands.upgrade(db_url, "head")
    assert steps == []
    assert snapshot(db_url) == before
    assert ledger_count(query) == rows_before


def test_downgrade_base_leaves_only_the_ledger_and_upgrade_rebuilds_identically(db_url, query):
    commands.upgrade(db_url, "head")
    first = snapshot(db_url)
    commands.downgrade(db_url, "base")
    left = query(
        "SELECT database, name FROM system.tables "
        "WHERE database NOT IN ('system', 'INFORMATION_SCHEMA', 'information_schema') ORDER BY name"
    )
    assert left == [("default", "alembic_version"), ("default", "zakaz_schema_ledger")]
    assert query("SELECT name FROM system.databases WHERE name IN ('zakaz', 'meta', 'bi')") == []
    assert commands.status(db_url).heads == []
    commands.upgrade(db_url, "head")
    assert snapshot(db_url) == first


def test_rows_loaded_at_revision_4_survive_to_head(db_url, query):
    commands.upgrade(db_url, "0004")
    query("INSERT INTO zakaz.fact_qtickets_inventory (event_id, city, tickets_total, tickets_left, _ver) "
          "VALUES ('evt-1', 'moscow', 100, 40, 1), ('evt-2', 'kazan', 50, 50, 1)")
    query("INSERT INTO zakaz.dim_events (event_id, event_name, city, _ver) VALUES ('evt-1', 'Concert', 'moscow', 1)")
    query("INSERT INTO zakaz.stg_qtickets_sheets_inventory (event_id, city, tickets_total, tickets_left, _ver, hash_low_card) "
          "VALUES ('evt-1', 'moscow', 100, 40, 1, 'h1'), ('evt-2', 'kazan', 50, 50, 1, 'h2'), ('evt-3', 'perm', 10, 1, 1, 'h3')")
    query("INSERT INTO zakaz.meta_job_runs (job, started_at, finished_at, status) "
          "VALUES ('sheets', '2026-01-01 00:00:00', '2026-01-01 00:01:00', 'ok'), "
          "('api', '2026-01-02 00:00:00', '2026-01-02 00:01:00', 'ok')")
    query("INSERT INTO zakaz.fact_qtickets_sales (date, event_id, event_name, city, tickets_sold, revenue, _ver) "
          "VALUES ('2026-01-01', 'evt-1', 'Concert', 'moscow', 3, 1500.50, 1)")
    query("INSERT INTO zakaz.stg_qtickets_api_orders_raw (event_id, city, sale_ts, tickets_sold, revenue, currency, _ver, _dedup_key) "
          "VALUES ('evt-1', 'moscow', now(), 2, 1000, 'RUB', 1, 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa')")

    commands.upgrade(db_url, "head")

    assert query("SELECT count(), countIf(_loaded_at > '2020-01-01') FROM zakaz.stg_qtickets_sheets_inventory") == [(3, 3)]
    assert query("SELECT partition_key FROM system.tables WHERE database = 'zakaz' AND name = 'stg_qtickets_sheets_inventory'") == [("toYYYYMM(_loaded_at)",)]
    ids = query("SELECT run_id FROM zakaz.meta_job_runs ORDER BY job")
    assert len(ids) == 2 and all(len(r[0]) == 36 for r in ids) and ids[0] != ids[1]
    assert query("SELECT run_id FROM zakaz.meta_job_runs ORDER BY job") == ids  # written once, stable
    assert query("SELECT count(), countIf(_loaded_at > '2020-01-01') FROM zakaz.fact_qtickets_sales") == [(1, 1)]
    assert query("SELECT order_id, event_id FROM zakaz.stg_qtickets_api_orders_raw") == [("", "evt-1")]
    assert query("SELECT name FROM system.columns WHERE database = 'zakaz' AND table = 'stg_qtickets_api_orders_raw' AND position = 1") == [("order_id",)]
    assert query("SELECT count() FROM zakaz.fact_qtickets_inventory") == [(2,)]
    assert query("SELECT event_id, event_name, tickets_total, tickets_left FROM zakaz.fact_qtickets_inventory_latest ORDER BY event_id") == [
        ("evt-1", "Concert", 100, 40), ("evt-2", "", 50, 50)]
    assert query("SELECT event_id, city, tickets_sold FROM zakaz.v_qtickets_inventory ORDER BY event_id") == [
        ("evt-1", "moscow", 60), ("evt-2", "kazan", 0)]


def test_verification_revision_names_a_tampered_column(db_url, query):
    commands.upgrade(db_url, "0010")
    query("ALTER TABLE zakaz.fact_qtickets_sales DROP COLUMN _loaded_at")
    with pytest.raises(Exception) as info:
        commands.upgrade(db_url, "head")
    text = str(info.value)
    assert "zakaz.fact_qtickets_sales" in text and "_loaded_at" in text
    assert commands.status(db_url).heads == ["0010"]
    assert commands.status(db_url).problem["revision"] == "0011"


def test_ledger_never_mutated_and_two_heads_survive_optimize(db_url, query, versions_copy):
    branch = versions_copy / "versions" / "0100_side_branch.py"
    branch.write_text(
        '"""A side branch off 0009, to give the chain two heads."""\n'
        'from app.operations import create_table, drop_table\n'
        'revision = "0100"\ndown_revision = "0009"\nbranch_labels = None\ndepends_on = None\n'
        'DOWNGRADE_LOSES = []\n'
        'def upgrade():\n    create_table("zakaz.side", "a UInt8", engine="MergeTree", order_by="a")\n'
        'def downgrade():\n    drop_table("zakaz.side")\n'
    )
    cfg = commands.alembic_config(db_url, script_location=str(versions_copy))
    from alembic import command

    command.upgrade(cfg, "heads")
    query("OPTIMIZE TABLE default.zakaz_schema_ledger FINAL")
    assert sorted(r[0] for r in query("SELECT version_num FROM default.alembic_version")) == ["0013", "0100"]
    cfg.attributes["allow_data_loss"] = True
    command.downgrade(cfg, "base")
    command.stamp(cfg, "0003")
    query("OPTIMIZE TABLE default.zakaz_schema_ledger FINAL")
    assert [r[0] for r in query("SELECT version_num FROM default.alembic_version")] == ["0003"]
    assert query("SELECT count() FROM system.mutations WHERE table = 'zakaz_schema_ledger'") == [(0,)]


@pytest.mark.slow
def test_plain_alembic_cli_upgrade_current_history(tmp_path):
    url = f"clickhouse+chdb:///default?path={tmp_path / 'db'}"
    run = lambda *args: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "alembic", "-x", f"url={url}", *args],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
    )
    up = run("upgrade", "head")
    assert up.returncode == 0, up.stderr
    assert "Running upgrade 0012 -> 0013" in up.stderr
    current = run("current")
    assert current.returncode == 0 and "0013 (head)" in current.stdout
    down = run("downgrade", "0008")
    assert down.returncode == 0, down.stderr  # empty tables: nothing to lose
    assert "0008" in run("current").stdout
    history = run("history")
    assert "0001" in history.stdout and "0013" in history.stdout


@pytest.mark.fast
def test_offline_sql_has_ledger_inserts_and_no_password():
    sql = commands.offline_sql("clickhouse+native://deploy:s3cret@db.example:9000/default", "head")
    assert "s3cret" not in sql
    assert "CREATE TABLE IF NOT EXISTS default.zakaz_schema_ledger" in sql
    assert sql.count("INSERT INTO default.zakaz_schema_ledger") == 13
    assert "GRANT INSERT, SELECT ON meta.backup_runs TO zakaz_backup" in sql
    assert "RENAME TABLE" not in sql or "EXCHANGE TABLES" in sql


def test_rebuild_and_backfill_keep_unmerged_duplicates(db_url, query):
    commands.upgrade(db_url, "0007")
    for ver in (1, 2):  # two inserts: two parts, one key, not merged yet
        query("INSERT INTO zakaz.stg_qtickets_sheets_inventory (event_id, city, tickets_total, tickets_left, _ver, hash_low_card) "
              f"VALUES ('evt-1', 'moscow', 100, {50 - ver}, {ver}, 'h')")
        query("INSERT INTO zakaz.fact_qtickets_inventory (event_id, city, tickets_total, tickets_left, _ver) "
              f"VALUES ('evt-1', 'moscow', 100, {50 - ver}, {ver})")
    commands.upgrade(db_url, "0009")
    assert query("SELECT _ver, tickets_left FROM zakaz.stg_qtickets_sheets_inventory ORDER BY _ver") == [(1, 49), (2, 48)]
    assert query("SELECT _ver, tickets_left FROM zakaz.fact_qtickets_inventory_latest ORDER BY _ver") == [(1, 49), (2, 48)]
    assert query("SELECT tickets_left FROM zakaz.fact_qtickets_inventory_latest FINAL") == [(48,)]


def test_new_default_columns_are_stored_for_existing_rows(db_url, query):
    """0005 and 0006 write the new value into old rows once; a DEFAULT alone changes at every read."""
    commands.upgrade(db_url, "0004")
    query("INSERT INTO zakaz.fact_qtickets_sales (date, event_id, event_name, city, _ver) VALUES ('2026-01-01', 'e', 'n', 'c', 1)")
    commands.upgrade(db_url, "0006")
    parts = query(
        "SELECT DISTINCT table, column FROM system.parts_columns WHERE database = 'zakaz' AND active "
        "AND ((table = 'fact_qtickets_sales' AND column = '_loaded_at') OR (table = 'meta_job_runs' AND column = 'run_id'))"
    )
    assert ("fact_qtickets_sales", "_loaded_at") in parts


# --- rows written while a table is rebuilt (issue 15.8) -------------------------------

INVENTORY = "zakaz.stg_qtickets_sheets_inventory"
INVENTORY_COLUMNS = "event_id, city, tickets_total, tickets_left, _ver, hash_low_card"
COPIED = [(f"evt-{i}", "msk", 10, i, 1, "h") for i in range(5)]


def _insert(run, table, rows):
    """One INSERT: one part."""
    values = ", ".join(f"('{e}', '{c}', {t}, {left}, {v}, '{h}')" for e, c, t, left, v, h in rows)
    run(f"INSERT INTO {table} ({INVENTORY_COLUMNS}) VALUES {values}")


def _inventory(query, table=INVENTORY):
    return sorted(query(f"SELECT {INVENTORY_COLUMNS} FROM {table}"))


def _rebuild_tables(query):
    return [r[0] for r in query("SELECT name FROM system.tables WHERE database = 'zakaz' "
                                "AND startsWith(name, 'stg_qtickets_sheets_inventory__') ORDER BY name")]


@pytest.fixture
def inventory_at_0007(db_url, query):
    commands.upgrade(db_url, "0007")
    _insert(query, INVENTORY, COPIED[:3])
    _insert(query, INVENTORY, COPIED[3:])


def _on_this_connection(sql):
    from alembic import op

    op.get_bind().exec_driver_sql(sql)


def test_rebuild_moves_rows_written_between_the_copy_and_the_swap(db_url, query, inventory_at_0007, monkeypatch):
    """The copy is counted, then swapped in; rows inserted into the original in between used to be
    dropped with it.  They are the rows in parts the copy did not read: a newer version of a copied
    key (a ReplacingMergeTree merge could collapse it, so a count difference would not find it)
    and a new key."""
    from app.operations import rebuild as operations

    late = [[("evt-1", "msk", 10, 0, 2, "h")], [("evt-9", "spb", 3, 3, 1, "h")]]
    real = operations.exchange_tables

    def exchange_while_etl_writes(a, b):
        for rows in late:
            _insert(_on_this_connection, INVENTORY, rows)
        real(a, b)

    monkeypatch.setattr(operations, "exchange_tables", exchange_while_etl_writes)
    commands.upgrade(db_url, "0008")
    assert _inventory(query) == sorted(COPIED + late[0] + late[1])
    assert _rebuild_tables(query) == []
    assert query(f"SELECT partition_key FROM system.tables WHERE database = 'zakaz' "
                 "AND name = 'stg_qtickets_sheets_inventory'") == [("toYYYYMM(_loaded_at)",)]
    assert commands.status(db_url).heads == ["0008"]


@pytest.mark.parametrize("listing, refusal", [
    ("_parts", "copied 0 of 5 rows"),               # the listing the copy reads by
    ("_active_parts", "was merged after it was copied"),  # the check right before the swap
], ids=["during-the-copy", "before-the-swap"])
def test_rebuild_refuses_before_the_swap_when_a_merge_mixes_new_rows_in(
        listing, refusal, db_url, query, inventory_at_0007, monkeypatch):
    """A merge of copied parts with new ones leaves no way to tell the new rows apart: nothing is
    swapped, and the refusal says what to do (writes go on: running it again would meet the same)."""
    from app.operations import rebuild as operations
    from app.runtime import StepFailed

    late = [("evt-9", "spb", 3, 3, 1, "h")]
    real = getattr(operations, listing)

    def write_and_merge():
        _insert(_on_this_connection, INVENTORY, late)
        _on_this_connection(f"OPTIMIZE TABLE {INVENTORY} FINAL")

    def listed_then_merged(name):
        if listing == "_active_parts":
            write_and_merge()
            return real(name)
        found = real(name)
        write_and_merge()
        return found

    monkeypatch.setattr(operations, listing, listed_then_merged)
    with pytest.raises(StepFailed) as info:
        commands.upgrade(db_url, "0008")
    message = str(info.value)
    assert refusal in message and "the original is untouched" in message
    assert f"pause writes into {INVENTORY} (ETL loads) and run it again" in message
    assert commands.status(db_url).heads == ["0007"]
    assert _inventory(query) == sorted(COPIED + late)
    assert query(f"SELECT count() FROM system.columns WHERE database = 'zakaz' "
                 "AND table = 'stg_qtickets_sheets_inventory' AND name = '_loaded_at'") == [(0,)]
    monkeypatch.undo()
    commands.upgrade(db_url, "0008", resume=True)
    assert _inventory(query) == sorted(COPIED + late)
    assert _rebuild_tables(query) == []


def test_rebuild_keeps_the_old_table_when_rows_written_during_the_swap_cannot_be_told_apart(
        db_url, query, inventory_at_0007, monkeypatch):
    """A merge in the swapped-out table after the swap: it is kept (renamed), never dropped."""
    from app.operations import rebuild as operations
    from app.runtime import StepFailed

    late = [("evt-9", "spb", 3, 3, 1, "h")]
    real = operations.exchange_tables

    def swap_then_a_late_insert_and_a_merge(a, b):
        real(a, b)
        _insert(_on_this_connection, b, late)  # an INSERT that started before the swap
        _on_this_connection(f"OPTIMIZE TABLE {b} FINAL")

    monkeypatch.setattr(operations, "exchange_tables", swap_then_a_late_insert_and_a_merge)
    kept = f"{INVENTORY}__before_rebuild"
    with pytest.raises(StepFailed, match=f"kept as {kept}, holding 1 row"):
        commands.upgrade(db_url, "0008")
    assert _inventory(query) == sorted(COPIED)
    assert _inventory(query, kept) == sorted(COPIED + late)
    monkeypatch.undo()
    commands.upgrade(db_url, "0008", resume=True)
    assert commands.status(db_url).heads == ["0008"]
    assert _rebuild_tables(query) == ["stg_qtickets_sheets_inventory__before_rebuild"]
    # verify names it as the rebuild's leftover, not as a table to add to canonical.py
    notes = [str(f) for f in commands.verify(db_url)["findings"] if kept in str(f)]
    assert notes == [f"table {kept} is left by a rebuild of {INVENTORY}: check that {INVENTORY} holds the rows "
                     f"you need from it, then drop it (DROP TABLE {kept})"]


def test_a_rebuild_resumed_after_the_swap_accepts_versions_the_new_table_merged_away(
        db_url, query, inventory_at_0007, monkeypatch):
    """Killed right after the swap, then merges in the new table replace older versions of a key:
    the resume used to stop with 'holding 1 row the table lacks' and ask for that superseded
    version to be copied back.  What each table's merges keep is compared instead."""
    from app.operations import rebuild as operations

    old_version = ("evt-0", "msk", 10, 99, 0, "h")  # an older _ver of a copied key, in its own part
    _insert(query, INVENTORY, [old_version])
    real = operations.exchange_tables

    def swap_then_die(a, b):
        real(a, b)
        raise KeyboardInterrupt  # the process killed after the swap

    monkeypatch.setattr(operations, "exchange_tables", swap_then_die)
    with pytest.raises(KeyboardInterrupt):
        commands.upgrade(db_url, "0008")
    monkeypatch.undo()
    query(f"OPTIMIZE TABLE {INVENTORY} FINAL")  # the merge the new table is free to make
    assert old_version not in _inventory(query)
    commands.upgrade(db_url, "0008", resume=True)
    assert commands.status(db_url).heads == ["0008"]
    assert _rebuild_tables(query) == []  # nothing kept aside: nothing was lacking
    assert _inventory(query) == sorted(COPIED)
