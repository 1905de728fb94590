"""Adopt a warehouse built by the old hand-written SQL files: match it to a revision, repair, stamp, upgrade.

Such databases have no ledger and each drifted its own way (warehouse.md,
"The pre-lockdown state").  Adoption is in three parts:

1. **Match.**  The schema at every revision of the chain is computed by
   replaying the chain into a scratch embedded database (cached by the
   chain's checksum).  The live schema is read once and matched against
   them: the chosen revision R is the latest one the live database *fully
   contains*: every table, materialized view and column of the schema at R
   exists with the same type, DEFAULT, engine and keys (or already as a
   later revision defines them: a fix applied by hand).  Columns and objects
   of later revisions are allowed beside it; views are not part of the
   match (they hold no rows and are recreated when they differ).  A missing
   table below the newest revision the database holds tables of means it
   matches no revision at all: its rows cannot be accounted for.

2. **Repair plan.**  Everything that would keep ``upgrade head`` from
   producing the canonical schema is turned into one operation with a
   reason: the upgrade re-runs revisions R+1.. with IF NOT EXISTS, so an
   object or column of a later revision that is already there, but shaped
   differently, would silently stay wrong.  Operations keep every row
   (MODIFY COLUMN only along conversions that keep every value, ADD COLUMN,
   rebuilds with a row count check, views recreated); those that would lose
   data are listed with the rows at risk and need ``allow_data_loss``; a
   difference no operation covers refuses the adoption.

3. **Apply.**  Re-plan (the database must not have changed since the plan
   was shown), run the operations, create the ledger and write the adoption
   row (direction ``adopt``, status ``stamped``: a completed status, so
   ``alembic_version`` reads R), ``upgrade head``, ``verify``, and compare
   the content of every table (row counts and checksums over the columns
   that existed before) with what it was.

Unmanaged objects (integration tables) are reported and never touched.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from app import ledger
from app.canonical import MANAGED_DATABASES
from app.config import PROJECT_ROOT, mask_url, resolve_url
from app.sql import quote_literal
from app.schema import TABLE, VIEW, Column, DbObject, Schema

# Bump when the cached form of a revision state changes.
CACHE_FORMAT = "adopt-states-2"  # 2: objects carry `security`
SCRATCH_DATABASE = "zakaz_adopt_scratch"
# Files whose content decides what the replay produces, besides the revisions.
_REPLAY_INPUTS = ("app/operations.py", "app/impl.py", "app/schema.py")
_KEY_FIELDS = ("engine", "order_by", "partition_by")
_OBJECT_FIELDS = _KEY_FIELDS + ("ttl",)
COLLAPSING = ("Replacing", "Collapsing", "Summing", "Aggregating", "Graphite")
_OTHER_DEFAULT_KINDS = ("MATERIALIZED ", "ALIAS ", "EPHEMERAL")


class AdoptionRefused(Exception):
    """Adoption cannot go on; nothing was changed."""


class AlreadyManaged(AdoptionRefused):
    """The database has a ledger: it is managed already."""


class NoMatchingRevision(AdoptionRefused):
    """The live schema matches no revision, or differs in ways no safe operation repairs."""


class DataLossRefused(AdoptionRefused):
    """The repair plan would lose data and ``allow_data_loss`` was not given."""


class PlanChanged(AdoptionRefused):
    """The database changed between the plan shown and the apply."""


# --- the schema at every revision ---------------------------------------------------

@dataclass
class RevisionState:
    """The warehouse right after one revision of a clean install."""

    revision: str
    databases: list[str]
    schema: Schema
    # Tables and materialized views: their CREATE statement; views: their SELECT.
    ddl: dict[str, str]


@dataclass
class ChainStates:
    checksum: str
    states: list[RevisionState]  # base to head

    @property
    def revisions(self) -> list[str]:
        return [s.revision for s in self.states]

    def index(self, revision: str) -> int:
        return self.revisions.index(revision)


def _exec(conn, sql: str, params: dict | None = None):
    return conn.exec_driver_sql(sql, params)


def _quoted(name: str) -> str:
    """``db.name`` with both parts quoted: unmanaged objects may have any name."""
    return ".".join("`" + part.replace("\\", "\\\\").replace("`", "\\`") + "`" for part in name.split(".", 1))


def _linear_chain(script) -> list:
    heads = script.get_heads()
    if len(heads) != 1:
        raise AdoptionRefused(
            f"the chain has {len(heads)} heads ({', '.join(heads)}); adopt matches a linear chain: merge the heads first"
        )
    chain = list(reversed(list(script.walk_revisions("base", "heads"))))
    for rev in chain:
        if len(rev._normalized_down_revisions) > 1:
            raise AdoptionRefused(f"revision {rev.revision} merges branches; adopt needs a linear chain")
    return chain


def chain_checksum(chain) -> str:
    """sha256 over every revision file (and what renders and reads their DDL), in chain order."""
    digest = hashlib.sha256(f"{CACHE_FORMAT}\n".encode())
    for rev in chain:
        digest.update(f"{rev.revision}\n".encode())
        digest.update(Path(rev.path).read_bytes())
    for name in _REPLAY_INPUTS:
        path = PROJECT_ROOT / name
        if path.exists():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _cache_dirs(cache_dir: str | os.PathLike | None) -> list[Path]:
    if cache_dir is not None:
        return [Path(cache_dir)]
    return [PROJECT_ROOT / "var" / "cache", Path(tempfile.gettempdir()) / "zakaz-schema"]


def _object_to_json(obj: DbObject) -> dict:
    return {
        "kind": obj.kind, "engine": obj.engine, "order_by": obj.order_by,
        "partition_by": obj.partition_by, "ttl": obj.ttl, "security": obj.security,
        "columns": [[c.name, c.type, c.default] for c in obj.columns],
    }


def _object_from_json(name: str, data: dict) -> DbObject:
    return DbObject(
        name=name, kind=data["kind"], engine=data["engine"], order_by=data["order_by"],
        partition_by=data["partition_by"], ttl=data["ttl"], security=data["security"],
        columns=tuple(Column(*c) for c in data["columns"]),
    )


def _states_to_json(states: ChainStates) -> dict:
    return {
        "format": CACHE_FORMAT,
        "checksum": states.checksum,
        "states": [
            {"revision": s.revision, "databases": s.databases, "ddl": s.ddl,
             "objects": {n: _object_to_json(o) for n, o in s.schema.items()}}
            for s in states.states
        ],
    }


def _states_from_json(data: dict) -> ChainStates:
    return ChainStates(
        checksum=data["checksum"],
        states=[
            RevisionState(
                revision=s["revision"], databases=list(s["databases"]), ddl=dict(s["ddl"]),
                schema={n: _object_from_json(n, o) for n, o in s["objects"].items()},
            )
            for s in data["states"]
        ],
    )


def _capture(conn, revision: str) -> RevisionState:
    from app.schema import snapshot_schema

    schema = snapshot_schema(conn, MANAGED_DATABASES)
    in_list = ", ".join(f"'{d}'" for d in MANAGED_DATABASES)
    databases = [d for (d,) in _exec(conn, f"SELECT name FROM system.databases WHERE name IN ({in_list}) ORDER BY name")]
    ddl = {}
    for database, name, engine, create, select in _exec(conn, (
        "SELECT database, name, engine, create_table_query, as_select FROM system.tables "
        f"WHERE database IN ({in_list}) AND NOT startsWith(name, '.inner')"
    )):
        ddl[f"{database}.{name}"] = select if engine == "View" else create
    return RevisionState(revision, databases, schema, ddl)


def _replay(chain, script_location: str | None) -> list[RevisionState]:
    """Run the chain into a scratch embedded database and capture the schema after each revision.

    Always embedded, whatever the live database is: the chain's result is the
    same on every engine (snapshots are normalised).  The caller must not hold
    another embedded database open: one chDB path per process at a time.
    """
    from alembic import command as alembic_command

    from app.commands import alembic_config
    from app.engine import connect

    scratch = tempfile.mkdtemp(prefix="zakaz-adopt-")
    url = f"clickhouse+chdb:///{SCRATCH_DATABASE}?path={scratch}/db"
    states: list[RevisionState] = []
    try:
        with connect(url) as conn:
            def capture(event: dict) -> None:
                states.append(_capture(conn, event["revision"]))

            cfg = alembic_config(url, script_location=script_location, connection=conn, reporter=capture)
            alembic_command.upgrade(cfg, "head")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    expected = [r.revision for r in chain]
    if [s.revision for s in states] != expected:
        raise AdoptionRefused(
            f"replaying the chain gave states for {[s.revision for s in states]}, expected {expected}"
        )
    return states


def revision_states(script_location: str | None = None,
                    cache_dir: str | os.PathLike | None = None) -> ChainStates:
    """The schema at every revision of the chain, from the cache or a fresh replay."""
    from app.commands import alembic_config, script_directory

    script = script_directory(alembic_config(None, script_location=script_location))
    chain = _linear_chain(script)
    checksum = chain_checksum(chain)
    file_name = f"adopt-{checksum}.json"
    for folder in _cache_dirs(cache_dir):
        try:
            data = json.loads((folder / file_name).read_text(encoding="utf-8"))
            if data.get("format") == CACHE_FORMAT and data.get("checksum") == checksum:
                return _states_from_json(data)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    states = ChainStates(checksum, _replay(chain, script_location))
    payload = json.dumps(_states_to_json(states), ensure_ascii=False, sort_keys=True)
    for folder in _cache_dirs(cache_dir):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".adopt-", suffix=".json")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(payload)
            os.replace(tmp, folder / file_name)  # atomic: a concurrent reader sees all or nothing
            break
        except OSError:
            continue
    return states


# --- conversions that keep every value ---------------------------------------------------

_INT = re.compile(r"^(U?)Int(\d+)$")
_DECIMAL = re.compile(r"^Decimal\((\d+),\s*(\d+)\)$")


def _strip(wrapper: str, type_: str) -> tuple[bool, str]:
    prefix = wrapper + "("
    if type_.startswith(prefix) and type_.endswith(")"):
        return True, type_[len(prefix):-1]
    return False, type_


def _int_range(type_: str) -> tuple[int, int] | None:
    m = _INT.match(type_)
    if not m:
        return None
    bits = int(m.group(2))
    return (0, 2 ** bits - 1) if m.group(1) else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)


def _base_conversion(src: str, dst: str) -> str | None:
    """"same", "safe" (every value survives and prints the same) or None (unknown)."""
    if src == dst:
        return "same"
    if src == "UUID" and dst == "String":
        return "safe"  # the old files' run_id: toString keeps the text
    if src.startswith("FixedString(") and dst == "String":
        return "safe"
    if (src, dst) in (("Float32", "Float64"), ("Date", "Date32")):
        return "safe"
    a, b = _int_range(src), _int_range(dst)
    if a and b and b[0] <= a[0] and a[1] <= b[1]:
        return "safe"
    da, db = _DECIMAL.match(src), _DECIMAL.match(dst)
    if da and db and da.group(2) == db.group(2) and int(db.group(1)) >= int(da.group(1)):
        return "safe"
    return None


def conversion(src: str, dst: str) -> str | None:
    """How a MODIFY COLUMN from type ``src`` to ``dst`` treats the stored values.

    ``"same"``, ``"safe"`` (every value kept), ``"lossy"`` (Nullable to not
    Nullable: NULLs become the type's default) or None (no known conversion
    that keeps every value).  LowCardinality only changes the storage.
    """
    if src == dst:
        return "same"
    _, s = _strip("LowCardinality", src)
    _, d = _strip("LowCardinality", dst)
    s_null, s = _strip("Nullable", s)
    d_null, d = _strip("Nullable", d)
    base = _base_conversion(s, d)
    if base is None:
        return None
    if s_null and not d_null:
        return "lossy"
    return "safe"


# --- the plan -----------------------------------------------------------------------------

@dataclass
class Operation:
    kind: str      # create_database, drop_column, add_column, modify_column, modify_ttl, remove_ttl,
    #                rebuild_table, create_view, recreate_materialized_view
    target: str    # "db.table" or "db.table.column"
    reason: str
    statements: list[str]
    # What the operation drops: "db.table" or "db.table.column"; with the rows
    # holding such values now (counted when the plan is made).
    loses: list[str] = field(default_factory=list)
    rows_at_risk: int = 0
    # Rebuilds: after statement ``count_check_after``, the copy must have as
    # many rows as the original (else stop before the swap).
    count_check: tuple[str, str] | None = None
    count_check_after: int = -1
    risk_sql: str = ""

    @property
    def loses_data(self) -> bool:
        return self.rows_at_risk > 0

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("risk_sql")
        out["loses_data"] = self.loses_data
        return out


@dataclass
class AdoptionPlan:
    url: str
    server_version: str
    chain_checksum: str
    head: str
    revision: str | None  # the latest revision the database fully contains; None: no match
    objects: int          # managed-database objects in the live database
    # Why each revision after the chosen one is not contained (a few findings each).
    blocked_at: dict[str, list[str]]
    differences: list[dict]   # live against the schema at ``revision``, annotated
    ahead: list[dict]         # objects/columns of later revisions already present
    operations: list[Operation]
    unmanaged: list[str]      # left untouched
    refusals: list[str]       # why it cannot be adopted (empty when it can)
    notes: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # revisions the upgrade will run

    @property
    def adoptable(self) -> bool:
        return self.revision is not None and not self.refusals

    @property
    def lossy_operations(self) -> list[Operation]:
        return [op for op in self.operations if op.loses_data]

    def signature(self) -> tuple:
        return (self.revision, tuple((op.kind, op.target, tuple(op.statements)) for op in self.operations),
                tuple(self.refusals))

    def to_dict(self) -> dict:
        return {
            "url": self.url, "server_version": self.server_version, "chain_checksum": self.chain_checksum,
            "head": self.head, "revision": self.revision, "adoptable": self.adoptable,
            "needs_allow_data_loss": bool(self.lossy_operations), "objects": self.objects,
            "blocked_at": self.blocked_at, "differences": self.differences, "ahead": self.ahead,
            "operations": [op.to_dict() for op in self.operations], "unmanaged": self.unmanaged,
            "refusals": self.refusals, "notes": self.notes, "pending": self.pending,
        }


@dataclass
class AdoptionResult:
    plan: AdoptionPlan
    steps: list[dict]
    findings: list  # app.verify.Finding, from verify after the upgrade
    data_changes: list[str]  # tables whose content differs from before (should be empty)
    checked_tables: int

    @property
    def ok(self) -> bool:
        return not [f for f in self.findings if f.fatal] and not self.data_changes

    def to_dict(self) -> dict:
        return {
            "ok": self.ok, "revision": self.plan.revision, "plan": self.plan.to_dict(),
            "steps": self.steps, "findings": [f.to_dict() for f in self.findings],
            "data_changes": self.data_changes, "checked_tables": self.checked_tables,
        }


def _ignored(name: str) -> bool:
    from app.lock import LOCK_TABLE

    return name.split(".", 1)[-1] in (ledger.LEDGER_TABLE, ledger.VERSION_VIEW, LOCK_TABLE)


def warehouse_objects(conn) -> Schema:
    """The objects of zakaz, meta and bi as adopt and status count them: a
    materialized view's storage table is part of the view, and the ledger,
    its view and the deploy lock are not the warehouse's."""
    from app.schema import snapshot_schema

    return {n: o for n, o in snapshot_schema(conn, MANAGED_DATABASES).items() if not _ignored(n)}


