"""Version integrity (issue #15, items 2, 3, 4, 6, 7): the ledger's order does
not depend on any host's clock, `repair` records only versions alembic could
reach, a head this checkout does not have is named and recoverable with
`stamp --purge`, changed revision files are flagged by upgrade and downgrade,
and a failed downgrade is resumed by `downgrade --resume`.  All on real chDB."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import pytest
from click.testing import CliRunner

from app import commands, ledger
from app.cli import main
from app.config import PROJECT_ROOT
from app.engine import connect
from app.runtime import StepFailed

HEAD = "0013"

# Another deploy host, its clock an hour ahead or behind: the zakaz-schema CLI
# with time.time / time.time_ns shifted before anything is imported.
SKEWED_HOST = """
import sys, time
shift = float(sys.argv[1])
real_ns, real_s = time.time_ns, time.time
time.time_ns = lambda: real_ns() + int(shift * 1e9)
time.time = lambda: real_s() + shift
from app.cli import main
main(sys.argv[2:], prog_name="zakaz-schema")
"""


def on_skewed_host(shift_seconds: float, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SKEWED_HOST, str(shift_seconds), *args],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)


def cli(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, list(args), env=env)


def hand_row(query, heads: list[str], *, seq: int | None = None, revision: str = "", status: str = "stamped") -> None:
    """A ledger row written by hand (as an operator would with clickhouse-client)."""
    kw = {} if seq is None else {"seq": seq}
    row = ledger.Row(str(uuid.uuid4()), revision or ",".join(heads), "stamp", status, heads, "by hand", **kw)
    query(ledger.insert_sql("default", row))


def ledger_rows(query) -> int:
    return query("SELECT count() FROM default.zakaz_schema_ledger")[0][0]


def version(query) -> list[str]:
    return sorted(r[0] for r in query("SELECT version_num FROM default.alembic_version"))


# --- item 2: the order of the ledger is not a clock's ---------------------------------

@pytest.mark.slow
def test_a_downgrade_from_a_host_an_hour_ahead_does_not_pin_the_version(db_url, query):
    commands.upgrade(db_url, HEAD)
    down = on_skewed_host(3600, "downgrade", "-1", "--url", db_url)
    assert down.returncode == 0, down.stdout + down.stderr
    assert commands.status(db_url).heads == ["0012"]
    # Back on a host with a correct clock.
    up = cli("upgrade", "--url", db_url)
    assert up.exit_code == 0, up.output
    assert "the database is at 0013 (head)" in up.output
    st = commands.status(db_url)
    assert st.heads == [HEAD] and st.pending == [] and st.problem is None
    assert version(query) == [HEAD]
    assert commands.upgrade(db_url, "head") == []  # not re-applied
    seqs = [r[0] for r in query("SELECT seq FROM default.zakaz_schema_ledger ORDER BY seq")]
    assert len(set(seqs)) == len(seqs)


def test_a_host_an_hour_behind_records_its_steps_after_the_others(db_url, query):
    commands.upgrade(db_url, "0012")
    up = on_skewed_host(-3600, "upgrade", "--url", db_url)
    assert up.returncode == 0, up.stdout + up.stderr
    assert commands.status(db_url).heads == [HEAD]
    assert commands.upgrade(db_url, "head") == []


def test_a_hand_inserted_row_with_a_huge_seq_does_not_pin_the_version(db_url, query):
    commands.upgrade(db_url, "0004")
    # The operator recorded the version by hand, seq far beyond any clock's.
    hand_row(query, ["0004"], seq=5 * 10 ** 18)
    steps = commands.upgrade(db_url, "head")
    assert steps[0]["revision"] == "0005" and steps[-1]["revision"] == HEAD
    assert commands.status(db_url).heads == [HEAD]
    assert version(query) == [HEAD]
    assert commands.upgrade(db_url, "head") == []


def test_a_seq_at_the_uint64_limit_is_reported_and_nothing_is_written(db_url, query):
    commands.upgrade(db_url, "0004")
    hand_row(query, ["0004"], seq=2 ** 64 - 1)
    before = ledger_rows(query)
    for args in (("status",), ("upgrade",), ("repair", "0005", "--mark-applied")):
        result = cli(*args, "--url", db_url)
        assert result.exit_code == 2, (args, result.output)
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and "18446744073709551615" in errors[0] and "by hand" in errors[0], result.output
    assert ledger_rows(query) == before
    assert version(query) == ["0004"]
    assert query("SELECT count() FROM zakaz.fact_qtickets_sales") == [(0,)]
    assert query("SELECT count() FROM system.columns WHERE database = 'zakaz' "
                 "AND table = 'fact_qtickets_sales' AND name = '_loaded_at'") == [(0,)]


@pytest.mark.parametrize("shift", [3600, -3600], ids=["holder-ahead", "holder-behind"])
def test_the_deploy_lock_holds_whatever_the_holders_clock(db_url, monkeypatch, shift):
    import datetime as real_dt
    import types

    from app import lock
    from app.lock import LockTimeout, deploy_lock, live_claims, lock_ddl

    class Skewed(real_dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return real_dt.datetime.now(tz) + real_dt.timedelta(seconds=shift)

    with connect(db_url) as conn:
        conn.exec_driver_sql(lock_ddl("default"))
        real_ns = time.time_ns
        with monkeypatch.context() as skew:
            skew.setattr(time, "time_ns", lambda: real_ns() + int(shift * 1e9))
            skew.setattr(lock, "dt", types.SimpleNamespace(datetime=Skewed, timedelta=real_dt.timedelta),
                         raising=False)
            holder = deploy_lock(conn, "default", owner="skewed host")
            holder.__enter__()
        # The next claim comes from another host: nothing of this process's
        # clock readings may carry over (a clock-based seq was kept per process).
        monkeypatch.setattr("app.ledger._last_seq", 0, raising=False)
        try:
            assert [o for _, o in live_claims(conn, "default")] == ["skewed host"]
            with pytest.raises(LockTimeout, match="skewed host"):
                with deploy_lock(conn, "default", owner="on time", wait=0.3, poll=0.1):
                    pytest.fail("two deploys held the lock")
        finally:
            holder.__exit__(None, None, None)
        with deploy_lock(conn, "default", owner="on time", wait=0.3):
            assert [o for _, o in live_claims(conn, "default")] == ["on time"]


# --- item 3: repair records only what alembic could ------------------------------------

def test_repair_refuses_a_revision_that_is_already_applied(db_url, query):
    commands.upgrade(db_url, HEAD)
    before = ledger_rows(query)
    result = cli("repair", "0005", "--mark-applied", "--url", db_url)
    assert result.exit_code == 1, result.output
    assert "Error: 0005 is already applied (the database is at 0013)" in result.output
    assert ledger_rows(query) == before
    st = commands.status(db_url)
    assert st.heads == [HEAD] and st.version_problem is None
    assert commands.upgrade(db_url, "head") == []


def test_repair_refuses_a_revision_whose_parent_is_not_applied(db_url, query):
    commands.upgrade(db_url, "0003")
    before = ledger_rows(query)
    result = cli("repair", "0005", "--mark-applied", "--url", db_url)
    assert result.exit_code == 2, result.output
    assert "0005 follows 0004, which is not applied" in result.output
    assert ledger_rows(query) == before and commands.status(db_url).heads == ["0003"]


def test_repair_mark_reverted_of_a_revision_not_applied_says_so(db_url, query):
    commands.upgrade(db_url, "0004")
    before = ledger_rows(query)
    result = cli("repair", "0006", "--mark-reverted", "--url", db_url)
    assert result.exit_code == 1, result.output
    assert "0006 is not applied (the database is at 0004)" in result.output
    below = cli("repair", "0002", "--mark-reverted", "--url", db_url)
    assert below.exit_code == 2 and "0002 is below the head(s) 0004" in below.output
    assert ledger_rows(query) == before and commands.status(db_url).heads == ["0004"]


def test_repair_closes_a_failed_step_undone_by_hand(db_url, query):
    commands.upgrade(db_url, "0004")
    with pytest.raises(StepFailed):
        commands.upgrade(db_url, "0005", fail_at=("0005", 1))
    result = cli("repair", "0005", "--mark-reverted", "--url", db_url)
    assert result.exit_code == 0, result.output
    st = commands.status(db_url)
    assert st.heads == ["0004"] and st.problem is None


def test_repair_moves_heads_on_a_branch_as_alembic_does(db_url, query, versions_copy, monkeypatch):
    (versions_copy / "versions" / "0100_side.py").write_text(
        '"""A side branch off 0009."""\nrevision = "0100"\ndown_revision = "0009"\n'
        'branch_labels = None\ndepends_on = None\nDOWNGRADE_LOSES = []\n'
        'def upgrade():\n    pass\ndef downgrade():\n    pass\n')
    monkeypatch.setenv("ZAKAZ_MIGRATIONS", str(versions_copy))
    commands.upgrade(db_url, HEAD)
    assert commands.repair(db_url, "0100", mark="applied")["heads"] == [HEAD, "0100"]
    assert commands.status(db_url).version_problem is None
    assert commands.repair(db_url, "0100", mark="reverted")["heads"] == [HEAD]
    with pytest.raises(commands.RepairMismatch):
        commands.repair(db_url, "0100", mark="reverted")


def test_overlapping_heads_left_by_an_old_repair_are_explained_and_purged(db_url, query):
    commands.upgrade(db_url, "0012")
    hand_row(query, ["0005", "0012"], status="repaired")  # what `repair 0005 --mark-applied` wrote
    status = cli("status", "--url", db_url)
    assert status.exit_code == 1, status.output
    assert "PROBLEM:   the ledger's heads 0005, 0012 are not a possible version (0005 is below 0012)" in status.output
    up = cli("upgrade", "--url", db_url)
    assert up.exit_code == 2 and "stamp REV --purge" in up.output and "overlaps" not in up.output
    assert cli("stamp", "0012", "--purge", "--yes", "--url", db_url).exit_code == 0
    assert commands.status(db_url).heads == ["0012"]
    assert [s["revision"] for s in commands.upgrade(db_url, "head")] == [HEAD]


# --- item 4: a head this checkout does not have ------------------------------------------

def test_a_missing_revision_file_is_named_and_stamp_purge_recovers(db_url, query, versions_copy):
    extra = versions_copy / "versions" / "0014_extra.py"
    extra.write_text('"""An extra revision."""\nrevision = "0014"\ndown_revision = "0013"\n'
                     'branch_labels = None\ndepends_on = None\nDOWNGRADE_LOSES = []\n'
                     'def upgrade():\n    pass\ndef downgrade():\n    pass\n')
    env = {"ZAKAZ_MIGRATIONS": str(versions_copy)}
    assert cli("upgrade", "--url", db_url, env=env).exit_code == 0
    extra.unlink()  # a checkout without it

    status = cli("status", "--url", db_url, env=env)
    assert status.exit_code == 1, status.output
    problem = [line for line in status.output.splitlines() if line.startswith("PROBLEM:")]
    assert len(problem) == 1, status.output
    assert "the database is at 0014, which this checkout has no revision file for" in problem[0]
    assert "zakaz-schema stamp REV --purge" in problem[0]
    assert "unexpected error" not in status.output
    # (`stamp` without --purge: app.cli asks for --yes first, then the same refusal.)
    for args in (("upgrade",), ("downgrade", "-1"), ("stamp", HEAD, "--yes"), ("repair", HEAD, "--mark-reverted")):
        refused = cli(*args, "--url", db_url, env=env)
        assert refused.exit_code == 2, (args, refused.output)
        assert "0014" in refused.output and "--purge" in refused.output, (args, refused.output)

    rows = ledger_rows(query)
    # --yes: the stamp records 0014 as not applied while the warehouse holds objects.
    stamped = cli("stamp", HEAD, "--purge", "--yes", "--url", db_url, env=env)
    assert stamped.exit_code == 0, stamped.output
    assert ledger_rows(query) == rows + 1  # one more row: insert-only
    assert query("SELECT heads, status FROM default.zakaz_schema_ledger ORDER BY seq DESC LIMIT 1") == [
        ([HEAD], "stamped")]
    assert query("SELECT count() FROM system.mutations WHERE table = 'zakaz_schema_ledger'") == [(0,)]
    clean = cli("status", "--strict", "--url", db_url, env=env)
    assert clean.exit_code == 0, clean.output
    assert "pending:   none (at head)" in clean.output and "WARNING" not in clean.output
    assert cli("upgrade", "--url", db_url, env=env).output.splitlines()[-1].startswith("Nothing to do")


def test_plain_alembic_stamp_purge_records_exactly_the_revision(db_url, query):
    commands.upgrade(db_url, "0004")
    hand_row(query, ["0099"])  # a bogus head
    assert "0099" in commands.status(db_url).version_problem
    done = subprocess.run([sys.executable, "-m", "alembic", "-x", f"url={db_url}", "stamp", "--purge", "0004"],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    st = commands.status(db_url)
    assert st.heads == ["0004"] and st.version_problem is None and st.changed_files == []
    assert version(query) == ["0004"]
    base = cli("stamp", "base", "--purge", "--yes", "--url", db_url)
    assert base.exit_code == 0, base.output
    assert commands.status(db_url).heads == [] and version(query) == []


# --- item 6: a revision file changed since it was applied -------------------------------

@pytest.mark.slow
def test_upgrade_and_downgrade_warn_about_changed_files_and_strict_refuses(db_url, query, versions_copy):
    env = {"ZAKAZ_MIGRATIONS": str(versions_copy)}
    assert cli("upgrade", "0009", "--url", db_url, env=env).exit_code == 0
    query("INSERT INTO zakaz.fact_qtickets_inventory_latest (snapshot_ts, event_id, event_name, city, _ver) "
          "VALUES (now(), 'e1', 'x', 'msk', 1)")
    path = versions_copy / "versions" / "0009_fact_qtickets_inventory_latest.py"
    declared = 'DOWNGRADE_LOSES = ["zakaz.fact_qtickets_inventory_latest"]'
    assert declared in path.read_text()
    path.write_text(path.read_text().replace(declared, "DOWNGRADE_LOSES = []"))  # the repro
    warning = "WARNING:   0009: 0009_fact_qtickets_inventory_latest.py changed since it was applied"
    assert warning in cli("status", "--url", db_url, env=env).output
    rows = ledger_rows(query)

    for args in (("downgrade", "-1", "--strict"), ("downgrade", "0008", "--strict", "--allow-data-loss"),
                 ("upgrade", "--strict")):
        refused = cli(*args, "--url", db_url, env=env)
        assert refused.exit_code == 2, (args, refused.output)
        assert warning in refused.output
        errors = [line for line in refused.output.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and "--strict" in errors[0] and "0009" in errors[0], refused.output
    assert ledger_rows(query) == rows and commands.status(db_url).heads == ["0009"]
    assert query("SELECT count() FROM zakaz.fact_qtickets_inventory_latest") == [(1,)]

    up = cli("upgrade", "--url", db_url, env=env)
    assert up.exit_code == 0 and warning in up.output
    as_json = cli("upgrade", "--json", "--url", db_url, env=env)
    assert as_json.exit_code == 0
    assert json.loads(as_json.output)["warnings"] == [
        "0009: 0009_fact_qtickets_inventory_latest.py changed since it was applied"]
    down = cli("downgrade", "-1", "--url", db_url, env=env)
    assert down.exit_code == 0 and warning in down.output


# --- item 7: a failed downgrade is resumed by downgrade --resume --------------------------

@pytest.mark.slow
def test_a_failed_downgrade_is_resumed_with_downgrade_resume(db_url, query):
    commands.upgrade(db_url, "0009")
    with pytest.raises(StepFailed) as info:
        commands.downgrade(db_url, "0008", fail_at=("0009", 1))
    assert "`zakaz-schema downgrade 0008 --resume`" in str(info.value)
    assert "upgrade --resume" not in str(info.value)

    status = cli("status", "--url", db_url)
    assert status.exit_code == 1
    assert "PROBLEM:   downgrade 0009 failed at statement 1" in status.output
    assert "fix the cause, then `zakaz-schema downgrade 0008 --resume`" in status.output
    assert "--mark-reverted" in status.output and "upgrade --resume" not in status.output

    rows = ledger_rows(query)
    wrong_way = cli("upgrade", "--resume", "--url", db_url)
    assert wrong_way.exit_code == 2, wrong_way.output
    assert "does not resume the failed downgrade of 0009" in wrong_way.output
    assert "`zakaz-schema downgrade 0008 --resume`" in wrong_way.output
    blocked = cli("downgrade", "0008", "--url", db_url)
    assert blocked.exit_code == 2 and "`zakaz-schema downgrade 0008 --resume`" in blocked.output
    assert ledger_rows(query) == rows

    resumed = cli("downgrade", "0008", "--resume", "--url", db_url)
    assert resumed.exit_code == 0, resumed.output
    assert "  - 0009" in resumed.output
    st = commands.status(db_url)
    assert st.heads == ["0008"] and st.problem is None
    assert query("SELECT count() FROM system.tables WHERE database = 'zakaz' "
                 "AND name = 'fact_qtickets_inventory_latest'") == [(0,)]


def test_an_upgrade_with_nothing_to_do_does_not_hide_a_failed_downgrade(db_url, versions_copy, monkeypatch):
    """A failed downgrade leaves the heads where they were: `upgrade` must not say "Nothing to do"."""
    from click.testing import CliRunner

    from app.cli import main

    broken = versions_copy / "versions" / "0014_fails_down.py"
    broken.write_text(
        '"""Its downgrade fails (for the test)."""\nfrom app.operations import run\n'
        'revision = "0014"\ndown_revision = "0013"\nbranch_labels = None\ndepends_on = None\n'
        'DOWNGRADE_LOSES = []\n'
        'def upgrade():\n    pass\n'
        'def downgrade():\n    run("ALTER TABLE zakaz.no_such_table DROP COLUMN x")\n')
    monkeypatch.setenv("ZAKAZ_MIGRATIONS", str(versions_copy))
    runner = CliRunner()
    assert runner.invoke(main, ["upgrade", "--url", db_url]).exit_code == 0
    assert runner.invoke(main, ["downgrade", "-1", "--url", db_url]).exit_code == 1
    again = runner.invoke(main, ["upgrade", "--url", db_url])
    assert again.exit_code == 2, again.output
    assert "Nothing to do" not in again.output and "0014 downgrade is failed" in again.output
    assert "downgrade 0013 --resume" in again.output
