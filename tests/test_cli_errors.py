"""app.cli_errors: every failure of a command is one line with its documented exit code."""
from __future__ import annotations

import errno

import click
import pytest
from alembic.util import CommandError

from app.cli_errors import classify, explain_alembic, handle
from app.config import ConfigError
from app.engine import ConnectionFailed
from app.errors import EXIT_CHECK, EXIT_USAGE, CheckFailed, UsageError
from app.ledger import LedgerError
from app.lock import LockTimeout
from app.runtime import MigrationBlocked, StepFailed
from app.users import ApplyFailed, MissingPassword
from app.versions import RepairMismatch, RevisionRefused

pytestmark = pytest.mark.fast


@pytest.mark.parametrize("exc, code", [
    (ConfigError("bad url"), EXIT_USAGE),
    (ConnectionFailed("no server"), EXIT_USAGE),
    (LedgerError("altered"), EXIT_USAGE),
    (MigrationBlocked("refused"), EXIT_USAGE),
    (LockTimeout("held"), EXIT_USAGE),
    (RevisionRefused("second head"), EXIT_USAGE),
    (MissingPassword("ZAKAZ_ETL_WRITER_PASSWORD is not set"), EXIT_USAGE),
    (StepFailed("upgrade 0002 failed", "0002", 3, 60), EXIT_CHECK),
    (RepairMismatch("already applied"), EXIT_CHECK),
    (ApplyFailed("rejected"), EXIT_CHECK),
])
def test_the_tools_failures_carry_their_exit_code(exc, code):
    assert isinstance(exc, UsageError if code == EXIT_USAGE else CheckFailed)
    failure = classify(exc)
    assert (failure.exit_code, failure.message) == (code, str(exc))


def test_a_password_in_a_failure_is_masked():
    failure = classify(ConnectionFailed("cannot reach clickhouse+native://u:s3cret@host:9000/default"))
    assert "s3cret" not in failure.message and "***" in failure.message


def test_alembic_errors_are_explained_for_the_command_that_was_run():
    exc = CommandError("Relative revision -1 didn't produce 1 migrations")
    assert classify(exc, "upgrade").message.startswith("upgrade -1 would go down")
    assert classify(exc, "downgrade").message == "no revision is applied: the database is at base, nothing to undo"
    assert classify(exc, "downgrade").exit_code == EXIT_USAGE
    assert explain_alembic(CommandError("Can't locate revision identified by 'zz'")).endswith("for the revision ids")


def test_a_syntax_error_names_the_revision_file():
    exc = SyntaxError("invalid syntax", ("migrations/versions/0014_x.py", 7, 1, "def upgrade(:"))
    failure = classify(exc)
    assert failure.exit_code == EXIT_USAGE
    assert failure.message == "revision file migrations/versions/0014_x.py has a syntax error at line 7: invalid syntax"


def test_anything_else_is_an_unexpected_error():
    failure = classify(KeyError("heads"))
    assert failure.exit_code == EXIT_CHECK
    assert failure.message == "unexpected error: 'heads' (run with --debug for the traceback)"


def test_a_closed_pipe_and_clicks_own_exits_pass_through():
    pipe = BrokenPipeError(errno.EPIPE, "Broken pipe")
    with pytest.raises(BrokenPipeError):
        handle(pipe, command="status", debug=False)
    usage = click.UsageError("no such option")
    with pytest.raises(click.UsageError):
        handle(usage, command="status", debug=False)
    with pytest.raises(click.ClickException) as info:
        handle(LockTimeout("held"), command="upgrade", debug=False)
    assert info.value.exit_code == EXIT_USAGE and info.value.__cause__ is None


def _native(exc: Exception) -> Exception:
    """``exc`` as clickhouse-sqlalchemy's native driver raises it."""
    from clickhouse_sqlalchemy.exceptions import DatabaseException

    try:
        raise DatabaseException(exc) from exc
    except DatabaseException as wrapped:
        return wrapped


NATIVE_497 = ("DB::Exception: weak: Not enough privileges. To execute this query, it's necessary "
              "to have the grant INSERT(seq) ON db.zakaz_schema_lock. Stack trace:\n\n"
              "0. DB::Exception::Exception(DB::Exception::MessageMasked&&, int, bool) @ 0x00000000006d48ec\n"
              "1. DB::AccessRights::checkAccess() @ 0x00007f8b917278ec")


def test_a_server_error_outside_a_step_is_worded_as_the_servers_not_unexpected():
    from clickhouse_driver.errors import ServerException

    failure = classify(_native(ServerException(NATIVE_497, code=497)), "downgrade")
    assert failure.exit_code == EXIT_USAGE
    assert failure.message.startswith(
        "ClickHouse error 497 (ACCESS_DENIED): weak: Not enough privileges."), failure.message
    assert "grant INSERT(seq) ON db.zakaz_schema_lock;" in failure.message and "0x" not in failure.message
    other = classify(_native(ServerException("DB::Exception: Table db.t does not exist. "
                                             "(UNKNOWN_TABLE) (version 24.8.14.39)", code=60)))
    assert other.exit_code == EXIT_CHECK and "unexpected" not in other.message
    assert other.message.startswith("ClickHouse error 60 (UNKNOWN_TABLE): Table db.t does not exist"), other.message
    assert "version" not in other.message


@pytest.mark.parametrize("make", [
    lambda: _native(__import__("clickhouse_driver.errors").errors.NetworkError(
        "Connection refused (127.0.0.1:9000)")),
    lambda: _native(EOFError("Unexpected EOF while reading bytes")),
    lambda: ConnectionResetError(104, "Connection reset by peer"),
])
def test_a_connection_lost_during_a_run_says_so_and_what_to_run_once_the_server_is_back(make):
    failure = classify(make(), "upgrade")
    assert failure.exit_code == EXIT_CHECK
    assert failure.message.startswith("the connection to the server was lost ("), failure.message
    assert "recorded as interrupted" in failure.message and "`zakaz-schema status`" in failure.message
    assert "unexpected" not in failure.message


def test_a_servers_own_failed_connection_is_its_error_not_a_lost_connection():
    # Code 210 from the server: its connection to another shard failed; ours is fine.
    from clickhouse_driver.errors import ServerException

    failure = classify(_native(ServerException("DB::Exception: Connection refused (ch2:9000)", code=210)),
                       "upgrade")
    assert failure.message.startswith(
        "ClickHouse error 210 (NETWORK_ERROR): Connection refused (ch2:9000)"), failure.message