def _col_def(col: Column) -> tuple[str, str]:
    return (col.type, col.default)


def _versions(states: list[RevisionState], start: int, name: str) -> list[DbObject]:
    return [s.schema[name] for s in states[start:] if name in s.schema]


def blocking_differences(live: Schema, states: list[RevisionState], index: int) -> list[str]:
    """Why the live schema does not fully contain the schema at ``states[index]`` ([] if it does).

    A value that a later revision gives (a fix applied by hand) counts as
    contained; views are left out (they hold no rows and are recreated).
    """
    out = []
    for name, exp in sorted(states[index].schema.items()):
        if exp.kind == VIEW:
            continue
        got = live.get(name)
        if got is None:
            out.append(f"missing {exp.kind.replace('_', ' ')} {name}")
            continue
        if got.kind != exp.kind:
            out.append(f"{name} is a {got.kind.replace('_', ' ')}, expected a {exp.kind.replace('_', ' ')}")
            continue
        versions = _versions(states, index, name)
        for f in _OBJECT_FIELDS:
            if getattr(got, f) not in {getattr(v, f) for v in versions}:
                out.append(f"{f} of {name}: expected {getattr(exp, f) or '(none)'}, found {getattr(got, f) or '(none)'}")
        for col in exp.columns:
            have = got.column(col.name)
            if have is None:
                out.append(f"missing column {name}.{col.name}")
            elif exp.kind == TABLE:
                allowed = {_col_def(c) for v in versions if (c := v.column(col.name))}
                if _col_def(have) not in allowed:
                    out.append(f"column {name}.{col.name}: expected {col.spec}, found {have.spec}")
    return out


