"""Every failure of a command as one line and its exit code: the CLI's one handler.

A ``ZakazError`` carries its exit code.  A few failures are not ours
(alembic's ``CommandError``, a ``SyntaxError`` in a revision file), and a few
modules' exceptions do not derive from ``ZakazError`` yet: those are
classified here.  Anything else is a bug, shown as "unexpected error" (exit 1).

Nothing heavy is imported: an exception class that was never imported can
never have been raised, so classes are looked up in ``sys.modules`` and
``--help`` stays free of alembic, SQLAlchemy and chDB.
"""
from __future__ import annotations

import errno
import re
import sys
import traceback

import click

from app.config import mask_text
from app.errors import EXIT_CHECK, EXIT_USAGE, UsageError, ZakazError
from app.sql import one_line

# Exceptions of modules that do not derive them from ZakazError (yet), most
# specific first: (module, class name) -> exit code.  An entry does no harm
# once its class derives from ZakazError (that is checked first).
_NOT_YET_ZAKAZ_ERRORS = (
    ("app.smoke", "SmokeRefused", EXIT_USAGE),
)


class Failure(click.ClickException):
    """What click prints as ``Error: <message>`` and exits with ``exit_code``."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def _loaded(module: str, name: str) -> type | None:
    found = getattr(sys.modules.get(module), name, None)
    return found if isinstance(found, type) else None


def classify(exc: BaseException, command: str = "") -> Failure:
    """``exc`` as one line and its exit code; ``command``: the verb that was run."""
    if isinstance(exc, ZakazError):
        return Failure(one_line(exc), exc.exit_code)
    for module, name, code in _NOT_YET_ZAKAZ_ERRORS:
        cls = _loaded(module, name)
        if cls is not None and isinstance(exc, cls):
            return Failure(one_line(exc), code)
    command_error = _loaded("alembic.util", "CommandError") or _loaded("alembic.util.exc", "CommandError")
    if command_error is not None and isinstance(exc, command_error):
        return Failure(explain_alembic(exc, command), EXIT_USAGE)
    # The script directory's own errors (an unknown id given to `stamp`, a
    # range that is not an ancestor, a cycle) reach us without CommandError.
    revision_error = _loaded("alembic.script.revision", "RevisionError")
    if revision_error is not None and isinstance(exc, revision_error):
        return Failure(explain_alembic(exc, command), EXIT_USAGE)
    if isinstance(exc, SyntaxError):
        return Failure(f"revision file {exc.filename} has a syntax error at line {exc.lineno}: {exc.msg}",
                       EXIT_USAGE)
    return Failure(f"unexpected error: {one_line(exc)} (run with --debug for the traceback)", EXIT_CHECK)


def handle(exc: BaseException, *, command: str, debug: bool) -> None:
    """Re-raise ``exc`` as click expects it: one line with the documented exit code."""
    if isinstance(exc, KeyboardInterrupt):
        raise interrupted(command) from None
    if isinstance(exc, (click.ClickException, click.exceptions.Exit, click.Abort)):
        raise exc
    if isinstance(exc, OSError) and exc.errno == errno.EPIPE:
        raise exc  # stdout's reader left (`| head`): click's main() exits quietly
    if debug:
        # A traceback quotes URLs and connect arguments: masked like every other line.
        click.echo(mask_text("".join(traceback.format_exception(exc))), err=True, nl=False)
    raise classify(exc, command) from None


def check_revision_range(revision_range: str) -> None:
    """``sql``'s [FROM:]TO (":TO" is from base); alembic answers "0004:" with a bare AssertionError."""
    parts = revision_range.split(":")
    if len(parts) > 2 or not parts[-1].strip():
        raise UsageError(f"revision range {revision_range!r}: expected TO or FROM:TO, "
                         "e.g. head, 0004:head, head:0008")


def check_message(message: str) -> None:
    """``new``'s message: it becomes the revision's docstring and changelog line."""
    if not message.strip():
        raise UsageError('the message is empty: say what the revision changes, e.g. '
                         'zakaz-schema new "add zakaz.fact_refunds"')


def repair_mark(applied: bool, reverted: bool) -> str:
    """Exactly one of ``repair``'s flags (sharing one value, the last one given used to win)."""
    if applied == reverted:
        raise UsageError("say what was done by hand: --mark-applied or --mark-reverted"
                         + (", not both" if applied else ""))
    return "applied" if applied else "reverted"


def interrupted(command: str) -> Failure:
    """Ctrl-C: click would print a bare "Aborted!"; say where the database is left."""
    if command in ("upgrade", "downgrade", "adopt"):
        return Failure("interrupted: steps that finished are recorded; one under way is recorded as "
                       "interrupted: `zakaz-schema status` shows it and the command that resumes it",
                       EXIT_CHECK)
    return Failure("interrupted", EXIT_CHECK)


def explain_alembic(exc: Exception, command: str = "") -> str:
    text = one_line(exc)
    if "Can't locate revision" in text or "No such revision" in text:
        return text + "; see `zakaz-schema history` or `alembic history` for the revision ids"
    if "Multiple revisions start with" in text or "is ambiguous" in text:
        return text + "; give more characters of the revision id"
    if "Multiple head revisions" in text:
        return text + "; name the head to use, or merge the heads"
    relative = re.search(r"Relative revision ([+-]?)(\d+) didn't produce", text)
    if relative:
        return _explain_relative(command, relative.group(1) or "+", int(relative.group(2)))
    return text


def _explain_relative(command: str, sign: str, n: int) -> str:
    """alembic's "Relative revision +N didn't produce N migrations", for the command that was run."""
    if command == "downgrade" and sign == "+":
        return f"downgrade +{n} would go up: a downgrade takes -{n}, a revision id or base"
    if command == "upgrade" and sign == "-":
        return f"upgrade -{n} would go down: an upgrade takes +{n}, a revision id or head"
    if sign == "+":
        return (f"fewer than {n} revisions are pending above the database's heads; "
                "`zakaz-schema status` lists them (upgrade head applies them all)")
    if n == 1:
        return "no revision is applied: the database is at base, nothing to undo"
    return (f"fewer than {n} revisions are applied; `zakaz-schema status` shows the heads "
            "(downgrade base undoes them all)")
