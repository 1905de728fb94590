"""What the tests read from a click CliRunner result, in one place."""
from __future__ import annotations

from click.testing import CliRunner

from app.cli import main


def invoke(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def one_error_line(result) -> str:
    """The one ``Error: `` line a refusal prints on stderr (asserted to be the only line)."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]
