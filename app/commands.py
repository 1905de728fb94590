"""The operator verbs as library functions (the CLI and the tests call these).

Like alembic's own command.py this module only wires things together:
alembic runs the revisions (app.runtime records them), app.versions reads
the ledger against the revision files, app.schema and app.verify compare
schemas, app.revision_files writes new revisions.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from alembic import command as alembic_command
from alembic.script import ScriptDirectory

from app import canonical_verdict
from app import cluster as cluster_mode
from app import fastpath
from app import ledger
from app import versions
from app.warehouse import MANAGED_DATABASES
from app.chain import alembic_config, script_directory, short_doc
from app.config import is_embedded, mask_url, resolve_url
from app.engine import connect
from app.errors import UsageError
from app.lock import deploy_lock
from app.runtime import prepare_cluster
from app.schema import TABLE
from app.schema_check import definer_findings
from app.snapshot import snapshot_schema
from app.settings import Settings
from app.sql import clickhouse_error_message
from app.step_event import StepEvent
from app.users import role_findings
from app.verify import Finding, compare_schema
from app.versions import changed_files, resume_command, version_of

# Names the CLI, the operator tools, bench and the tests reach through this module.
from app.revision_files import CanonicalInvalid, load_canonical, new_revision  # noqa: F401
from app.versions import RepairMismatch, RevisionRefused  # noqa: F401


# --- migrating -----------------------------------------------------------------

def upgrade(url: str | None = None, target: str = "head", *, resume: bool = False,
            reporter: Callable[[StepEvent], None] | None = None, cluster: str | None = None,
            **extra: Any) -> list[StepEvent]:
    """``cluster``: run in cluster mode on that remote_servers cluster (app.cluster);
    None leaves it to ZAKAZ_CLUSTER."""
    steps: list[StepEvent] = []
    if not isinstance(extra.get("outcome"), dict):
        extra["outcome"] = {}
    cfg = alembic_config(url, resume=resume, reporter=_collect(steps, reporter),
                         **_cluster_attribute(cluster), **extra)
    alembic_command.upgrade(cfg, target)
    if not steps and "heads" in extra["outcome"]:
        _refuse_going_down(cfg, target, extra["outcome"]["heads"])
    return steps


def _refuse_going_down(cfg, target: str, heads: list[str]) -> None:
    """An upgrade to a revision below the database's heads: alembic does nothing and says nothing.

    "Nothing to do" would read as "the database is at TARGET"; it is not.
    """
    if target == "base":
        # Below every revision: any applied one is ahead of it.
        if heads:
            _going_down(heads, "base")
        return
    if target in ("head", "heads") or any(c in target for c in ":@+-"):
        return
    script = script_directory(cfg)
    try:
        wanted = script.get_revision(target)
    except Exception:  # alembic resolved it for the run; an odd form is not ours to judge
        return
    if wanted is None or wanted.revision in heads:
        return
    if any(_is_ancestor(script, wanted.revision, head) for head in heads):
        _going_down(heads, wanted.revision)


def _going_down(heads: list[str], target: str) -> None:
    raise UsageError(
        f"the database is at {', '.join(heads)}, ahead of {target}: an upgrade does not go "
        f"down, nothing was changed; to go back to {target} run `zakaz-schema downgrade {target}`"
    )


def downgrade(url: str | None, target: str, *, allow_data_loss: bool = False, resume: bool = False,
              reporter: Callable[[StepEvent], None] | None = None, cluster: str | None = None,
              **extra: Any) -> list[StepEvent]:
    steps: list[StepEvent] = []
    cfg = alembic_config(url, allow_data_loss=allow_data_loss, resume=resume,
                         reporter=_collect(steps, reporter), **_cluster_attribute(cluster), **extra)
    alembic_command.downgrade(cfg, target)
    return steps


def stamp(url: str | None, target: str, *, purge: bool = False, cluster: str | None = None,
          **extra: Any) -> list[StepEvent]:
    """``purge``: record exactly ``target``, whatever the ledger's heads were
    (unknown or impossible ones included); insert-only like every ledger write."""
    steps: list[StepEvent] = []
    cfg = alembic_config(url, reporter=_collect(steps, None), **_cluster_attribute(cluster), **extra)
    alembic_command.stamp(cfg, target, purge=purge)
    return steps


def stamp_would_forget(url: str | None, target: str) -> tuple[list[str], int]:
    """The ledger heads a stamp of ``target`` would record as not applied (heads
    that are not ``target`` or below it), and the objects the warehouse holds."""
    url = resolve_url(url)
    script = script_directory(alembic_config(url))
    kept = set() if target == "base" else {s.revision for s in script.iterate_revisions(target, "base")}
    with connect(url) as conn:
        rows, _, _ = versions.read_state(conn)
        objects = len(snapshot_schema(conn, MANAGED_DATABASES))
    return [h for h in ledger.current_heads(rows) if h not in kept], objects


def _cluster_attribute(cluster: str | None) -> dict:
    # Only a given name goes into Config.attributes, so ZAKAZ_CLUSTER still
    # applies when the caller says nothing.
    return {"cluster": cluster} if cluster else {}


def _collect(steps: list, reporter):
    def report(event: StepEvent) -> None:
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
    # app/canonical.py is ahead of the chain's head (a revision to write with
    # `new --autogenerate`); None when not known (app.canonical_verdict).
    canonical_ahead: bool | None = None

    def to_dict(self) -> dict:
        return self.__dict__ | {"problem": _jsonable(self.problem)}


def _jsonable(row: dict | None) -> dict | None:
    if row is None:
        return None
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}


def read_ledger(url: str | None) -> tuple[list[dict], str, str]:
    with connect(resolve_url(url)) as conn:
        return versions.read_state(conn)


def status(url: str | None = None) -> Status:
    url = resolve_url(url)
    cfg = alembic_config(url)
    script = script_directory(cfg)
    with connect(url) as conn:
        rows, version, driver = versions.read_state(conn)
        # Counted as `adopt` counts them (its warehouse_objects is this
        # snapshot), so both commands give one number.
        unmanaged = 0 if rows else len(snapshot_schema(conn, MANAGED_DATABASES))
    heads = ledger.current_heads(rows)
    _, version_problem = version_of(script, heads)
    pending = [] if version_problem else [
        {"revision": s.revision, "message": short_doc(s)}
        for s in reversed(list(script.iterate_revisions("heads", tuple(heads) or "base")))
        if s.revision not in heads
    ]
    problem = ledger.open_problem(rows)
    fastpath.remember(script)  # the chain's heads for the next status or no-op upgrade
    ahead = None  # a fresh install pays for no replay (app.canonical_verdict), as the fast path does not
    if canonical_verdict.kept(Path(script.versions)):
        try:
            load_canonical()  # CanonicalInvalid before the modules that import it
            # Imported here: it imports app/canonical.py, parsed on import, and
            # a mistake there must not stop status, upgrade or any deploy command.
            from app.revision_autogenerate import chain_behind_canonical
            ahead = chain_behind_canonical()
        except CanonicalInvalid:
            pass  # status is about the database: verify and new --autogenerate say what is wrong
    return Status(
        url=mask_url(url),
        engine=driver,
        server_version=version,
        heads=heads,
        script_heads=list(script.get_heads()),
        pending=pending,
        problem=problem,
        skipped=ledger.skipped_statements(rows),
        changed_files=changed_files(script, rows),
        steps=len({r["step_id"] for r in rows}),
        unmanaged_objects=unmanaged,
        version_problem=version_problem,
        resume=resume_command(script, problem) if problem else None,
        canonical_ahead=ahead,
    )


def history(url: str | None = None) -> list[dict]:
    """Ledger steps (completed or not) next to the revision files."""
    url = resolve_url(url)
    rows, _, _ = read_ledger(url)
    return versions.history_rows(script_directory(alembic_config(url)), rows)


# --- verify ------------------------------------------------------------------------

def verify(url: str | None = None, *, cluster: str | None = None) -> dict:
    """Compare the live schema with the canonical one.

    Engines are compared without replication (``ReplicatedReplacingMergeTree``
    is ``ReplacingMergeTree``); in cluster mode (``cluster`` or ZAKAZ_CLUSTER)
    a MergeTree table that is not replicated is a finding of its own.
    """
    url = resolve_url(url)
    on_cluster = Settings.from_sources(_cluster_attribute(cluster)).cluster
    # One connection for the schema and the ledger: opening an embedded
    # database loads every table (~1 s per 1000 tables on chDB 26.9).
    # Imported here (see status), before connecting: a mistake in it is this command's one line.
    from app import canonical as canon
    from app.revision_autogenerate import canonical_ahead, chain_behind_canonical
    canonical = canon.CANONICAL
    with connect(url) as conn:
        live = snapshot_schema(conn, MANAGED_DATABASES)
        local = cluster_mode.unreplicated_tables(conn, MANAGED_DATABASES) if on_cluster else []
        rows, _, _ = versions.read_state(conn)
        definers = [] if is_embedded(url) else definer_findings(
            conn, [n for n, o in canonical.items() if o.kind != TABLE], canon.VIEW_DEFINER)
        roles = [] if is_embedded(url) else _role_findings(conn)
    findings = compare_schema(live, canonical) + definers
    findings += [Finding("engine", name, "", f"Replicated{engine}", engine) for name, engine in local]
    script = script_directory(alembic_config(url))
    # Only a database that differs pays for the replay (cached by the chain's checksum).
    ahead = any(f.fatal for f in findings) and canonical_ahead(live, canonical, ledger.current_heads(rows))
    if not any(f.fatal for f in findings):
        # Kept for status (app.canonical_verdict) when the replay is cached already.
        chain_behind_canonical(replay=False)
    # After the schema's verdict: a user without its role says nothing about the chain.
    findings += roles
    # Why a database differs may be that it is not managed yet (no ledger:
    # built by the old SQL files, counted as `status` counts it) or half adopted.
    problem = ledger.open_problem(rows)
    adoption = ({"revision": problem["revision"], "state": problem["state"], "step_id": problem["step_id"]}
                if problem and problem["direction"] == "adopt" else None)
    return {
        "url": mask_url(url),
        "findings": findings,
        "changed_files": changed_files(script, rows),
        "objects": len(live),
        "canonical_ahead": ahead,
        "unmanaged_objects": 0 if rows else len(live),
        "adoption": adoption,
    }


def _role_findings(conn) -> list[Finding]:
    """Application users that exist without their role (app.users), or why that was not checked."""
    try:
        return role_findings(conn)
    except Exception as exc:  # noqa: BLE001 - a verifying user may not be allowed to list users
        return [Finding("roles_unchecked", "system.users", "", "", clickhouse_error_message(exc))]


# --- repair ------------------------------------------------------------------------

def repair(url: str | None, revision: str, *, mark: str) -> dict:
    """Record by hand that REVISION is applied (``mark="applied"``) or not (``"reverted"``).

    For steps a human finished or undid after a failure.  The new head set
    is what alembic would record for that one step (``versions.repaired_heads``),
    and is written as a ``repaired`` row under the deploy lock, so the
    decision is in the ledger like every other step.
    """
    if mark not in ("applied", "reverted"):
        raise ValueError(mark)
    url = resolve_url(url)
    script = script_directory(alembic_config(url))
    rev = script.get_revision(revision)
    if rev is None:
        raise RevisionRefused("repair needs a revision id, not base")
    # Cluster mode from ZAKAZ_CLUSTER: a repair row lands in the replicated ledger.
    on_cluster = Settings.from_sources().cluster
    with connect(url) as conn:
        schema = conn.dialect.default_schema_name or "default"
        if on_cluster is not None:
            on_cluster = prepare_cluster(conn, on_cluster)
        embedded = conn.dialect.driver == "chdb"
        ledger.ensure(conn, schema, cluster=on_cluster, lock=not embedded)
        if embedded:  # chDB's directory lock keeps other processes out
            heads, new_heads = versions.record_repair(conn, schema, script, rev, mark)
        else:
            # The row's seq is the ledger's maximum + 1: no deploy may write between.
            with deploy_lock(conn, schema, cluster=on_cluster, create_table=False):
                heads, new_heads = versions.record_repair(conn, schema, script, rev, mark,
                                                          replicated=on_cluster is not None)
    return {"revision": rev.revision, "mark": mark, "heads": new_heads, "previous_heads": heads}
