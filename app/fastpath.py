"""The fast path of ``status`` and of an ``upgrade`` with nothing to do (issue #19).

Why this is hand-written: start-up time.  The full path imports alembic and
SQLAlchemy (~0.25 s), clickhouse-sqlalchemy (~0.1 s; it brings the ORM and
``requests``), loads every revision file and sends several queries: a whole
``status`` or no-op ``upgrade`` took 0.6-0.7 s on a server where
clickhouse-migrations answers in 0.2 s.  Most runs of either command find
the database at head, and that answer needs one query and the chain's heads.

So, before any of that is imported:

* the chain's heads and revision graph come from a cache the full path
  writes (``remember``) in migrations/versions/__pycache__/ (git-ignored,
  removed with the folder it describes), valid only while every file in
  migrations/versions/ has the same name, size, mtime and SHA-256 (and
  alembic.ini the same size and mtime); the checksums also serve to compare
  each applied revision with the one its ledger row recorded;
* the ledger is read with one query (``ledger.rows_sql`` plus a few scalar
  sub-queries: the ledger's and version view's definitions, the deploy
  lock's live claims, the server version), through the native driver alone
  (``clickhouse_driver``), HTTP from the standard library, or chDB directly;
* the rows are judged by app.ledger's own functions (``current_heads``,
  ``open_problem``, ``check_structure``, ``check_order``, ...), so both paths
  read the ledger the same way.

The fast path answers only when everything is plainly fine; otherwise it
returns None and the caller runs the full path, which gives the answer
(warnings, errors and exit codes included).  It declines: a URL it does not
parse exactly as SQLAlchemy would, query parameters, cluster mode, a stale
or missing cache, no ledger or an empty one, a ledger or version view not as
zakaz-schema creates them (structure, engine, view query), a seq the ledger
cannot continue, a failed or interrupted step, heads other than the chain's
heads (something pending, or an unknown version), an applied revision file
whose SHA-256 differs from its ledger row, and (``upgrade``) a live deploy
lock claim or a missing lock table.  Any error, connection errors included,
is a decline too.  ``ZAKAZ_FAST_PATH=0`` switches it off.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

from app import canonical_verdict, ledger
from app.atomic_file import write_atomically
from app.dbapi import _locked_by_other_process, chdb_engine
from app.engine import lazy_date_lut
from app.lock import LOCK_TABLE, live_claims_sql
from app.sql import quote_literal as q
from app.config import ALEMBIC_INI, mask_url
from app.config import script_location as config_script_location

CACHE_NAME = "zakaz-schema-chain.json"
CACHE_FORMAT = 1
SERVER_DRIVERS = {"clickhouse+native": "native", "clickhouse+http": "http"}


# --- URLs ------------------------------------------------------------------------------

# SQLAlchemy's own URL pattern (sqlalchemy.engine.url._parse_url), so a URL
# means the same host, user, password and database on both paths.
_URL = re.compile(
    r"""
        (?P<name>[\w\+]+)://
        (?:
            (?P<username>[^:/]*)
            (?::(?P<password>[^@]*))?
        @)?
        (?:
            (?:
                \[(?P<ipv6host>[^/\?]+)\] |
                (?P<ipv4host>[^/:\?]+)
            )?
            (?::(?P<port>[^/\?]*))?
        )?
        (?:/(?P<database>[^\?]*))?
        (?:\?(?P<query>.*))?
    """,
    re.X,
)


@dataclass(frozen=True)
class Target:
    driver: str  # "native", "http" or "chdb", as the full path's conn.dialect.driver
    database: str
    host: str = ""
    port: int = 0
    user: str = ""
    password: str = ""
    path: str = ""  # chDB's directory


def parse(url: str) -> Target | None:
    """The URL's parts, or None when the fast path should not handle it."""
    m = _URL.fullmatch(url)
    if not m:
        return None
    name, query = m["name"], dict(parse_qsl(m["query"] or "", keep_blank_values=True))
    database = m["database"] or ""
    if name == "clickhouse+chdb":
        path = query.pop("path", None)
        if query or not path or path == ":memory:" or m["ipv4host"] or m["ipv6host"] or m["username"]:
            return None
        return Target("chdb", database or "default", path=os.path.abspath(os.path.expanduser(path)))
    driver = SERVER_DRIVERS.get(name)
    # Query parameters (TLS, timeouts, settings) are the drivers' business: the full path's.
    if driver is None or query or not database or m["ipv6host"] or not m["ipv4host"]:
        return None
    try:
        port = int(m["port"]) if m["port"] else (9000 if driver == "native" else 8123)
    except ValueError:
        return None
    return Target(driver, database, host=m["ipv4host"], port=port,
                  user=unquote(m["username"]) if m["username"] else "default",
                  password=unquote(m["password"]) if m["password"] is not None else "")


