"""Defects found by trying the tool as a new user and as an operator out to break it.

Each test fails without its fix; all run on real chDB or need no database.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from app import commands
from app.config import PROJECT_ROOT, mask_url
from cli_results import invoke, one_error_line

SECRET = "S3C@RET:pw"


# --- URLs that do not parse, or parse oddly: never the password -----------------------

# Each holds SECRET (or its tail, after the last '@') where a password goes.
ODD_URLS = [
    "clickhouse+native://deploy:S3C@RET:pw@127.0.0.1:notaport/default",  # typo in the port
    "clickhouse+native://deploy:S3C@RET:pw@127.0.0.1:9000x/default",
    "clickhouse+native://deploy:S3C@RET:pw@hóst:9000/default",  # a host that is not ASCII
    "clickhouse+native://deploy:S3C@RET:pw@/default",  # no host
    "clickhouse+native://deploy:S3C@RET:pw@:9000/default",
    "clickhouse+http://deploy:S3C@RET:pw@h%20x:8123/default",
    "clickhouse+native://deploy:S3C@RET:pw@[::1:9000/default",  # an unclosed IPv6 bracket
    "clickhouse+native:/deploy:S3C@RET:pw@127.0.0.1:9000/default",  # one slash
    "clickhouse+native:deploy:S3C@RET:pw@127.0.0.1:9000/default",  # none
    "clickhouse+native//deploy:S3C@RET:pw@127.0.0.1:9000/default",  # no colon
]


@pytest.mark.fast
@pytest.mark.parametrize("url", ODD_URLS)
def test_mask_url_hides_the_password_of_a_url_that_does_not_parse(url):
    shown = mask_url(f"Error: cannot use {url}: something")
    assert "RET" not in shown and "pw" not in shown, shown
    assert shown.endswith(": something")


@pytest.mark.fast
@pytest.mark.parametrize("args", [("status",), ("--debug", "status"), ("upgrade",), ("--debug", "verify"),
                                  ("drill",)])
def test_no_command_prints_the_password_of_an_odd_url(args):
    for url in ODD_URLS[:2] + ODD_URLS[7:]:  # the ones that fail before any connection
        result = invoke(*args, "--url", url)
        assert "RET" not in result.output and ":pw" not in result.output, (url, result.output[-800:])
        assert result.exit_code == 2, (url, result.output[-800:])


@pytest.mark.fast
def test_a_port_that_is_not_a_number_is_one_usage_error():
    # SQLAlchemy's ValueError quoted "9000@127.0.0.1:1": the end of the password.
    for url in ("clickhouse+native://u:secret@127.0.0.1:9000@127.0.0.1:1/default",
                "clickhouse+native://u:p@127.0.0.1:notaport/default"):
        result = invoke("status", "--url", url)
        assert result.exit_code == 2, result.output
        line = one_error_line(result)
        assert "its port is not a number" in line and "unexpected" not in line
        assert "9000@" not in line and "secret" not in line and "u:p@" not in line


# --- revision arguments ------------------------------------------------------------------

def test_stamp_of_an_unknown_revision_is_a_usage_error(db_url):
    # alembic's ResolutionError is no CommandError: it was "unexpected error", exit 1.
    result = invoke("stamp", "9999", "--url", db_url)
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert "No such revision or branch '9999'" in line and "zakaz-schema history" in line


@pytest.mark.fast
@pytest.mark.parametrize("revision_range", ["0003:", ":", "0001:0002:0003", ""])
def test_sql_range_without_a_target_is_a_usage_error(revision_range):
    # alembic answered "0003:" with a bare AssertionError (exit 1).
    result = invoke("sql", revision_range)
    assert result.exit_code == 2, result.output
    assert "expected TO or FROM:TO" in one_error_line(result)


# --- a closed output pipe ---------------------------------------------------------------

def test_upgrade_runs_to_the_end_when_its_reader_leaves(db_url):
    # `zakaz-schema upgrade | head -1`: the upgrade used to stop at the first
    # line it could not print, silently, with the chain half applied.
    proc = subprocess.Popen([sys.executable, "-m", "app", "upgrade", "--url", db_url], cwd=PROJECT_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 0, stderr
    assert stderr == ""
    status = commands.status(db_url)
    assert status.heads == status.script_heads and not status.pending and status.problem is None


@pytest.mark.fast
def test_a_raw_at_sign_in_a_password_is_named():
    # user:p@ss@host parsed as password "p" on host "ss@host": "cannot reach" the wrong host.
    for args in (("status",), ("upgrade",), ("sql", "0001")):
        result = invoke(*args, "--url", "clickhouse+native://deploy:S3C@RETpw@127.0.0.1:9000/default")
        assert result.exit_code == 2, result.output
        line = one_error_line(result)
        assert "the password holds an at sign" in line and "%40" in line
        assert "RET" not in result.output and "S3C" not in result.output


@pytest.mark.fast
@pytest.mark.parametrize("args, env", [(("--url", ""), {}), (("--url", " "), {}),
                                       ((), {"ZAKAZ_DATABASE_URL": ""})])
def test_an_empty_url_is_refused_not_replaced_by_the_embedded_default(args, env, monkeypatch):
    # `--url "$PROD_URL"` with the variable unset deployed to var/zakaz.chdb and said OK.
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for command in (("status",), ("upgrade",), ("verify",)):
        result = invoke(*command, *args)
        assert result.exit_code == 2, result.output
        assert "is empty: give a database URL" in one_error_line(result)
        assert "Upgrading" not in result.output


def test_ctrl_c_during_an_upgrade_says_how_to_resume(db_url):
    # click printed a bare "Aborted!".
    proc = subprocess.Popen([sys.executable, "-m", "app", "upgrade", "--url", db_url], cwd=PROJECT_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("Upgrading")
    assert proc.stdout.readline().lstrip().startswith("+ 0001")
    proc.send_signal(signal.SIGINT)
    proc.stdout.read()
    stderr = proc.stderr.read()
    assert proc.wait(timeout=300) == 1
    assert stderr.strip().splitlines() == [stderr.strip()], stderr
    assert stderr.startswith("Error: interrupted: ") and "zakaz-schema status" in stderr
    status = commands.status(db_url)
    assert status.pending  # it stopped; what it left is what status reports


@pytest.mark.fast
def test_lint_reports_a_revision_file_that_does_not_compile(versions_copy, monkeypatch):
    # lint exited 2 ("usage error") on the very thing it exists to catch.
    monkeypatch.setenv("ZAKAZ_MIGRATIONS", str(versions_copy))
    (versions_copy / "versions" / "0014_broken.py").write_text(
        '"""Broken."""\nrevision = "0014"\ndef upgrade(:\n    pass\n')
    result = invoke("lint")
    assert result.exit_code == 1, result.output
    assert "0014_broken.py:3: error [syntax] 0014_broken.py does not compile: " in result.output
    data = json.loads(invoke("lint", "--json").output)
    assert [f["rule"] for f in data["findings"]] == ["syntax"] and not data["ok"]


@pytest.mark.fast
@pytest.mark.parametrize("message", ["", "   ", "\n"])
@pytest.mark.parametrize("extra", [(), ("--autogenerate",)])
def test_new_refuses_an_empty_message_and_writes_nothing(versions_copy, monkeypatch, message, extra):
    # `new ""` wrote 0014_revision.py with an empty docstring.
    monkeypatch.setenv("ZAKAZ_MIGRATIONS", str(versions_copy))
    before = sorted(p.name for p in (versions_copy / "versions").iterdir())
    result = invoke("new", message, *extra)
    assert result.exit_code == 2, result.output
    assert "the message is empty" in one_error_line(result)
    assert sorted(p.name for p in (versions_copy / "versions").iterdir()) == before


def test_verify_of_a_database_behind_the_chain_says_upgrade_not_drift(db_url):
    # It said "DRIFT" of a database nobody changed, only not upgraded yet.
    result = invoke("verify", "--url", db_url)
    assert result.exit_code == 1
    assert "BEHIND:" in result.output and "the database is at base (nothing applied)" in result.output
    commands.upgrade(db_url, "0009")
    pending = [p["revision"] for p in commands.status(db_url).pending]
    result = invoke("verify", "--url", db_url)
    assert result.exit_code == 1 and "DRIFT" not in result.output
    assert (f"the database is at 0009 and {len(pending)} revision(s) are pending ({pending[0]}..{pending[-1]}): "
            "run `zakaz-schema upgrade`") in result.output
    assert json.loads(invoke("verify", "--url", db_url, "--json").output)["pending"] == pending
    commands.upgrade(db_url, "head")
    assert invoke("verify", "--url", db_url).exit_code == 0


def test_repair_refuses_both_marks(db_url):
    # Both flags shared one value: the last one given won and was recorded.
    commands.upgrade(db_url, "0002")
    for order in (("--mark-applied", "--mark-reverted"), ("--mark-reverted", "--mark-applied")):
        result = invoke("repair", "0002", *order, "--url", db_url)
        assert result.exit_code == 2, result.output
        assert "not both" in one_error_line(result)
    assert commands.status(db_url).heads == ["0002"]


@pytest.mark.fast
def test_a_negative_lock_wait_is_a_usage_error(tmp_path):
    result = invoke("upgrade", "--lock-wait", "-5", "--url", f"clickhouse+chdb:///default?path={tmp_path}")
    assert result.exit_code == 2 and "--lock-wait" in result.output
    assert not any(tmp_path.iterdir())  # refused before the database was opened
