"""Failure safety: injected statement failures, a killed process, the deploy
lock, checksums, and the catalogue of bad input, all on real chDB.

Failure injection hits every statement of revisions 0001-0009 and the first,
middle and last of 0010, each case on a copy of the template database one
revision back (tests/chain_templates.py) holding sample rows."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from click.testing import CliRunner

from app import commands, ledger
from app.cli import main
from app.engine import connect
from app.runtime import StepFailed
from app.fingerprint import fingerprints
from app.sample_data import base_tables, load_sample
from app.snapshot import snapshot_schema


def _fingerprints(url):
    with connect(url) as conn:
        return fingerprints(conn)


def _stored_columns(conn) -> dict[str, list[str]]:
    return {name: [c for c, _, kind in t.columns if kind != "ALIAS"] for name, t in base_tables(conn).items()}


def _content(conn, kept: dict[str, list[str]]) -> dict[str, tuple[int, str]]:
    """Row count and checksum of every table, over the columns a resume must reproduce exactly.

    Those are all stored columns but the ones the step adds with a DEFAULT
    (``now()``, ``generateUUIDv4()``: another value in every run); ``kept``
    has each table's columns before the step.
    """
    columns = {
        name: [c for c, _, kind in t.columns if kind != "ALIAS" and (c in kept.get(name, ()) or not kind)]
        for name, t in base_tables(conn).items()
    }
    return fingerprints(conn, columns)


# Statements each revision runs on the embedded engine (0010's access statements
# are checked and skipped there, and count).  Written out so that every case is a
# test of its own; test_injection_points_cover_every_statement keeps it true.
STATEMENTS = {"0001": 3, "0002": 23, "0003": 12, "0004": 5, "0005": 2, "0006": 3, "0007": 1,
              "0008": 8, "0009": 5, "0010": 49}


def _injection_points(revision: str) -> list[int]:
    # 0010's 49 access statements all take one path: first, middle and last
    # stand for the rest.  Every statement of every other revision is hit.
    count = STATEMENTS[revision]
    if revision == "0010":
        return [1, count // 2, count]
    return list(range(1, count + 1))


INJECTIONS = [(rev, k) for rev in STATEMENTS for k in _injection_points(rev)]
SAMPLE_ROWS = 20


def _previous(revision: str) -> str:
    revisions = list(STATEMENTS)
    i = revisions.index(revision)
    return revisions[i - 1] if i else "base"


@pytest.mark.replay
def test_injection_points_cover_every_statement(database_at):
    """STATEMENTS is what a clean install runs, so the cases below hit every statement they claim."""
    steps = commands.upgrade(database_at("base"), "0010")
    assert {s["revision"]: s["statements"] for s in steps} == STATEMENTS
    assert len(INJECTIONS) == sum(n for rev, n in STATEMENTS.items() if rev != "0010") + 3


@pytest.fixture(scope="module")
def clean_results(chain_templates, tmp_path_factory):
    """revision -> (schema, content, columns kept) of a clean upgrade from the revision
    before, with sample rows loaded there: what every resumed run must reproduce."""
    results = {}

    def get(revision: str):
        if revision not in results:
            previous = _previous(revision)
            url = chain_templates.copy(previous, tmp_path_factory.mktemp(f"clean-{revision}") / "db",
                                       sample_rows=SAMPLE_ROWS)
            with connect(url) as conn:
                kept = _stored_columns(conn)
                commands.upgrade(url, revision, connection=conn)
                results[revision] = snapshot_schema(conn), _content(conn, kept), kept
        return results[revision]
    return get


@pytest.mark.parametrize("revision, k", INJECTIONS, ids=[f"{r}-{k}" for r, k in INJECTIONS])
@pytest.mark.replay
def test_kth_statement_failure_is_recorded_and_resume_converges(revision, k, clean_results, database_at):
    """Statement ``k`` of ``revision`` fails on a database one revision back, holding sample rows.

    The step is recorded as failed at that statement, a plain upgrade refuses,
    and ``--resume`` leaves the schema and the content a clean upgrade leaves
    (a count alone would miss rows copied twice).
    """
    schema, content, kept = clean_results(revision)
    previous = _previous(revision)
    url = database_at(previous, sample_rows=SAMPLE_ROWS)
    # One engine for the whole case (opening one costs more than a step); status
    # reads through the URL, as an operator's would, and shares it.
    with connect(url) as conn:
        with pytest.raises(StepFailed) as info:
            commands.upgrade(url, revision, fail_at=(revision, k), connection=conn)
        assert info.value.statement == k
        st = commands.status(url)
        assert st.heads == ([] if previous == "base" else [previous])
        assert st.problem["state"] == "failed" and st.problem["revision"] == revision
        assert st.problem["failed_statement"] == k
        assert f"injected failure at statement {k}" in st.problem["error"]
        with pytest.raises(Exception, match="--resume"):
            commands.upgrade(url, revision, connection=conn)  # refuses on top of a failed step
        commands.upgrade(url, revision, resume=True, connection=conn)
        st = commands.status(url)
        assert st.heads == [revision] and st.problem is None
        assert snapshot_schema(conn) == schema, f"{revision} resumed after statement {k} differs"
        assert _content(conn, kept) == content, f"{revision} resumed after statement {k}: content differs"


BACKFILL = '''
    """Backfill zakaz.events_copy from zakaz.dim_events (for the resume test).

    Downgrade drops the copy.
    """
    from app.operations import copy_rows_once, create_table, drop_table, run
    revision = "0014"
    down_revision = "0013"
    branch_labels = None
    depends_on = None
    DOWNGRADE_LOSES = ["zakaz.events_copy"]
    def upgrade():
        create_table("zakaz.events_copy", "event_id String\\nevent_name String", engine="MergeTree", order_by="event_id")
        {copy}
        run("SELECT 1")
    def downgrade():
        drop_table("zakaz.events_copy")
'''


@pytest.mark.parametrize("copy, repeated", [
    ('copy_rows_once("zakaz.events_copy", "event_id, event_name", "SELECT event_id, event_name FROM zakaz.dim_events")',
     False),
    ('run("INSERT INTO zakaz.events_copy (event_id, event_name) SELECT event_id, event_name FROM zakaz.dim_events")',
     True),
], ids=["copy_rows_once", "bare-run"])
@pytest.mark.slow
def test_resume_after_a_backfill_compares_content(copy, repeated, db_url, versions_copy, monkeypatch):
    """Issue 15.5: a bare INSERT ... SELECT before a failing statement runs twice on --resume.

    ``count >= before`` passed that (10 rows -> 20); the content checksum does
    not.  copy_rows_once resumes to what a clean run gives, and lint's
    rerun-data rule (tests/test_lint.py) flags the bare one.
    """
    (versions_copy / "versions" / "0014_backfill.py").write_text(textwrap.dedent(BACKFILL.format(copy=copy)))
    monkeypatch.setenv("ZAKAZ_MIGRATIONS", str(versions_copy))
    commands.upgrade(db_url, "0013")
    with connect(db_url) as conn:
        load_sample(conn, rows_per_table=10, seed=7)
    commands.upgrade(db_url, "0014")
    clean = _fingerprints(db_url)["zakaz.events_copy"]
    assert clean[0] == 10
    commands.downgrade(db_url, "0013", allow_data_loss=True)
    with pytest.raises(StepFailed):
        commands.upgrade(db_url, "0014", fail_at=("0014", 3))
    commands.upgrade(db_url, "0014", resume=True)
    resumed = _fingerprints(db_url)["zakaz.events_copy"]
    if repeated:
        assert resumed[0] == 20 and resumed != clean
    else:
        assert resumed == clean


@pytest.mark.slow
def test_a_killed_process_leaves_an_interrupted_step_and_resume_converges(db_url, versions_copy, monkeypatch):
    slow = versions_copy / "versions" / "0014_slow.py"
    slow.write_text(textwrap.dedent('''
        """A revision that stalls after its first statement (for the crash test)."""
        import sys, time
        from app.operations import create_table, drop_table
        revision = "0014"
        down_revision = "0013"
        branch_labels = None
        depends_on = None
        DOWNGRADE_LOSES = ["zakaz.slow"]
        def upgrade():
            create_table("zakaz.slow", "a UInt8", engine="MergeTree", order_by="a")
            if not __import__("os").environ.get("ZAKAZ_NO_STALL"):
                print("STALLED", flush=True)
                time.sleep(600)
            create_table("zakaz.slow2", "a UInt8", engine="MergeTree", order_by="a")
        def downgrade():
            drop_table("zakaz.slow2")
            drop_table("zakaz.slow")
    '''))
    monkeypatch.setenv("ZAKAZ_MIGRATIONS", str(versions_copy))
    commands.upgrade(db_url, "0013")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "upgrade", "--url", db_url],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy(),
    )
    for line in proc.stdout:
        if "STALLED" in line:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    st = commands.status(db_url)
    assert st.heads == ["0013"]
    assert st.problem["state"] == "interrupted" and st.problem["revision"] == "0014"
    runner = CliRunner()
    status = runner.invoke(main, ["status", "--url", db_url])
    assert status.exit_code == 1 and "0014 interrupted" in status.output
    blocked = runner.invoke(main, ["upgrade", "--url", db_url])
    assert blocked.exit_code == 2 and "interrupted" in blocked.output and "--resume" in blocked.output
    monkeypatch.setenv("ZAKAZ_NO_STALL", "1")
    resumed = runner.invoke(main, ["upgrade", "--resume", "--url", db_url])
    assert resumed.exit_code == 0, resumed.output
    st = commands.status(db_url)
    assert st.heads == ["0014"] and st.problem is None


def test_rows_written_during_a_downgrade_stop_it_before_the_step_that_drops_them(db_url):
    """Checked for the whole run first, and again before each step: an ETL write may land in between."""
    from app.runtime import MigrationBlocked

    commands.upgrade(db_url, "0005")
    with connect(db_url) as conn:
        def etl_writes(event):
            if event["revision"] == "0005":
                conn.exec_driver_sql("INSERT INTO zakaz.fact_qtickets_sales_daily "
                                     "(sales_date, event_id, city, tickets_sold, revenue, _ver) "
                                     "VALUES ('2026-01-01', 'e', 'c', 1, 1, 1)")

        with pytest.raises(MigrationBlocked, match=r"downgrade would drop data from: zakaz.fact_qtickets_sales_daily "
                                                   r"\(holding 1 row\); nothing of 0004 ran, the database is at 0004"):
            commands.downgrade(db_url, "0003", connection=conn, reporter=etl_writes)
        assert conn.exec_driver_sql("SELECT count() FROM zakaz.fact_qtickets_sales_daily").scalar() == 1
    st = commands.status(db_url)
    assert st.heads == ["0004"] and st.problem is None


DROPS = '''
    """{what} (for the data-loss guard tests).

    Nothing to undo.
    """
    from app.operations import create_table, drop_table, run
    revision = "0014"
    down_revision = "0013"
    branch_labels = None
    depends_on = None
    UPGRADE_LOSES = {upgrade_loses}
    DOWNGRADE_LOSES = ["meta.scratch_import"]
    def upgrade():
        {upgrade}
    def downgrade():
        run("INSERT INTO meta.scratch_import (a) VALUES (1)")  # an ETL write during the step
        drop_table("meta.scratch_import")
'''


def test_a_drop_checks_for_rows_right_before_its_statement(db_url, versions_copy, monkeypatch, query):
    (versions_copy / "versions" / "0014_drops.py").write_text(textwrap.dedent(DROPS.format(
        what="Create meta.scratch_import", upgrade_loses=[],
        upgrade='create_table("meta.scratch_import", "a UInt8", engine="MergeTree", order_by="a")')))
    monkeypatch.setenv("ZAKAZ_MIGRATIONS", str(versions_copy))
    commands.upgrade(db_url, "head")
    result = CliRunner().invoke(main, ["downgrade", "-1", "--url", db_url])
    assert result.exit_code == 1, result.output
    [error] = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert "refusing to drop meta.scratch_import (1 row)" in error and "--allow-data-loss" in error
    assert query("SELECT count() FROM meta.scratch_import") == [(1,)]


def test_an_upgrade_that_drops_rows_needs_the_flag(db_url, versions_copy, monkeypatch, query):
    (versions_copy / "versions" / "0014_drops.py").write_text(textwrap.dedent(DROPS.format(
        what="Drop meta.scratch_import", upgrade_loses=["meta.scratch_import"],
        upgrade='drop_table("meta.scratch_import")')))
    monkeypatch.setenv("ZAKAZ_MIGRATIONS", str(versions_copy))
    commands.upgrade(db_url, "0013")
    query("CREATE TABLE meta.scratch_import (a UInt8) ENGINE = MergeTree ORDER BY a")
    query("INSERT INTO meta.scratch_import VALUES (1), (2)")
    _bad(["upgrade", "--url", db_url], expect="upgrade would drop data from: meta.scratch_import (holding 2 rows)")
    assert commands.status(db_url).heads == ["0013"]
    done = CliRunner().invoke(main, ["upgrade", "--allow-data-loss", "--url", db_url])
    assert done.exit_code == 0, done.output
    assert query("SELECT count() FROM system.tables WHERE database = 'meta' AND name = 'scratch_import'") == [(0,)]


def test_repair_mark_applied_and_reverted(db_url, query):
    commands.upgrade(db_url, "0004")
    with pytest.raises(StepFailed):
        commands.upgrade(db_url, "0005", fail_at=("0005", 1))
    query("ALTER TABLE zakaz.fact_qtickets_sales ADD COLUMN _loaded_at DateTime DEFAULT now() AFTER _ver")
    runner = CliRunner()
    result = runner.invoke(main, ["repair", "0005", "--mark-applied", "--url", db_url])
    assert result.exit_code == 0, result.output
    assert "0004 -> 0005" in result.output
    st = commands.status(db_url)
    assert st.heads == ["0005"] and st.problem is None
    rows = query("SELECT direction, status FROM default.zakaz_schema_ledger ORDER BY seq DESC LIMIT 1")
    assert rows == [("repair", "repaired")]
    result = runner.invoke(main, ["repair", "0005", "--mark-reverted", "--url", db_url])
    assert commands.status(db_url).heads == ["0004"]
    assert runner.invoke(main, ["repair", "0005", "--url", db_url]).exit_code == 2


def test_deploy_lock_protocol(db_url):
    from app.lock import LockTimeout, deploy_lock, live_claims

    with connect(db_url) as conn:
        with deploy_lock(conn, "default", owner="first deploy"):
            with pytest.raises(LockTimeout, match="first deploy"):
                with deploy_lock(conn, "default", owner="second deploy", wait=0.3, poll=0.1):
                    pytest.fail("two deploys held the lock")
            assert [owner for _, owner in live_claims(conn, "default")] == ["first deploy"]
        with deploy_lock(conn, "default", owner="second deploy", wait=0.3):
            assert [owner for _, owner in live_claims(conn, "default")] == ["second deploy"]


def test_expired_lock_does_not_block(db_url):
    from app.lock import _insert, deploy_lock, live_claims, lock_ddl

    with connect(db_url) as conn:
        conn.exec_driver_sql(lock_ddl("default"))
        # A claim that is never released: its process died.
        _insert(conn, "default", "dead-claim", "dead deploy", "claim", ttl=0.5)
        assert [o for _, o in live_claims(conn, "default")] == ["dead deploy"]
        time.sleep(0.7)
        assert live_claims(conn, "default") == []
        with deploy_lock(conn, "default", owner="next deploy", wait=0.1):
            assert [o for _, o in live_claims(conn, "default")] == ["next deploy"]


def test_a_held_claim_is_renewed_past_its_ttl(db_url):
    """A deploy longer than the lock's ttl (a big rebuild) keeps the lock: its thread renews the claim."""
    from app.lock import LockTimeout, deploy_lock, live_claims

    with connect(db_url) as conn:
        with deploy_lock(conn, "default", owner="long deploy", ttl=1.2):
            time.sleep(2.0)  # past the ttl: renewed at 0.4 s, 0.8 s, ...
            with pytest.raises(LockTimeout, match="long deploy"):
                with deploy_lock(conn, "default", owner="next deploy", wait=0.2, poll=0.1):
                    pytest.fail("two deploys held the lock")
            assert [o for _, o in live_claims(conn, "default")] == ["long deploy"]
        assert live_claims(conn, "default") == []