def cluster_requested(cluster: str | None = None) -> bool:
    return bool(cluster or os.environ.get("ZAKAZ_CLUSTER"))


# --- the chain's heads, cached --------------------------------------------------------------

def versions_dir() -> Path:
    return Path(config_script_location()) / "versions"


def fingerprint(directory: Path) -> list[list] | None:
    """Every file of ``directory`` (name, size, mtime, SHA-256), and alembic.ini's size and mtime.

    None when the folder has anything the cache cannot vouch for (a sub-folder
    other than __pycache__, an unreadable file)."""
    entries: list[list] = []
    try:
        with os.scandir(directory) as it:
            for entry in it:
                if entry.name == "__pycache__":
                    continue
                if not entry.is_file(follow_symlinks=True):
                    return None
                st = entry.stat()
                with open(entry.path, "rb") as fh:
                    digest = hashlib.sha256(fh.read()).hexdigest()
                entries.append([entry.name, st.st_size, st.st_mtime_ns, digest])
        ini = os.stat(ALEMBIC_INI)
    except OSError:
        return None
    entries.sort()
    entries.append(["alembic.ini", ini.st_size, ini.st_mtime_ns, ""])
    return entries


def cache_file(directory: Path) -> Path:
    return directory / "__pycache__" / CACHE_NAME


# cache file -> the fingerprint this process last wrote into it.
_remembered: dict[str, list] = {}


def remember(script) -> None:
    """Cache the heads and revision graph of an alembic ScriptDirectory the full path loaded.

    Only for the folder the fast path reads; best effort (a read-only
    checkout simply has no fast path)."""
    try:
        directory = versions_dir()
        if Path(script.versions).resolve() != directory.resolve():
            return
        prints = fingerprint(directory)
        if prints is None:
            return
        target = cache_file(directory)
        if _remembered.get(str(target)) == prints and target.exists():
            return  # written by this process for these very files (the drill runs 39 commands)
        revisions = {}
        for rev in script.walk_revisions():
            if Path(rev.path).parent.resolve() != directory.resolve():
                return
            revisions[rev.revision] = {"down": list(rev._normalized_down_revisions),
                                       "file": os.path.basename(rev.path)}
        data = {"format": CACHE_FORMAT, "versions": str(directory.resolve()), "fingerprint": prints,
                "heads": list(script.get_heads()), "revisions": revisions}
        write_atomically(target, json.dumps(data))
        _remembered[str(target)] = prints
    except Exception:  # never let the cache break the command that wrote it
        return


@dataclass
class Chain:
    heads: list[str]
    down: dict[str, list[str]]  # revision -> its down revisions
    checksums: dict[str, str]  # revision -> SHA-256 of its file now

    def applied_at(self, heads: list[str]) -> set[str] | None:
        """The revisions applied at ``heads`` (they and their ancestors); None if one is unknown."""
        seen: set[str] = set()
        todo = list(heads)
        while todo:
            rev = todo.pop()
            if rev in seen:
                continue
            if rev not in self.down:
                return None
            seen.add(rev)
            todo.extend(self.down[rev])
        return seen


def load_chain(prints: list[list] | None = None) -> Chain | None:
    """The cached chain, if the folder is as cached (``prints``: its fingerprint, if just taken)."""
    directory = versions_dir()
    try:
        data = json.loads(cache_file(directory).read_text())
    except (OSError, ValueError):
        return None
    if data.get("format") != CACHE_FORMAT or data.get("versions") != str(directory.resolve()):
        return None
    prints = prints or fingerprint(directory)
    if prints is None or prints != data.get("fingerprint"):
        return None
    sha = {name: digest for name, _, _, digest in prints}
    revisions = data["revisions"]
    if any(r["file"] not in sha for r in revisions.values()):
        return None
    return Chain(heads=list(data["heads"]),
                 down={rev: list(r["down"]) for rev, r in revisions.items()},
                 checksums={rev: sha[r["file"]] for rev, r in revisions.items()})


