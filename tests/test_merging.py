"""What merges do to a rebuilt table's rows (app/merging.py), checked against ClickHouse's own merges.

Each case stores the same rows under the old and the new engine and keys on
chDB, merges them (``OPTIMIZE ... FINAL``) and compares what is left: the rule
must call a change lossy exactly when ClickHouse merges away a row the old
table kept.  The rows are chosen to tell: rows that differ only in ``city``,
in ``d`` within a month, in ``d``'s month, and two versions of one key
inserted newest first.
"""
from __future__ import annotations

import pytest

from app import commands
from app.engine import connect
from app.recorder import StepFailed
from app.merging import merged_rows_sql, rows_merged
from app.planner import PlanRefused, plan
from app.schema import parse_tables

ROWS = [("2026-01-05", "Msk", 2, 10), ("2026-01-05", "Msk", 1, 11), ("2026-01-05", "Spb", 1, 20),
        ("2026-01-06", "Msk", 1, 40), ("2026-02-05", "Msk", 1, 30)]
COLUMNS = "    d  Date\n    city  String\n    _ver  UInt64\n    clicks  UInt64\n"
OLD = "ReplacingMergeTree(_ver) ORDER BY (d, city) PARTITION BY toYYYYMM(d)"

CASES = [
    # (new engine and keys, rows merged away)
    ("ReplacingMergeTree(_ver) ORDER BY (d, city) PARTITION BY toYYYYMM(d)", False),
    ("ReplacingMergeTree(_ver) ORDER BY (city, d) PARTITION BY toYYYYMM(d)", False),  # same key, reordered
    ("ReplacingMergeTree(_ver) ORDER BY (d, city, clicks) PARTITION BY toYYYYMM(d)", False),  # finer
    ("ReplacingMergeTree(_ver) ORDER BY (d, city)", False),  # the month is decided by d
    ("ReplacingMergeTree(_ver) ORDER BY (d) PARTITION BY toYYYYMM(d)", True),  # city left out
    ("ReplacingMergeTree(_ver) ORDER BY (city) PARTITION BY toYYYYMM(d)", True),  # d within the month left out
    ("ReplacingMergeTree(_ver) ORDER BY (city)", True),  # and the month too
    ("ReplacingMergeTree ORDER BY (d, city) PARTITION BY toYYYYMM(d)", True),  # no version: the last row wins
    ("MergeTree ORDER BY (d) PARTITION BY toYYYYMM(d)", False),  # a plain MergeTree merges no rows
    ("SummingMergeTree ORDER BY (d)", True),
]
# The month is not in the key: without the partition, one city's months merge
# (a tryout lost a row this way when the count used FINAL, which folds rows
# across partitions where the old table's merges never do).
BY_CITY = "ReplacingMergeTree(_ver) ORDER BY (city) PARTITION BY toYYYYMM(d)"
CASES_BY_CITY = [("ReplacingMergeTree(_ver) ORDER BY (city)", True),
                 ("ReplacingMergeTree(_ver) ORDER BY (city, d)", False)]


def _table(name: str, engine_line: str):
    return parse_tables(f"{name}  {engine_line}\n{COLUMNS}")[0]


@pytest.fixture
def conn(tmp_path):
    # Per test: chDB opens one database per process, and the rebuild tests below open theirs.
    url = f"clickhouse+chdb:///default?path={tmp_path / 'db'}"
    with connect(url) as c:
        yield c


def _kept_by_clickhouse(conn, name: str, engine_line: str, counted: list | None = None) -> set[tuple]:
    """The rows a table of ``engine_line`` holds once its merges are done.

    ``counted``: gets what app.merging's count says of the rows as stored, before the merges.
    """
    engine, _, keys = engine_line.partition(" ")
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
    conn.exec_driver_sql(f"CREATE TABLE {name} (d Date, city String, _ver UInt64, clicks UInt64) "
                         f"ENGINE = {engine} {keys}")
    values = ", ".join(f"('{d}', '{c}', {v}, {n})" for d, c, v, n in ROWS)
    conn.exec_driver_sql(f"INSERT INTO {name} SETTINGS optimize_on_insert = 0 VALUES {values}")
    if counted is not None:
        counted.append(conn.exec_driver_sql(counted.pop(0)).scalar())
    conn.exec_driver_sql(f"OPTIMIZE TABLE {name} FINAL")
    return set(map(tuple, conn.exec_driver_sql(f"SELECT toString(d), city, _ver, clicks FROM {name}").all()))


@pytest.mark.parametrize("old, new, merged", [(OLD, *c) for c in CASES] + [(BY_CITY, *c) for c in CASES_BY_CITY],
                         ids=[c[0] for c in CASES] + [f"by city: {c[0]}" for c in CASES_BY_CITY])
def test_the_rule_and_the_count_agree_with_clickhouse_merges(conn, old, new, merged):
    old_t, new_t = _table("old_t", old), _table("old_t", new)
    counted = [merged_rows_sql(old_t, new_t)]
    before = _kept_by_clickhouse(conn, "old_t", old, counted)
    after = _kept_by_clickhouse(conn, "new_t", new)
    assert bool(before - after) == merged  # the case itself says what ClickHouse does
    reason = rows_merged(old_t, new_t)
    assert (reason is not None) == merged, reason
    if merged:
        assert counted == [len(before - after)]  # the rows the rebuild's guard counts are the rows lost


