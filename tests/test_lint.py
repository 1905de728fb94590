"""Lint on real chDB: the real chain is clean, and each rule catches a bad revision written for it.

Bad revisions go into a copy of the migrations folder (``versions_copy``).
Most tests cut the copy after 0002 and put the bad revision on top as 0003,
so each lint replays three revisions instead of twelve; 0002 has enough
tables and views for every rule.  One test lints a bad 0014 on the full
chain, the way a new revision is linted in practice.
"""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import main
from app.lint import lint_revisions

# Kept on purpose (warehouse.md): lint warns about the materialized view of 0004.
# Frozen history: 0008's downgrade takes away the month partition of a
# ReplacingMergeTree, so snapshots of one key from different months would
# merge (tests/test_merging.py shows the rebuild refusing when any would).
EXPECTED_WARNINGS = {("mv-current-time", "0004"), ("mv-replacing-aggregate", "0004"), ("destructive-merge", "0008")}

DOC = '"""A test revision that {what}.\n\nDowngrade undoes it.\n"""\n'
HEADER = '''from app.operations import (  # noqa: F401
    access, add_column, create_materialized_view, create_table, create_view, drop_column,
    drop_table, drop_view, modify_column, rebuild_table, run,
)
from alembic import op  # noqa: F401

revision = "{rev}"
down_revision = "{down}"
branch_labels = None
depends_on = None
'''


def write_revision(folder: Path, rev: str, body: str, *, down: str = "0002",
                   doc: str | None = "does something wrong on purpose") -> Path:
    text = (DOC.format(what=doc) if doc is not None else "") + HEADER.format(rev=rev, down=down) \
        + textwrap.dedent(body)
    path = folder / "versions" / f"{rev}_bad.py"
    path.write_text(text)
    return path


@pytest.fixture
def short_chain(versions_copy) -> Path:
    """The copy cut after 0002: 0003.. removed."""
    for path in (versions_copy / "versions").glob("*.py"):
        if path.name[:4].isdigit() and int(path.name[:4]) > 2:
            path.unlink()
    return versions_copy


def lint_bad(folder: Path, *revisions: str):
    return lint_revisions(list(revisions) or None, script_location=str(folder))


def rules_of(report, revision: str = "0003") -> set[str]:
    return {f.rule for f in report.findings if f.revision == revision}


def finding(report, rule: str, revision: str = "0003"):
    matches = [f for f in report.findings if f.rule == rule and f.revision == revision]
    assert matches, f"no {rule} finding for {revision}: {[str(f) for f in report.findings]}"
    return matches[0]


def line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


# --- the real chain ------------------------------------------------------------------

@pytest.mark.slow
def test_real_chain_lints_clean_with_only_the_kept_warnings():
    report = lint_revisions()
    assert report.revisions == [f"{i:04d}" for i in range(1, 14)]
    assert [str(f) for f in report.errors] == []
    assert {(f.rule, f.revision) for f in report.warnings} == EXPECTED_WARNINGS
    assert report.not_replayed == []
    mv = finding(report, "mv-current-time", "0004")
    assert mv.path.endswith("0004_qtickets_api.py") and "now()" in Path(mv.path).read_text().splitlines()[mv.line - 1]


def test_cli_lint_json_and_exit_codes(short_chain):
    runner = CliRunner()
    clean = runner.invoke(main, ["lint", "--json", "--script-location", str(short_chain)])
    assert clean.exit_code == 0, clean.output
    data = json.loads(clean.output)
    assert data["ok"] is True and data["errors"] == 0 and data["revisions"] == ["0001", "0002"]

    write_revision(short_chain, "0003", """
        def upgrade():
            create_table("zakaz.t", "d Date", engine="MergeTree", order_by="d",
                         partition_by="toYYYYMM(today())")

        def downgrade():
            drop_table("zakaz.t")
        DOWNGRADE_LOSES = ["zakaz.t"]
    """)
    bad = runner.invoke(main, ["lint", "0003", "--script-location", str(short_chain)])
    assert bad.exit_code == 1, bad.output
    assert "0003_bad.py:" in bad.output and "[nondeterministic-key]" in bad.output
    unknown = runner.invoke(main, ["lint", "9999", "--script-location", str(short_chain)])
    assert unknown.exit_code == 2 and "9999" in unknown.output


