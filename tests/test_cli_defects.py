"""Operator-facing defects of issue #15 (smaller defects list), each on real chDB."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from app import adopt, commands, revision_files
from app.cli import main
from app.config import PROJECT_ROOT
from app.engine import connect
from cli_results import one_error_line


@pytest.fixture
def cli(db_url):
    runner = CliRunner()

    def invoke(*args, url=db_url):
        extra = ["--url", url] if url and args[0] != "new" else []
        return runner.invoke(main, [*args, *extra], catch_exceptions=False)
    return invoke


def _run(*args, cwd=PROJECT_ROOT, **kw):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300, **kw)


SIDE_BRANCH = (
    '"""A side branch off 0012."""\n'
    'from app.operations import create_table, drop_table\n'
    'revision = "0100"\ndown_revision = "0012"\nbranch_labels = None\ndepends_on = None\n'
    'DOWNGRADE_LOSES = []\n'
    'def upgrade():\n    create_table("zakaz.side", "a UInt8", engine="MergeTree", order_by="a")\n'
    'def downgrade():\n    drop_table("zakaz.side")\n'
)


# --- an embedded URL without a directory -------------------------------------------

@pytest.mark.parametrize("url", ["clickhouse+chdb:///default", "clickhouse+chdb:///default?path="])
@pytest.mark.parametrize("command", [("upgrade",), ("downgrade", "base")])
@pytest.mark.fast
def test_embedded_url_without_a_path_is_refused(cli, url, command):
    result = cli(*command, url=url)
    assert result.exit_code == 2
    assert result.stdout == ""  # no "Upgrading ..." header over a URL nothing can open
    line = one_error_line(result)
    assert "names no directory" in line and "add ?path=DIR" in line and "omit --url" in line
    assert "var/zakaz.chdb" in line


# --- new ------------------------------------------------------------------------------

def test_new_with_quotes_and_backslashes_writes_a_loadable_revision(cli, chain, db_url):
    message = 'fix """quoted""" names and \\N{x} in paths\\'
    result = cli("new", message)
    assert result.exit_code == 0, result.output
    path = result.output.strip().splitlines()[-1].removeprefix("Created ")
    compile(open(path, encoding="utf-8").read(), path, "exec")
    rev = commands.script_directory(commands.alembic_config(db_url)).get_revision("0014")
    assert rev.doc.splitlines()[0] == message
    assert cli("status").exit_code == 0  # every later command still loads the chain


@pytest.mark.fast
def test_new_leaves_no_file_when_the_revision_would_not_load(cli, chain, monkeypatch):
    before = sorted(p.name for p in (chain / "versions").iterdir())
    monkeypatch.setattr(revision_files, "_docstring_text", lambda message: message)  # the old, unescaped text
    result = cli("new", 'a """ b')
    assert result.exit_code == 2
    assert "does not make a valid revision file" in one_error_line(result)
    assert sorted(p.name for p in (chain / "versions").iterdir()) == before


@pytest.mark.fast
def test_new_transliterates_a_russian_message(cli, chain):
    result = cli("new", "Добавить таблицу возвратов")
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("0014_dobavit_tablitsu_vozvratov.py")
    # alembic's own "Generating ..." line names the file really written, not a Cyrillic one.
    assert "добавить" not in result.output.lower()
    assert [p.name for p in (chain / "versions").glob("0014_*")] == ["0014_dobavit_tablitsu_vozvratov.py"]


def test_alembic_merge_heads_writes_an_empty_revision_that_runs(chain, db_url):
    from alembic import command

    (chain / "versions" / "0100_side_branch.py").write_text(SIDE_BRANCH)
    cfg = commands.alembic_config(db_url)
    merge = command.merge(cfg, "heads", message="merge the side branch")
    text = open(merge.path, encoding="utf-8").read()
    assert "NotImplementedError" not in text and "pass  # a merge of heads" in text
    commands.upgrade(db_url, "heads")
    assert commands.status(db_url).heads == [merge.revision]
    commands.downgrade(db_url, "0013")  # undoes the merge only
    assert commands.status(db_url).heads == ["0013", "0100"]


# --- messages -----------------------------------------------------------------------------

def test_relative_revisions_that_go_nowhere_are_explained(cli):
    assert cli("upgrade", "0005").exit_code == 0
    up = cli("downgrade", "+1")
    assert up.exit_code == 2
    assert "downgrade +1 would go up: a downgrade takes -1, a revision id or base" in one_error_line(up)
    too_far = cli("downgrade", "-10")
    assert "fewer than 10 revisions are applied" in one_error_line(too_far)
    assert "already at base" not in up.output + too_far.output
    ahead = cli("upgrade", "+20")
    assert "fewer than 20 revisions are pending" in one_error_line(ahead)
    nowhere = cli("downgrade", "-0")
    assert nowhere.exit_code == 2 and "downgrade -0 moves nowhere" in one_error_line(nowhere)


