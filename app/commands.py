"""The operator verbs as library functions (the CLI and the tests call these).

Like alembic's own command.py this module only wires things together:
alembic runs the revisions, app.ledger knows the history, app.schema and
app.verify compare schemas.
"""
from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from typing import Any, Callable

from alembic import command as alembic_command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError

from app import ledger
from app.config import ALEMBIC_INI, is_embedded, mask_url, resolve_url
from app.config import script_location as config_script_location
from app.engine import connect
from app.runtime import applied_checksums, changed_files, file_checksum, resume_command, version_of  # noqa: F401


def alembic_config(url: str | None = None, script_location: str | None = None, **attributes: Any) -> Config:
    cfg = Config(str(ALEMBIC_INI))
    cfg.set_main_option("script_location", config_script_location(script_location))
    cfg.attributes["url"] = resolve_url(url)
    cfg.attributes.update(attributes)
    return cfg


def script_directory(cfg: Config) -> ScriptDirectory:
    return ScriptDirectory.from_config(cfg)


def short_doc(script) -> str:
    doc = (script.doc or "").strip().splitlines()
    return doc[0] if doc else ""


# --- migrating -----------------------------------------------------------------

def upgrade(url: str | None = None, target: str = "head", *, resume: bool = False,
            reporter: Callable[[dict], None] | None = None, cluster: str | None = None,
            **extra: Any) -> list[dict]:
    """``cluster``: run in cluster mode on that remote_servers cluster (app.cluster);
    None leaves it to ZAKAZ_CLUSTER."""
    steps: list[dict] = []
    cfg = alembic_config(url, resume=resume, reporter=_collect(steps, reporter),
                         **_cluster_attribute(cluster), **extra)
    alembic_command.upgrade(cfg, target)
    return steps


def downgrade(url: str | None, target: str, *, allow_data_loss: bool = False, resume: bool = False,
              reporter: Callable[[dict], None] | None = None, cluster: str | None = None,
              **extra: Any) -> list[dict]:
    steps: list[dict] = []
    cfg = alembic_config(url, allow_data_loss=allow_data_loss, resume=resume,
                         reporter=_collect(steps, reporter), **_cluster_attribute(cluster), **extra)
    alembic_command.downgrade(cfg, target)
    return steps


def stamp(url: str | None, target: str, *, purge: bool = False, cluster: str | None = None,
          **extra: Any) -> list[dict]:
    """``purge``: record exactly ``target``, whatever the ledger's heads were
    (unknown or impossible ones included); insert-only like every ledger write."""
    steps: list[dict] = []
    cfg = alembic_config(url, reporter=_collect(steps, None), **_cluster_attribute(cluster), **extra)
    alembic_command.stamp(cfg, target, purge=purge)
    return steps


def stamp_would_forget(url: str | None, target: str) -> tuple[list[str], int]:
    """The ledger heads a stamp of ``target`` would record as not applied (heads
    that are not ``target`` or below it), and the objects the warehouse holds."""
    from app.adopt import warehouse_objects

    url = resolve_url(url)
    script = script_directory(alembic_config(url))
    kept = set() if target == "base" else {s.revision for s in script.iterate_revisions(target, "base")}
    with connect(url) as conn:
        rows, _, _ = ledger_state(conn)
        objects = len(warehouse_objects(conn))
    return [h for h in ledger.current_heads(rows) if h not in kept], objects


def _cluster_attribute(cluster: str | None) -> dict:
    # Only a given name goes into Config.attributes, so ZAKAZ_CLUSTER still
    # applies when the caller says nothing.
    return {"cluster": cluster} if cluster else {}


def _collect(steps: list, reporter):
    def report(event: dict) -> None:
        steps.append(event)
        if reporter:
            reporter(event)
    return report


