"""``zakaz-schema``: the operator CLI (click).

Exit codes: 0 ok; 1 a check failed, drift was found or a migration step
failed; 2 usage, configuration or connection error.  Every failure reaches
one handler (``ZakazGroup``, app.cli_errors), so commands raise and never
catch.  Commands only wire options to library functions (app.commands and
the operator tools) and their results to app.cli_output.

Modules that import alembic, SQLAlchemy or chDB (app.commands, app.drill,
app.lint, app.smoke, app.adopt) are imported inside the commands that use
them: ``--help`` and the fast paths of ``status`` and ``upgrade`` must not
pay for them (tests/test_cli.py checks).
"""
from __future__ import annotations

import logging
import sys
import time
from types import SimpleNamespace

import click

from app import cli_output as out
from app import users as app_users
from app.cli_errors import ZakazGroup, check_message, check_revision_range, confirm_stamp, repair_mark
from app.config import mask_url, parse_url, resolve_url
from app.engine import check_url
from app.errors import EXIT_CHECK, CheckFailed, UsageError


# No click envvar for --url and --cluster: ZAKAZ_DATABASE_URL and ZAKAZ_CLUSTER
# are read where every other source is (app.settings, app.config.resolve_url),
# in one precedence for the CLI, alembic -x and the library alike.
url_option = click.option(
    "--url", default=None,
    help="Database URL (else $ZAKAZ_DATABASE_URL, else the embedded database in var/).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
strict_run_option = click.option(
    "--strict", is_flag=True,
    help="Refuse to run (exit 2, nothing changed) while an applied revision file has changed since it was applied.")
cluster_option = click.option(
    "--cluster", default=None, metavar="NAME",
    help="Cluster mode: DDL ON CLUSTER NAME, Replicated engines, replicated ledger (else $ZAKAZ_CLUSTER; off by default).",
)
script_location_option = click.option(
    "--script-location", default=None, metavar="DIR",
    help="A migrations folder to use instead of the project's (e.g. a branch's copy).",
)


@click.group(cls=ZakazGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
        # clickhouse-driver logs every failed connection attempt with a
        # traceback; our one-line error says the same.
        logging.getLogger("clickhouse_driver").setLevel(logging.CRITICAL)


def _summary(steps: list, url: str, seconds: float, as_json: bool, warnings: list[str],
             heads: list[str] | None = None, at_head: bool = True) -> None:
    """``heads``, ``at_head``: where the database is, known already (no second connection)."""
    if heads is None and steps:
        # The last step says where the database is: no second connection.
        heads, at_head = steps[-1].heads, steps[-1].at_head
    elif heads is None:
        from app import commands  # alembic: only when the run said nothing

        st = commands.status(url)
        heads, at_head = st.heads, sorted(st.heads) == sorted(st.script_heads)
    app_users.warn_users_without_role(url, steps, out.warner(warnings, as_json))  # roles dropped lose their grants
    out.print_summary(steps, heads, at_head, seconds, as_json, warnings)


@main.command()
@click.argument("revision", default="head")
@url_option
@json_option
@click.option("--resume", is_flag=True, help="Re-run a failed or interrupted revision and continue.")
@click.option("--lock-wait", type=click.FloatRange(min=0), default=60.0, show_default=True,
              help="Seconds to wait for another deploy's lock (servers).")
@strict_run_option
@click.option("--allow-data-loss", is_flag=True,
              help="Let the upgrade drop tables or columns that hold rows (a revision's UPGRADE_LOSES).")
@cluster_option
def upgrade(revision, url, as_json, resume, lock_wait, strict, allow_data_loss, cluster):
    """Upgrade the database to REVISION (default: head)."""
    from app import fastpath  # not at the top: --help stays free of what it imports

    url = resolve_url(url)
    header = f"Upgrading {mask_url(url)} to {revision}"
    t0 = time.perf_counter()
    warnings: list[str] = []
    try:
        # Nothing to do (the common case): one query, no alembic (app/fastpath.py).
        heads = fastpath.nothing_to_upgrade(url, cluster, hold=True) if revision == "head" and not resume else None
        if heads is not None:
            if not as_json:
                out.echo(header)
            _summary([], url, time.perf_counter() - t0, as_json, warnings, heads=heads)
            return
        check_url(url)  # SQLAlchemy's parser: after the fast path, which must not load it
        if not as_json:
            out.echo(header)  # after the URL check: a URL nothing can open is the only line
        from app import commands  # alembic: only when there is work

        outcome: dict = {}
        steps = commands.upgrade(url, revision, resume=resume, lock_wait=lock_wait, cluster=cluster,
                                 reporter=None if as_json else out.print_step, outcome=outcome,
                                 strict=strict, warn=out.warner(warnings, as_json), allow_data_loss=allow_data_loss)
        known = not steps and "heads" in outcome  # where an upgrade with nothing to do left it
        _summary(steps, url, time.perf_counter() - t0, as_json, warnings,
                 heads=outcome["heads"] if known else None, at_head=outcome.get("at_head", True))
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
def downgrade(revision, url, as_json, allow_data_loss, resume, strict, cluster):
    """Downgrade the database to REVISION (an id, -1, or base)."""
    from app import commands  # alembic (see the module docstring)

    url = resolve_url(url)
    check_url(url)  # a bad URL is the only line, not one after "Downgrading ..."
    if not as_json:
        out.echo(f"Downgrading {mask_url(url)} to {revision}")
    t0 = time.perf_counter()
    warnings: list[str] = []
    steps = commands.downgrade(url, revision, allow_data_loss=allow_data_loss, resume=resume, cluster=cluster,
                               reporter=None if as_json else out.print_step,
                               strict=strict, warn=out.warner(warnings, as_json))
    _summary(steps, url, time.perf_counter() - t0, as_json, warnings)


@main.command()
@click.argument("revision")
@url_option
@click.option("--purge", is_flag=True,
              help="Record exactly REVISION whatever the ledger's heads are (e.g. a head this checkout does not have).")
@cluster_option
@click.option("--yes", is_flag=True,
              help="Confirm --purge, or a stamp that records applied revisions as not applied while the "
                   "warehouse holds objects.")
def stamp(revision, url, purge, cluster, yes):
    """Record REVISION in the ledger without running it."""
    from app import commands  # alembic (see the module docstring)

    if not yes:
        confirm_stamp(revision, purge, *commands.stamp_would_forget(url, revision))
    commands.stamp(url, revision, purge=purge, cluster=cluster)
    out.echo(f"Stamped {revision}")


@main.command()
@url_option
@json_option
@click.option("--strict", is_flag=True, help="Exit 1 when an applied revision file has changed.")
def status(url, as_json, strict):
    """Current heads, pending revisions, failed steps, skipped statements."""
    from app import fastpath  # see upgrade

    url = resolve_url(url)
    try:
        # At head with nothing to report: one query, no alembic (app/fastpath.py).
        fast = fastpath.status(url, hold=True)
        if fast is not None:
            data = fast
        else:
            from app import commands  # alembic: only when the fast path cannot answer

            data = commands.status(url).to_dict()
    finally:
        fastpath.release()
    # The fast path answers with Status.to_dict()'s shape: one printer for both.
    st = SimpleNamespace(**data)
    out.emit(data, as_json, lambda _: out.print_status(st))
    if st.problem or st.unmanaged_objects or st.version_problem or (strict and st.changed_files):
        sys.exit(EXIT_CHECK)


@main.command()
@url_option
@json_option
def history(url, as_json):
    """Applied steps from the ledger next to the revision files."""
    from app import commands  # alembic (see the module docstring)

    out.emit(commands.history(url), as_json, out.print_history)


@main.command()
@url_option
@json_option
@click.option("--strict", is_flag=True, help="Treat changed revision files as drift.")
def verify(url, as_json, strict):
    """Compare the live database with the canonical schema at head."""
    from app import commands  # alembic (see the module docstring)

    result = commands.verify(url)
    fatal = [f for f in result["findings"] if f.fatal]
    # Behind the chain, not drifted: a second connection, only when something differs.
    st = commands.status(url) if fatal and not result["canonical_ahead"] else None
    managed = st is not None and not st.unmanaged_objects and not st.version_problem
    result.update(pending=[p["revision"] for p in st.pending] if managed else [], heads=st and st.heads)
    payload = {"url": result["url"], "ok": not fatal, "objects": result["objects"],
               "findings": [f.to_dict() for f in result["findings"]], "changed_files": result["changed_files"],
               "canonical_ahead": result["canonical_ahead"], "pending": result["pending"],
               "unmanaged_objects": result["unmanaged_objects"], "adoption": result["adoption"]}
    out.emit(payload, as_json, lambda _: out.print_verify(result, strict))
    if fatal or (strict and result["changed_files"]):
        sys.exit(EXIT_CHECK)


@main.command()
@click.argument("revision_range", default="head")
@url_option
@cluster_option
def sql(revision_range, url, cluster):
    """Offline SQL for review: [FROM:]TO, e.g. head, 0004:head, head:0008."""
    from app import commands  # alembic (see the module docstring)

    check_revision_range(revision_range)
    out.echo(commands.offline_sql(url, revision_range, cluster=cluster), nl=False)


@main.command()
@click.argument("message")
@click.option("--head", "head", default="head", help="Revision the new one follows (default: the head).")
@click.option("--branch", is_flag=True, help="Allow creating a second head.")
@click.option("--autogenerate", is_flag=True,
              help="Write the changes from the chain's head to the canonical schema (app/canonical.py).")
@click.option("--allow-data-loss", is_flag=True,
              help="With --autogenerate: accept changes that drop rows or values (declared in UPGRADE_LOSES).")
@json_option
def new(message, head, branch, autogenerate, allow_data_loss, as_json):
    """Write a new revision file: from the template, or planned with --autogenerate."""
    from app import revision_files  # alembic (see the module docstring)

    check_message(message)
    if not autogenerate:
        out.new_revision(revision_files.new_revision(message, head=head, branch=branch,
                                                     allow_data_loss=allow_data_loss), None, as_json)
        return
    revision_files.check_autogenerate_options(head, branch)  # and the canonical schema loads
    from app import revision_autogenerate  # chDB, the planner

    generated, path = revision_autogenerate.autogenerate_revision(message, allow_loss=allow_data_loss)
    out.new_revision(path, generated.plan, as_json)


@main.command()
@click.argument("revision")
@click.option("--mark-applied", is_flag=True, help="The revision was completed by hand.")
@click.option("--mark-reverted", is_flag=True, help="The revision was undone by hand.")
@url_option
def repair(revision, mark_applied, mark_reverted, url):
    """Record in the ledger that REVISION was finished or undone by hand."""
    from app import commands  # alembic (see the module docstring)

    mark = repair_mark(mark_applied, mark_reverted)
    result = commands.repair(url, revision, mark=mark)
    out.echo(f"Recorded {result['revision']} as {mark} by hand; heads "
             f"{', '.join(result['previous_heads']) or 'base'} -> {', '.join(result['heads']) or 'base'}")


@main.group(cls=ZakazGroup)
def users():
    """Application users on a server: etl_writer, datalens_reader, backup_user."""


@users.command("apply")
@url_option
@click.option("--user", "names", multiple=True, metavar="NAME",
              help="Only this user (repeatable): etl_writer, datalens_reader or backup_user.")
@click.option("--dry-run", is_flag=True, help="Print the statements, passwords masked, without connecting.")
@cluster_option
def users_apply(url, names, dry_run, cluster):
    """Create or update the users from $ZAKAZ_*_PASSWORD and grant them their roles.

    \b
    Passwords: ZAKAZ_ETL_WRITER_PASSWORD, ZAKAZ_DATALENS_READER_PASSWORD,
    ZAKAZ_BACKUP_USER_PASSWORD (see .env.example).  Roles come from revision
    0010, so run `zakaz-schema upgrade` first.  Needs a server: the embedded
    engine has no access storage.  With --cluster, ON CLUSTER (every replica).
    """
    url = resolve_url(url)
    if dry_run:
        for stmt in app_users.plan(url, names, cluster=cluster):
            out.echo(f"{stmt.shown};")
        return
    out.print_users_applied(app_users.apply(url, names, cluster=cluster), mask_url(url))


@main.command()
@click.option("--from", "from_rev", default=None,
              help="First revision to drill (default: the first revision, on the scratch database; "
                   "with --url, the first one not applied there).")
@click.option("--to", "to_rev", default=None, help="Last revision to drill (default: head).")
@click.option("--with-data", is_flag=True,
              help="Check every table's rows survive each up/down/up (sample rows on the scratch "
                   "database; with --url, the rows it holds: none are written there).")
@click.option("--rows", "rows_per_table", type=click.IntRange(1, 100_000), default=20, show_default=True,
              help="Sample rows per table (with --with-data).")
@click.option("--seed", type=int, default=0, show_default=True, help="Sample data seed (with --with-data).")
@click.option("--url", default=None,
              help="Drill this database instead of a scratch one: it is migrated for real (needs --yes).")
@click.option("--yes", is_flag=True, help="Confirm drilling the database given with --url.")
@click.option("--allow-data-loss", is_flag=True,
              help="With --url: let downgrades delete the rows they drop (refused, a drill failure, without it).")
@json_option
def drill(from_rev, to_rev, with_data, rows_per_table, seed, url, yes, allow_data_loss, as_json):
    """Prove each revision can be undone: up, check, down, compare, up again.

    \b
    Runs on a scratch embedded database, removed afterwards; the configured
    database ($ZAKAZ_DATABASE_URL) is used only when named with --url (and
    --yes).  Exit 1 names the first revision whose downgrade does not
    restore the schema or loses data it does not declare in DOWNGRADE_LOSES.
    """
    from app.drill import run_drill  # alembic (see the module docstring)

    if url:
        parse_url(url)  # a URL it refuses is the line, not one quoting it (nor the header)
    if url and not yes:
        raise UsageError(f"the drill upgrades and downgrades {mask_url(url)} for real; "
                         "add --yes to drill it, or leave out --url to drill a scratch database")
    header = None if as_json else (lambda: out.print_drill_header(url and mask_url(url), with_data, rows_per_table, seed))
    report = run_drill(url, from_rev, to_rev, with_data=with_data, rows_per_table=rows_per_table, seed=seed,
                       progress=None if as_json else out.print_drill_result, allow_data_loss=allow_data_loss,
                       started=header)  # printed once there is something to drill
    out.emit(report.to_dict(), as_json, lambda _: out.print_drill_report(report))
    if not report.ok:
        sys.exit(EXIT_CHECK)


@main.command()
@click.argument("revisions", nargs=-1)
@script_location_option
@json_option
def lint(revisions, script_location, as_json):
    """Check revision files (default: all) by replaying the chain on a scratch database.

    \b
    Each revision must apply on its predecessor and its downgrade restore
    the schema; views read only what exists; keys are deterministic; data
    loss is declared (UPGRADE_LOSES / DOWNGRADE_LOSES); DDL is re-runnable;
    grants name existing objects; one head; docstrings.  Rules are listed in
    app/lint/__init__.py.  Exit 1 on errors (warnings alone exit 0).
    """
    from app.lint import lint_revisions  # alembic (see the module docstring)

    report = lint_revisions(list(revisions) or None, script_location=script_location)
    out.emit(report.to_dict(), as_json, lambda _: out.print_lint_report(report))
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
def smoke(rows_per_table, seed, url, yes, script_location, as_json):
    """Upgrade to head, load sample rows, select from every view and check invariants.

    \b
    Runs on a scratch embedded database, removed afterwards; the configured
    database ($ZAKAZ_DATABASE_URL) is never used.  Exit 1 names the failing checks.
    """
    from app.smoke import run_smoke_checks  # alembic (see the module docstring)

    if url and not yes:
        parse_url(url)  # a URL it refuses is the line, not one quoting it
        raise UsageError(f"smoke upgrades {mask_url(url)} to head and inserts sample rows; "
                         "add --yes to use it, or leave out --url to use a scratch database")
    report = run_smoke_checks(url, rows_per_table=rows_per_table, seed=seed, script_location=script_location)
    out.emit(report.to_dict(), as_json, lambda _: out.print_smoke_report(report))
    if not report.ok:
        sys.exit(EXIT_CHECK)


@main.command()
@url_option
@json_option
@click.option("--apply", "do_apply", is_flag=True,
              help="Run the repair plan, stamp the matched revision, upgrade to head and verify.")
@click.option("--allow-data-loss", is_flag=True, help="Let repair operations that drop values run.")
@click.option("--sql", "as_sql", is_flag=True,
              help="Print the whole plan as one SQL script for review (no secrets); changes nothing.")
def adopt(url, as_json, do_apply, allow_data_loss, as_sql):
    """Bring a database built by the old SQL files under management.

    \b
    Plans, for every revision the database could be stamped at, the
    operations that bring it there keeping every row, and shows the
    cheapest; nothing changes without --apply (resumable: run it again).
    Exit 0 adoptable / adopted, 1 no plan keeps the database or verify fails
    after, 2 usage, connection, already managed, or data loss not allowed.
    """
    from app import adopt as adoption  # alembic (see the module docstring)

    url = resolve_url(url)
    if as_sql and do_apply:
        raise UsageError("--sql prints the plan for review and --apply runs it: give one of them")
    plan = adoption.plan_adoption(url)
    if as_sql:
        if not plan.adoptable:
            raise CheckFailed(adoption.explain_refusal(plan))
        out.echo(adoption.adoption_sql(plan, url), nl=False)
        return
    if not do_apply or not plan.adoptable:
        out.emit(plan.to_dict(), as_json, lambda _: out.print_adoption_plan(plan))
        if not plan.adoptable:
            raise CheckFailed(adoption.explain_refusal(plan))
        if not as_json:
            flag = " --allow-data-loss" if plan.lossy_operations else ""
            out.echo(f"Nothing changed. Run `zakaz-schema adopt --apply{flag}` to do it.")
        return
    if not as_json:
        out.print_adoption_plan(plan)
    result = adoption.apply_adoption(url, plan, allow_data_loss=allow_data_loss,
                                     reporter=None if as_json else out.adoption_progress)
    out.emit(result.to_dict(), as_json, lambda _: out.print_adoption_result(plan, result))
    if not result.ok:
        sys.exit(EXIT_CHECK)


from app.cli_graph import register as _register_graph  # noqa: E402  graph, impact
_register_graph(main)

if __name__ == "__main__":  # pragma: no cover
    main()