def _first_index(states: list[RevisionState], name: str, column: str | None = None,
                 start: int = 0) -> int | None:
    for i in range(start, len(states)):
        obj = states[i].schema.get(name)
        if obj is not None and (column is None or obj.column(column) is not None):
            return i
    return None


def _in_key(obj: DbObject, column: str) -> bool:
    pattern = rf"(?<![\w.`]){re.escape(column)}(?![\w`])"
    return bool(re.search(pattern, f"{obj.order_by} {obj.partition_by}"))


def _column_spec(col: Column) -> str:
    return f"{col.name} {col.spec}"


class _Planner:
    """Turns the differences between live and the revision schemas into operations."""

    def __init__(self, live: Schema, states: list[RevisionState], r: int,
                 view_sql: dict[str, str], unselectable: dict[str, str]):
        self.live = live
        self.states = states
        self.r = r
        self.view_sql = view_sql
        self.unselectable = unselectable
        self.ops: list[Operation] = []
        self.refusals: list[str] = []
        self.ahead: list[dict] = []
        self.unmanaged: list[str] = []
        self.notes: list[str] = []
        self.rev = lambda i: states[i].revision

    # -- entry ------------------------------------------------------------------------
    def plan(self) -> None:
        at_r = self.states[self.r].schema
        for name in sorted(self.live):
            got = self.live[name]
            if name in at_r:
                base = self.r
            else:
                base = _first_index(self.states, name, start=self.r + 1)
                if base is None:
                    self.unmanaged.append(f"{name} ({got.kind.replace('_', ' ')})")
                    if name.endswith("__adopt"):
                        self.notes.append(f"{name} looks like the copy left by an interrupted adoption's "
                                          "rebuild; check it and drop it by hand")
                    continue
                self.ahead.append({"object": name, "column": "", "revision": self.rev(base),
                                   "matches": not self._object_differs(got, base)})
            target = self.states[base].schema[name]
            if got.kind != target.kind:
                self.refusals.append(
                    f"{name} is a {got.kind.replace('_', ' ')} but revision {self.rev(base)} has a "
                    f"{target.kind.replace('_', ' ')}: no operation turns one into the other keeping its rows"
                )
            elif got.kind == TABLE:
                self._table(got, base)
            elif got.kind == VIEW:
                self._view(got, base)
            else:
                self._materialized_view(got, base)
        for name, exp in sorted(at_r.items()):
            if name not in self.live and exp.kind == VIEW:
                self._create_view(name, self.r, f"missing view (revision {self.rev(self.r)} has it)")

    def _object_differs(self, got: DbObject, base: int) -> bool:
        versions = _versions(self.states, base, got.name)
        target = versions[0]
        if got.kind != target.kind:
            return True
        if any(getattr(got, f) not in {getattr(v, f) for v in versions} for f in _OBJECT_FIELDS):
            return True
        if got.kind != TABLE:
            return set(got.column_names) != set(target.column_names)
        for col in target.columns:
            have = got.column(col.name)
            if have is None or _col_def(have) not in {_col_def(c) for v in versions if (c := v.column(col.name))}:
                return True
        return False

    # -- tables -----------------------------------------------------------------------
    def _table(self, got: DbObject, base: int) -> None:
        name = got.name
        versions = _versions(self.states, base, name)
        target = versions[0]
        rebuild_to: tuple[int, str] | None = None
        for f in _KEY_FIELDS:
            if getattr(got, f) not in {getattr(v, f) for v in versions}:
                rebuild_to = (base, f"{f} is {getattr(got, f) or '(none)'}, revision "
                                    f"{self.rev(base)} has {getattr(target, f) or '(none)'}")
        if got.ttl not in {v.ttl for v in versions}:
            self._ttl(got, target, base)

        kept: list[str] = []
        for col in got.columns:
            if target.column(col.name) is not None:
                self._column(got, col, target.column(col.name), base, versions)
                kept.append(col.name)
                continue
            k = _first_index(self.states, name, col.name, start=base + 1)
            if k is not None:
                later = _versions(self.states, k, name)
                exp = later[0].column(col.name)
                ok = _col_def(col) in {_col_def(c) for v in later if (c := v.column(col.name))}
                self.ahead.append({"object": name, "column": col.name, "revision": self.rev(k), "matches": ok})
                if not ok:
                    self._column(got, col, exp, k, later)
                kept.append(col.name)
                continue
            self._drop_column(got, col)

        previous = None
        for col in target.columns:
            if got.column(col.name) is None:
                where = f" AFTER {previous}" if previous else " FIRST"
                self.ops.append(Operation(
                    "add_column", f"{name}.{col.name}",
                    f"missing column (revision {self.rev(base)} has {col.spec}); added empty, no row changes",
                    [f"ALTER TABLE {name} ADD COLUMN IF NOT EXISTS {_column_spec(col)}{where}"],
                ))
            previous = col.name

        if rebuild_to is None:
            rebuild_to = self._chain_rebuild_would_drop(got, base, kept)
        if rebuild_to is not None:
            self._rebuild(got, *rebuild_to, kept=kept)

    def _chain_rebuild_would_drop(self, got: DbObject, base: int, kept: list[str]) -> tuple[int, str] | None:
        """A later revision rebuilds this table (engine or keys change) and the live table has
        columns the rebuild's copy may not know: do that rebuild now, keeping every column."""
        name = got.name
        for j in range(base + 1, len(self.states)):
            before, after = self.states[j - 1].schema.get(name), self.states[j].schema.get(name)
            if before is None or after is None:
                return None
            if any(getattr(before, f) != getattr(after, f) for f in _KEY_FIELDS):
                if any(getattr(got, f) != getattr(before, f) for f in _KEY_FIELDS):
                    return None  # the live table has other keys already
                extra = [c for c in kept if before.column(c) is None]
                if not extra:
                    return None
                missing_later = [c for c in extra if after.column(c) is None]
                if missing_later:
                    self.refusals.append(
                        f"{name}: revision {self.rev(j)} rebuilds the table and its columns "
                        f"{', '.join(missing_later)} (added by hand) have no place in it"
                    )
                    return None
                return (j, f"revision {self.rev(j)} rebuilds it (new keys) copying only the columns it "
                           f"knows; {', '.join(extra)} (added by hand) would lose its values: rebuilt "
                           "now with every column, so that revision finds it done")
        return None

    def _ttl(self, got: DbObject, target: DbObject, base: int) -> None:
        name = got.name
        if not target.ttl:
            self.ops.append(Operation("remove_ttl", name, f"TTL {got.ttl} is not in revision {self.rev(base)}; "
                                      "removing it deletes nothing", [f"ALTER TABLE {name} REMOVE TTL"]))
            return
        self.ops.append(Operation(
            "modify_ttl", name,
            f"TTL is {got.ttl or '(none)'}, revision {self.rev(base)} has {target.ttl}; rows already past "
            "the new TTL are deleted by it",
            [f"ALTER TABLE {name} MODIFY TTL {target.ttl} SETTINGS mutations_sync = 2"], loses=[name],
            risk_sql=f"SELECT countIf(({target.ttl}) <= now()) FROM {name}",
        ))

    def _column(self, got: DbObject, have: Column, want: Column, base: int, versions: list[DbObject]) -> None:
        name = got.name
        target = f"{name}.{have.name}"
        if _col_def(have) in {_col_def(c) for v in versions if (c := v.column(have.name))}:
            return
        if any(have.default.startswith(k) or want.default.startswith(k) for k in _OTHER_DEFAULT_KINDS):
            self.refusals.append(
                f"{target} is {have.spec}, revision {self.rev(base)} has {want.spec}: "
                "MATERIALIZED/ALIAS/EPHEMERAL columns are not converted automatically"
            )
            return
        how = conversion(have.type, want.type)
        if how is None:
            self.refusals.append(
                f"{target} is {have.type}, revision {self.rev(base)} has {want.type}: no known conversion "
                "keeps every value; convert it by hand (or restore the expected type), then adopt again"
            )
            return
        if how != "same" and _in_key(got, have.name):
            self.refusals.append(
                f"{target} is {have.type}, revision {self.rev(base)} has {want.type}, and it is part of "
                "the table's key, which ALTER cannot retype; rebuild the table by hand, then adopt again"
            )
            return
        statements = []
        if have.default and have.default != want.default:
            # Rows written before the column existed have no stored value and
            # read the DEFAULT expression: store it first, so changing the
            # expression changes no existing row.
            statements.append(f"ALTER TABLE {name} MATERIALIZE COLUMN {have.name} SETTINGS mutations_sync = 2")
        # Waited for: on a server a type change is a mutation, and the stamp
        # must come after the data is converted.
        statements.append(f"ALTER TABLE {name} MODIFY COLUMN {_column_spec(want)} SETTINGS mutations_sync = 2")
        if have.default and not want.default:
            # MODIFY COLUMN with a type only keeps the old DEFAULT.
            statements.append(f"ALTER TABLE {name} MODIFY COLUMN {have.name} REMOVE DEFAULT")
        what = []
        if have.type != want.type:
            what.append(f"type {have.type} -> {want.type}")
        if have.default != want.default:
            what.append(f"DEFAULT {have.default or '(none)'} -> {want.default or '(none)'}")
        reason = f"{'; '.join(what)} as revision {self.rev(base)} defines it"
        op = Operation("modify_column", target, reason, statements)
        if how == "lossy":
            op.reason += "; NULLs become the type's default value"
            op.loses = [target]
            op.risk_sql = f"SELECT countIf(isNull({have.name})) FROM {name}"
        else:
            op.reason += "; every value is kept"
        self.ops.append(op)

    def _drop_column(self, got: DbObject, col: Column) -> None:
        target = f"{got.name}.{col.name}"
        if _in_key(got, col.name):
            self.refusals.append(f"{target} is in no revision but part of the table's key; it cannot be dropped")
            return
        self.ops.append(Operation(
            "drop_column", target,
            f"column {col.spec} is in no revision; verify would report it as unmanaged",
            [f"ALTER TABLE {got.name} DROP COLUMN IF EXISTS {col.name} SETTINGS mutations_sync = 2"], loses=[target],
            risk_sql=f"SELECT count() FROM {got.name}",
        ))

    def _rebuild(self, got: DbObject, index: int, why: str, kept: list[str]) -> None:
        name = got.name
        target = self.states[index].schema[name]
        create = self.states[index].ddl.get(name, "")
        work = f"{name}__adopt"
        prefix = f"CREATE TABLE {name} "
        if not create.startswith(prefix):
            self.refusals.append(f"{name}: {why}, but the CREATE statement of revision {self.rev(index)} is unusable")
            return
        columns = [c for c in kept if (t := target.column(c)) is not None
                   and not t.default.startswith(_OTHER_DEFAULT_KINDS)]
        cols = ", ".join(columns)
        statements = [
            f"DROP TABLE IF EXISTS {work} SYNC",
            f"CREATE TABLE {work} " + create[len(prefix):],
            # optimize_on_insert = 0: a collapsing engine must not merge rows in the copy.
            f"INSERT INTO {work} ({cols}) SELECT {cols} FROM {name} SETTINGS optimize_on_insert = 0",
            f"EXCHANGE TABLES {name} AND {work}",
            f"DROP TABLE IF EXISTS {work} SYNC",
        ]
        op = Operation("rebuild_table", name,
                       f"{why}; new table, copy of every row (counted before the swap), swap",
                       statements, count_check=(name, work), count_check_after=2)
        if any(part in target.engine for part in COLLAPSING) and target.order_by != got.order_by:
            # Rows equal on the new sorting key collapse on merge.
            op.loses = [name]
            op.risk_sql = f"SELECT count() - uniqExact(tuple({target.order_by})) FROM {name}"
        self.ops.append(op)

    # -- views --------------------------------------------------------------------------
    def _view(self, got: DbObject, base: int) -> None:
        name = got.name
        target = self.states[base].schema[name]
        problems = []
        if set(got.column_names) != set(target.column_names):
            problems.append(f"columns are ({', '.join(got.column_names)}), revision {self.rev(base)} has "
                            f"({', '.join(target.column_names)})")
        if name in self.unselectable:
            problems.append(f"it cannot be selected from ({self.unselectable[name]})")
        if not problems:
            # A query a later revision gives (repointed by hand) is as good:
            # that revision replaces the view anyway.
            allowed = {_normal_sql(s.ddl[name]) for s in self.states[base:] if name in s.ddl}
            if _normal_sql(self.view_sql.get(name, "")) not in allowed:
                problems.append(f"its query differs from revision {self.rev(base)}'s")
        if problems:
            self._create_view(name, base, "; ".join(problems))

    def _create_view(self, name: str, index: int, why: str) -> None:
        select = self.states[index].ddl.get(name)
        if not select:
            self.refusals.append(f"view {name}: {why}, and revision {self.rev(index)}'s query is unknown")
            return
        self.ops.append(Operation(
            "create_view", name, f"{why}: recreated as revision {self.rev(index)} defines it (a view holds no rows)",
            [f"CREATE OR REPLACE VIEW {name} AS {select}"],
        ))

    def _materialized_view(self, got: DbObject, base: int) -> None:
        name = got.name
        if not self._object_differs(got, base) and name not in self.unselectable:
            return
        create = self.states[base].ddl.get(name, "")
        prefix = f"CREATE MATERIALIZED VIEW {name} "
        if not create.startswith(prefix):
            self.refusals.append(f"materialized view {name} differs from revision {self.rev(base)} and "
                                 "its definition there is unusable")
            return
        self.ops.append(Operation(
            "recreate_materialized_view", name,
            f"differs from revision {self.rev(base)} (columns, engine or keys); recreated, its stored rows are dropped",
            [f"DROP VIEW IF EXISTS {name} SYNC", create], loses=[name],
            risk_sql=f"SELECT count() FROM {name}",
        ))


