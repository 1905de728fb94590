"""``zakaz-schema``: the operator CLI (click).

Exit codes: 0 ok; 1 a check failed, drift was found or a migration step
failed; 2 usage, configuration or connection error.  Heavy modules (alembic,
SQLAlchemy, chDB) are imported inside the commands so ``--help`` stays fast.
"""
from __future__ import annotations

import errno
import json
import re
import sys
import traceback

import click

EXIT_OK, EXIT_CHECK, EXIT_USAGE = 0, 1, 2


class UsageFailure(click.ClickException):
    """Bad input, configuration or connection: exit 2, one line."""

    exit_code = EXIT_USAGE


class CheckFailure(click.ClickException):
    """A check failed or a migration step failed: exit 1, one line."""

    exit_code = EXIT_CHECK


def _one_line(exc: BaseException) -> str:
    from app.config import mask_text

    text = str(exc).strip() or type(exc).__name__
    return mask_text(" ".join(text.split()))


def translate_errors(fn):
    """Turn known failures into one clean line with the documented exit code."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context()
        try:
            return fn(*args, **kwargs)
        except click.ClickException:
            raise
        except Exception as exc:  # classified below; unknown ones re-raised
            if isinstance(exc, OSError) and exc.errno == errno.EPIPE:
                raise  # stdout's reader left (`| head`): click's main() exits quietly
            if ctx.obj and ctx.obj.get("debug"):
                from app.config import mask_text

                # A traceback quotes URLs and connect arguments: masked like every other line.
                click.echo(mask_text(traceback.format_exc()), err=True, nl=False)
            raise classify(exc) from None
    return wrapper


def classify(exc: BaseException) -> click.ClickException:
    from alembic.util import CommandError

    from app.cluster import ClusterRewriteError, DistributedDDLTimeout
    from app.config import ConfigError
    from app.engine import ConnectionFailed
    from app.ledger import LedgerError
    from app.lock import LockTimeout
    from app.runtime import MigrationBlocked, StepFailed

    if isinstance(exc, (StepFailed, ClusterRewriteError, DistributedDDLTimeout)):
        return CheckFailure(_one_line(exc))
    if isinstance(exc, (ConfigError, ConnectionFailed, LedgerError, MigrationBlocked, LockTimeout)):
        return UsageFailure(_one_line(exc))
    if isinstance(exc, CommandError):
        return UsageFailure(_explain_alembic(exc))
    if isinstance(exc, SyntaxError):
        return UsageFailure(
            f"revision file {exc.filename} has a syntax error at line {exc.lineno}: {exc.msg}"
        )
    return CheckFailure(f"unexpected error: {_one_line(exc)} (run with --debug for the traceback)")


def _explain_alembic(exc: Exception) -> str:
    text = _one_line(exc)
    if "Can't locate revision" in text or "No such revision" in text:
        return text + "; see `zakaz-schema history` or `alembic history` for the revision ids"
    if "Multiple revisions start with" in text or "is ambiguous" in text:
        return text + "; give more characters of the revision id"
    if "Multiple head revisions" in text:
        return text + "; name the head to use, or merge the heads"
    relative = re.search(r"Relative revision ([+-]?)(\d+) didn't produce", text)
    if relative:
        return _explain_relative(relative.group(1) or "+", int(relative.group(2)))
    return text


def _explain_relative(sign: str, n: int) -> str:
    """alembic's "Relative revision +N didn't produce N migrations", for the command that was run."""
    ctx = click.get_current_context(silent=True)
    command = ctx.info_name if ctx else ""
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


def _emit(data, as_json: bool, human) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        human(data)