def test_a_bad_0014_on_the_full_chain(versions_copy):
    path = write_revision(versions_copy, "0014", """
        DOWNGRADE_LOSES = []

        def upgrade():
            drop_column("zakaz.dim_events", "end_date")

        def downgrade():
            add_column("zakaz.dim_events", "end_date Nullable(Date)")
    """, down="0013")
    report = lint_bad(versions_copy, "0014")
    assert report.revisions == ["0014"]
    drop = finding(report, "destructive-drop", "0014")
    assert "zakaz.dim_events.end_date" in drop.message and "UPGRADE_LOSES" in drop.message
    assert drop.line == line_of(path, 'drop_column("zakaz.dim_events"')
    # v_qtickets_sales_dashboard (0009) reads dim_events.end_date.
    broken = finding(report, "view-reference", "0014")
    assert "v_qtickets_sales_dashboard" in broken.message
    # Only 0014 is reported, though the whole chain was replayed under it.
    assert {f.revision for f in report.findings} == {"0014"}


# --- one bad revision per rule ---------------------------------------------------------

def test_docstring(short_chain):
    write_revision(short_chain, "0003", """
        def upgrade():
            pass

        def downgrade():
            pass
    """, doc=None)
    assert finding(lint_bad(short_chain), "docstring").line == 1


def test_docstring_left_as_the_template(short_chain):
    path = write_revision(short_chain, "0003", """
        def upgrade():
            pass

        def downgrade():
            pass
    """, doc="x.\n\nWhy: TODO say what changes and why")
    f = finding(lint_bad(short_chain), "docstring")
    assert "TODO" in f.message and f.line == line_of(path, "TODO")


def test_an_autogenerated_docstring_missing_only_its_why_is_a_warning(short_chain):
    """new --autogenerate lists the changes and the losses: the revision passes lint with no edits."""
    path = write_revision(short_chain, "0003", """
        def upgrade():
            pass

        def downgrade():
            pass
    """, doc="x.\n\n- add column zakaz.t.c\n\nWhy: TODO say why, in a sentence or two.\nDowngrade: drops c")
    report = lint_bad(short_chain)
    f = finding(report, "docstring-why")
    assert f.line == line_of(path, "TODO") and "docstring" not in rules_of(report) and report.ok


def test_heads(short_chain):
    for rev in ("0003", "0004"):
        write_revision(short_chain, rev, """
            def upgrade():
                pass

            def downgrade():
                pass
        """)
    report = lint_bad(short_chain)
    assert finding(report, "heads", "0003") and finding(report, "heads", "0004")
    assert "2 heads" in finding(report, "heads", "0004").message


def test_offline_sql(short_chain):
    write_revision(short_chain, "0003", """
        def upgrade():
            # Reads the database even when rendering SQL for review.
            n = op.get_bind().exec_driver_sql("SELECT count() FROM zakaz.dim_city_alias").scalar()
            run(f"SELECT {n}")

        def downgrade():
            pass
    """)
    assert "offline SQL" in finding(lint_bad(short_chain), "offline-sql").message


def test_replay_upgrade(short_chain):
    # One of the old SQL files' failures: a TTL on a UInt64 column.
    path = write_revision(short_chain, "0003", """
        DOWNGRADE_LOSES = ["zakaz.t"]

        def upgrade():
            create_table("zakaz.t", '''
                d Date
                _ver UInt64
            ''', engine="MergeTree", order_by="d", ttl="_ver + 30")

        def downgrade():
            drop_table("zakaz.t")
    """)
    report = lint_bad(short_chain)
    f = finding(report, "replay-upgrade")
    assert "TTL" in f.message and f.line == line_of(path, 'create_table("zakaz.t"')
    assert not report.ok


def test_replay_downgrade(short_chain):
    write_revision(short_chain, "0003", """
        def upgrade():
            pass

        def downgrade():
            run("ALTER TABLE zakaz.no_such_table DROP COLUMN x")
    """)
    assert "no_such_table" in finding(lint_bad(short_chain), "replay-downgrade").message