def _normal_sql(text: str) -> str:
    return " ".join((text or "").split())


_OP_ORDER = ("create_database", "drop_column", "modify_column", "add_column", "remove_ttl",
             "modify_ttl", "rebuild_table", "recreate_materialized_view", "create_view")


def _annotate(findings: list, live: Schema, states: list[RevisionState], r: int) -> list[dict]:
    out = []
    for f in findings:
        d = f.to_dict()
        d.pop("fatal")
        d["revision"] = ""
        if f.kind in ("unmanaged_object", "unmanaged_column"):
            k = _first_index(states, f.object, f.column or None, start=r + 1)
            if k is not None:
                d["revision"] = states[k].revision
                d["message"] = (f"{f.target} ({f.actual.replace('_', ' ')}) is from revision "
                                f"{states[k].revision}: already there (applied by hand)")
            elif f.kind == "unmanaged_object":
                d["message"] = f"unmanaged {f.actual.replace('_', ' ')} {f.object}: in no revision, left untouched"
            else:
                d["message"] = f"unmanaged column {f.target} ({f.actual}): in no revision"
        out.append(d)
    return out


def _read_live(conn):
    """One read of everything the plan needs from the live database."""
    schema_name = conn.dialect.default_schema_name or "default"
    has_ledger = _exec(conn, "SELECT count() FROM system.tables WHERE database = %(d)s AND name = %(t)s",
                       {"d": schema_name, "t": ledger.LEDGER_TABLE}).scalar()
    ledger_rows = []
    if has_ledger:
        ledger_rows = ledger.read_rows(conn, schema_name)
    live = warehouse_objects(conn)
    in_list = ", ".join(f"'{d}'" for d in MANAGED_DATABASES)
    databases = [d for (d,) in _exec(conn, f"SELECT name FROM system.databases WHERE name IN ({in_list})")]
    view_sql = {f"{d}.{n}": s for d, n, s in _exec(conn, (
        f"SELECT database, name, as_select FROM system.tables WHERE database IN ({in_list}) AND engine = 'View'"
    ))}
    unselectable = {}
    views = [name for name, obj in live.items() if obj.kind != TABLE]
    try:
        # One query for all views; one each only when some view fails.
        if views:
            _exec(conn, " UNION ALL ".join(f"SELECT count() FROM (SELECT * FROM {_quoted(v)} LIMIT 0)" for v in views)).all()
    except Exception:
        for name in views:
            try:
                _exec(conn, f"SELECT * FROM {_quoted(name)} LIMIT 0").all()
            except Exception as exc:
                unselectable[name] = str(getattr(exc, "orig", exc)).strip().splitlines()[0][:300]
    version = _exec(conn, "SELECT version()").scalar()
    return schema_name, bool(has_ledger), ledger_rows, live, databases, view_sql, unselectable, version


