"""Every failure of a command as one line and its exit code: the CLI's one handler (``ZakazGroup``).

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
import json
import re
import sys
import traceback
from pathlib import Path

import click

from app import progress
from app.config import mask_text
from app.engine import lost_reason
from app.errors import EXIT_CHECK, EXIT_USAGE, UsageError, ZakazError
from app.sql import ACCESS_DENIED, clickhouse_error_code, connection_lost, describe_clickhouse_error, one_line

# The canonical schema is Python parsed on import by the commands that compare
# with it (verify, adopt, autogenerate): a mistake in it is one line naming it.
CANONICAL_FILE = Path(__file__).resolve().with_name("canonical.py")

# Exceptions of modules that do not derive them from ZakazError (yet), most
# specific first: (module, class name) -> exit code.  An entry does no harm
# once its class derives from ZakazError (that is checked first).
_NOT_YET_ZAKAZ_ERRORS = (
    ("app.smoke", "SmokeRefused", EXIT_USAGE),
)


class Failure(click.ClickException):
    """What click prints as ``Error: <message>`` and exits with ``exit_code``.

    ``as_json`` (the command was given --json): one JSON object line on
    stderr instead, ``{"error": ..., "exit_code": ...}``, so a script reading
    JSON reads its failures the same way.
    """

    def __init__(self, message: str, exit_code: int, as_json: bool = False):
        super().__init__(message)
        self.exit_code = exit_code
        self.as_json = as_json

    def show(self, file=None) -> None:
        if not self.as_json:
            return super().show(file)
        click.echo(json.dumps({"error": self.format_message(), "exit_code": self.exit_code}), err=True)


class ZakazGroup(click.Group):
    """The group whose ``invoke`` is the one place a failure becomes one line and an exit code."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta.setdefault("zakaz_json", "--json" in args)  # errors too are JSON then, even a bad option's
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):
        # Long copies and slow statements (app.progress, app.waiting) of every command, drill and smoke
        # included: JSON lines on stderr with --json, else a bar / lines on a terminal.
        restore = progress.configure(as_json=ctx.meta.get("zakaz_json", False))
        try:
            return super().invoke(ctx)
        except (Exception, KeyboardInterrupt) as exc:  # classified below; unknown: "unexpected"
            handle(exc, command=ctx.invoked_subcommand or "", debug=bool(ctx.obj and ctx.obj.get("debug")),
                   as_json=ctx.meta.get("zakaz_json", False))
        finally:
            restore()


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
    canonical = canonical_failure(exc)
    if canonical is not None:
        return Failure(canonical, EXIT_USAGE)
    if isinstance(exc, SyntaxError):
        return Failure(f"revision file {exc.filename} has a syntax error at line {exc.lineno}: {exc.msg}",
                       EXIT_USAGE)
    # A driver's error outside a step (the ledger's and lock's statements, the
    # checks before a run): the server's words, not "unexpected", which said
    # nothing over native (clickhouse-driver puts the message on a second line).
    if connection_lost(exc):
        return Failure(lost_connection(command, lost_reason(exc)), EXIT_CHECK)
    server_error = describe_clickhouse_error(exc)
    if server_error:
        if clickhouse_error_code(exc) == ACCESS_DENIED:  # configuration, not a defect: exit 2
            return Failure(f"{server_error}; grant it to this user, or run as a user that has it",
                           EXIT_USAGE)
        return Failure(f"{server_error} (run with --debug for the traceback)", EXIT_CHECK)
    return Failure(f"unexpected error: {one_line(exc)} (run with --debug for the traceback)", EXIT_CHECK)


