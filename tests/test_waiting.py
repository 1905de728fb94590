"""A step that runs for more than a few seconds says what it waits for (app/waiting.py).

Statements are made slow for real: a SELECT that sleeps per row in small
blocks, a mutation whose UPDATE sleeps per row (chDB runs ALTER UPDATE with
mutations_sync = 1: the statement waits for it).  Each takes ~6 s, twice the
first report's 3 s; assertions are on what is said and in which order, never
on how long it took.
"""
from __future__ import annotations

import json
import threading

import pytest
from click.testing import CliRunner

from app import progress, waiting
from app.cli import main

SLOW_SELECT = (
    '"""A slow statement: a SELECT that sleeps 0.25 s per row, one row per block (~6 s)."""\n'
    'from alembic import op\n'
    'revision = "0014"\ndown_revision = "0013"\nbranch_labels = None\ndepends_on = None\n'
    'DOWNGRADE_LOSES = []\n'
    'def upgrade():\n'
    '    op.run("SELECT sleepEachRow(0.25) FROM numbers(24) SETTINGS max_block_size = 1")\n'
    'def downgrade():\n    pass\n'
)

SLOW_MUTATION = (
    '"""A slow mutation: 60 rows in blocks of 8, each row sleeping 0.1 s (~6 s)."""\n'
    'from alembic import op\n'
    'revision = "0014"\ndown_revision = "0013"\nbranch_labels = None\ndepends_on = None\n'
    'DOWNGRADE_LOSES = []\n'
    'def upgrade():\n'
    '    op.run("CREATE TABLE IF NOT EXISTS meta.zwait (a UInt32, b UInt32) ENGINE = MergeTree ORDER BY a "\n'
    '           "SETTINGS merge_max_block_size = 8, index_granularity = 8")\n'
    '    op.run("INSERT INTO meta.zwait SELECT number, 0 FROM numbers(60)")\n'
    '    op.run("ALTER TABLE meta.zwait UPDATE b = b + sleepEachRow(0.1) WHERE 1")\n'
    'def downgrade():\n    op.run("DROP TABLE IF EXISTS meta.zwait")\n'
)


def _events(stderr: str) -> list[dict]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


# --- what is said (fast) ------------------------------------------------------------------------

@pytest.mark.fast
def test_each_kind_of_wait_reads_as_one_line():
    ddl = waiting.ddl_wait("query-0000000007", "zakaz", [("ch1", 9000, "Finished"), ("ch2", 9000, "Inactive")],
                           4.2)
    assert waiting.line(ddl, "0010 statement 1 (CREATE ROLE …)") == (
        "waiting 4 s: 0010 statement 1 (CREATE ROLE …): distributed DDL query-0000000007 on cluster 'zakaz' "
        "not finished on ch2:9000 (Inactive) (1 of 2 hosts done)")
    assert ddl.detail["hosts_not_finished"] == ["ch2:9000"]
    assert waiting.ddl_wait("query-1", "zakaz", [("ch1", 9000, "Finished")], 3) is None
    mutation = waiting.mutation_wait("zakaz.t", "0000000003", "UPDATE b = 1 WHERE 1", 1, "Code: 48. oops", 12)
    assert mutation.text == ("mutation 0000000003 on zakaz.t (UPDATE b = 1 WHERE 1): 1 part to do; "
                             "latest failure: Code: 48. oops")
    query = waiting.query_wait(1500, 20000, 3.4)
    assert query.text == "the statement itself: running, 1.50k rows read of ~20.0k"
    lock = waiting.lock_wait("default", "pid 12 on deploy-1", 3.5, 60)
    assert lock.text == "the deploy lock on default, held by pid 12 on deploy-1 (waiting up to 60 s, --lock-wait)"
    event = json.loads(waiting.json_line(mutation, {"revision": "0014", "statement": 3, "sql": "ALTER …"}))
    assert (event["event"], event["waiting_for"], event["revision"], event["detail"]["parts_to_do"]) == (
        "waiting", "mutation", "0014", 1)


@pytest.mark.fast
def test_the_table_an_alter_waits_for_and_no_password_in_the_statement_shown():
    assert waiting.altered_table("ALTER TABLE zakaz.t UPDATE b = 1 WHERE 1", "default") == ("zakaz", "t")
    assert waiting.altered_table("  alter table `meta`.`x y` DELETE WHERE 1", "default") == ("meta", "x y")
    assert waiting.altered_table("ALTER TABLE t ON CLUSTER 'c' UPDATE b = 1 WHERE 1", "db") == ("db", "t")
    assert waiting.altered_table("SELECT 1", "default") is None
    shown = waiting.shown("CREATE USER u ON CLUSTER 'c' IDENTIFIED WITH sha256_password BY 'S3cret!' ", 200)
    assert "S3cret" not in shown and shown.endswith("BY '***'")
    assert waiting.tagged("INSERT INTO t VALUES (1)", "zakaz_wait_x") == "/* zakaz_wait_x */ INSERT INTO t VALUES (1)"


# --- slow statements on the embedded engine -------------------------------------------------------