url_option = click.option(
    "--url", envvar="ZAKAZ_DATABASE_URL", default=None,
    help="Database URL (else $ZAKAZ_DATABASE_URL, else the embedded database in var/).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
strict_run_option = click.option(
    "--strict", is_flag=True,
    help="Refuse to run (exit 2, nothing changed) while an applied revision file has changed since it was applied.")
cluster_option = click.option(
    "--cluster", envvar="ZAKAZ_CLUSTER", default=None, metavar="NAME",
    help="Cluster mode: DDL ON CLUSTER NAME, Replicated engines, replicated ledger (else $ZAKAZ_CLUSTER; off by default).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.pass_context
def main(ctx, debug):
    """Versioned schema of the Zakaz ClickHouse warehouse.

    \b
    Exit codes: 0 ok, 1 check failed / drift / failed step, 2 usage or connection error.
    """
    ctx.obj = {"debug": debug}
    # alembic imports mako's exceptions, which import Pygments when installed
    # (pytest brings it) for coloured HTML template errors: ~45 ms of every
    # command's start, for output this CLI never makes.  Without the plugin
    # mako uses its plain fallback.
    sys.modules.setdefault("mako.ext.pygmentplugin", None)
    if not debug:
        import logging

        # clickhouse-driver logs every failed connection attempt with a
        # traceback; our one-line error says the same.
        logging.getLogger("clickhouse_driver").setLevel(logging.CRITICAL)


def _print_step(event: dict) -> None:
    arrow = "+" if event["direction"] == "upgrade" else ("-" if event["direction"] == "downgrade" else "=")
    message = event["message"].splitlines()[0] if event["message"] else ""
    if len(message) > 60:
        message = message[:57] + "..."
    line = f"  {arrow} {event['revision']:<6} {message:<60} {event['duration_ms']:>6} ms  {event['statements']:>3} stmt"
    if event["skipped"]:
        line += f"  ({len(event['skipped'])} access statements checked and skipped: embedded engine)"
    click.echo(line)


@main.command()
@click.argument("revision", default="head")
@url_option
@json_option
@click.option("--resume", is_flag=True, help="Re-run a failed or interrupted revision and continue.")
@click.option("--lock-wait", type=float, default=60.0, show_default=True,
              help="Seconds to wait for another deploy's lock (servers).")
@strict_run_option
@click.option("--allow-data-loss", is_flag=True,
              help="Let the upgrade drop tables or columns that hold rows (a revision's UPGRADE_LOSES).")
@cluster_option
@translate_errors
def upgrade(revision, url, as_json, resume, lock_wait, strict, allow_data_loss, cluster):
    """Upgrade the database to REVISION (default: head)."""
    import time

    from app import fastpath
    from app.config import mask_url, resolve_url

    url = resolve_url(url)
    if not as_json:
        click.echo(f"Upgrading {mask_url(url)} to {revision}")
    t0 = time.perf_counter()
    warnings: list[str] = []
    try:
        # Nothing to do (the common case): one query, no alembic (app/fastpath.py).
        heads = fastpath.nothing_to_upgrade(url, cluster, hold=True) if revision == "head" and not resume else None
        if heads is not None:
            _summary([], url, time.perf_counter() - t0, as_json, warnings, heads=heads)
            return
        from app import commands

        outcome: dict = {}
        steps = commands.upgrade(url, revision, resume=resume, lock_wait=lock_wait, cluster=cluster,
                                 reporter=None if as_json else _print_step, outcome=outcome,
                                 strict=strict, warn=_warner(warnings, as_json), allow_data_loss=allow_data_loss)
        if not steps and "heads" in outcome:
            _summary(steps, url, time.perf_counter() - t0, as_json, warnings,
                     heads=outcome["heads"], at_head=outcome["at_head"])
        else:
            _summary(steps, url, time.perf_counter() - t0, as_json, warnings)
    finally:
        fastpath.release()


@main.command(context_settings={"ignore_unknown_options": True})  # "-1" is a revision
@click.argument("revision")
@url_option
@json_option
@click.option("--allow-data-loss", is_flag=True, help="Let the downgrade drop tables or columns that hold rows.")
@click.option("--resume", is_flag=True, help="Re-run a failed or interrupted downgrade and continue.")
@strict_run_option
@cluster_option
@translate_errors
def downgrade(revision, url, as_json, allow_data_loss, resume, strict, cluster):
    """Downgrade the database to REVISION (an id, -1, or base)."""
    import time

    from app import commands
    from app.config import mask_url, resolve_url

    url = resolve_url(url)
    if not as_json:
        click.echo(f"Downgrading {mask_url(url)} to {revision}")
    t0 = time.perf_counter()
    warnings: list[str] = []
    steps = commands.downgrade(url, revision, allow_data_loss=allow_data_loss, resume=resume, cluster=cluster,
                               reporter=None if as_json else _print_step,
                               strict=strict, warn=_warner(warnings, as_json))
    _summary(steps, url, time.perf_counter() - t0, as_json, warnings)


@main.command()
@click.argument("revision")
@url_option
@click.option("--purge", is_flag=True,
              help="Record exactly REVISION whatever the ledger's heads are (e.g. a head this checkout does not have).")
@cluster_option
@click.option("--yes", is_flag=True,
              help="Confirm a stamp that records applied revisions as not applied while the warehouse holds objects.")
@translate_errors
def stamp(revision, url, purge, cluster, yes):
    """Record REVISION in the ledger without running it."""
    from app import commands

    if not yes:
        # Nothing is dropped, but a later upgrade would re-run those revisions
        # over what they built, and a downgrade would leave it in place.
        forgotten, objects = commands.stamp_would_forget(url, revision)
        if forgotten and objects:
            raise UsageFailure(
                f"stamping {revision} records the database as no longer at {', '.join(forgotten)} while "
                f"zakaz, meta and bi hold {objects} objects (nothing is dropped; a later upgrade re-runs "
                "the revisions in between over them); add --yes if that is what you mean"
            )
    commands.stamp(url, revision, purge=purge, cluster=cluster)
    click.echo(f"Stamped {revision}")


def _warner(warnings: list[str], as_json: bool):
    """Warnings of a run (e.g. an applied revision file changed): the lines `status` shows."""
    def warn(message: str) -> None:
        warnings.append(message)
        if not as_json:
            click.echo(f"WARNING:   {message}")
    return warn


def _summary(steps: list[dict], url: str, seconds: float, as_json: bool, warnings: list[str] = (),
             heads: list[str] | None = None, at_head: bool = True) -> None:
    """``heads``, ``at_head``: where the database is, known already (no second connection)."""
    if heads is not None:
        pass
    elif steps and "at_head" in steps[-1]:
        # The last step says where the database is: no second connection.
        heads, at_head = steps[-1]["heads"], steps[-1]["at_head"]
    else:
        from app import commands

        st = commands.status(url)
        heads, at_head = st.heads, sorted(st.heads) == sorted(st.script_heads)
    if as_json:
        click.echo(json.dumps({"steps": steps, "heads": heads, "seconds": round(seconds, 3),
                               "warnings": list(warnings)}, indent=2))
        return
    at = ", ".join(heads) or "base"
    if not steps:
        click.echo(f"Nothing to do: the database is at {at}{' (head)' if at_head else ''}.")
    else:
        click.echo(f"{len(steps)} step(s) in {seconds:.2f} s; the database is at {at}{' (head)' if at_head else ''}.")


class _Answer:
    """The fast path's status (a dict, as ``commands.Status.to_dict()``) read like a Status."""

    def __init__(self, data: dict):
        self.__dict__.update(data)
        self._data = data

    def to_dict(self) -> dict:
        return self._data


@main.command()
@url_option
@json_option
@click.option("--strict", is_flag=True, help="Exit 1 when an applied revision file has changed.")
@translate_errors
def status(url, as_json, strict):
    """Current heads, pending revisions, failed steps, skipped statements."""
    from app import fastpath
    from app.config import resolve_url

    url = resolve_url(url)
    try:
        # At head with nothing to report: one query, no alembic (app/fastpath.py).
        fast = fastpath.status(url, hold=True)
        if fast is not None:
            st = _Answer(fast)
        else:
            from app import commands

            st = commands.status(url)
    finally:
        fastpath.release()

    def human(_):
        click.echo(f"database:  {st.url}")
        click.echo(f"engine:    {st.engine} (ClickHouse {st.server_version})")
        click.echo(f"heads:     {', '.join(st.heads) or 'base (nothing applied)'}")
        if st.unmanaged_objects:
            click.echo(f"UNMANAGED: no ledger, but zakaz/meta/bi hold {st.unmanaged_objects} objects: "
                       "built by the old SQL files? see `zakaz-schema adopt`")
        if st.version_problem:
            click.echo(f"PROBLEM:   {st.version_problem}")
        elif st.pending:
            click.echo(f"pending:   {len(st.pending)} revision(s)")
            for p in st.pending:
                click.echo(f"  {p['revision']}  {p['message']}")
        else:
            click.echo("pending:   none (at head)")
        if st.problem:
            p = st.problem
            detail = f" at statement {p['failed_statement']}: {p['error']}" if p["state"] == "failed" else ""
            click.echo(f"PROBLEM:   {p['direction']} {p['revision']} {p['state']}{detail}")
            by_hand = "applied" if p["direction"] == "upgrade" else "reverted"
            click.echo(f"           fix the cause, then {st.resume} "
                       f"(or `zakaz-schema repair {p['revision']} --mark-{by_hand}` if it was finished by hand)")
        for s in st.skipped:
            click.echo(f"skipped:   {s['revision']}: {len(s['statements'])} access statement(s) not run (embedded engine)")
        for c in st.changed_files:
            click.echo(f"WARNING:   {c['revision']}: {c['problem']}")

    _emit(st.to_dict(), as_json, human)
    if st.problem or st.unmanaged_objects or st.version_problem or (strict and st.changed_files):
        sys.exit(EXIT_CHECK)


@main.command()
@url_option
@json_option
@translate_errors
def history(url, as_json):
    """Applied steps from the ledger next to the revision files."""
    from app import commands

    rows = commands.history(url)

    def human(rows):
        if not rows:
            click.echo("The ledger is empty: nothing has been applied.")
            return
        click.echo(f"{'when':<19}  {'revision':<8} {'direction':<9} {'status':<8} {'ms':>6} {'stmt':>4}  {'who':<20} {'checksum':<12}  file")
        for r in rows:
            mark = "" if r["file_matches"] in (None, True) else "  (file changed since)"
            click.echo(f"{r['when']:<19}  {r['revision']:<8} {r['direction']:<9} {r['status']:<8} "
                       f"{r['duration_ms']:>6} {r['statements']:>4}  {r['who'][:20]:<20} {r['checksum']:<12}  {r['file']}{mark}")

    _emit(rows, as_json, human)


@main.command()
@url_option
@json_option
@click.option("--strict", is_flag=True, help="Treat changed revision files as drift.")
@translate_errors
def verify(url, as_json, strict):
    """Compare the live database with the canonical schema at head."""
    from app import commands

    result = commands.verify(url)
    findings = result["findings"]
    fatal = [f for f in findings if f.fatal]

    def human(_):
        for f in findings:
            click.echo(("" if f.fatal else "note: ") + str(f))
        for c in result["changed_files"]:
            click.echo(f"{'error' if strict else 'warning'}: revision {c['revision']}: {c['problem']}")
        if not fatal:
            click.echo(f"OK: {result['objects']} objects match the canonical schema")
        else:
            click.echo(f"DRIFT: {len(fatal)} finding(s)")

    payload = {"url": result["url"], "ok": not fatal, "objects": result["objects"],
               "findings": [f.to_dict() for f in findings], "changed_files": result["changed_files"]}
    _emit(payload, as_json, human)
    if fatal or (strict and result["changed_files"]):
        sys.exit(EXIT_CHECK)


@main.command()
@click.argument("revision_range", default="head")
@url_option
@cluster_option
@translate_errors
def sql(revision_range, url, cluster):
    """Offline SQL for review: [FROM:]TO, e.g. head, 0004:head, head:0008."""
    from app import commands

    click.echo(commands.offline_sql(url, revision_range, cluster=cluster), nl=False)


@main.command()
@click.argument("message")
@click.option("--head", "head", default="head", help="Revision the new one follows (default: the head).")
@click.option("--branch", is_flag=True, help="Allow creating a second head.")
@translate_errors
def new(message, head, branch):
    """Write a new revision file from the template."""
    from app import commands

    try:
        path = commands.new_revision(message, head=head, branch=branch)
    except commands.RevisionRefused as exc:
        raise UsageFailure(str(exc)) from None
    click.echo(f"Created {path}")


@main.command()
@click.argument("revision")
@click.option("--mark-applied", "mark", flag_value="applied", help="The revision was completed by hand.")
@click.option("--mark-reverted", "mark", flag_value="reverted", help="The revision was undone by hand.")
@url_option
@translate_errors
def repair(revision, mark, url):
    """Record in the ledger that REVISION was finished or undone by hand."""
    from app import commands

    if not mark:
        raise UsageFailure("say what was done by hand: --mark-applied or --mark-reverted")
    try:
        result = commands.repair(url, revision, mark=mark)
    except commands.RevisionRefused as exc:
        raise UsageFailure(str(exc)) from None
    except commands.RepairMismatch as exc:
        raise CheckFailure(str(exc)) from None
    click.echo(f"Recorded {result['revision']} as {mark} by hand; heads "
               f"{', '.join(result['previous_heads']) or 'base'} -> {', '.join(result['heads']) or 'base'}")


@main.group()
def users():
    """Application users on a server: etl_writer, datalens_reader, backup_user."""


@users.command("apply")
@url_option
@click.option("--user", "names", multiple=True, metavar="NAME",
              help="Only this user (repeatable): etl_writer, datalens_reader or backup_user.")
@click.option("--dry-run", is_flag=True, help="Print the statements, passwords masked, without connecting.")
@cluster_option
@translate_errors
def users_apply(url, names, dry_run, cluster):
    """Create or update the users from $ZAKAZ_*_PASSWORD and grant them their roles.

    \b
    Passwords: ZAKAZ_ETL_WRITER_PASSWORD, ZAKAZ_DATALENS_READER_PASSWORD,
    ZAKAZ_BACKUP_USER_PASSWORD (see .env.example).  Roles come from revision
    0010, so run `zakaz-schema upgrade` first.  Needs a server: the embedded
    engine has no access storage.  With --cluster, ON CLUSTER (every replica).
    """
    from app import users as app_users
    from app.config import mask_url, resolve_url

    url = resolve_url(url)
    try:
        if dry_run:
            for stmt in app_users.plan(url, names, cluster=cluster):
                click.echo(f"{stmt.shown};")
            return
        done = app_users.apply(url, names, cluster=cluster)
    except app_users.UsersRefused as exc:
        raise UsageFailure(_one_line(exc)) from None
    except app_users.ApplyFailed as exc:
        raise CheckFailure(_one_line(exc)) from None
    for d in done:
        click.echo(f"  {d['action']:<7} {d['user']:<16} role {d['role']}")
    click.echo(f"{len(done)} user(s) applied on {mask_url(url)}")


def _yes_no(value) -> str:
    return "-" if value is None else ("yes" if value else "NO")


def _print_drill_result(result) -> None:
    notes = "; ".join(result.notes)
    click.echo(f"{result.revision:<8} {result.up_ms:>6} {result.down_ms:>8}  "
               f"{_yes_no(result.schema_restored):<15}  {_yes_no(result.rows_kept):<9}  {notes}".rstrip())
    for failure in result.failures:
        click.echo(f"  FAIL {failure}")


@main.command()
@click.option("--from", "from_rev", default=None,
              help="First revision to drill (default: the first one not applied).")
@click.option("--to", "to_rev", default=None, help="Last revision to drill (default: head).")
@click.option("--with-data", is_flag=True,
              help="Load sample rows and check every table's rows survive each up/down/up.")
@click.option("--rows", "rows_per_table", type=click.IntRange(1, 100_000), default=20, show_default=True,
              help="Sample rows per table (with --with-data).")
@click.option("--seed", type=int, default=0, show_default=True, help="Sample data seed (with --with-data).")
@click.option("--url", default=None,
              help="Drill this database instead of a scratch one: it is migrated for real (needs --yes).")
@click.option("--yes", is_flag=True, help="Confirm drilling the database given with --url.")
@json_option
@translate_errors
def drill(from_rev, to_rev, with_data, rows_per_table, seed, url, yes, as_json):
    """Prove each revision can be undone: up, check, down, compare, up again.

    \b
    Runs on a scratch embedded database, removed afterwards; the configured
    database ($ZAKAZ_DATABASE_URL) is never used.  Exit 1 names the first
    revision whose downgrade does not restore the schema or loses data it
    does not declare in DOWNGRADE_LOSES.
    """
    from app.config import mask_url
    from app.drill import DrillError, run_drill

    if url and not yes:
        raise UsageFailure(
            f"the drill upgrades and downgrades {mask_url(url)} for real"
            + (" and writes sample rows into its empty tables" if with_data else "")
            + "; add --yes to drill it, or leave out --url to drill a scratch database"
        )
    if not as_json:
        where = mask_url(url) if url else "a scratch embedded database"
        data = f"with sample data ({rows_per_table} rows per table, seed {seed})" if with_data else "schema only"
        click.echo(f"Drilling on {where}, {data}")
        click.echo(f"{'revision':<8} {'up ms':>6} {'down ms':>8}  {'schema restored':<15}  {'rows kept':<9}  notes")
    try:
        report = run_drill(url, from_rev, to_rev, with_data=with_data,
                           rows_per_table=rows_per_table, seed=seed,
                           progress=None if as_json else _print_drill_result)
    except DrillError as exc:
        raise UsageFailure(str(exc)) from None
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        span = f"{report.results[0].revision}..{report.end}" if report.results else report.end
        if report.ok:
            declared = sum(1 for r in report.results if r.declared_losses)
            click.echo(f"OK: {len(report.results)} revision(s) {span} upgraded, downgraded and upgraded "
                       f"again in {report.seconds:.2f} s; {declared} of them drop data, as they declare")
        else:
            failures = report.failures
            click.echo(f"FAILED: {failures[0]}" + (f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""))
    if not report.ok:
        sys.exit(EXIT_CHECK)



script_location_option = click.option(
    "--script-location", default=None, metavar="DIR",
    help="A migrations folder to use instead of the project's (e.g. a branch's copy).",
)


@main.command()
@click.argument("revisions", nargs=-1)
@script_location_option
@json_option
@translate_errors
def lint(revisions, script_location, as_json):
    """Check revision files (default: all) by replaying the chain on a scratch database.

    \b
    Each revision must apply on its predecessor and its downgrade restore
    the schema; views read only what exists; keys are deterministic; data
    loss is declared (UPGRADE_LOSES / DOWNGRADE_LOSES); DDL is re-runnable;
    grants name existing objects; one head; docstrings.  Rules are listed in
    app/lint.py.  Exit 1 on errors (warnings alone exit 0).
    """
    from app.lint import lint_revisions

    report = lint_revisions(list(revisions) or None, script_location=script_location)

    def human(_):
        for f in report.findings:
            click.echo(str(f))
        if report.not_replayed:
            click.echo(f"not replayed (fix the failure above first): {', '.join(report.not_replayed)}")
        verdict = "OK" if report.ok else "FAILED"
        click.echo(f"{verdict}: {len(report.revisions)} revision(s) linted in {report.seconds:.2f} s; "
                   f"{len(report.errors)} error(s), {len(report.warnings)} warning(s)")

    _emit(report.to_dict(), as_json, human)
    if not report.ok:
        sys.exit(EXIT_CHECK)


@main.command()
@click.option("--rows", "rows_per_table", type=click.IntRange(1, 10_000), default=50, show_default=True,
              help="Sample rows per table.")
@click.option("--seed", type=int, default=0, show_default=True, help="Sample data seed.")
@click.option("--url", default=None,
              help="Run on this database instead of a scratch one: it is upgraded to head and gets "
                   "sample rows (needs --yes; refused if its tables hold rows).")
@click.option("--yes", is_flag=True, help="Confirm writing sample rows into the database given with --url.")
@script_location_option
@json_option
@translate_errors
def smoke(rows_per_table, seed, url, yes, script_location, as_json):
    """Upgrade to head, load sample rows, select from every view and check invariants.

    \b
    Runs on a scratch embedded database, removed afterwards; the configured
    database ($ZAKAZ_DATABASE_URL) is never used.  Exit 1 names the failing checks.
    """
    from app.config import mask_url
    from app.smoke import SmokeRefused, run_smoke_checks

    if url and not yes:
        raise UsageFailure(f"smoke upgrades {mask_url(url)} to head and inserts sample rows; "
                           "add --yes to use it, or leave out --url to use a scratch database")
    try:
        report = run_smoke_checks(url, rows_per_table=rows_per_table, seed=seed,
                                  script_location=script_location)
    except SmokeRefused as exc:
        raise UsageFailure(str(exc)) from None

    def human(_):
        width = max((len(c.name) for c in report.checks), default=0)
        for check in report.checks:
            click.echo(f"{'ok  ' if check.ok else 'FAIL'}  {check.name:<{width}}  {check.detail}".rstrip())
        failed = report.failed
        if failed:
            click.echo(f"FAILED: {', '.join(c.name for c in failed)}")
        else:
            click.echo(f"OK: {len(report.checks)} checks passed in {report.seconds:.2f} s")

    _emit(report.to_dict(), as_json, human)
    if not report.ok:
        sys.exit(EXIT_CHECK)


def _print_adoption_plan(plan) -> None:
    click.echo(f"database:  {plan.url} (ClickHouse {plan.server_version}); no ledger; "
               f"{plan.objects} object(s) in zakaz, meta, bi")
    if plan.revision is None:
        click.echo("matches:   no revision")
    else:
        click.echo(f"matches:   {plan.revision}, the latest revision it fully contains (head {plan.head})")
    for rev, reasons in plan.blocked_at.items():
        click.echo(f"not {rev}:  " + ("; ".join(reasons[:3]) + (" ..." if len(reasons) > 3 else "")))
    if plan.revision is not None:
        for item in plan.ahead:
            what = f"{item['object']}.{item['column']}" if item["column"] else item["object"]
            state = "as it defines it" if item["matches"] else "shaped differently: repaired below"
            click.echo(f"ahead:     {what} from {item['revision']} is already there ({state})")
        for name in plan.unmanaged:
            click.echo(f"unmanaged: {name}, left untouched")
        notable = [d for d in plan.differences if not d["revision"] and d["kind"] != "unmanaged_object"]
        for d in notable:
            click.echo(f"differs:   {d['message']}")
    for note in plan.notes:
        click.echo(f"note:      {note}")
    if plan.operations:
        lossy = plan.lossy_operations
        click.echo(f"repair plan: {len(plan.operations)} operation(s)"
                   + (f", {len(lossy)} of them LOSE DATA (need --allow-data-loss)" if lossy else ", every row kept"))
        for n, op in enumerate(plan.operations, 1):
            risk = f"  [LOSES DATA: {op.rows_at_risk} row(s) of {', '.join(op.loses)}]" if op.loses_data else ""
            click.echo(f"  {n:>2}. {op.kind} {op.target}: {op.reason}{risk}")
            for sql in op.statements:
                line = " ".join(sql.split())
                click.echo(f"        {line[:157] + '...' if len(line) > 160 else line}")
    elif plan.adoptable:
        click.echo("repair plan: nothing to repair")
    for reason in plan.refusals:
        click.echo(f"REFUSED:   {reason}")
    if plan.adoptable:
        pending = f"upgrade {plan.pending[0]}..{plan.pending[-1]}" if plan.pending else "nothing to upgrade"
        click.echo(f"then:      stamp {plan.revision} as adopted, {pending}, verify")


@main.command()
@url_option
@json_option
@click.option("--apply", "do_apply", is_flag=True,
              help="Run the repair plan, stamp the matched revision, upgrade to head and verify.")
@click.option("--allow-data-loss", is_flag=True, help="Let repair operations that drop values run.")
@translate_errors
def adopt(url, as_json, do_apply, allow_data_loss):
    """Bring a database built by the old SQL files under management.

    \b
    Matches the live schema to the latest revision it fully contains and
    shows what differs and the repair plan; nothing changes without --apply.
    Exit 0 adoptable / adopted, 1 no revision matches or verify fails after,
    2 usage, connection, already managed, or data loss not allowed.
    """
    from app import adopt as adoption
    from app.config import resolve_url

    url = resolve_url(url)
    try:
        plan = adoption.plan_adoption(url)
    except adoption.AdoptionRefused as exc:
        raise UsageFailure(str(exc)) from None
    if not do_apply or not plan.adoptable:
        _emit(plan.to_dict(), as_json, lambda _: _print_adoption_plan(plan))
        if not plan.adoptable:
            raise CheckFailure(adoption.explain_refusal(plan))
        if not as_json:
            flag = " --allow-data-loss" if plan.lossy_operations else ""
            click.echo(f"Nothing changed. Run `zakaz-schema adopt --apply{flag}` to do it.")
        return
    if not as_json:
        _print_adoption_plan(plan)

    def progress(event: dict) -> None:
        if event["kind"] == "operation":
            click.echo(f"  * {event['operation']} {event['target']}")
        elif event["kind"] == "stamp":
            click.echo(f"  = {event['revision']}  stamped as adopted")
        else:
            _print_step(event)

    try:
        result = adoption.apply_adoption(url, plan, allow_data_loss=allow_data_loss,
                                         reporter=None if as_json else progress)
    except adoption.NoMatchingRevision as exc:
        raise CheckFailure(str(exc)) from None
    except adoption.AdoptionRefused as exc:
        raise UsageFailure(str(exc)) from None

    def human(_):
        for f in result.findings:
            click.echo(("" if f.fatal else "note: ") + str(f))
        for change in result.data_changes:
            click.echo(f"ROWS CHANGED: {change}")
        fatal = [f for f in result.findings if f.fatal]
        if result.ok:
            click.echo(f"OK: adopted at {plan.revision}, upgraded to head, verify passes; "
                       f"{result.checked_tables} table(s) have every row (counts and checksums unchanged)")
        else:
            click.echo(f"FAILED: {len(fatal)} verify finding(s), {len(result.data_changes)} table(s) changed")

    _emit(result.to_dict(), as_json, human)
    if not result.ok:
        sys.exit(EXIT_CHECK)


if __name__ == "__main__":  # pragma: no cover
    main()