def canonical_failure(exc: BaseException) -> str | None:
    """The line for an error raised while app/canonical.py was imported (it did not load), else None."""
    if "app.canonical" in sys.modules:
        return None  # it loaded: the error is somebody else's
    where = None
    if isinstance(exc, SyntaxError) and exc.filename and Path(exc.filename).resolve() == CANONICAL_FILE:
        where, what = exc.lineno, exc.msg
    else:
        frames = [f for f in traceback.extract_tb(exc.__traceback__)
                  if Path(f.filename).resolve() == CANONICAL_FILE]
        if frames:
            where, what = frames[-1].lineno, one_line(exc) or type(exc).__name__
    if where is None:
        return None
    return (f"the canonical schema (app/canonical.py) does not load: {what} at line {where}; "
            "nothing was changed. Fix the file (--debug shows the traceback)")


def handle(exc: BaseException, *, command: str, debug: bool, as_json: bool = False) -> None:
    """Re-raise ``exc`` as click expects it: one line with the documented exit code (a JSON line with --json)."""
    if isinstance(exc, KeyboardInterrupt):
        failure = interrupted(command)
        failure.as_json = as_json
        raise failure from None
    if as_json and isinstance(exc, click.ClickException) and not isinstance(exc, Failure):
        raise Failure(exc.format_message(), exc.exit_code, as_json=True) from None  # click's usage errors
    if isinstance(exc, (click.ClickException, click.exceptions.Exit, click.Abort)):
        raise exc
    if isinstance(exc, OSError) and exc.errno == errno.EPIPE:
        raise exc  # stdout's reader left (`| head`): click's main() exits quietly
    if debug:
        # A traceback quotes URLs and connect arguments: masked like every other line.
        click.echo(mask_text("".join(traceback.format_exception(exc))), err=True, nl=False)
    failure = classify(exc, command)
    failure.as_json = as_json
    raise failure from None


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


def confirm(question: str, refusal: str) -> None:
    """A destructive step asks on a terminal; elsewhere (a script, CI) it is refused: ``refusal`` says to add --yes."""
    if sys.stdin is not None and sys.stdin.isatty() and sys.stderr.isatty():
        if click.confirm(question, default=False, err=True):
            return
        raise UsageError("not confirmed; nothing was changed")
    raise UsageError(refusal)


def confirm_stamp(revision: str, purge: bool, forgotten: list[str], objects: int) -> None:
    """``stamp`` without --yes: ``forgotten``, the ledger heads it records as not applied; ``objects``,
    the objects the warehouse holds."""
    if purge:  # the version record is replaced, whatever it held
        replaced = f"in place of {', '.join(forgotten)}" if forgotten else "whatever the ledger's heads are"
        what = f"stamp {revision} --purge records {revision} as the database's only version, {replaced}"
        confirm(f"{what}. Continue?", f"{what}; add --yes if that is what you mean (nothing was changed)")
    elif forgotten and objects:
        # Nothing is dropped, but a later upgrade would re-run those revisions
        # over what they built, and a downgrade would leave it in place.
        raise UsageError(
            f"stamping {revision} records the database as no longer at {', '.join(forgotten)} while "
            f"zakaz, meta and bi hold {objects} objects (nothing is dropped; a later upgrade re-runs "
            "the revisions in between over them); add --yes if that is what you mean"
        )


def repair_mark(applied: bool, reverted: bool) -> str:
    """Exactly one of ``repair``'s flags (sharing one value, the last one given used to win)."""
    if applied == reverted:
        raise UsageError("say what was done by hand: --mark-applied or --mark-reverted"
                         + (", not both" if applied else ""))
    return "applied" if applied else "reverted"


def lost_connection(command: str, reason: str) -> str:
    """The connection broke (the server stopped): where a run is left, and what to run once it is back."""
    said = f"the connection to the server was lost ({reason})"
    if command in ("upgrade", "downgrade", "adopt"):
        return (f"{said}; steps that finished are recorded, one under way is recorded as interrupted "
                "when it can be. Once the server is back, run `zakaz-schema status`: it shows that step "
                "and the command that resumes it")
    return f"{said}; once the server is back, run the same command again"


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
    if n == 0:
        return f"{command} {sign}0 moves nowhere: give {'-1' if command == 'downgrade' else '+1'} or more, a revision id"
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