def test_engines_that_change_what_merges_keep():
    plain = _table("zakaz.t", "MergeTree ORDER BY (d, city)")
    replacing = _table("zakaz.t", "ReplacingMergeTree(_ver) ORDER BY (d, city)")
    assert "keeps every row" in rows_merged(plain, replacing)
    assert rows_merged(replacing, plain) is None
    other_version = _table("zakaz.t", "ReplacingMergeTree(clicks) ORDER BY (d, city)")
    assert "changes which of the rows" in rows_merged(replacing, other_version)


def test_the_planner_refuses_a_coarser_merge_key_and_declares_it_when_allowed():
    old = _table("zakaz.t", OLD)
    narrowed = _table("zakaz.t", "ReplacingMergeTree(_ver) ORDER BY (d) PARTITION BY toYYYYMM(d)")
    with pytest.raises(PlanRefused, match=r"^zakaz\.t: its new key \(toYYYYMM\(d\), d\) no longer tells rows "
                                          r"apart by city.*--allow-data-loss"):
        plan({old.name: old}, {old.name: narrowed})
    p = plan({old.name: old}, {old.name: narrowed}, allow_loss=True)
    assert [s.loses for s in p.upgrade] == [("zakaz.t",)]
    assert p.upgrade[0].describe.endswith("copying every row")
    assert [s.loses for s in p.downgrade] == [()]  # back to the finer key: nothing merges


def test_a_downgrade_to_a_coarser_key_declares_the_loss():
    old = _table("zakaz.t", OLD)
    widened = _table("zakaz.t", "ReplacingMergeTree(_ver) ORDER BY (d, city, clicks) PARTITION BY toYYYYMM(d)")
    p = plan({old.name: old}, {old.name: widened})
    assert [s.loses for s in p.upgrade] == [()]
    assert p.upgrade[0].describe.endswith("keeping every row")
    assert [s.loses for s in p.downgrade] == [("zakaz.t",)]
    assert "clicks" in p.downgrade[0].how[0]


# --- the rebuild counts the rows it would merge away, declared or not -----------------------------

NEW_TABLE = '''"""A Replacing table keyed by day and city."""
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None
DOWNGRADE_LOSES = ["zakaz.t"]


def upgrade() -> None:
    op.create_table_if_not_exists("zakaz.t", "d Date\\ncity String\\n_ver UInt64", engine="ReplacingMergeTree(_ver)",
                    order_by="(d, city)")


def downgrade() -> None:
    op.drop_table_if_exists("zakaz.t")
'''

NARROWED = '''"""Key zakaz.t by day alone, written by hand, declaring nothing."""
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.rebuild_table("zakaz.t", "d Date\\ncity String\\n_ver UInt64", engine="ReplacingMergeTree(_ver)",
                     order_by="(d)", copy="d, city, _ver")


def downgrade() -> None:
    op.rebuild_table("zakaz.t", "d Date\\ncity String\\n_ver UInt64", engine="ReplacingMergeTree(_ver)",
                     order_by="(d, city)", copy="d, city, _ver")
'''


@pytest.fixture
def narrowing_chain(versions_copy, monkeypatch):
    (versions_copy / "versions" / "0014_t.py").write_text(NEW_TABLE)
    (versions_copy / "versions" / "0015_t_by_day.py").write_text(NARROWED)
    monkeypatch.setenv("ZAKAZ_MIGRATIONS", str(versions_copy))


def _at_0014_with(database_at, rows: str) -> str:
    url = database_at("0013")
    commands.upgrade(url, "0014")
    with connect(url) as c:
        c.exec_driver_sql(f"INSERT INTO zakaz.t VALUES {rows}")
    return url


def _kept(url: str) -> int:
    with connect(url) as c:
        return c.exec_driver_sql("SELECT count() FROM zakaz.t FINAL").scalar()


def test_a_rebuild_that_would_merge_stored_rows_is_refused_before_it_changes_anything(narrowing_chain, database_at):
    url = _at_0014_with(database_at, "('2026-10-01', 'msk', 1), ('2026-10-01', 'spb', 1), ('2026-10-02', 'msk', 1)")
    with pytest.raises(StepFailed, match=r"failed at statement 3: refusing to rebuild zakaz\.t: its new key \(d\) no longer tells rows "
                                         r"apart by city: .*; 1 stored row\(s\) would be merged away; nothing was "
                                         r"changed.*--allow-data-loss"):
        commands.upgrade(url, "0015")
    assert _kept(url) == 3
    with connect(url) as c:
        assert c.exec_driver_sql("SELECT sorting_key FROM system.tables WHERE database = 'zakaz' "
                                 "AND name = 't'").scalar() == "d, city"
    commands.upgrade(url, "0015", resume=True, allow_data_loss=True)  # told it may
    assert _kept(url) == 2


def test_a_rebuild_whose_rows_all_differ_in_the_new_key_goes_ahead(narrowing_chain, database_at):
    url = _at_0014_with(database_at, "('2026-10-01', 'msk', 1), ('2026-10-02', 'spb', 1)")
    commands.upgrade(url, "0015")
    assert _kept(url) == 2