def plan_adoption(url: str | None = None, *, script_location: str | None = None,
                  cache_dir: str | os.PathLike | None = None) -> AdoptionPlan:
    """Match the live database to a revision and plan the repairs; changes nothing.

    Raises AlreadyManaged for a database with a ledger.  A database that
    matches no revision gives a plan with ``revision`` None (or refusals)
    that says why.
    """
    from app.engine import connect
    from app.verify import compare_schema

    url = resolve_url(url)
    # The replay opens a scratch embedded database: done before the live
    # connection is opened (one embedded path per process at a time).
    chain = revision_states(script_location, cache_dir)
    states = chain.states
    with connect(url) as conn:
        schema_name, has_ledger, rows, live, databases, view_sql, unselectable, version = _read_live(conn)
        if has_ledger and rows:
            heads = ledger.current_heads(rows)
            raise AlreadyManaged(
                f"{schema_name}.{ledger.LEDGER_TABLE} exists: this database is already managed by "
                f"zakaz-schema (at {', '.join(heads) or 'base'}); use `zakaz-schema status`, "
                "`upgrade` and `verify` instead of adopt"
            )

        plan = AdoptionPlan(
            url=mask_url(url), server_version=version, chain_checksum=chain.checksum,
            head=states[-1].revision, revision=None, objects=len(live), blocked_at={},
            differences=[], ahead=[], operations=[], unmanaged=[], refusals=[],
        )
        if has_ledger:
            plan.notes.append("an empty ledger exists (an adoption interrupted before its stamp); it is reused")
        known = [n for n in live if _first_index(states, n) is not None]
        if not known:
            plan.refusals.append(
                "the warehouse databases hold no object of any revision: nothing to adopt; "
                "a new database is built with `zakaz-schema upgrade`"
                + (f" (found only unmanaged objects: {', '.join(sorted(live))})" if live else "")
            )
            plan.unmanaged = [f"{n} ({o.kind.replace('_', ' ')})" for n, o in sorted(live.items())]
            return plan

        blocked = {i: blocking_differences(live, states, i) for i in range(len(states))}
        contained = [i for i, found in blocked.items() if not found]
        r = max(contained) if contained else None
        # Why not the next revision (later ones differ at least as much).
        for i in ([r + 1] if r is not None and r + 1 < len(states) else []):
            plan.blocked_at[states[i].revision] = blocked[i][:8] + (
                [f"... and {len(blocked[i]) - 8} more"] if len(blocked[i]) > 8 else [])
        if r is None:
            plan.refusals.append("the database does not fully contain the schema of any revision")
            return plan

        # Tables exist in order of the revisions that create them: one missing
        # below the newest revision the database holds tables of was dropped
        # (or never created), and its rows cannot be accounted for.
        newest = max(_first_index(states, n) for n in known if live[n].kind != VIEW) \
            if any(live[n].kind != VIEW for n in known) else r
        missing = sorted(n for n, o in states[newest].schema.items() if o.kind != VIEW and n not in live)
        if newest > r and missing:
            created_by = {n: states[_first_index(states, n)].revision for n in missing}
            holders = sorted({states[_first_index(states, n)].revision for n in known
                              if live[n].kind != VIEW and _first_index(states, n) > r})
            plan.refusals.append(
                "the database matches no revision: "
                + ", ".join(f"{n} (created by {created_by[n]})" for n in missing)
                + f" missing, while it holds tables created by revisions {', '.join(holders)}; "
                "restore the missing table(s) from a backup (or create them as that revision defines them), "
                "then adopt again"
            )
            plan.revision = None
            return plan

        plan.revision = states[r].revision
        plan.pending = [s.revision for s in states[r + 1:]]
        plan.differences = _annotate(compare_schema(live, states[r].schema, MANAGED_DATABASES), live, states, r)
        planner = _Planner(live, states, r, view_sql, unselectable)
        planner.plan()
        for database in states[r].databases:
            if database not in databases:
                planner.ops.append(Operation("create_database", database, f"revision {plan.revision} has it",
                                             [f"CREATE DATABASE IF NOT EXISTS {database}"]))
        planner.ops.sort(key=lambda op: _OP_ORDER.index(op.kind))
        for op in planner.ops:
            if op.risk_sql:
                try:
                    op.rows_at_risk = int(_exec(conn, op.risk_sql).scalar() or 0)
                except Exception:
                    # Cannot tell what it would lose: assume every row.
                    table = op.target if op.target.count(".") == 1 else op.target.rsplit(".", 1)[0]
                    op.rows_at_risk = int(_exec(conn, f"SELECT count() FROM {table}").scalar() or 0)
        plan.operations = planner.ops
        plan.refusals = planner.refusals
        plan.ahead = planner.ahead
        plan.unmanaged = planner.unmanaged
        plan.notes += planner.notes
        return plan


