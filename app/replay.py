"""Replaying the chain into disposable embedded databases, and what that yields per revision.

Several tools need the chain's effect without touching a real database: the
drill and lint run it step by step in a scratch database, adopt matches a live
schema against the schema at every revision, smoke and bench need a database
at head, tests need databases at a given revision.  All of them start here:

* ``scratch_database()``: an embedded database in a temporary folder,
  removed afterwards;
* ``upgrade_to()``: migrate a connection to any revision;
* ``revision_states()``: the ``Snapshot``-derived state after every revision,
  replayed once and cached on disk by the chain's checksum;
* ``template_database()`` / ``copy_template()``: an on-disk database at a
  revision, built once per chain checksum, copied by callers that need a
  database there without replaying the chain.

Always embedded, whatever the caller's real database is: the chain's result is
the same on every engine (snapshots are normalised).  chDB holds one path per
process: a replay needs the caller to hold no other embedded database open.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from alembic import command as alembic_command

from app.atomic_file import write_atomically
from app.warehouse import MANAGED_DATABASES
from app.chain import alembic_config, script_directory
from app.config import PROJECT_ROOT
from app.engine import connect
from app.errors import UsageError
from app.schema import Column, DbObject, Schema
from app.snapshot import take_snapshot

# Bump when the cached form of a revision state changes.
CACHE_FORMAT = "adopt-states-3"  # 2: objects carry `security`; 3: codec, comment, primary_key, queries
# Files whose content decides what a replay produces, besides the revisions.
REPLAY_INPUTS = ("app/operations", "app/impl.py", "app/schema.py", "app/snapshot.py")


class ChainNotLinear(UsageError):
    """The chain has several heads or a merge: a replay walks one line."""


SCRATCH_FREE_BYTES = 1 << 30  # memory-backed scratch only with this much room


def scratch_root() -> str | None:
    """Where scratch databases go: $ZAKAZ_SCRATCH_DIR, else /dev/shm when it is a
    memory-backed folder with room, else the temp folder (None).

    A scratch database is thrown away afterwards: writing it to disk buys
    nothing, and every part a drill or lint writes (ledger rows, sample
    rows) waits for the disk on a busy host (a drill measured 2.7-5.0 s on
    one machine as its disk was shared).
    """
    given = os.environ.get("ZAKAZ_SCRATCH_DIR")
    if given:
        return given
    try:
        st = os.statvfs("/dev/shm")
        if os.access("/dev/shm", os.W_OK) and st.f_bavail * st.f_frsize >= SCRATCH_FREE_BYTES:
            return "/dev/shm"
    except OSError:
        pass
    return None


@contextmanager
def scratch_folder(prefix: str = "zakaz-scratch-") -> Iterator[Path]:
    """A new temporary folder, removed afterwards (embedded databases are a few MB each)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=scratch_root()))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def scratch_database(prefix: str = "zakaz-scratch-", database: str = "default") -> Iterator[str]:
    """The URL of an embedded database in a new temporary folder, removed afterwards."""
    with scratch_folder(prefix) as folder:
        yield embedded_url(folder / "db", database)


@contextmanager
def given_or_scratch(url: str | None, prefix: str = "zakaz-scratch-") -> Iterator[tuple[str, bool]]:
    """``(url, False)``, or with no ``url`` a scratch database's ``(url, True)``, removed afterwards."""
    if url is not None:
        yield url, False
        return
    with scratch_database(prefix) as scratch:
        yield scratch, True


def embedded_url(path: str | os.PathLike, database: str = "default") -> str:
    return f"clickhouse+chdb:///{database}?path={path}"


def upgrade_to(conn, url: str, revision: str, *, script_location: str | None = None, **attributes) -> None:
    """Migrate the database ``conn`` is connected to (at ``url``) up to ``revision`` in one alembic run."""
    cfg = alembic_config(url, script_location=script_location, connection=conn, **attributes)
    alembic_command.upgrade(cfg, revision)


