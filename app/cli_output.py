"""What the CLI prints: each command's human lines, and ``--json`` through one encoder.

Apart from app.cli so command definitions stay a list of verbs and options.
Nothing here builds SQL or reads a database.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Callable

import click

from app.json_output import dumps


def echo(text: str = "", *, nl: bool = True) -> None:
    """``click.echo``, except that a reader leaving (`upgrade | head`) does not stop the command.

    An upgrade stopped there would leave the deploy half done with no message,
    only because nobody reads its progress any more: the rest of the output
    goes to /dev/null instead, the work finishes, and the exit code is the
    command's own.
    """
    try:
        click.echo(text, nl=nl)
    except BrokenPipeError:
        _discard_stdout()


def _discard_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())  # what is still buffered goes there too
    except (AttributeError, OSError, ValueError):  # a stdout with no descriptor (a test runner's)
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (lives as long as the process)
    finally:
        os.close(devnull)


def emit(data: Any, as_json: bool, human: Callable[[Any], None]) -> None:
    if as_json:
        echo(dumps(data))
    else:
        human(data)


def print_step(event) -> None:
    """One finished step (a StepEvent, or adopt's event carrying the same keys)."""
    arrow = "+" if event["direction"] == "upgrade" else ("-" if event["direction"] == "downgrade" else "=")
    message = event["message"].splitlines()[0] if event["message"] else ""
    if len(message) > 60:
        message = message[:57] + "..."
    line = f"  {arrow} {event['revision']:<6} {message:<60} {event['duration_ms']:>6} ms  {event['statements']:>3} stmt"
    if event["skipped"]:
        line += f"  ({len(event['skipped'])} access statements checked and skipped: embedded engine)"
    echo(line)


def warner(warnings: list[str], as_json: bool) -> Callable[[str], None]:
    """Warnings of a run (e.g. an applied revision file changed): the lines `status` shows."""
    def warn(message: str) -> None:
        warnings.append(message)
        if not as_json:
            echo(f"WARNING:   {message}")
    return warn


def print_summary(steps: list, heads: list[str], at_head: bool, seconds: float, as_json: bool,
                  warnings: list[str]) -> None:
    if as_json:
        echo(dumps({"steps": steps, "heads": heads, "seconds": round(seconds, 3),
                          "warnings": list(warnings)}))
        return
    at = ", ".join(heads) or "base"
    if not steps:
        echo(f"Nothing to do: the database is at {at}{' (head)' if at_head else ''}.")
    else:
        echo(f"{len(steps)} step(s) in {seconds:.2f} s; the database is at {at}{' (head)' if at_head else ''}.")


def print_status(st) -> None:
    echo(f"database:  {st.url}")
    echo(f"engine:    {st.engine} (ClickHouse {st.server_version})")
    echo(f"heads:     {', '.join(st.heads) or 'base (nothing applied)'}")
    if st.unmanaged_objects:
        echo(unmanaged_line(st.unmanaged_objects))
    if st.version_problem:
        echo(f"PROBLEM:   {st.version_problem}")
    elif st.pending:
        echo(f"pending:   {len(st.pending)} revision(s)")
        for p in st.pending:
            echo(f"  {p['revision']}  {p['message']}")
    else:
        echo("pending:   none (at head)")
    if st.problem:
        p = st.problem
        detail = f" at statement {p['failed_statement']}: {p['error']}" if p["state"] == "failed" else ""
        echo(f"PROBLEM:   {p['direction']} {p['revision']} {p['state']}{detail}")
        if p["direction"] == "adopt":  # no repair marks an adoption done: it resumes where it stopped
            echo(f"           fix the cause, then {st.resume}")
        else:
            by_hand = "applied" if p["direction"] == "upgrade" else "reverted"
            echo(f"           fix the cause, then {st.resume} "
                 f"(or `zakaz-schema repair {p['revision']} --mark-{by_hand}` if it was finished by hand)")
    for s in st.skipped:
        echo(f"skipped:   {s['revision']}: {len(s['statements'])} access statement(s) not run (embedded engine)")
    for c in st.changed_files:
        echo(f"WARNING:   {c['revision']}: {c['problem']}")
    if getattr(st, "canonical_ahead", None):
        echo("AHEAD:     the canonical schema (app/canonical.py) is ahead of the chain: "
             "run `zakaz-schema new --autogenerate`")


def unmanaged_line(objects: int) -> str:
    """A database with no ledger whose warehouse databases hold objects: what `status` and `verify` say."""
    return (f"UNMANAGED: no ledger, but zakaz/meta/bi hold {objects} objects: "
            "built by the old SQL files? see `zakaz-schema adopt`")


def print_history(rows: list[dict]) -> None:
    if not rows:
        echo("The ledger is empty: nothing has been applied.")
        return
    echo(f"{'when':<19}  {'revision':<8} {'direction':<9} {'status':<8} {'ms':>6} {'stmt':>4}  {'who':<20} {'checksum':<12}  file")
    for r in rows:
        mark = "" if r["file_matches"] in (None, True) else "  (file changed since)"
        echo(f"{r['when']:<19}  {r['revision']:<8} {r['direction']:<9} {r['status']:<8} "
                   f"{r['duration_ms']:>6} {r['statements']:>4}  {r['who'][:20]:<20} {r['checksum']:<12}  {r['file']}{mark}")


def print_verify(result: dict, strict: bool) -> None:
    fatal = [f for f in result["findings"] if f.fatal]
    for f in result["findings"]:
        echo(("" if f.fatal else "note: ") + str(f))
    for c in result["changed_files"]:
        echo(f"{'error' if strict else 'warning'}: revision {c['revision']}: {c['problem']}")
    if result.get("unmanaged_objects"):
        echo(unmanaged_line(result["unmanaged_objects"]))
    adoption = result.get("adoption")
    if fatal and all(f.kind == "user_role" for f in fatal):  # the schema is right: only the users are not
        echo(f"USERS: {len(fatal)} application user(s) without their role: run `zakaz-schema users apply`")
    elif fatal and all(f.kind in ("user_role", "user_rights") for f in fatal):
        echo(f"USERS: {len(fatal)} application user(s) whose rights are not their role's: see above")
    elif not fatal:
        echo(f"OK: {result['objects']} objects match the canonical schema")
    elif adoption:
        echo(f"ADOPTING: {len(fatal)} finding(s); the adoption at {adoption['revision']} is {adoption['state']} "
             "(`upgrade` refuses until it is done): run `zakaz-schema adopt --apply` to finish it, then verify again")
    elif result.get("canonical_ahead"):
        echo(f"AHEAD: {len(fatal)} finding(s): the database is what the chain builds, and the canonical "
                   "schema is ahead of the chain: run `zakaz-schema new --autogenerate`")
    elif result.get("pending"):
        pending = result["pending"]
        at = ", ".join(result.get("heads") or []) or "base (nothing applied)"
        echo(f"BEHIND: {len(fatal)} finding(s); the database is at {at} and {len(pending)} revision(s) "
             f"are pending ({_span(pending)}): run `zakaz-schema upgrade`, then verify again")
    else:
        echo(f"DRIFT: {len(fatal)} finding(s)")


def _span(revisions: list[str]) -> str:
    return revisions[0] if len(revisions) == 1 else f"{revisions[0]}..{revisions[-1]}"


def _yes_no(value) -> str:
    return "-" if value is None else ("yes" if value else "NO")


def print_drill_header(where: str | None, with_data: bool, rows_per_table: int, seed: int) -> None:
    if not with_data:
        data = "schema only"
    elif where:
        data = "with the rows it holds (no sample rows are written into a given database)"
    else:
        data = f"with sample data ({rows_per_table} rows per table, seed {seed})"
    echo(f"Drilling on {where or 'a scratch embedded database'}, {data}")
    echo(f"{'revision':<8} {'up ms':>6} {'down ms':>8}  {'schema restored':<15}  {'rows kept':<9}  notes")


def print_users_applied(done: list[dict], where: str) -> None:
    for d in done:
        echo(f"  {d['action']:<7} {d['user']:<16} role {d['role']}")
    echo(f"{len(done)} user(s) applied on {where}")


def print_drill_result(result) -> None:
    notes = "; ".join(result.notes)
    echo(f"{result.revision:<8} {result.up_ms:>6} {result.down_ms:>8}  "
               f"{_yes_no(result.schema_restored):<15}  {_yes_no(result.rows_kept):<9}  {notes}".rstrip())
    for failure in result.failures:
        echo(f"  FAIL {failure}")


def print_drill_report(report) -> None:
    span = f"{report.results[0].revision}..{report.end}" if report.results else report.end
    if report.sample_tables:
        echo(f"sample rows: {len(report.sample_tables)} table(s), {report.sample_rows}: "
             + ", ".join(report.sample_tables))
    elif report.sample_rows:
        echo(f"sample rows: {report.sample_rows}")
    if report.ok:
        declared = sum(1 for r in report.results if r.declared_losses)
        echo(f"OK: {len(report.results)} revision(s) {span} upgraded, downgraded and upgraded "
                   f"again in {report.seconds:.2f} s; {declared} of them drop data, as they declare")
    else:
        failures = report.failures
        echo(f"FAILED: {failures[0]}" + (f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""))


def print_lint_report(report) -> None:
    for f in report.findings:
        echo(str(f))
    if report.not_replayed:
        echo(f"not replayed (fix the failure above first): {', '.join(report.not_replayed)}")
    verdict = "OK" if report.ok else "FAILED"
    echo(f"{verdict}: {len(report.revisions)} revision(s) linted in {report.seconds:.2f} s; "
               f"{len(report.errors)} error(s), {len(report.warnings)} warning(s)")


def print_smoke_report(report) -> None:
    width = max((len(c.name) for c in report.checks), default=0)
    for check in report.checks:
        echo(f"{'ok  ' if check.ok else 'FAIL'}  {check.name:<{width}}  {check.detail}".rstrip())
    failed = report.failed
    if failed:
        echo(f"FAILED: {', '.join(c.name for c in failed)}")
    else:
        echo(f"OK: {len(report.checks)} checks passed in {report.seconds:.2f} s")


def print_adoption_plan(plan) -> None:
    if plan.resume:
        ledger_state = (f"an adoption in progress (step {plan.resume['steps_done']} of "
                        f"{plan.resume['steps_total']} done)")
    else:
        ledger_state = "an empty ledger" if plan.empty_ledger else "no ledger"
    echo(f"database:  {plan.url} (ClickHouse {plan.server_version}); {ledger_state}; "
         f"{plan.objects} object(s) in zakaz, meta, bi")
    if plan.revision is None:
        echo("matches:   no revision")
    else:
        others = ", ".join(f"{rev}: {cost}" for rev, cost in plan.candidates.items() if rev != plan.revision)
        echo(f"matches:   {plan.revision}, the revision needing the fewest operations (head {plan.head})"
             + (f"; operations at the others: {others}" if others else ""))
    for rev, reasons in plan.blocked_at.items():
        echo(f"not {rev}:  " + ("; ".join(reasons[:3]) + (" ..." if len(reasons) > 3 else "")))
    if plan.revision is not None:
        for item in plan.ahead:
            what = f"{item['object']}.{item['column']}" if item["column"] else item["object"]
            state = "as it defines it" if item["matches"] else "shaped differently: repaired below"
            echo(f"ahead:     {what} from {item['revision']} is already there ({state})")
        for name in plan.unmanaged:
            echo(f"unmanaged: {name}, left untouched")
        notable = [d for d in plan.differences if not d["revision"] and d["kind"] != "unmanaged_object"]
        for d in notable:
            echo(f"differs:   {d['message']}")
    for table, entries in plan.imported.items():
        echo(f"imported:  {len(entries)} applied file(s) from clickhouse-migrations' {table}, kept as history")
    for note in plan.notes:
        echo(f"note:      {note}")
    for loss in (plan.resume or {}).get("earlier_losses", []):
        from app.losses import row_count  # noqa: PLC0415 - adopt's commands only
        echo(f"lost:      {', '.join(loss['loses'])} in {row_count(loss['rows'])}, by the interrupted run "
             f"({loss['step']}), allowed with --allow-data-loss then")
    if plan.operations:
        lossy = plan.lossy_operations
        earlier = (plan.resume or {}).get("earlier_losses", [])
        kept = ", every row kept by them" if earlier else ", every row kept"
        echo(f"repair plan: {len(plan.operations)} operation(s)"
                   + (f", {len(lossy)} of them LOSE DATA (need --allow-data-loss)" if lossy else kept))
        for n, op in enumerate(plan.operations, 1):
            # A losing operation's reason ends with what it loses, in how many rows (said once).
            echo(f"  {n:>2}. {op.kind} {op.target}: {op.reason}")
            for sql in op.statements:
                line = " ".join(sql.split())
                echo(f"        {line[:157] + '...' if len(line) > 160 else line}")
    elif plan.adoptable:
        echo("repair plan: nothing to repair")
    for reason in plan.refusals:
        echo(f"REFUSED:   {reason}")
    if plan.adoptable:
        pending = f"upgrade {plan.pending[0]}..{plan.pending[-1]}" if plan.pending else "nothing to upgrade"
        echo(f"then:      stamp {plan.revision} as adopted, {pending}, verify")


def adoption_progress(event) -> None:
    if event["kind"] == "operation":
        echo(f"  * {event['operation']} {event['target']}")
    elif event["kind"] == "stamp":
        echo(f"  = {event['revision']}  stamped as adopted")
    else:
        print_step(event)


def print_adoption_result(plan, result) -> None:
    for f in result.findings:
        echo(("" if f.fatal else "note: ") + str(f))
    for change in result.data_changes:
        echo(f"ROWS CHANGED: {change}")
    from app.losses import row_count  # noqa: PLC0415 - adopt's commands only

    fatal = [f for f in result.findings if f.fatal]
    allowed = result.allowed_losses
    for loss in allowed:
        if loss.get("earlier_run"):
            # Only the ledger's step row is left of it: its reason says what it lost.
            echo(f"LOST (allowed): {', '.join(loss['loses'])} in {row_count(loss['rows'])}, by an earlier, "
                 f"interrupted run of this adoption ({loss['step']})")
            continue
        how = f"changed by the conversion to {loss['converted_to']}" if loss["converted_to"] else "lost"
        what = "" if loss["loses"] == [loss["target"]] else f"{', '.join(loss['loses'])} "
        echo(f"LOST (allowed): {loss['operation']} {loss['target']}: {what}{how} in {row_count(loss['rows'])}")
    if result.ok:
        kept = "counts and checksums unchanged"
        if getattr(result, "resumed", False):
            # Measured when this run began: what the interrupted run(s) did before is not compared.
            kept += " since this run started, not since before the adoption"
        if result.unchecked:
            kept += f"; checksums compared on every column but {', '.join(result.unchecked)}, lost as listed"
        echo(f"OK: adopted at {plan.revision}, upgraded to head, verify passes"
             + (f"; {len(allowed)} loss(es) allowed with --allow-data-loss, as listed" if allowed else "")
             + f"; {result.checked_tables} table(s) have every row ({kept})")
    else:
        echo(f"FAILED: {len(fatal)} verify finding(s), {len(result.data_changes)} table(s) changed")


def new_revision(path: str | None, plan, as_json: bool) -> None:
    """A written revision (``plan``: the autogenerated changes, if any); ``path`` None: nothing to change."""
    data = {"path": path, "changes": plan.changes if plan is not None else [],
            "upgrade_loses": plan.upgrade_loses if plan is not None else [],
            "downgrade_loses": plan.downgrade_loses if plan is not None else []}

    def human(d) -> None:
        if d["path"] is None:
            echo("No changes: the chain's head matches the canonical schema; nothing was written")
            return
        echo(f"Created {d['path']}")
        for change in d["changes"]:
            echo(f"  - {change}")
        if d["changes"]:
            echo("Review it (`zakaz-schema sql`, `zakaz-schema lint`), write its Why line, then upgrade")
    emit(data, as_json, human)