# --- content check -------------------------------------------------------------------------

def _content_queries(live: Schema, skip: set[str], cutoff: str) -> dict[str, str]:
    """One fingerprint query per base table: row count and a checksum over its stored columns.

    FINAL for collapsing engines: a background merge during adoption may
    collapse duplicates, which changes no row a reader sees.  Rows that a TTL
    may delete before ``cutoff`` are left out for the same reason.
    """
    queries = {}
    for name, obj in sorted(live.items()):
        if obj.kind != TABLE or name in skip:
            continue
        columns = [c.name for c in obj.columns if not c.default.startswith(("ALIAS", "EPHEMERAL"))
                   and f"{name}.{c.name}" not in skip]
        args = ", ".join(f"ifNull(toString(`{c}`), '<NULL>')" for c in columns)
        checksum = f"toString(sum(cityHash64({args})))" if columns else "'0'"
        final = " FINAL" if any(part in obj.engine for part in COLLAPSING) else ""
        where = f" WHERE NOT (({obj.ttl}) <= toDateTime('{cutoff}'))" if obj.ttl else ""
        queries[name] = f"SELECT {quote_literal(name)}, count(), {checksum} FROM {_quoted(name)}{final}{where}"
    return queries


def _run_content(conn, queries: dict[str, str]) -> dict[str, tuple[int, str] | str]:
    out: dict[str, tuple[int, str] | str] = {}
    if not queries:
        return out
    try:
        # One query for all tables; table by table only when one is unreadable.
        for name, count, checksum in _exec(conn, "\nUNION ALL\n".join(queries.values())).all():
            out[name] = (int(count), str(checksum))
        return out
    except Exception:
        pass
    for name, sql in queries.items():
        try:
            _, count, checksum = _exec(conn, sql).one()
            out[name] = (int(count), str(checksum))
        except Exception as exc:
            out[name] = "unreadable: " + str(getattr(exc, "orig", exc)).strip().splitlines()[0][:200]
    return out