# --- the chain ------------------------------------------------------------------------

def linear_chain(script) -> list:
    """The chain's revisions, base first; ChainNotLinear unless it is one line."""
    heads = script.get_heads()
    if len(heads) != 1:
        raise ChainNotLinear(
            f"the chain has {len(heads)} heads ({', '.join(heads)}); merge the heads first")
    chain = list(reversed(list(script.walk_revisions("base", "heads"))))
    for rev in chain:
        if len(rev._normalized_down_revisions) > 1:
            raise ChainNotLinear(f"revision {rev.revision} merges branches; the replay needs a linear chain")
    return chain


def _input_files() -> list[Path]:
    files = []
    for name in REPLAY_INPUTS:
        path = PROJECT_ROOT / name
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.exists() else []
    return files


def chain_checksum(chain) -> str:
    """sha256 over every revision file (and what renders and reads their DDL), in chain order."""
    digest = hashlib.sha256(f"{CACHE_FORMAT}\n".encode())
    for rev in chain:
        digest.update(f"{rev.revision}\n".encode())
        digest.update(Path(rev.path).read_bytes())
    for path in _input_files():
        digest.update(path.read_bytes())
    return digest.hexdigest()


def cache_dirs(cache_dir: str | os.PathLike | None = None) -> list[Path]:
    """Where cached replays live: the project's var/cache, else the temp folder."""
    if cache_dir is not None:
        return [Path(cache_dir)]
    return [PROJECT_ROOT / "var" / "cache", Path(tempfile.gettempdir()) / "zakaz-schema"]


# --- the state after every revision -----------------------------------------------------

@dataclass
class RevisionState:
    """The warehouse right after one revision of a clean install."""

    revision: str
    databases: list[str]
    schema: Schema
    # Tables and materialized views: their CREATE statement; views: their SELECT.
    ddl: dict[str, str]
    # Views and materialized views: their SELECT (``Snapshot.queries``), which
    # is what the planner compares; a materialized view's CREATE would not be.
    queries: dict[str, str] = field(default_factory=dict)


@dataclass
class ChainStates:
    checksum: str
    states: list[RevisionState]  # base to head

    @property
    def revisions(self) -> list[str]:
        return [s.revision for s in self.states]

    def index(self, revision: str) -> int:
        return self.revisions.index(revision)


def capture_state(conn, revision: str) -> RevisionState:
    snap = take_snapshot(conn, MANAGED_DATABASES)
    ddl = {name: snap.queries[name] if obj.kind == "view" else snap.creates[name]
           for name, obj in snap.schema.items()}
    return RevisionState(revision, sorted(snap.databases), snap.schema, ddl, dict(snap.queries))


def _replay_states(chain, script_location: str | None) -> list[RevisionState]:
    states: list[RevisionState] = []
    with scratch_database("zakaz-replay-", "zakaz_replay_scratch") as url, connect(url) as conn:
        def capture(event) -> None:
            states.append(capture_state(conn, event.revision))

        upgrade_to(conn, url, "head", script_location=script_location, reporter=capture)
    expected = [r.revision for r in chain]
    if [s.revision for s in states] != expected:
        raise ChainNotLinear(
            f"replaying the chain gave states for {[s.revision for s in states]}, expected {expected}")
    return states


def revision_states(script_location: str | None = None,
                    cache_dir: str | os.PathLike | None = None, *, cached_only: bool = False) -> ChainStates | None:
    """The schema at every revision of the chain, from the cache or a fresh replay.

    ``cached_only``: None instead of a replay when the cache has none.
    """
    chain = linear_chain(script_directory(alembic_config(None, script_location=script_location)))
    checksum = chain_checksum(chain)
    file_name = f"adopt-{checksum}.json"
    for folder in cache_dirs(cache_dir):
        try:
            data = json.loads((folder / file_name).read_text(encoding="utf-8"))
            if data.get("format") == CACHE_FORMAT and data.get("checksum") == checksum:
                return _states_from_json(data)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    if cached_only:
        return None
    states = ChainStates(checksum, _replay_states(chain, script_location))
    _write_cache(cache_dir, file_name, json.dumps(_states_to_json(states), ensure_ascii=False, sort_keys=True))
    return states


