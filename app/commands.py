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

from app import ledger
from app.config import ALEMBIC_INI, is_embedded, mask_url, resolve_url
from app.config import script_location as config_script_location
from app.engine import connect
from app.runtime import file_checksum


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


def downgrade(url: str | None, target: str, *, allow_data_loss: bool = False,
              reporter: Callable[[dict], None] | None = None, cluster: str | None = None,
              **extra: Any) -> list[dict]:
    steps: list[dict] = []
    cfg = alembic_config(url, allow_data_loss=allow_data_loss,
                         reporter=_collect(steps, reporter), **_cluster_attribute(cluster), **extra)
    alembic_command.downgrade(cfg, target)
    return steps


def stamp(url: str | None, target: str, *, cluster: str | None = None, **extra: Any) -> list[dict]:
    steps: list[dict] = []
    cfg = alembic_config(url, reporter=_collect(steps, None), **_cluster_attribute(cluster), **extra)
    alembic_command.stamp(cfg, target)
    return steps


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
    version = conn.exec_driver_sql("SELECT version()").scalar()
    return rows, version, conn.dialect.driver


def status(url: str | None = None) -> Status:
    url = resolve_url(url)
    cfg = alembic_config(url)
    script = script_directory(cfg)
    with connect(url) as conn:
        rows, version, driver = ledger_state(conn)
        unmanaged = 0 if rows else conn.exec_driver_sql(
            "SELECT count() FROM system.tables WHERE database IN %(dbs)s",
            {"dbs": ledger.MANAGED_DATABASES},
        ).scalar()
    heads = ledger.current_heads(rows)
    pending = [
        {"revision": s.revision, "message": short_doc(s)}
        for s in reversed(list(script.iterate_revisions("heads", tuple(heads) or "base")))
        if s.revision not in heads
    ]
    return Status(
        url=mask_url(url),
        engine=driver,
        server_version=version,
        heads=heads,
        script_heads=list(script.get_heads()),
        pending=pending,
        problem=ledger.open_problem(rows),
        skipped=skipped_statements(rows),
        changed_files=changed_files(script, rows),
        steps=len({r["step_id"] for r in rows}),
        unmanaged_objects=unmanaged,
    )


def skipped_statements(rows: list[dict]) -> list[dict]:
    """Access statements recorded as skipped by the latest upgrade of each revision."""
    latest: dict[str, dict] = {}
    for r in rows:
        if r["status"] == "applied" and r["direction"] == "upgrade":
            latest[r["revision"]] = r
    return [
        {"revision": rev, "statements": r["skipped"]}
        for rev, r in sorted(latest.items()) if r["skipped"]
    ]


def applied_checksums(rows: list[dict]) -> dict[str, str]:
    out: dict[str, str] = {}
    for r in rows:
        if r["status"] == "applied" and r["direction"] == "upgrade" and r["checksum"]:
            out[r["revision"]] = r["checksum"]
        elif r["direction"] == "downgrade" and r["status"] == "applied":
            out.pop(r["revision"], None)
    return out


def changed_files(script: ScriptDirectory, rows: list[dict]) -> list[dict]:
    """Applied revisions whose file no longer has the checksum recorded when applied."""
    changed = []
    for rev, recorded in sorted(applied_checksums(rows).items()):
        try:
            path = script.get_revision(rev).path
        except Exception:
            changed.append({"revision": rev, "problem": "revision file is missing"})
            continue
        if file_checksum(path) != recorded:
            changed.append({"revision": rev, "problem": f"{os.path.basename(path)} changed since it was applied"})
    return changed


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
            try:
                path = script.get_revision(r["revision"]).path
                matches = file_checksum(path) == r["checksum"]
            except Exception:
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
    slug = re.sub(r"[^a-z0-9]+", "_", message.lower()).strip("_")[:50] or "revision"
    created = alembic_command.revision(
        cfg, message=message, rev_id=rev_id, head=base_of or "base", splice=branch,
    )
    path = created.path if not isinstance(created, list) else created[0].path
    wanted = os.path.join(os.path.dirname(path), f"{rev_id}_{slug}.py")
    if path != wanted:
        os.replace(path, wanted)
    return wanted


def next_ordinal(script: ScriptDirectory) -> str:
    numbers = [int(s.revision) for s in script.walk_revisions() if s.revision.isdigit()]
    return f"{(max(numbers) if numbers else 0) + 1:04d}"


# --- repair ------------------------------------------------------------------------

def repair(url: str | None, revision: str, *, mark: str) -> dict:
    """Record by hand that REVISION is applied (``mark="applied"``) or not (``"reverted"``).

    For steps a human finished or undid after a failure.  The new head set
    is computed from the revision graph and written as a ``repaired`` row, so
    the decision is in the ledger like every other step.
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
        ledger.ensure(conn, schema, cluster=on_cluster)
        rows = ledger.read_rows(conn, schema)
        heads = set(ledger.current_heads(rows))
        downs = set(rev._normalized_down_revisions)
        if mark == "applied":
            new_heads = (heads - downs) | {rev.revision}
        else:
            new_heads = (heads - {rev.revision}) | (downs if rev.revision in heads else set())
        row = ledger.Row(
            str(uuid.uuid4()), rev.revision, "repair", "repaired", sorted(new_heads),
            f"marked {mark} by hand", checksum=file_checksum(rev.path),
        )
        ledger.write(conn, schema, row)
    return {"revision": rev.revision, "mark": mark, "heads": sorted(new_heads),
            "previous_heads": sorted(heads)}