# --- apply -----------------------------------------------------------------------------------

def _run_operation(conn, op: Operation, reporter: Callable[[dict], None] | None) -> None:
    for i, sql in enumerate(op.statements):
        _exec(conn, sql)
        if op.count_check and i == op.count_check_after:
            original, copy = op.count_check
            old = _exec(conn, f"SELECT count() FROM {original}").scalar()
            new = _exec(conn, f"SELECT count() FROM {copy}").scalar()
            if old != new:
                raise AdoptionRefused(
                    f"rebuild of {original} copied {new} of {old} rows; {original} is untouched and "
                    f"{copy} holds the partial copy; nothing is stamped: find the cause and adopt again"
                )
    if reporter:
        reporter({"kind": "operation", "operation": op.kind, "target": op.target, "statements": len(op.statements)})


def apply_adoption(url: str | None, plan: AdoptionPlan, *, allow_data_loss: bool = False,
                   script_location: str | None = None, cache_dir: str | os.PathLike | None = None,
                   reporter: Callable[[dict], None] | None = None) -> AdoptionResult:
    """Repair, stamp the matched revision as adopted, upgrade to head, verify, check every row.

    ``plan`` is the plan the operator saw: the database is planned again and
    must give the same one.  Raises NoMatchingRevision, DataLossRefused or
    PlanChanged before changing anything.
    """
    from alembic import command as alembic_command

    from app import commands
    from app.engine import connect
    from app.runtime import file_checksum
    from app.schema import snapshot_schema

    url = resolve_url(url)
    fresh = plan_adoption(url, script_location=script_location, cache_dir=cache_dir)
    if fresh.signature() != plan.signature():
        raise PlanChanged("the database changed since the plan was made; review the new plan "
                          "(`zakaz-schema adopt`) and apply that one")
    if not fresh.adoptable:
        raise NoMatchingRevision(explain_refusal(fresh))
    lossy = fresh.lossy_operations
    if lossy and not allow_data_loss:
        raise DataLossRefused(
            "the repair plan would lose data: "
            + "; ".join(f"{op.kind} {op.target} ({op.rows_at_risk} rows)" for op in lossy)
            + "; back it up, then re-run with --allow-data-loss"
        )
    lost = {item for op in fresh.operations if op.loses for item in op.loses}
    cutoff = (dt.datetime.now() + dt.timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S")
    script = commands.script_directory(commands.alembic_config(url, script_location=script_location))
    revision = script.get_revision(fresh.revision)

    with connect(url) as conn:
        schema_name = conn.dialect.default_schema_name or "default"
        before_schema = {n: o for n, o in snapshot_schema(conn, MANAGED_DATABASES).items() if not _ignored(n)}
        queries = _content_queries(before_schema, lost, cutoff)
        before = _run_content(conn, queries)

        def repair_and_stamp() -> None:
            for op in fresh.operations:
                _run_operation(conn, op, reporter)
            for sql in ledger.ledger_ddl(schema_name):
                _exec(conn, sql)
            statements = sum(len(op.statements) for op in fresh.operations)
            row = ledger.Row(
                str(uuid.uuid4()), fresh.revision, "adopt", "stamped", [fresh.revision],
                f"adopted: the database built by the old SQL files fully contains revision {fresh.revision}; "
                f"{len(fresh.operations)} repair operation(s), {statements} statement(s)",
                statements=statements, checksum=file_checksum(revision.path),
            )
            ledger.write(conn, schema_name, row)
            if reporter:
                reporter({"kind": "stamp", "revision": fresh.revision})

        if conn.dialect.driver == "chdb":
            repair_and_stamp()  # chDB's directory lock keeps other processes out
        else:
            from app.lock import deploy_lock

            with deploy_lock(conn, schema_name):
                repair_and_stamp()

    steps: list[dict] = []

    def collect(event: dict) -> None:
        steps.append(event)
        if reporter:
            reporter({"kind": "step", **event})

    cfg = commands.alembic_config(url, script_location=script_location, reporter=collect)
    alembic_command.upgrade(cfg, "head")
    verified = commands.verify(url)

    with connect(url) as conn:
        after = _run_content(conn, queries)
    changes = []
    for name, was in before.items():
        now = after.get(name)
        if isinstance(was, str):
            changes.append(f"{name}: could not be read before adoption ({was})")
        elif now != was:
            changes.append(f"{name}: {was[0]} rows, checksum {was[1]} before; "
                           + (f"{now[0]} rows, checksum {now[1]} after" if isinstance(now, tuple) else str(now)))
    return AdoptionResult(fresh, steps, verified["findings"], changes, len(before))


def explain_refusal(plan: AdoptionPlan) -> str:
    """One paragraph: why ``plan`` cannot be adopted."""
    if plan.adoptable:
        return ""
    parts = list(plan.refusals)
    if plan.revision is None and plan.blocked_at and not parts:
        parts.append("the database does not fully contain the schema of any revision")
    return "; ".join(parts) + "; nothing was changed"