def test_a_slow_select_says_it_runs_and_fast_steps_say_nothing(chain, db_url):
    (chain / "versions" / "0014_slow_select.py").write_text(SLOW_SELECT)
    result = CliRunner().invoke(main, ["upgrade", "--url", db_url, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert [s["revision"] for s in json.loads(result.stdout)["steps"]][-2:] == ["0013", "0014"]
    events = [e for e in _events(result.stderr) if e["event"] == "waiting"]
    # The thirteen quick revisions said nothing; the slow one, at least once, what it ran and how far.
    assert events and {e["revision"] for e in events} == {"0014"}, result.stderr
    first = events[0]
    assert first["waiting_for"] == "query" and first["statement"] == 1 and "sleepEachRow" in first["sql"]
    assert first["elapsed_seconds"] > 0
    assert 0 <= first["detail"]["read_rows"] <= 24
    assert "zakaz_wait_" not in first["sql"]


def test_a_slow_mutation_says_parts_to_do_before_its_step_ends(chain, db_url):
    (chain / "versions" / "0014_slow_mutation.py").write_text(SLOW_MUTATION)
    result = CliRunner().invoke(main, ["upgrade", "--url", db_url], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    said = [i for i, line in enumerate(lines) if line.startswith("waiting ")]
    step = next(i for i, line in enumerate(lines) if line.lstrip().startswith("+ 0014"))
    assert said and max(said) < step, result.output  # said while it ran, before the step's line
    text = lines[said[0]]
    assert text.startswith("waiting ") and "0014 statement 3 (ALTER TABLE meta.zwait UPDATE" in text, text
    assert "mutation " in text and " on meta.zwait (UPDATE b = b + sleepEachRow(0.1) WHERE 1): " in text, text
    assert "part to do" in text or "parts to do" in text, text
    # The ALTER waited for the mutation to finish: every row was updated.
    from app.engine import connect

    with connect(db_url) as conn:
        assert conn.exec_driver_sql("SELECT count() FROM system.mutations "
                                    "WHERE database = 'meta' AND table = 'zwait' AND NOT is_done").scalar() == 0


@pytest.mark.fast
def test_a_fast_statement_opens_no_connection_and_leaves_nothing_running(monkeypatch):
    opened = []
    monkeypatch.setattr(progress, "opener", lambda conn: (lambda: opened.append(1) or ([], lambda: None)))
    for i in range(50):
        with waiting.watching(object(), "SELECT 1", revision="0001", index=i) as tag:
            assert tag.startswith("zakaz_wait_")
    assert opened == []
    sentry = next(t for t in threading.enumerate() if t.name == "zakaz-waiting")
    with sentry.changed:
        assert sentry.running == []


# --- another deploy's lock, on a server -----------------------------------------------------------

@pytest.mark.server
def test_a_deploy_waiting_for_another_deploys_lock_says_who_holds_it(server):
    import server_support as support
    from app import commands
    from app.engine import connect
    from app.lock import deploy_lock

    support.reset(server)
    db = support.fresh_database(server)
    url = server.url("native", db)
    commands.upgrade(url, "0001")  # the ledger and the lock table are there
    try:
        with connect(url) as conn, deploy_lock(conn, db, owner="the other deploy (test)", create_table=False):
            proc = support.start_cli("upgrade", "0002", "--json", "--lock-wait", "120",
                                     env={"ZAKAZ_DATABASE_URL": url})
            # Its stderr, line by line, until it says what it waits for; the lock is released only then
            # (without that line the loop ends when its wait does, after 120 s).
            said = None
            for line in proc.stderr:
                event = json.loads(line)
                if event.get("event") == "waiting":
                    said = event
                    break
        out, err = proc.communicate(timeout=600)
        assert said is not None, err
        assert said["waiting_for"] == "deploy_lock" and said["detail"]["holder"] == "the other deploy (test)"
        assert said["elapsed_seconds"] >= waiting.FIRST_REPORT and said["detail"]["lock_wait_seconds"] == 120
        assert "the deploy lock on " + db in said["message"]
        assert proc.returncode == 0, err
        assert [s["revision"] for s in json.loads(out)["steps"]] == ["0002"]
        assert server.password not in json.dumps(said) + err
    finally:
        support.reset(server)


@pytest.mark.server
@pytest.mark.parametrize("protocol", ["native", "http"])
def test_on_the_server_a_slow_statement_says_it_runs_over_either_protocol(server, versions_copy, monkeypatch,
                                                                          protocol):
    """The tag leads the statement the drivers send; the poll finds it over native and HTTP alike."""
    import server_support as support

    for old in (versions_copy / "versions").glob("*.py"):
        old.unlink()
    (versions_copy / "versions" / "0001_slow_select.py").write_text(
        SLOW_SELECT.replace('revision = "0014"\ndown_revision = "0013"', 'revision = "0001"\ndown_revision = None'))
    monkeypatch.setenv("ZAKAZ_MIGRATIONS", str(versions_copy))
    support.reset(server)
    url = server.url(protocol, support.fresh_database(server))
    try:
        result = CliRunner().invoke(main, ["upgrade", "--url", url, "--json"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        events = [e for e in _events(result.stderr) if e["event"] == "waiting"]
        assert events and {(e["revision"], e["statement"], e["waiting_for"]) for e in events} == {
            ("0001", 1, "query")}, result.stderr
        assert server.password not in result.stderr
    finally:
        support.reset(server)
