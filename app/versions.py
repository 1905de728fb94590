"""The database's version as this checkout's revisions see it.

app.ledger stores and reads the rows and knows nothing of revision files;
this module puts the two together: which revisions the ledger's heads mean,
which applied files changed since, the command that resumes an open step,
the history next to the files, and the head set a repair by hand records.
"""
from __future__ import annotations

import hashlib
import os
import uuid
from typing import Any

from alembic.script import Script, ScriptDirectory
from alembic.util import CommandError

from app import alembic_hook
from app import ledger
from app.errors import CheckFailed, UsageError


class RevisionRefused(UsageError):
    """The revision asked for cannot be written or recorded; nothing was changed."""


class RepairMismatch(CheckFailed):
    """The ledger already says the opposite of what repair was asked to correct: nothing recorded."""


def file_checksum(path: str | None) -> str:
    if not path:
        return ""
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def version_of(script, heads) -> tuple[set[str], str | None]:
    """The revisions applied at ``heads`` (they and their ancestors), and why
    ``heads`` is not a version of this checkout (None when it is).

    A head with no revision file (deployed from a newer branch, a file
    removed, a row written by hand), or heads of which one is an ancestor of
    another (written by `repair` before it checked): alembic cannot plan
    from either, so every command would fail with its internal error.
    """
    unknown = []
    for head in heads:
        try:
            known = script.get_revision(head).revision == head  # a prefix is not the revision
        except CommandError:
            known = False
        if not known:
            unknown.append(head)
    applied_below: dict[str, str] = {}
    for head in heads:
        if head not in unknown:
            for rev in script.iterate_revisions(head, "base"):
                if rev.revision != head:
                    applied_below[rev.revision] = head
    applied = set(applied_below) | (set(heads) - set(unknown))
    fix = ("record the version the database really has with `zakaz-schema stamp REV --purge --yes` "
           "(alembic: `alembic stamp --purge REV`)")
    if unknown:
        return applied, (f"the database is at {', '.join(unknown)}, which this checkout has no revision file for "
                         "(deployed from another branch, the file removed, or the ledger written by hand): "
                         f"deploy from the checkout that has it, or {fix}")
    overlapping = sorted(h for h in heads if h in applied_below)
    if overlapping:
        pairs = ", ".join(f"{h} is below {applied_below[h]}" for h in overlapping)
        return applied, f"the ledger's heads {', '.join(heads)} are not a possible version ({pairs}): {fix}"
    return applied, None




def changed_files(script, rows: list[dict]) -> list[dict]:
    """Applied revisions whose file no longer has the checksum recorded when applied."""
    heads = ledger.current_heads(rows)
    # Only what is applied now: a stamp (`--purge` included) or a repair may
    # have moved the version past revisions whose checksums are recorded.
    applied, _ = version_of(script, heads)
    changed = []
    for rev, recorded in sorted(ledger.applied_checksums(rows).items()):
        if rev not in applied and rev not in heads:
            continue
        try:
            path = script.get_revision(rev).path
        except Exception:
            changed.append({"revision": rev, "problem": "revision file is missing"})
            continue
        if file_checksum(path) != recorded:
            changed.append({"revision": rev, "problem": f"{os.path.basename(path)} changed since it was applied"})
    return changed


def resume_command(script, problem: dict) -> str:
    """The command that re-runs a failed or interrupted step, in its direction."""
    if problem["direction"] == "adopt":
        return "`zakaz-schema adopt --apply`"
    if problem["direction"] != "downgrade":
        # To this revision, not head: the operator asked for it, and head may
        # run revisions (declared data losses among them) nobody asked for.
        return f"`zakaz-schema upgrade {problem['revision']} --resume`"
    target = "base"
    try:
        down = script.get_revision(problem["revision"]).down_revision
    except Exception:  # its file is gone: version_of says what to do
        down = None
    if isinstance(down, str):
        target = down
    elif down:  # a merge point: one step below it, whatever its parents
        target = f"{problem['revision']}-1"
    return f"`zakaz-schema downgrade {target} --resume`"



def read_state(conn) -> tuple[list[dict], str, str]:
    """The ledger rows, the server version and the driver, on an open connection."""
    schema = conn.dialect.default_schema_name or "default"
    exists = conn.exec_driver_sql(
        "SELECT count() FROM system.tables WHERE database = %(d)s AND name = %(t)s",
        {"d": schema, "t": ledger.LEDGER_TABLE},
    ).scalar()
    rows = []
    if exists:
        ledger.check_structure(conn, schema)
        rows = ledger.read_rows(conn, schema)
        ledger.check_order(rows, schema)
    version = conn.exec_driver_sql("SELECT version()").scalar()
    return rows, version, conn.dialect.driver