def test_downgrade_restores(short_chain):
    write_revision(short_chain, "0003", """
        def upgrade():
            add_column("zakaz.dim_city_alias", "note String DEFAULT ''")
            create_view("zakaz.v_aliases", "SELECT alias, city FROM zakaz.dim_city_alias")

        def downgrade():
            drop_view("zakaz.v_aliases")
    """)
    f = finding(lint_bad(short_chain), "downgrade-restores")
    assert "column zakaz.dim_city_alias.note is left behind" in f.message


def test_view_order(short_chain):
    path = write_revision(short_chain, "0003", """
        DOWNGRADE_LOSES = ["zakaz.t"]

        def upgrade():
            create_view("zakaz.v_t", "SELECT x FROM zakaz.t")
            create_table("zakaz.t", "x UInt8", engine="MergeTree", order_by="x")

        def downgrade():
            drop_view("zakaz.v_t")
            drop_table("zakaz.t")
    """)
    report = lint_bad(short_chain)
    f = finding(report, "view-order")
    assert "zakaz.v_t" in f.message and "zakaz.t" in f.message
    assert f.line == line_of(path, 'create_view("zakaz.v_t"')
    assert "replay-upgrade" not in rules_of(report)


def test_view_reference_at_creation(short_chain):
    write_revision(short_chain, "0003", """
        def upgrade():
            create_view("zakaz.v_bad", "SELECT alias, no_such_column FROM zakaz.dim_city_alias")

        def downgrade():
            drop_view("zakaz.v_bad")
    """)
    report = lint_bad(short_chain)
    assert "zakaz.v_bad" in finding(report, "view-reference").message
    assert "view-order" not in rules_of(report)


def test_view_reference_broken_by_a_later_revision(short_chain):
    # bi.v_vk_ads_daily (0002) reads dm_vk_ads_daily.spend; the loss is declared.
    write_revision(short_chain, "0003", """
        UPGRADE_LOSES = ["zakaz.dm_vk_ads_daily.spend"]

        def upgrade():
            drop_column("zakaz.dm_vk_ads_daily", "spend")

        def downgrade():
            add_column("zakaz.dm_vk_ads_daily", "spend UInt64", after="clicks")
    """)
    report = lint_bad(short_chain)
    broken = {f.message.split()[1] for f in report.findings if f.rule == "view-reference"}
    assert {"zakaz.v_vk_ads_daily", "bi.v_vk_ads_daily"} <= broken
    assert "destructive-drop" not in rules_of(report)


def test_nondeterministic_key(short_chain):
    path = write_revision(short_chain, "0003", """
        DOWNGRADE_LOSES = ["zakaz.t"]

        def upgrade():
            create_table("zakaz.t", '''
                d Date
                x UInt64
            ''', engine="MergeTree", order_by="d", partition_by="toYYYYMM(today())")

        def downgrade():
            drop_table("zakaz.t")
    """)
    report = lint_bad(short_chain)
    f = finding(report, "nondeterministic-key")
    assert "today()" in f.message and f.line == line_of(path, "today()")
    # ClickHouse 26 refuses the table too; that is the same finding, not a second one.
    assert [g.rule for g in report.findings if g.revision == "0003"].count("nondeterministic-key") == 1
    assert "replay-upgrade" not in rules_of(report)


@pytest.mark.parametrize("body, target", [
    ("""
        def upgrade():
            drop_table("zakaz.core_sales_fct")

        def downgrade():
            pass
    """, "zakaz.core_sales_fct"),
    ("""
        DOWNGRADE_LOSES = []

        def upgrade():
            add_column("zakaz.dim_city_alias", "note String DEFAULT ''")

        def downgrade():
            drop_column("zakaz.dim_city_alias", "note")
    """, "zakaz.dim_city_alias.note"),
    ("""
        def upgrade():
            run("TRUNCATE TABLE zakaz.dim_city_alias")

        def downgrade():
            pass
    """, "zakaz.dim_city_alias"),
], ids=["drop-table-on-upgrade", "drop-column-on-downgrade", "truncate"])
def test_destructive_drop(short_chain, body, target):
    write_revision(short_chain, "0003", body)
    report = lint_bad(short_chain)
    f = finding(report, "destructive-drop")
    assert target in f.message and not report.ok


def test_destructive_drop_declared_is_fine(short_chain):
    write_revision(short_chain, "0003", """
        DOWNGRADE_LOSES = ["zakaz.dim_city_alias.note"]

        def upgrade():
            add_column("zakaz.dim_city_alias", "note String DEFAULT ''")

        def downgrade():
            drop_column("zakaz.dim_city_alias", "note")
    """)
    report = lint_bad(short_chain)
    assert report.findings == []