def offline_sql(url: str | None, revision_range: str, *, cluster: str | None = None, **extra: Any) -> str:
    """The SQL an upgrade (or a downgrade, for ``FROM:TO`` going down) would run.

    ``cluster``: as it would run in cluster mode on that cluster.  Offline
    there is no server to ask which databases use the Replicated engine: the
    SQL assumes none do (they would get no ON CLUSTER online).
    """
    buffer = io.StringIO()
    cfg = alembic_config(url, **_cluster_attribute(cluster), **extra)
    cfg.output_buffer = buffer
    start, _, end = revision_range.rpartition(":")
    script = script_directory(cfg)
    going_down = False
    if start and end and start != "base":
        going_down = end == "base" or _is_ancestor(script, end, start)
    if going_down:
        alembic_command.downgrade(cfg, revision_range, sql=True)
    else:
        alembic_command.upgrade(cfg, revision_range if start else f"base:{end}", sql=True)
    return buffer.getvalue()


def _is_ancestor(script: ScriptDirectory, maybe_ancestor: str, rev: str) -> bool:
    ancestor = script.get_revision(maybe_ancestor).revision
    return any(r.revision == ancestor for r in script.iterate_revisions(rev, "base"))


# --- reading state ---------------------------------------------------------------

@dataclass
class Status:
    url: str
    engine: str
    server_version: str
    heads: list[str]
    script_heads: list[str]
    pending: list[dict]
    problem: dict | None
    skipped: list[dict]
    changed_files: list[dict]
    steps: int = 0
    # Objects in the warehouse databases of a database with no ledger: built
    # by the old SQL files (or its ledger was dropped): `adopt` is the way in.
    unmanaged_objects: int = 0
    # Why the ledger's heads are not a version of this checkout (a head with
    # no revision file, overlapping heads), and what to do; pending is then unknown.
    version_problem: str | None = None
    # The command that resumes ``problem`` (its direction decides which).
    resume: str | None = None

    def to_dict(self) -> dict:
        return self.__dict__ | {"problem": _jsonable(self.problem)}


def _jsonable(row: dict | None) -> dict | None:
    if row is None:
        return None
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}


def read_ledger(url: str | None) -> tuple[list[dict], str, str]:
    url = resolve_url(url)
    with connect(url) as conn:
        return ledger_state(conn)


def ledger_state(conn) -> tuple[list[dict], str, str]:
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


def status(url: str | None = None) -> Status:
    from app.adopt import warehouse_objects

    url = resolve_url(url)
    cfg = alembic_config(url)
    script = script_directory(cfg)
    with connect(url) as conn:
        rows, version, driver = ledger_state(conn)
        # Counted as `adopt` counts them, so both commands give one number.
        unmanaged = 0 if rows else len(warehouse_objects(conn))
    heads = ledger.current_heads(rows)
    _, version_problem = version_of(script, heads)
    pending = [] if version_problem else [
        {"revision": s.revision, "message": short_doc(s)}
        for s in reversed(list(script.iterate_revisions("heads", tuple(heads) or "base")))
        if s.revision not in heads
    ]
    problem = ledger.open_problem(rows)
    from app import fastpath

    fastpath.remember(script)  # the chain's heads for the next status or no-op upgrade
    return Status(
        url=mask_url(url),
        engine=driver,
        server_version=version,
        heads=heads,
        script_heads=list(script.get_heads()),
        pending=pending,
        problem=problem,
        skipped=skipped_statements(rows),
        changed_files=changed_files(script, rows),
        steps=len({r["step_id"] for r in rows}),
        unmanaged_objects=unmanaged,
        version_problem=version_problem,
        resume=resume_command(script, problem) if problem else None,
    )


skipped_statements = ledger.skipped_statements  # pure, so app.fastpath shares it


def history(url: str | None = None) -> list[dict]:
    """Ledger steps (completed or not) next to the revision files."""
    url = resolve_url(url)
    script = script_directory(alembic_config(url))
    rows, _, _ = read_ledger(url)
    steps: dict[str, dict] = {}
    for r in rows:
        steps[r["step_id"]] = r  # the latest event of each step
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


# --- verify ------------------------------------------------------------------------

