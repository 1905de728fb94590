"""Passwords never reach output, whatever characters they hold and however a URL parses.

Every character that is special in a URL, raw and percent-encoded, through
every path that prints a URL or an error: the `Upgrading ...` line, connection
errors, --debug tracebacks, drill and smoke refusals, offline SQL and plain
alembic.  Nothing listens on the port, so no server is needed.
"""
from __future__ import annotations

import socket
import subprocess
import sys
from urllib.parse import quote

import pytest

from app.config import PROJECT_ROOT, mask_text, mask_url

# make test-fast: pure and unit tests (pyproject.toml, marker `fast`).
pytestmark = pytest.mark.fast

SPECIAL = "@:/?#[]%&=+$,;! '\"\\"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def secret_for(ch: str) -> str:
    return f"S3C{ch}RETpw"


def urls(password: str, port: int) -> list[str]:
    return [
        f"clickhouse+native://deploy:{password}@127.0.0.1:{port}/default",
        f"clickhouse+http://deploy:{password}@127.0.0.1:{port}/default",
        f"clickhouse+native://deploy:{quote(password, safe='')}@127.0.0.1:{port}/default",
        f"clickhouse+native://deploy@127.0.0.1:{port}/default?password={password}",
    ]


def visible_parts(password: str) -> list[str]:
    """What must not appear: the password, encoded or not, and its halves around the special character."""
    return [password, quote(password, safe=""), "RETpw"]


# What ends a password= value as masking reads it: the message goes on after it.
QUERY_VALUE_ENDS = "& '\")"


@pytest.mark.parametrize("ch", list(SPECIAL))
def test_mask_url_hides_every_special_character_password(ch):
    for url in urls(secret_for(ch), 9000):
        if "?password=" in url and ch in QUERY_VALUE_ENDS:
            # Raw, it ends the value in a URL too (a query string percent-encodes
            # it); parse_url refuses a password= parameter before anything prints it.
            url = url.replace(secret_for(ch), quote(secret_for(ch), safe=""))
        shown = mask_url(url)
        for part in visible_parts(secret_for(ch)):
            assert part not in shown, (url, shown)
        assert "127.0.0.1:9000" in shown or "password=***" in shown, shown
        # Inside a longer message, and twice on one line: the rest of the message is kept.
        line = mask_text(f"Error: cannot reach {url} ({url}): is it running?")
        assert "RETpw" not in line, line
        assert "is it running?" in line, line


@pytest.mark.parametrize("ch", ["@", "/", "?", "#", ":", "%", " ", "'"])
def test_no_output_path_prints_the_password(ch):
    from click.testing import CliRunner

    from app.cli import main

    password = secret_for(ch)
    port = closed_port()
    runner = CliRunner()
    for url in urls(password, port):
        results = {args: runner.invoke(main, [*args, "--url", url]) for args in (
            ("upgrade",), ("--debug", "upgrade"), ("status",), ("drill",), ("smoke",), ("sql", "head"))}
        for args, result in results.items():
            for part in visible_parts(password):
                assert part not in result.output, (args, result.output[-1500:])
        assert results[("upgrade",)].exit_code == 2 and "***" in results[("upgrade",)].output
        assert "Traceback" in results[("--debug", "upgrade")].output
    # Plain alembic, in a process of its own as an operator runs it.
    done = subprocess.run([sys.executable, "-m", "alembic", "-x", f"url={urls(password, port)[0]}", "current"],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    for part in visible_parts(password):
        assert part not in done.stdout + done.stderr, done.stderr[-1500:]


def test_a_server_stack_trace_is_not_taken_for_a_password():
    # "DB::" reads as a scheme and an empty user, "@ 0x..." as the '@' before a host.
    trace = ("Code: 242. DB::Exception: Table is in readonly mode. (TABLE_IS_READ_ONLY) "
             "Stack trace: 0. DB::Exception::Exception(DB::Exception::MessageMasked&&, int, bool) "
             "@ 0x00000000006d48ec 1. DB::StorageReplicatedMergeTree::write() @ 0x00007f8b917278ec")
    assert mask_text(trace) == trace
    assert mask_text(trace + "\n") == trace + "\n"
    for ch in SPECIAL:
        for url in urls(secret_for(ch), 9000)[:3]:
            line = mask_text(f"cannot reach {url}: {trace}")
            assert "RETpw" not in line, line
            assert "TABLE_IS_READ_ONLY" in line, line