def test_destructive_drop_rebuild_that_does_not_copy_a_column(short_chain):
    write_revision(short_chain, "0003", """
        DOWNGRADE_LOSES = []

        def upgrade():
            rebuild_table("zakaz.dim_city_alias", '''
                alias LowCardinality(String)
                city LowCardinality(String)
            ''', engine="ReplacingMergeTree", order_by="(alias, city)", copy="alias")

        def downgrade():
            rebuild_table("zakaz.dim_city_alias", '''
                alias LowCardinality(String)
                city LowCardinality(String)
            ''', engine="ReplacingMergeTree", order_by="(alias)", copy="alias, city")
    """)
    report = lint_bad(short_chain)
    f = finding(report, "destructive-drop")
    assert "zakaz.dim_city_alias.city" in f.message and "copying" in f.message
    # The rebuild itself (with a copy) is not a recreate.
    assert "destructive-recreate" not in rules_of(report)


def test_destructive_narrowing(short_chain):
    path = write_revision(short_chain, "0003", """
        def upgrade():
            modify_column("zakaz.dm_vk_ads_daily", "clicks UInt32")

        def downgrade():
            modify_column("zakaz.dm_vk_ads_daily", "clicks UInt64")
    """)
    report = lint_bad(short_chain)
    f = finding(report, "destructive-narrowing")
    assert "UInt64 to UInt32" in f.message and f.line == line_of(path, "clicks UInt32")
    # Widening back on downgrade loses nothing.
    assert all("downgrade" not in g.message for g in report.findings)


@pytest.mark.parametrize("declared", [False, True])
def test_destructive_ttl_added_to_a_table_is_a_loss_to_declare(short_chain, declared):
    # MODIFY TTL deletes the rows already past it at once (materialize_ttl_after_modify).
    path = write_revision(short_chain, "0003", ("""
        UPGRADE_LOSES = ["zakaz.dm_vk_ads_daily"]
    """ if declared else "") + """
        def upgrade():
            op.modify_ttl("zakaz.dm_vk_ads_daily", "stat_date + INTERVAL 30 DAY")

        def downgrade():
            op.remove_ttl("zakaz.dm_vk_ads_daily")
    """)
    report = lint_bad(short_chain)
    assert not {"replay-upgrade", "replay-downgrade", "offline-sql"} & rules_of(report), report.findings
    if declared:
        assert not {"destructive-ttl", "loss-declaration"} & rules_of(report), [str(f) for f in report.findings]
    else:
        f = finding(report, "destructive-ttl")
        assert "zakaz.dm_vk_ads_daily" in f.message and "past it" in f.message
        assert f.line == line_of(path, "modify_ttl")
    # Removing the TTL on the way back deletes nothing.
    assert all("downgrade" not in g.message for g in report.findings if g.rule.startswith("destructive"))


def test_destructive_recreate(short_chain):
    write_revision(short_chain, "0003", """
        DOWNGRADE_LOSES = ["zakaz.dim_city_alias"]

        def upgrade():
            drop_table("zakaz.dim_city_alias")
            create_table("zakaz.dim_city_alias", '''
                alias LowCardinality(String)
                city LowCardinality(String)
            ''', engine="ReplacingMergeTree", order_by="(alias, city)")

        def downgrade():
            drop_table("zakaz.dim_city_alias")
            create_table("zakaz.dim_city_alias", '''
                alias LowCardinality(String)
                city LowCardinality(String)
            ''', engine="ReplacingMergeTree", order_by="(alias)")
    """)
    report = lint_bad(short_chain)
    f = finding(report, "destructive-recreate")
    assert "ORDER BY" in f.message and f.message.startswith("upgrade:")
    assert [g.rule for g in report.errors] == ["destructive-recreate"]


def test_loss_declaration(short_chain):
    write_revision(short_chain, "0003", """
        DOWNGRADE_LOSES = ["zakaz.dm_sales_daily.no_such_column"]

        def upgrade():
            create_view("zakaz.v_aliases", "SELECT alias, city FROM zakaz.dim_city_alias")

        def downgrade():
            drop_view("zakaz.v_aliases")
    """)
    report = lint_bad(short_chain)
    assert "no_such_column" in finding(report, "loss-declaration").message
    assert report.ok  # a warning