# --- one query ------------------------------------------------------------------------------

def state_sql(schema: str, *, lock: bool) -> str:
    """The ledger's rows, each with the few facts the judgement needs besides them."""
    names = ", ".join(q(n) for n in (ledger.LEDGER_TABLE, ledger.VERSION_VIEW, LOCK_TABLE))
    current = (f"toString(toUInt8(name != {q(ledger.VERSION_VIEW)} OR "
               f"ifNull(formatQueryOrNull(as_select) = formatQueryOrNull({q(ledger.version_select(schema))}), 0)))")
    extra = (
        f", (SELECT toJSONString(groupArray([name, engine, {current}])) FROM system.tables "
        f"WHERE database = {q(schema)} AND name IN ({names})) AS _objects"
        f", (SELECT toJSONString(mapFromArrays(groupArray(name), groupArray(type))) FROM system.columns "
        f"WHERE database = {q(schema)} AND table = {q(ledger.LEDGER_TABLE)}) AS _columns"
        f", version() AS _version"
    )
    if lock:
        extra += f", (SELECT count() FROM ({live_claims_sql(schema)})) AS _claims"
    return ledger.rows_sql(schema, extra)


class _Native:
    def __init__(self, t: Target):
        lazy_date_lut()
        # Each transport imports its driver when it is used: only one of them is.
        from clickhouse_driver import Client

        self.client = Client(t.host, port=t.port, user=t.user, password=t.password, database=t.database,
                             connect_timeout=5)

    def query(self, sql: str) -> list[dict[str, Any]]:
        rows, columns = self.client.execute(sql, with_column_types=True)
        names = [c[0] for c in columns]
        return [dict(zip(names, r)) for r in rows]

    def close(self) -> None:
        self.client.disconnect()


class _Http:
    def __init__(self, t: Target):
        # Each transport imports its driver when it is used: only one of them is.
        import base64
        import http.client

        self.conn = http.client.HTTPConnection(t.host, t.port, timeout=10)
        token = base64.b64encode(f"{t.user}:{t.password}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}", "Content-Type": "text/plain; charset=utf-8"}
        # wait_end_of_query: an error is a status, not text after a 200 (as app.engine asks too).
        self.path = f"/?database={_quote(t.database)}&wait_end_of_query=1"

    def query(self, sql: str) -> list[dict[str, Any]]:
        self.conn.request("POST", self.path, body=(sql + "\nFORMAT JSONCompact").encode(), headers=self.headers)
        response = self.conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(body[:300].decode(errors="replace"))
        return _json_rows(body)

    def close(self) -> None:
        self.conn.close()


def _quote(value: str) -> str:
    return quote(value, safe="")


class _Embedded:
    def __init__(self, t: Target):
        # A missing folder would be created, a locked one answered with
        # chDB's own noise: the full path says what is wrong instead.
        if not os.path.isdir(os.path.join(t.path, "metadata")) or _locked_by_other_process(t.path):
            raise RuntimeError("not an embedded database this process can open")
        # The engine alone, not the chdb package (numpy, pyarrow): see app.dbapi.
        engine, self.standalone = chdb_engine()
        self.conn = engine.connect(t.path)

    def query(self, sql: str) -> list[dict[str, Any]]:
        return _json_rows(self.conn.query(sql, "JSONCompact").bytes())

    def close(self) -> None:
        self.conn.close()


def _json_rows(payload: bytes) -> list[dict[str, Any]]:
    if not payload.strip():
        return []
    doc = json.loads(payload)
    names = [c["name"] for c in doc["meta"]]
    return [dict(zip(names, r)) for r in doc["data"]]


_TRANSPORTS = {"native": _Native, "http": _Http, "chdb": _Embedded}


# --- the judgement -------------------------------------------------------------------------

@dataclass
class Answer:
    """What the fast path read, when it vouches for it: the database is at the chain's heads."""

    heads: list[str]
    script_heads: list[str]
    rows: list[dict[str, Any]]
    server_version: str
    driver: str