def verify(url: str | None = None, *, cluster: str | None = None) -> dict:
    """Compare the live schema with the canonical one.

    Engines are compared without replication (``ReplicatedReplacingMergeTree``
    is ``ReplacingMergeTree``); in cluster mode (``cluster`` or ZAKAZ_CLUSTER)
    a MergeTree table that is not replicated is a finding of its own.
    """
    from app import cluster as cluster_mode
    from app.canonical import CANONICAL, MANAGED_DATABASES, VIEW_DEFINER
    from app.schema import TABLE, snapshot_schema
    from app.verify import Finding, compare_schema, definer_findings

    url = resolve_url(url)
    on_cluster = cluster_mode.from_options(_cluster_attribute(cluster))
    # One connection for the schema and the ledger: opening an embedded
    # database loads every table (~1 s per 1000 tables on chDB 26.9).
    with connect(url) as conn:
        live = snapshot_schema(conn, MANAGED_DATABASES)
        local = cluster_mode.unreplicated_tables(conn, MANAGED_DATABASES) if on_cluster else []
        rows, _, _ = ledger_state(conn)
        definers = [] if is_embedded(url) else definer_findings(
            conn, [n for n, o in CANONICAL.items() if o.kind != TABLE], VIEW_DEFINER)
    findings = compare_schema(live, CANONICAL) + definers
    findings += [Finding("engine", name, "", f"Replicated{engine}", engine) for name, engine in local]
    script = script_directory(alembic_config(url))
    return {
        "url": mask_url(url),
        "findings": findings,
        "changed_files": changed_files(script, rows),
        "objects": len(live),
    }


# --- new revisions -----------------------------------------------------------------

class RevisionRefused(Exception):
    pass


def new_revision(message: str, *, head: str = "head", branch: bool = False,
                 script_location: str | None = None) -> str:
    cfg = alembic_config(None, script_location=script_location)
    script = script_directory(cfg)
    heads = script.get_heads()
    base_of = head
    if head in ("head", "heads"):
        if len(heads) > 1 and not branch:
            raise RevisionRefused(
                f"the chain has {len(heads)} heads ({', '.join(heads)}); merge them "
                "(`alembic merge heads`) or pass --branch with --head REV"
            )
        base_of = heads[0] if heads else None
    else:
        rev = script.get_revision(head).revision
        if rev not in heads and not branch:
            raise RevisionRefused(
                f"{rev} is not a head: a revision on it would create a second head; "
                "pass --branch if that is what you want"
            )
        base_of = rev
    rev_id = next_ordinal(script)
    slug = revision_slug(message)
    before = set(os.listdir(script.versions))
    try:
        created = alembic_command.revision(
            cfg, message=_docstring_text(message), rev_id=rev_id, head=base_of or "base", splice=branch,
        )
        path = created.path if not isinstance(created, list) else created[0].path
        with open(path, encoding="utf-8") as fh:
            compile(fh.read(), path, "exec")
    except BaseException as exc:
        # A file that does not load breaks every later command: leave none.
        for name in set(os.listdir(script.versions)) - before:
            os.remove(os.path.join(script.versions, name))
        if isinstance(exc, SyntaxError):
            raise RevisionRefused(f"the message {message!r} does not make a valid revision file "
                                  f"({exc.msg}); nothing was written") from None
        raise
    wanted = os.path.join(os.path.dirname(path), f"{rev_id}_{slug}.py")
    if path != wanted:
        os.replace(path, wanted)
    return wanted


def _docstring_text(message: str) -> str:
    """``message`` as it must be written inside the template's triple-quoted docstring.

    Python reads it back as ``message``: backslashes are escaped (``\\N{x}``
    would be a Unicode name), and so is a quote followed by another (three
    in a row would end the docstring).
    """
    return re.sub(r'"(?=")', r'\"', message.replace("\\", "\\\\"))