def test_create_if_not_exists(short_chain):
    write_revision(short_chain, "0003", """
        DOWNGRADE_LOSES = ["zakaz.t"]

        def upgrade():
            run("CREATE TABLE zakaz.t (x UInt8) ENGINE = MergeTree ORDER BY x")

        def downgrade():
            drop_table("zakaz.t")
    """)
    report = lint_bad(short_chain)
    assert "zakaz.t" in finding(report, "create-if-not-exists").message
    assert report.ok


def test_drop_if_exists(short_chain):
    write_revision(short_chain, "0003", """
        DOWNGRADE_LOSES = ["zakaz.t"]

        def upgrade():
            create_table("zakaz.t", "x UInt8", engine="MergeTree", order_by="x")

        def downgrade():
            run("DROP TABLE zakaz.t")
    """)
    report = lint_bad(short_chain)
    f = finding(report, "drop-if-exists")
    assert f.message.startswith("downgrade:") and report.ok


@pytest.mark.parametrize("statement, flagged", [
    ('run("INSERT INTO zakaz.t (x) SELECT toUInt8(number) FROM numbers(10)")', True),
    ('run("INSERT INTO zakaz.t (x) VALUES (1), (2)")', True),
    ('run("ALTER TABLE zakaz.t UPDATE x = x + 1 WHERE 1 SETTINGS mutations_sync = 2")', True),
    ('run("ALTER TABLE zakaz.t UPDATE y = toString(rand()) WHERE x > 0 SETTINGS mutations_sync = 2")', True),
    ('copy_rows_once("zakaz.t", "x", "SELECT toUInt8(number) FROM numbers(10)")', False),
    ('run("INSERT INTO zakaz.t (x) SELECT toUInt8(number) FROM numbers(10) '
     'WHERE (SELECT count() FROM zakaz.t) = 0")', False),
    ('run("ALTER TABLE zakaz.t UPDATE y = toString(x) WHERE 1 SETTINGS mutations_sync = 2")', False),
    ('run("ALTER TABLE zakaz.t UPDATE x = x + 1 WHERE x < 100 SETTINGS mutations_sync = 2")', False),
    ('run("ALTER TABLE zakaz.t DELETE WHERE x > 5 SETTINGS mutations_sync = 2")', False),
], ids=["insert-select", "insert-values", "update-reads-itself", "update-random", "copy_rows_once",
        "guarded-insert", "update-idempotent", "update-guarded", "delete"])
def test_rerun_data(short_chain, statement, flagged):
    """Issue 15.5: a resume re-runs a bare INSERT ... SELECT (10 rows -> 20), and lint passed it."""
    path = write_revision(short_chain, "0003", f"""
        from app.operations import copy_rows_once
        DOWNGRADE_LOSES = ["zakaz.t"]
        UPGRADE_LOSES = ["zakaz.t"]

        def upgrade():
            create_table("zakaz.t", "x UInt8\\ny String DEFAULT ''", engine="MergeTree", order_by="x")
            {statement}

        def downgrade():
            drop_table("zakaz.t")
    """)
    report = lint_bad(short_chain)
    if not flagged:
        assert "rerun-data" not in rules_of(report), [str(f) for f in report.findings]
        return
    f = finding(report, "rerun-data")
    assert f.severity == "error" and not report.ok
    assert f.line == line_of(path, statement[:30])
    assert f.message.startswith("upgrade: ") and "zakaz.t" in f.message
    if "INSERT" in statement:
        assert "copy_rows_once()" in f.message
    else:
        assert "WHERE on" in f.message


@pytest.mark.parametrize("upgrade", [
    'access("GRANT SELECT ON zakaz.no_such_view TO zakaz_reader")',
    # Granted before the CREATE that makes it (fails on a server, runs nowhere on chDB).
    'access("GRANT SELECT ON zakaz.t TO zakaz_reader")\n'
    '    create_table("zakaz.t", "x UInt8", engine="MergeTree", order_by="x")',
    'access("GRANT SELECT ON nodb.* TO zakaz_reader")',
], ids=["missing", "before-create", "missing-database"])
def test_grant_unknown_object(short_chain, upgrade):
    write_revision(short_chain, "0003", f"""
DOWNGRADE_LOSES = ["zakaz.t"]

def upgrade():
    access("CREATE ROLE IF NOT EXISTS zakaz_reader")
    {upgrade}

def downgrade():
    drop_table("zakaz.t")
    access("DROP ROLE IF EXISTS zakaz_reader")
""")
    report = lint_bad(short_chain)
    f = finding(report, "grant-unknown-object")
    assert "does not exist" in f.message and not report.ok