def repaired_heads(script: ScriptDirectory, heads: set[str], rev, mark: str, problem: dict | None) -> set[str]:
    """The heads after marking ``rev`` applied or reverted, as alembic's own
    bookkeeping (HeadMaintainer) moves them for that step.

    Only a step alembic could have taken is recorded: marking applied a
    revision that is applied already, or one whose parents are not, gave
    heads such as ``0005, 0012`` that no command could plan from.  The
    exception is the step still open in the ledger: a failed downgrade put
    back by hand leaves its revision applied, a failed upgrade undone by hand
    leaves it not applied; either way the repair row closes it.
    """
    applied, version_problem = version_of(script, sorted(heads))
    if version_problem:
        raise RevisionRefused(f"{version_problem}; nothing was recorded")
    at = ", ".join(sorted(heads)) or "base"
    open_step = problem["direction"] if problem and problem["revision"] == rev.revision else None
    if mark == "applied":
        if rev.revision in applied:
            if open_step == "downgrade":
                return set(heads)
            raise RepairMismatch(f"{rev.revision} is already applied (the database is at {at}); nothing was recorded")
        missing = [r for r in alembic_hook.down_revisions(rev) if r not in applied]
        if missing:
            raise RevisionRefused(
                f"{rev.revision} follows {', '.join(missing)}, which is not applied (the database is at {at}): "
                "upgrade or repair that first; nothing was recorded")
    else:
        if rev.revision not in applied:
            if open_step == "upgrade":
                return set(heads)
            raise RepairMismatch(f"{rev.revision} is not applied (the database is at {at}); nothing was recorded")
        if rev.revision not in heads:
            raise RevisionRefused(
                f"{rev.revision} is below the head(s) {at}: the revisions above it are applied; "
                "downgrade or repair those first; nothing was recorded")

    return alembic_hook.heads_after_step(script, heads, rev, upgrade=mark == "applied")


def history_rows(script: ScriptDirectory, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ledger steps (completed or not, the latest event of each) next to the revision files."""
    steps: dict[str, dict] = {}
    for r in rows:
        steps[r["step_id"]] = r
    out = []
    for r in sorted(steps.values(), key=lambda r: r["seq"]):
        path = ""
        matches = None
        if r["revision"] and r["direction"] in ("upgrade", "downgrade"):
            # Only a revision with no file is shown without one: a file that
            # does not load (SyntaxError) fails the command, naming the file.
            try:
                path = script.get_revision(r["revision"]).path
                matches = file_checksum(path) == r["checksum"]
            except CommandError:
                path = ""
        out.append({
            "when": r["started_at"].isoformat(sep=" ", timespec="seconds"),
            "revision": r["revision"], "direction": r["direction"], "status": r["status"],
            "duration_ms": r["duration_ms"], "statements": r["statements"],
            "who": f"{r['os_user']}@{r['host']}", "checksum": r["checksum"][:12],
            "file": os.path.basename(path) if path else "",
            "file_matches": matches, "error": r["error"],
        })
    return out


def record_repair(conn, schema: str, script: ScriptDirectory, rev: Script, mark: str,
                  *, replicated: bool = False) -> tuple[list[str], list[str]]:
    """Write the ``repaired`` row marking ``rev`` applied or reverted; the heads before and after.

    The caller holds the deploy lock (or chDB's directory lock): the row's
    seq is the ledger's maximum + 1.  ``replicated``: sync this node's
    replica of the ledger first, so steps made through other nodes count.
    """
    if replicated:
        conn.exec_driver_sql(f"SYSTEM SYNC REPLICA {schema}.{ledger.LEDGER_TABLE}")
    rows = ledger.read_rows(conn, schema)
    ledger.check_order(rows, schema)
    heads = set(ledger.current_heads(rows))
    new_heads = repaired_heads(script, heads, rev, mark, ledger.open_problem(rows))
    ledger.write(conn, schema, ledger.Row(
        str(uuid.uuid4()), rev.revision, "repair", "repaired", sorted(new_heads),
        f"marked {mark} by hand", checksum=file_checksum(rev.path),
    ))
    return sorted(heads), sorted(new_heads)