def test_status_drops_skipped_statements_of_a_downgraded_revision(cli):
    cli("upgrade", "0010")
    assert [s["revision"] for s in json.loads(cli("status", "--json").output)["skipped"]] == ["0010"]
    assert cli("downgrade", "0009").exit_code == 0
    status = cli("status", "--json")
    assert json.loads(status.output)["skipped"] == []
    assert "skipped:" not in cli("status").output


def test_history_names_a_revision_file_that_does_not_load(cli, chain):
    cli("upgrade", "0002")
    (chain / "versions" / "0014_broken.py").write_text('"""Broken."""\nrevision = "0014"\ndef upgrade(:\n')
    result = cli("history")
    assert result.exit_code == 2
    line = one_error_line(result)
    assert "0014_broken.py has a syntax error at line 3" in line


def test_verify_points_a_table_of_a_new_revision_at_canonical(cli, chain):
    (chain / "versions" / "0014_fact_refunds.py").write_text(
        '"""Refunds."""\nfrom app.operations import create_table, drop_table\n'
        'revision = "0014"\ndown_revision = "0013"\nbranch_labels = None\ndepends_on = None\n'
        'DOWNGRADE_LOSES = ["zakaz.fact_refunds"]\n'
        'def upgrade():\n    create_table("zakaz.fact_refunds", "id UInt64", engine="MergeTree", order_by="id")\n'
        'def downgrade():\n    drop_table("zakaz.fact_refunds")\n'
    )
    assert cli("upgrade").exit_code == 0
    result = cli("verify")
    assert result.exit_code == 0
    assert ("table zakaz.fact_refunds is not in app/canonical.py; if a revision creates it, add it to "
            "TABLES there (a line with the name and engine clause, then one line per column)") in result.output
    assert "unmanaged" not in result.output


# --- counts and confirmations ----------------------------------------------------------------

def test_status_counts_the_objects_adopt_counts(db_url, tmp_path):
    from legacy_fixtures import build_legacy

    build_legacy(db_url)  # holds a materialized view: its storage table is no object of its own
    plan = adopt.plan_adoption(db_url, cache_dir=tmp_path / "adopt-cache")
    assert commands.status(db_url).unmanaged_objects == plan.objects


def test_stamp_backwards_on_a_populated_database_needs_yes(cli, db_url):
    cli("upgrade")
    for target in ("base", "0005"):
        refused = cli("stamp", target)
        assert refused.exit_code == 2
        line = one_error_line(refused)
        assert f"stamping {target} records the database as no longer at 0013" in line and "--yes" in line
    assert commands.status(db_url).heads == ["0013"]
    assert cli("stamp", "head").exit_code == 0  # not backwards: no confirmation
    assert cli("stamp", "base", "--yes").exit_code == 0
    assert commands.status(db_url).heads == []


def test_stamp_base_on_an_empty_warehouse_needs_no_confirmation(cli):
    cli("upgrade", "0001")  # databases only, no objects
    assert cli("stamp", "base").exit_code == 0


# --- processes -------------------------------------------------------------------------------------

def test_closed_stdout_exits_quietly(db_url):
    commands.upgrade(db_url, "0004")
    proc = subprocess.Popen([sys.executable, "-m", "app", "history", "--url", db_url], cwd=PROJECT_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # like `| head` that has read what it wanted
    stderr = proc.stderr.read().decode()
    proc.wait(timeout=300)
    assert stderr == ""


def test_plain_alembic_prints_a_data_loss_refusal_as_one_line(db_url):
    commands.upgrade(db_url, "head")
    with connect(db_url) as conn:
        conn.exec_driver_sql("INSERT INTO zakaz.fact_qtickets_inventory_latest (event_id) VALUES ('e1')")
    down = _run("-m", "alembic", "-x", f"url={db_url}", "downgrade", "0008")
    assert down.returncode != 0
    assert "Traceback" not in down.stderr + down.stdout
    assert "FAILED: downgrade would drop data from: zakaz.fact_qtickets_inventory_latest (holding 1 row)" in down.stdout


def test_second_process_sees_only_our_error(db_url):
    with connect(db_url) as conn:
        conn.exec_driver_sql("SELECT 1")
        result = _run("-m", "app", "status", "--url", db_url)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "is in use by another process (pid" in result.stderr
    assert "Cannot lock file" not in result.stderr and "Code: 76" not in result.stderr