def test_grant_on_existing_objects_is_fine(short_chain):
    write_revision(short_chain, "0003", """
        def upgrade():
            access("GRANT SELECT ON zakaz.dim_city_alias TO zakaz_reader")
            access("GRANT SELECT ON meta.* TO zakaz_reader")

        def downgrade():
            pass
    """)
    assert lint_bad(short_chain).findings == []


def test_mv_current_time(short_chain):
    path = write_revision(short_chain, "0003", """
        DOWNGRADE_LOSES = ["zakaz.mv_recent"]

        def upgrade():
            create_materialized_view("zakaz.mv_recent", '''
                SELECT event_date, city, tickets_sold
                FROM zakaz.dm_sales_daily
                WHERE event_date >= today() - 7
            ''', engine="MergeTree", order_by="(event_date, city)")

        def downgrade():
            drop_view("zakaz.mv_recent")
    """)
    report = lint_bad(short_chain)
    f = finding(report, "mv-current-time")
    assert f.line == line_of(path, "today() - 7")
    assert rules_of(report) == {"mv-current-time"}


def test_mv_replacing_aggregate(short_chain):
    write_revision(short_chain, "0003", """
        DOWNGRADE_LOSES = ["zakaz.mv_totals"]

        def upgrade():
            create_materialized_view("zakaz.mv_totals", '''
                SELECT city, sumIf(tickets_sold, tickets_sold > 0) AS tickets
                FROM zakaz.dm_sales_daily
                GROUP BY city
            ''', engine="ReplacingMergeTree", order_by="city")

        def downgrade():
            drop_view("zakaz.mv_totals")
    """)
    report = lint_bad(short_chain)
    assert "sumIf" in finding(report, "mv-replacing-aggregate").message
    assert rules_of(report) == {"mv-replacing-aggregate"}



@pytest.mark.fast
def test_restore_differences_are_worded_from_the_neutral_diff():
    """What downgrade-restores says, aspect by aspect (before the upgrade against after the downgrade)."""
    from app.lint.replay_rules import restore_differences
    from app.schema import Column, DbObject
    from app.snapshot import Snapshot

    def table(name, *cols, order_by="id", kind="table"):
        return DbObject(name, kind, tuple(Column(*c) for c in cols), engine="MergeTree" if kind == "table" else "",
                        order_by=order_by)

    before = Snapshot({
        "z.t": table("z.t", ("id", "UInt64"), ("a", "UInt32", "0"), ("b", "String")),
        "z.gone": table("z.gone", ("id", "UInt64")),
        "z.v": table("z.v", ("id", "UInt64"), order_by="", kind="view"),
        "z.k": table("z.k", ("id", "UInt64")),
    }, frozenset({"z", "old"}), queries={"z.v": "SELECT 1"})
    after = Snapshot({
        "z.t": table("z.t", ("b", "String"), ("id", "UInt64"), ("a", "UInt64"), ("c", "Date"), order_by="b"),
        "z.v": table("z.v", ("id", "UInt64"), order_by="", kind="view"),
        "z.k": table("z.k", ("id", "UInt64"), order_by="", kind="view"),
        "z.new": table("z.new", ("id", "UInt64")),
    }, frozenset({"z", "extra"}), queries={"z.v": "SELECT 2", "z.k": "SELECT 1"})
    assert restore_differences(before, after) == [
        "database old is not restored",
        "database extra is left behind",
        "table z.gone is not restored",
        "z.k is a view, was a table",
        "table z.new is left behind",
        "ORDER BY of z.t: was id, now b",
        "type of z.t.a: was UInt32, now UInt64",
        "DEFAULT of z.t.a: was 0, now (none)",
        "column z.t.c is left behind",
        "column order of z.t differs (not fatal): was id, a, b; now b, id, a",
        "view z.v is restored with a different query",
    ]