# Russian letters in Latin (the simple passport table), for file names.
_TRANSLIT = str.maketrans({
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e", "ж": "zh", "з": "z",
    "и": "i", "й": "i", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o", "п": "p", "р": "r",
    "с": "s", "т": "t", "у": "u", "ф": "f", "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh",
    "щ": "shch", "ъ": "", "ы": "y", "ь": "", "э": "e", "ю": "iu", "я": "ia",
})


def revision_slug(message: str) -> str:
    """The file name part of a revision: lower-case ASCII words joined by ``_``."""
    text = message.lower().translate(_TRANSLIT)
    return re.sub(r"[^a-z0-9]+", "_", text).strip("_")[:50] or "revision"


def next_ordinal(script: ScriptDirectory) -> str:
    numbers = [int(s.revision) for s in script.walk_revisions() if s.revision.isdigit()]
    return f"{(max(numbers) if numbers else 0) + 1:04d}"


# --- repair ------------------------------------------------------------------------

class RepairMismatch(Exception):
    """The ledger already says the opposite of what repair was asked to correct: nothing recorded."""


def repair(url: str | None, revision: str, *, mark: str) -> dict:
    """Record by hand that REVISION is applied (``mark="applied"``) or not (``"reverted"``).

    For steps a human finished or undid after a failure.  The new head set
    is what alembic would record for that one step (``repaired_heads``), and
    is written as a ``repaired`` row under the deploy lock, so the decision
    is in the ledger like every other step.
    """
    import uuid

    if mark not in ("applied", "reverted"):
        raise ValueError(mark)
    url = resolve_url(url)
    script = script_directory(alembic_config(url))
    rev = script.get_revision(revision)
    if rev is None:
        raise RevisionRefused("repair needs a revision id, not base")
    with connect(url) as conn:
        schema = conn.dialect.default_schema_name or "default"
        # Cluster mode from ZAKAZ_CLUSTER: a repair row lands in the replicated ledger.
        from app import cluster as cluster_mode
        from app.runtime import prepare_cluster

        on_cluster = cluster_mode.from_options()
        if on_cluster is not None:
            on_cluster = prepare_cluster(conn, on_cluster)
        embedded = conn.dialect.driver == "chdb"
        ledger.ensure(conn, schema, cluster=on_cluster, lock=not embedded)

        def record() -> tuple[set[str], set[str]]:
            if on_cluster is not None:
                conn.exec_driver_sql(f"SYSTEM SYNC REPLICA {schema}.{ledger.LEDGER_TABLE}")
            rows = ledger.read_rows(conn, schema)
            ledger.check_order(rows, schema)
            heads = set(ledger.current_heads(rows))
            new_heads = repaired_heads(script, heads, rev, mark, ledger.open_problem(rows))
            ledger.write(conn, schema, ledger.Row(
                str(uuid.uuid4()), rev.revision, "repair", "repaired", sorted(new_heads),
                f"marked {mark} by hand", checksum=file_checksum(rev.path),
            ))
            return heads, new_heads

        if embedded:  # chDB's directory lock keeps other processes out
            heads, new_heads = record()
        else:
            # The row's seq is the ledger's maximum + 1: no deploy may write between.
            from app.lock import deploy_lock

            with deploy_lock(conn, schema, cluster=on_cluster, create_table=False):
                heads, new_heads = record()
    return {"revision": rev.revision, "mark": mark, "heads": sorted(new_heads),
            "previous_heads": sorted(heads)}


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
    from alembic.runtime.migration import HeadMaintainer, RevisionStep

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
        missing = [r for r in rev._normalized_down_revisions if r not in applied]
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

    class Bookkeeping(HeadMaintainer):
        """alembic's head moves without its writes to a version table (ours is the ledger)."""

        def _insert_version(self, version: str) -> None:
            self.heads.add(version)

        def _delete_version(self, version: str) -> None:
            self.heads.remove(version)

        def _update_version(self, from_: str, to_: str) -> None:
            self.heads.remove(from_)
            self.heads.add(to_)

    maintainer = Bookkeeping(None, heads)
    maintainer.update_to_step(RevisionStep(script.revision_map, rev, mark == "applied"))
    return set(maintainer.heads)