def test_the_claim_of_a_process_gone_from_this_host_is_released_at_once(db_url):
    import socket

    from app.lock import LockTimeout, _insert, _pid_namespace, deploy_lock, live_claims, lock_ddl

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    here = f"on {socket.gethostname()} ({_pid_namespace()})"
    try:
        with connect(db_url) as conn:
            conn.exec_driver_sql(lock_ddl("default"))
            _insert(conn, "default", "killed", f"pid {gone.stdout.strip()} {here}", "claim", ttl=900)
            with deploy_lock(conn, "default", owner="next deploy", wait=0.5):  # no 900 s wait
                assert [o for _, o in live_claims(conn, "default")] == ["next deploy"]
            # A process still running, or one on another host: its claim stands.
            for owner in (f"pid {alive.pid} {here}", f"pid {gone.stdout.strip()} on another-host (pid:[1])"):
                _insert(conn, "default", owner, owner, "claim", ttl=900)
                with pytest.raises(LockTimeout, match=re.escape(owner)):
                    with deploy_lock(conn, "default", owner="next deploy", wait=0.3, poll=0.1):
                        pytest.fail("a live claim was released")
                _insert(conn, "default", owner, owner, "release", ttl=900)
    finally:
        alive.kill()


def test_embedded_lock_second_process_one_line(db_url):
    commands.upgrade(db_url, "0001")
    with connect(db_url) as conn:
        conn.exec_driver_sql("SELECT 1")
        result = subprocess.run([sys.executable, "-m", "app", "upgrade", "--url", db_url],
                                capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "in use by another process" in errors[0]
    assert "Traceback" not in result.stderr


def test_changed_revision_file_warns_and_strict_fails(db_url, versions_copy, monkeypatch):
    monkeypatch.setenv("ZAKAZ_MIGRATIONS", str(versions_copy))
    commands.upgrade(db_url, "head")
    path = versions_copy / "versions" / "0005_fact_qtickets_sales_loaded_at.py"
    path.write_text(path.read_text() + "\n# edited after it was applied\n")
    runner = CliRunner()
    status = runner.invoke(main, ["status", "--url", db_url])
    assert status.exit_code == 0 and "0005: 0005_fact_qtickets_sales_loaded_at.py changed since it was applied" in status.output
    assert runner.invoke(main, ["status", "--strict", "--url", db_url]).exit_code == 1
    verify = runner.invoke(main, ["verify", "--url", db_url])
    assert verify.exit_code == 0 and "warning: revision 0005" in verify.output
    assert runner.invoke(main, ["verify", "--strict", "--url", db_url]).exit_code == 1


# --- the bad input catalogue: one line, exit 2, no traceback -----------------------------

def _bad(args, env=None, expect=""):
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    assert "Traceback" not in result.output
    assert expect in errors[0], errors[0]
    return errors[0]


def test_malformed_url():
    _bad(["status", "--url", "not a url at all"], expect="malformed database URL")


def test_unknown_driver():
    _bad(["status", "--url", "postgresql://u:pw@localhost/db"], expect="unknown database driver 'postgresql'")


def test_unreachable_server():
    line = _bad(["status", "--url", "clickhouse+native://u:TopSecret@127.0.0.1:1/default"],
                expect="cannot reach the ClickHouse server")
    assert "TopSecret" not in line


def test_embedded_path_not_writable(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    _bad(["status", "--url", f"clickhouse+chdb:///default?path={blocker}/db"], expect="cannot be created")


def test_unknown_revision(db_url):
    _bad(["upgrade", "9999", "--url", db_url], expect="9999")


def test_ambiguous_revision_prefix(db_url):
    _bad(["upgrade", "000", "--url", db_url], expect="000")


def test_downgrade_below_base(db_url):
    commands.upgrade(db_url, "0001")
    _bad(["downgrade", "-2", "--url", db_url], expect="fewer than 2 revisions are applied")


def test_revision_file_with_syntax_error(db_url, versions_copy):
    (versions_copy / "versions" / "0012_broken.py").write_text('"""Broken."""\nrevision = "0012"\ndef upgrade(:\n')
    _bad(["status", "--url", db_url], env={"ZAKAZ_MIGRATIONS": str(versions_copy)},
         expect="0012_broken.py has a syntax error at line 3")


def test_two_heads_without_branch(db_url, versions_copy):
    (versions_copy / "versions" / "0100_side.py").write_text(
        '"""Side."""\nrevision = "0100"\ndown_revision = "0009"\nbranch_labels = None\ndepends_on = None\n'
        'def upgrade():\n    pass\ndef downgrade():\n    pass\n')
    env = {"ZAKAZ_MIGRATIONS": str(versions_copy)}
    _bad(["upgrade", "head", "--url", db_url], env=env, expect="head")
    _bad(["new", "another"], env=env, expect="2 heads")


def test_ledger_altered_by_hand(db_url, query):
    commands.upgrade(db_url, "0001")
    query("ALTER TABLE default.zakaz_schema_ledger DROP COLUMN checksum")
    _bad(["upgrade", "--url", db_url], expect="altered by hand")
    _bad(["status", "--url", db_url], expect="altered by hand")


def test_ledger_dropped_by_hand(db_url, query):
    commands.upgrade(db_url, "0003")
    query("DROP TABLE default.zakaz_schema_ledger SYNC")
    _bad(["upgrade", "--url", db_url], expect="ledger was dropped by hand")
    status = CliRunner().invoke(main, ["status", "--url", db_url])
    assert status.exit_code == 1 and "UNMANAGED: no ledger" in status.output and "adopt" in status.output
    assert ledger.LEDGER_TABLE not in {r[0] for r in query("SELECT name FROM system.tables WHERE database = 'default'")}
