"""Defects found by a second tryout (resume hints, URL passwords, DOT labels, `upgrade base`,
what a broken canonical schema stops).  Each fails without its fix; on real chDB or no database."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from app import commands, graph, revision_files
from app.config import PROJECT_ROOT, mask_text
from app.engine import connect
from cli_results import invoke, one_error_line

SECRET = "S3CRETpw"


# --- A: the resume hint of an interrupted step names that step's revision -------------------

STALLING = '''
    """A revision that stalls in the direction $ZAKAZ_STALL names (for the kill tests)."""
    import os, time
    from app.operations import create_table, drop_table
    revision = "0014"
    down_revision = "0013"
    branch_labels = None
    depends_on = None
    DOWNGRADE_LOSES = ["zakaz.slow"]
    from alembic import op
    def _stall(direction):
        # Not in the pre-pass that renders a downgrade to see what it drops.
        if os.environ.get("ZAKAZ_STALL") == direction and not op.get_context().as_sql:
            print("STALLED", flush=True)
            time.sleep(600)
    def upgrade():
        create_table("zakaz.slow", "a UInt8", engine="MergeTree", order_by="a")
        _stall("upgrade")
    def downgrade():
        _stall("downgrade")
        drop_table("zakaz.slow")
'''
LATER = '''
    """A later revision nobody asked for (its upgrade would say so)."""
    revision = "0015"
    down_revision = "0014"
    branch_labels = None
    depends_on = None
    def upgrade():
        raise RuntimeError("0015 ran")
    def downgrade():
        pass
'''


@pytest.fixture
def stalling_chain(versions_copy, monkeypatch):
    (versions_copy / "versions" / "0014_slow.py").write_text(textwrap.dedent(STALLING))
    (versions_copy / "versions" / "0015_later.py").write_text(textwrap.dedent(LATER))
    monkeypatch.setenv("ZAKAZ_MIGRATIONS", str(versions_copy))
    monkeypatch.delenv("ZAKAZ_STALL", raising=False)
    return versions_copy


def _terminated_while_stalled(*args: str, stall: str) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "app", *args], cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "ZAKAZ_STALL": stall})
    for line in proc.stdout:
        if "STALLED" in line:
            break
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)


def test_an_interrupted_upgrade_is_resumed_to_its_own_revision_not_head(database_at, stalling_chain):
    # `upgrade 0014` killed in its step: status said `upgrade --resume`, which runs on to head (0015 here).
    url = database_at("0013")
    _terminated_while_stalled("upgrade", "0014", "--url", url, stall="upgrade")
    status = invoke("status", "--url", url)
    assert "upgrade 0014 interrupted" in status.output
    assert "fix the cause, then `zakaz-schema upgrade 0014 --resume`" in status.output, status.output
    assert "upgrade --resume" not in status.output
    blocked = invoke("upgrade", "0014", "--url", url)
    assert blocked.exit_code == 2 and "`zakaz-schema upgrade 0014 --resume`" in blocked.output
    resumed = invoke("upgrade", "0014", "--resume", "--url", url)
    assert resumed.exit_code == 0, resumed.output
    st = commands.status(url)
    assert st.heads == ["0014"] and st.problem is None and [p["revision"] for p in st.pending] == ["0015"]


def test_an_interrupted_downgrade_is_resumed_to_the_revision_its_step_goes_down_to(database_at, stalling_chain):
    url = database_at("0013")
    assert invoke("upgrade", "0014", "--url", url).exit_code == 0
    _terminated_while_stalled("downgrade", "base", "--url", url, stall="downgrade")
    status = invoke("status", "--url", url)
    assert "downgrade 0014 interrupted" in status.output
    assert "fix the cause, then `zakaz-schema downgrade 0013 --resume`" in status.output, status.output
    resumed = invoke("downgrade", "0013", "--resume", "--url", url)
    assert resumed.exit_code == 0, resumed.output
    st = commands.status(url)
    assert st.heads == ["0013"] and st.problem is None


# --- C: what a broken app/canonical.py stops ------------------------------------------------

@pytest.mark.fast
def test_deploying_and_reading_the_ledger_do_not_import_the_canonical_schema():
    # ledger.py imported app.canonical for the database names: a mistake there stopped every deploy.
    code = ("import sys; from app import cli, fastpath, ledger, commands, runtime, snapshot, replay; "
            "print(sorted(m for m in ('app.canonical', 'app.planner', 'app.revision_autogenerate') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# --- D: a password= query parameter ---------------------------------------------------------

def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.fast
@pytest.mark.parametrize("driver", ["native", "http"])
@pytest.mark.parametrize("query", [f"?password={SECRET}", f"?secure=false&password={SECRET}",
                                   f"?PASSWORD={SECRET}&connect_timeout=3"])
def test_a_password_query_parameter_is_refused_in_one_line(driver, query):
    # HTTP: "got multiple values for argument 'password'"; native: the right password "failed".
    url = f"clickhouse+{driver}://deploy@127.0.0.1:{_closed_port()}/default{query}"
    for args in (("status",), ("upgrade",), ("verify",), ("--debug", "status")):
        result = invoke(*args, "--url", url)
        assert result.exit_code == 2, (args, result.output)
        assert SECRET not in result.output and "RET" not in result.output, result.output
        if args[0] != "--debug":
            line = one_error_line(result)
            assert "password= query parameter" in line and "user part, percent-encoded" in line, line


@pytest.mark.fast
@pytest.mark.parametrize("text, shown", [
    (f"Error: cannot use clickhouse+http://deploy@h:8123/default?password={SECRET}: __init__() got multiple "
     "values for argument 'password'",
     "Error: cannot use clickhouse+http://deploy@h:8123/default?password=*** __init__() got multiple "
     "values for argument 'password'"),
    (f"(at clickhouse+http://deploy@h:8123/default?password={SECRET}) is it running?",
     "(at clickhouse+http://deploy@h:8123/default?password=***) is it running?"),
    (f"authentication failed for clickhouse+native://d@h:9000/default?password={SECRET} check the user",
     "authentication failed for clickhouse+native://d@h:9000/default?password=*** check the user"),
    (f"at 'clickhouse+native://d@h/db?password={SECRET}&secure=true' and more",
     "at 'clickhouse+native://d@h/db?password=***&secure=true' and more"),
    (f"x?a=1&Password={SECRET}\"; y", "x?a=1&Password=***\"; y"),
])
def test_masking_a_password_parameter_keeps_the_rest_of_the_message(text, shown):
    assert mask_text(text) == shown


# --- E: DOT labels ----------------------------------------------------------------------------

# A DOT quoted string: anything but a quote, or a backslash and the character it escapes.
_DOT_LABEL = re.compile(r'^\s+\w+ \[label="((?:[^"\\]|\\.)*)"(?:, [^\]]*)?\];$')


def test_dot_labels_escape_backslashes_and_quotes(versions_copy):
    from test_graph import mermaid_problems

    location = str(versions_copy)
    revision_files.new_revision("ends with backslash \\", script_location=location)
    revision_files.new_revision('say "hi" to C:\\new', script_location=location)
    dot = graph.revision_graph(script_location=location, fmt="dot")
    labels = {}
    for line in dot.splitlines():
        if "[label=" in line:
            m = _DOT_LABEL.match(line)
            assert m, line  # an unescaped backslash ended the string early
            labels[line.split()[0]] = re.sub(r"\\(.)", r"\1", m.group(1))
    assert labels["r_0014"] == "0014: ends with backslash \\"
    assert labels["r_0015"] == "0015: say 'hi' to C:\\new"
    mermaid = graph.revision_graph(script_location=location)
    assert mermaid_problems(mermaid) == []
    assert 'r_0014["0014: ends with backslash \\"]' in mermaid


# --- F: upgrade base ------------------------------------------------------------------------------

def test_upgrade_base_of_a_database_past_base_points_at_downgrade(database_at, db_url):
    # It said "Nothing to do: the database is at 0013 (head)." and exited 0.
    url = database_at("0013")
    result = invoke("upgrade", "base", "--url", url)
    assert result.exit_code == 2, result.output
    assert "Nothing to do" not in result.output
    line = one_error_line(result)
    assert "the database is at 0013, ahead of base" in line and "`zakaz-schema downgrade base`" in line
    assert commands.status(url).heads == ["0013"]
    with connect(db_url):
        pass  # an empty database: at base already, nothing to refuse
    fresh = invoke("upgrade", "base", "--url", db_url)
    assert fresh.exit_code == 0 and "Nothing to do: the database is at base." in fresh.output