def _write_cache(cache_dir, file_name: str, payload: str) -> None:
    for folder in cache_dirs(cache_dir):
        try:
            write_atomically(folder / file_name, payload)
            return
        except OSError:
            continue


def _object_to_json(obj: DbObject) -> dict:
    return {
        "kind": obj.kind, "engine": obj.engine, "order_by": obj.order_by,
        "partition_by": obj.partition_by, "primary_key": obj.primary_key, "ttl": obj.ttl,
        "security": obj.security,
        "columns": [[c.name, c.type, c.default, c.codec, c.comment] for c in obj.columns],
    }


def _object_from_json(name: str, data: dict) -> DbObject:
    return DbObject(
        name=name, kind=data["kind"], engine=data["engine"], order_by=data["order_by"],
        partition_by=data["partition_by"], primary_key=data["primary_key"], ttl=data["ttl"],
        security=data["security"],
        columns=tuple(Column(*c) for c in data["columns"]),
    )


def _states_to_json(states: ChainStates) -> dict:
    return {
        "format": CACHE_FORMAT,
        "checksum": states.checksum,
        "states": [
            {"revision": s.revision, "databases": s.databases, "ddl": s.ddl, "queries": s.queries,
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
                queries=dict(s["queries"]),
                schema={n: _object_from_json(n, o) for n, o in s["objects"].items()},
            )
            for s in data["states"]
        ],
    )


# --- template databases ---------------------------------------------------------------------

def template_database(revision: str, *, script_location: str | None = None,
                      cache_dir: str | os.PathLike | None = None) -> Path:
    """A chDB folder (database ``default``) migrated to ``revision``, built once per chain checksum.

    Built from a copy of the nearest template below it, when there is one,
    in its own chDB session, closed before it is returned: a copy of a closed
    folder is a consistent database.  Callers copy it (``copy_template``) and
    never open the template itself.
    """
    chain = linear_chain(script_directory(alembic_config(None, script_location=script_location)))
    ids = [r.revision for r in chain]
    if revision not in ids:
        raise UsageError(f"no revision {revision!r} on the chain")
    prefix = f"template-{chain_checksum(chain)[:16]}-"

    def built(rev: str) -> Path | None:
        return next((f / f"{prefix}{rev}" / "db" for f in cache_dirs(cache_dir)
                     if (f / f"{prefix}{rev}" / "db").is_dir()), None)

    found = built(revision)
    if found is not None:
        return found
    below = next((p for p in map(built, reversed(ids[:ids.index(revision)])) if p is not None), None)
    for folder in cache_dirs(cache_dir):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            building = Path(tempfile.mkdtemp(dir=folder, prefix=".template-"))
        except OSError:
            continue
        if below is not None:
            shutil.copytree(below, building / "db", symlinks=True)
        url = embedded_url(building / "db")
        with connect(url) as conn:
            upgrade_to(conn, url, revision, script_location=script_location)
        done = folder / f"{prefix}{revision}"
        try:
            os.rename(building, done)  # atomic: a concurrent builder's copy wins, ours goes
        except OSError:
            shutil.rmtree(building, ignore_errors=True)
        return done / "db"
    raise OSError("no writable cache folder for template databases")


def copy_template(revision: str, dest: str | os.PathLike, **options) -> str:
    """Copy the template at ``revision`` to the folder ``dest`` (must not exist); its URL."""
    shutil.copytree(template_database(revision, **options), dest, symlinks=True)
    return embedded_url(dest)
