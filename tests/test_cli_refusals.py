"""Operator-facing defects found after issue 20 (each fails on the code before its fix), on real chDB."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from app import commands, ledger
from app.cli import main
from app.config import PROJECT_ROOT
from app.engine import connect

UNREACHABLE = "clickhouse+native://u@127.0.0.1:1/default"


def _cli(*args: str, url: str | None = None):
    extra = ["--url", url] if url else []
    return CliRunner().invoke(main, [*args, *extra], catch_exceptions=False)


def _ledger_rows(url: str) -> list[tuple]:
    with connect(url) as conn:
        return conn.exec_driver_sql(f"SELECT count() FROM default.{ledger.LEDGER_TABLE}").all()


# --- an upgrade to a revision below the database ------------------------------------------

def test_upgrade_to_a_revision_below_the_database_points_at_downgrade(database_at):
    url = database_at("0013")
    before = _ledger_rows(url)
    result = _cli("upgrade", "0005", url=url)
    assert result.exit_code == 2, result.output
    assert "Nothing to do" not in result.output
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and line.startswith("Error: ")
    assert "ahead of 0005" in line and "zakaz-schema downgrade 0005" in line and "0013" in line
    assert _ledger_rows(url) == before and commands.status(url).heads == ["0013"]
    # At the revision asked for, or below it going up: as before.
    assert _cli("upgrade", "0013", url=url).exit_code == 0
    assert "Nothing to do: the database is at 0013" in _cli("upgrade", "0013", url=url).output
    with pytest.raises(commands.UsageError, match="ahead of 0004"):
        commands.upgrade(url, "0004")


# --- stamp --purge rewrites the version record: it asks -----------------------------------

def test_stamp_purge_is_refused_without_yes_off_a_terminal(database_at):
    url = database_at("0004")
    before = _ledger_rows(url)
    refused = _cli("stamp", "head", "--purge", url=url)
    assert refused.exit_code == 2, refused.output
    assert "--purge" in refused.stderr and "--yes" in refused.stderr and "nothing was changed" in refused.stderr
    assert _ledger_rows(url) == before and commands.status(url).heads == ["0004"]
    done = _cli("stamp", "0004", "--purge", "--yes", url=url)
    assert done.exit_code == 0 and "Stamped 0004" in done.output


# --- --json errors are JSON ---------------------------------------------------------------

@pytest.mark.fast
@pytest.mark.parametrize("args", [["status", "--json"], ["history", "--json"], ["upgrade", "--json"],
                                  ["status"]])
def test_with_json_an_error_is_one_json_line_on_stderr(args):
    result = _cli(*args, url=UNREACHABLE)
    assert result.exit_code == 2 and result.stdout == "", result.output
    lines = result.stderr.strip().splitlines()
    if "--json" not in args:  # the usual line when JSON was not asked for
        assert len(lines) == 1 and lines[0].startswith("Error: cannot reach"), lines
        return
    assert len(lines) == 1, lines
    error = json.loads(lines[0])
    assert error["exit_code"] == 2 and error["error"].startswith("cannot reach the ClickHouse server")
    assert set(error) == {"error", "exit_code"}


@pytest.mark.fast
def test_with_json_a_bad_option_and_a_check_failure_are_json_too(db_url):
    bad = _cli("status", "--json", "--no-such-option")
    assert bad.exit_code == 2 and json.loads(bad.stderr)["error"] == "No such option '--no-such-option'."
    # The code in the JSON is the process's.
    unknown = _cli("upgrade", "9999", "--json", url=db_url)
    assert unknown.exit_code == json.loads(unknown.stderr)["exit_code"] == 2


# --- drill --help says where a drill starts -----------------------------------------------

@pytest.mark.fast
def test_drill_help_says_a_scratch_drill_starts_at_the_first_revision():
    text = " ".join(_cli("drill", "--help").output.split())
    assert "the first one not applied)" not in text
    assert "default: the first revision, on the scratch database; with --url, the first one not applied" in text


# --- graph --revisions without a database -------------------------------------------------

@pytest.mark.fast
def test_graph_revisions_on_an_unreachable_database_suggests_head_and_head_draws_without_it():
    refused = _cli("graph", "--revisions", url=UNREACHABLE)
    assert refused.exit_code == 2 and refused.stdout == ""
    line = refused.stderr.strip()
    assert len(line.splitlines()) == 1 and "cannot reach" in line and "--head" in line
    drawn = _cli("graph", "--revisions", "--head", url=UNREACHABLE)
    assert drawn.exit_code == 0, drawn.output
    assert drawn.output.startswith("flowchart") and "r_0013" in drawn.output
    assert "database[" not in drawn.output and "class r_0013 live" not in drawn.output  # no marker


# --- a canonical schema that does not load ------------------------------------------------

@pytest.fixture
def broken_checkout(tmp_path):
    """A copy of the project whose app/canonical.py is broken (``python -m app`` runs the copy's app)."""
    root = tmp_path / "checkout"
    root.mkdir()
    shutil.copytree(PROJECT_ROOT / "app", root / "app", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(PROJECT_ROOT / "migrations", root / "migrations", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PROJECT_ROOT / "alembic.ini", root / "alembic.ini")
    return root


@pytest.mark.parametrize("mistake, expected", [("this is not python (", "'(' was never closed"),
                                               ("BROKEN = undefined_name", "name 'undefined_name' is not defined")])
def test_a_canonical_schema_that_does_not_load_stops_only_the_commands_that_read_it(
        broken_checkout, tmp_path, mistake, expected):
    canonical = broken_checkout / "app" / "canonical.py"
    lines = canonical.read_text().count("\n")
    canonical.write_text(canonical.read_text() + mistake + "\n")
    url = f"clickhouse+chdb:///default?path={tmp_path / 'db'}"

    def run(*args):
        return subprocess.run([sys.executable, "-m", "app", *args], cwd=broken_checkout, capture_output=True,
                              text=True, timeout=300, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})

    assert run("--help").returncode == 0
    # Revisions never read it: deploying, and what reads the ledger or the chain, works (as plain alembic does).
    for args in (["upgrade", "0002", "--url", url], ["upgrade", "--url", url], ["status", "--url", url],
                 ["status", "--json", "--url", url], ["history", "--url", url], ["sql", "0001"],
                 ["downgrade", "0012", "--url", url], ["upgrade", "--url", url], ["graph", "--revisions", "--head"]):
        done = run(*args)
        assert done.returncode == 0, (args, done.stderr)
    # Only what compares with it fails on it, in one line.
    for args in (["verify"], ["adopt"]):
        done = run(*args, "--url", url)
        assert done.returncode == 2, (args, done.stderr)
        assert "Traceback" not in done.stderr, (args, done.stderr)
        assert done.stderr.strip() == (f"Error: the canonical schema (app/canonical.py) does not load: {expected} "
                                       f"at line {lines + 1}; nothing was changed. Fix the file (--debug shows "
                                       "the traceback)"), args
    done = run("new", "blank")
    assert done.returncode == 0, done.stderr
    assert run("new", "auto", "--autogenerate").returncode == 2


# --- an adoption left half done ------------------------------------------------------------

@pytest.mark.parametrize("args", [("stamp", "0004"), ("stamp", "0004", "--purge", "--yes"), ("upgrade",)])
def test_nothing_but_adopt_settles_an_adoption_left_half_done(database_at, args):
    """A stamp would settle the latest step and hide the adoption (and its half-rebuilt table)."""
    url = database_at("0001")
    with connect(url) as conn:
        conn.exec_driver_sql(f"DROP TABLE default.{ledger.LEDGER_TABLE}")
        conn.exec_driver_sql(f"DROP VIEW IF EXISTS default.{ledger.VERSION_VIEW}")
        for sql in ledger.ledger_ddl("default"):
            conn.exec_driver_sql(sql)
        ledger.write(conn, "default", ledger.Row("s1", "0004", "adopt", "started", [], "adopting at 0004: 3 operation(s)"))
    before = _ledger_rows(url)
    result = _cli(*args, url=url)
    assert result.exit_code == 2, result.output
    assert "adoption at 0004 is interrupted" in result.stderr and "zakaz-schema adopt --apply" in result.stderr
    assert _ledger_rows(url) == before