def judge(rows: list[dict[str, Any]], chain: Chain, schema: str, *, lock: bool) -> list[str] | None:
    """The ledger's heads if the database is at the chain's heads and nothing needs the full path."""
    if not rows:
        return None
    first = rows[0]
    objects = {name: (engine, current == "1") for name, engine, current in json.loads(first["_objects"])}
    try:
        ledger.check_structure(None, schema, json.loads(first["_columns"]))
        ledger.check_mode(schema, objects[ledger.LEDGER_TABLE][0], None)
        ledger.check_order(rows, schema)
    except (ledger.LedgerError, KeyError):
        return None
    if not objects.get(ledger.VERSION_VIEW, ("", False))[1]:
        return None  # missing or altered: `upgrade` would re-create it
    if lock:
        if LOCK_TABLE not in objects or int(first["_claims"]):
            return None  # no lock table yet, or a deploy is running: it decides
    if ledger.open_problem(rows) is not None:
        return None
    heads = ledger.current_heads(rows)
    if sorted(heads) != sorted(chain.heads):
        return None  # something pending, or a version this checkout does not have
    applied = chain.applied_at(heads)
    if applied is None:
        return None
    for rev, recorded in ledger.applied_checksums(rows).items():
        if rev in applied and chain.checksums.get(rev) != recorded:
            return None  # an applied revision file changed since: the full path warns
    return heads


# Embedded connections of declined answers, open until the full path is done
# (``release``): chDB shares one engine per directory within a process, and a
# session opened after the process closed its first one is slower (see
# bench/harness.py), so the full path should join this one, not follow it.
_held: list = []


def release() -> None:
    while _held:
        try:
            _held.pop().close()
        except Exception:
            pass


def check(url: str, *, upgrade: bool, cluster: str | None = None, hold: bool = False,
          prints: list[list] | None = None) -> Answer | None:
    """The fast path's answer for ``url``, or None: run the full path.

    ``hold``: keep a declined embedded connection open until ``release()``."""
    target = parse(url)
    if target is None or cluster_requested(cluster) or os.environ.get("ZAKAZ_FAST_PATH") == "0":
        return None
    chain = load_chain(prints)
    if chain is None:
        return None
    lock = upgrade and target.driver != "chdb"  # chDB's directory lock is the embedded guard
    try:
        conn = _TRANSPORTS[target.driver](target)
    except Exception:
        return None
    answer = None
    try:
        rows = [ledger.decode_row(r) for r in conn.query(state_sql(target.database, lock=lock))]
        for r in rows:
            r["seq"] = int(r["seq"])  # JSON formats quote UInt64
        heads = judge(rows, chain, target.database, lock=lock)
        if heads is not None:
            answer = Answer(heads, chain.heads, rows, rows[0]["_version"], target.driver)
    except Exception:
        answer = None
    # A standalone engine's session must be closed before the full path imports chdb.
    if answer is None and hold and target.driver == "chdb" and not conn.standalone:
        _held.append(conn)
    else:
        try:
            conn.close()
        except Exception:
            pass
    return answer


def status(url: str, *, hold: bool = False) -> dict[str, Any] | None:
    """``commands.status(url).to_dict()`` when the fast path can vouch for it, else None."""
    directory = versions_dir()
    prints = fingerprint(directory)  # hashed once: for the verdict and the chain
    ahead = canonical_verdict.read(directory, prints)
    if ahead is None and canonical_verdict.kept(directory):
        return None  # canonical.py or the chain changed in a developer's checkout: the full status compares
    answer = check(url, upgrade=False, hold=hold, prints=prints)
    if answer is None:
        return None
    return {
        "url": mask_url(url),
        "engine": answer.driver,
        "server_version": answer.server_version,
        "heads": answer.heads,
        "script_heads": answer.script_heads,
        "pending": [],
        "problem": None,
        "skipped": ledger.skipped_statements(answer.rows),
        "changed_files": [],
        "steps": len({r["step_id"] for r in answer.rows}),
        "unmanaged_objects": 0,
        "version_problem": None,
        "resume": None,
        "canonical_ahead": ahead,
    }


def nothing_to_upgrade(url: str, cluster: str | None = None, *, hold: bool = False) -> list[str] | None:
    """The heads, when ``upgrade head`` would have nothing to do; else None."""
    answer = check(url, upgrade=True, cluster=cluster, hold=hold)
    return None if answer is None else answer.heads
