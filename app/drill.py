"""Rollback drills: prove that every revision can be undone, with or without data.

For each revision in order: snapshot the schema, upgrade one step, check the
result, downgrade one step (the snapshot must equal the one before), and
upgrade again (the snapshot must equal the first upgrade's).  With data,
sample rows (``app.sample_data``) are loaded before the first step and into
every table a step leaves empty, and each table's row count and content
checksum must survive the round trip:

* before the step vs after the downgrade: the restored state is the old one;
* after the upgrade vs after the upgrade again, where the revision keeps data;
* whatever the downgrade drops (a table, a materialized view's storage, a
  column) must be declared in the revision's ``DOWNGRADE_LOSES``: declared
  losses are reported as such, undeclared ones fail the drill.  The check is
  structural, so it runs without data too: the runtime's data-loss guard sees
  only declared losses and what the drop operations announce, not a DROP
  written with ``run()``.

Columns and tables a revision declares lost are left out of the checksums
(0008's downgrade keeps the rows but not their ``_loaded_at``).  Content that
legitimately changes on an upgrade (a materialized view's storage, a backfill
into a new table) is never compared with the state before the step.

The schema snapshot is ``app.schema.snapshot_schema`` (what ``verify``
compares) plus, for the drill only, each object's definition as the server
prints it: a view whose output columns are unchanged but that reads another
table (0009 repoints views) is caught by its query, and codecs, settings or
indices a snapshot does not model by the table's CREATE statement.
"""
from __future__ import annotations

import datetime as dt
import re
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

from app.canonical import MANAGED_DATABASES
from app.ledger import LEDGER_TABLE, VERSION_VIEW
from app.schema import MATERIALIZED_VIEW, TABLE, VIEW, Schema, snapshot_schema, without_sql_security
from app.verify import Finding, compare_schema

# Columns that cannot be read back as stored values.
_UNREADABLE_DEFAULTS = ("ALIAS", "EPHEMERAL")
# Defaults that differ from one read to the next.
_VOLATILE = re.compile(r"\b(now|now64|today|yesterday|rand\w*|generateUUID\w*|randomString\w*)\s*\(", re.I)


class DrillError(Exception):
    """The drill cannot start (bad range, a database past the start, a branched chain)."""


# --- results ---------------------------------------------------------------------

@dataclass
class RevisionResult:
    revision: str
    message: str
    up_ms: int = 0
    down_ms: int = 0
    reup_ms: int = 0
    # None: not reached (an earlier part of the step failed).
    schema_restored: bool | None = None
    # None: a drill without data, or not reached.
    rows_kept: bool | None = None
    # What the downgrade dropped that the revision declares, e.g.
    # "zakaz.fact_qtickets_sales._loaded_at (20 rows)".
    declared_losses: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


@dataclass
class DrillReport:
    url: str  # masked; "scratch" for the temporary embedded database
    scratch: bool
    with_data: bool
    rows_per_table: int
    seed: int
    start: str  # where the database was before the first drilled revision
    end: str
    results: list[RevisionResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def failures(self) -> list[str]:
        """Every failure as ``"REV: what differs"``, in drill order."""
        return [f"{r.revision}: {f}" for r in self.results for f in r.failures]

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok, "failures": self.failures,
                "results": [{**asdict(r), "ok": r.ok} for r in self.results]}


# --- snapshots ---------------------------------------------------------------------

@dataclass
class Snapshot:
    schema: Schema
    databases: frozenset[str]
    # Per object: the view's query (formatted by the server) or the
    # table's / materialized view's CREATE statement.
    definitions: dict[str, str]


@dataclass
class Data:
    """Row counts and checksums of base tables, and row counts of materialized views."""

    prints: dict[str, tuple[int, str]]
    columns: dict[str, list[str]]  # the columns each checksum covers
    view_rows: dict[str, int]
    # "db.table.column" not stored in every part: read from its DEFAULT.
    unstored: dict[str, str] = field(default_factory=dict)  # -> the DEFAULT expression

    def rows(self, name: str) -> int:
        if name in self.prints:
            return self.prints[name][0]
        return self.view_rows.get(name, 0)


def _in_list(names) -> str:
    from app.sql import quote_literal

    return ", ".join(quote_literal(n) for n in names)


def take_snapshot(conn) -> Snapshot:
    """Schema, databases and definitions of the managed databases: four queries."""
    schema = {name: obj for name, obj in snapshot_schema(conn, MANAGED_DATABASES).items()
              if name.split(".", 1)[1] not in (LEDGER_TABLE, VERSION_VIEW)}
    dbs = _in_list(MANAGED_DATABASES)
    databases = frozenset(r[0] for r in conn.exec_driver_sql(
        f"SELECT name FROM system.databases WHERE name IN ({dbs})").all())
    # formatQuery makes the view's text independent of how it was written;
    # the OrNull form keeps one odd definition from failing the snapshot.
    rows = conn.exec_driver_sql(f"""
        SELECT database || '.' || name, engine,
               if(engine = 'View', coalesce(formatQueryOrNull(as_select), as_select), create_table_query)
        FROM system.tables
        WHERE database IN ({dbs}) AND NOT startsWith(name, '.inner')
    """).all()
    # How a view runs is compared as the schema's `security`, where a view
    # created without the clause equals one ALTERed back to the default.
    definitions = {name: without_sql_security(text) for name, _, text in rows if name in schema}
    return Snapshot(schema, databases, definitions)


def _readable_columns(obj) -> list[str]:
    return [c.name for c in obj.columns if c.default.split(" ", 1)[0] not in _UNREADABLE_DEFAULTS]


def _base_tables(snap: Snapshot) -> list[str]:
    return [name for name, obj in snap.schema.items() if obj.kind == TABLE]


def take_data(conn, snap: Snapshot, columns: dict[str, list[str]] | None = None) -> Data:
    """Fingerprints of the snapshot's base tables over ``columns`` (default: all readable ones).

    Columns a table no longer has are left out, so a checksum can be taken
    after a step over the columns of before; ``Data.columns`` says which were
    used, and checksums are compared only where those agree.
    """
    from app.sample_data import fingerprints

    unstored = unstored_columns(conn, snap)
    used: dict[str, list[str]] = {}
    for name in _base_tables(snap):
        have = [c for c in _readable_columns(snap.schema[name]) if f"{name}.{c}" not in unstored]
        wanted = columns.get(name, have) if columns is not None else have
        used[name] = [c for c in wanted if c in have]
    prints = fingerprints(conn, used) if used else {}
    view_rows = {}
    for name, obj in snap.schema.items():
        if obj.kind == MATERIALIZED_VIEW and obj.engine:  # has storage of its own
            view_rows[name] = int(conn.exec_driver_sql(f"SELECT count() FROM {name}").scalar())
    return Data({n: p for n, p in prints.items() if n in used}, used, view_rows, unstored)


def unstored_columns(conn, snap: Snapshot) -> dict[str, str]:
    """Columns missing from some data part: ``{"db.table.column": DEFAULT expression}``.

    ADD COLUMN writes nothing: rows already in the table read the column's
    DEFAULT, evaluated at every read, until a merge or MATERIALIZE COLUMN
    stores it.  Such values are not data a step keeps or loses (and with
    ``now()`` they change every second), so checksums leave them out.
    """
    dbs = _in_list(MANAGED_DATABASES)
    parts = dict(conn.exec_driver_sql(
        "SELECT database || '.' || table, count() FROM system.parts "
        f"WHERE active AND database IN ({dbs}) GROUP BY database, table").all())
    if not parts:
        return {}
    stored = {(t, c): n for t, c, n in conn.exec_driver_sql(
        "SELECT database || '.' || table, column, count() FROM system.parts_columns "
        f"WHERE active AND database IN ({dbs}) GROUP BY database, table, column").all()}
    out = {}
    for name in _base_tables(snap):
        if not parts.get(name):
            continue
        for col in snap.schema[name].columns:
            if col.default.split(" ", 1)[0] in _UNREADABLE_DEFAULTS:
                continue
            if stored.get((name, col.name), 0) < parts[name]:
                out[f"{name}.{col.name}"] = col.default
    return out



def fill_empty_tables(conn, snap: Snapshot, rows_per_table: int, seed: int, today: dt.date) -> dict[str, int]:
    """Load sample rows into every base table that has none.

    Only empty tables: a table a step backfilled already holds realistic rows
    (derived from the sample), and a second load would repeat its keys, which
    a ReplacingMergeTree collapses whenever it merges: counts would then
    depend on timing.
    """
    from app.sample_data import load_sample

    tables = _base_tables(snap)
    if not tables:
        return {}
    counts = dict(conn.exec_driver_sql(
        "SELECT database || '.' || name, total_rows FROM system.tables "
        f"WHERE database IN ({_in_list(MANAGED_DATABASES)})").all())
    empty = []
    for name in tables:
        n = counts.get(name)
        if n is None:  # engines without a cheap row count
            n = conn.exec_driver_sql(f"SELECT count() FROM {name}").scalar()
        if not n:
            empty.append(name)
    if not empty:
        return {}
    return load_sample(conn, rows_per_table=rows_per_table, seed=seed, tables=empty, today=today)


# --- comparing -----------------------------------------------------------------------

def _describe(f: Finding, after: str) -> str:
    """A schema finding in drill terms: ``after`` is the state compared with the earlier one."""
    if f.kind == "missing_object":
        return f"{f.expected.replace('_', ' ')} {f.object} is missing {after}"
    if f.kind == "unmanaged_object":
        return f"{f.actual.replace('_', ' ')} {f.object} is left over {after}"
    if f.kind == "missing_column":
        return f"column {f.target} is missing {after}"
    if f.kind == "unmanaged_column":
        return f"column {f.target}" + (f" ({f.actual})" if f.actual else "") + f" is left over {after}"
    label = {"order_by": "ORDER BY", "partition_by": "PARTITION BY", "ttl": "TTL",
             "default": "DEFAULT", "column_order": "column order"}.get(f.kind, f.kind)
    return f"{label} of {f.target} is {f.actual or '(none)'} {after}, was {f.expected or '(none)'}"


def _view_reads(query: str) -> list[str]:
    """Tables a view's query names after FROM / JOIN (for messages; CTE names have no database)."""
    names = re.findall(r"\b(?:FROM|JOIN)\s+(`?\w+`?\.`?\w+`?)", query, flags=re.I)
    return sorted({n.replace("`", "") for n in names})


def _first_difference(a: str, b: str, width: int = 40) -> str:
    i = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    start = max(i - 10, 0)
    return f"{b[start:i + width]!r}, was {a[start:i + width]!r}"


def schema_differences(before: Snapshot, after: Snapshot, after_label: str) -> list[str]:
    """What differs between two snapshots of one database, first difference first."""
    out = []
    for db in sorted(before.databases - after.databases):
        out.append(f"database {db} is missing {after_label}")
    for db in sorted(after.databases - before.databases):
        out.append(f"database {db} is left over {after_label}")
    findings = compare_schema(after.schema, before.schema, managed_databases=MANAGED_DATABASES)
    out += [_describe(f, after_label) for f in findings]
    named = {f.object for f in findings}
    for name in sorted(set(before.definitions) & set(after.definitions) - named):
        old, new = before.definitions[name], after.definitions[name]
        if old == new:
            continue
        obj = after.schema[name]
        if obj.kind == VIEW and _view_reads(old) != _view_reads(new):
            out.append(f"view {name} reads {', '.join(_view_reads(new)) or 'no table'} {after_label}, "
                       f"was {', '.join(_view_reads(old)) or 'no table'}")
        else:
            kind = obj.kind.replace("_", " ")
            out.append(f"definition of {kind} {name} differs {after_label}: {_first_difference(old, new)}")
    return out


def _covered(declared: set[str], table: str, column: str | None = None) -> bool:
    return table in declared or (column is not None and f"{table}.{column}" in declared)


def dropped_data(before: Snapshot, after: Snapshot) -> list[tuple[str, str, str]]:
    """Tables, materialized views' storage and columns present before and gone after.

    ``(name, table, column)`` with ``column`` '' for a whole object; views
    without storage hold no data and are not listed.
    """
    out = []
    for name, obj in before.schema.items():
        if obj.kind == VIEW or (obj.kind == MATERIALIZED_VIEW and not obj.engine):
            continue  # no storage of its own (a materialized view written TO a table)
        now = after.schema.get(name)
        if now is None or now.kind != obj.kind:
            out.append((name, name, ""))
        elif obj.kind == TABLE:
            kept = set(now.column_names)
            out += [(f"{name}.{c}", name, c) for c in _readable_columns(obj) if c not in kept]
    return out


def data_differences(before: Data, after: Data, declared: set[str], what: str) -> list[str]:
    """Tables whose rows or content differ between two states, declared losses aside."""
    out = []
    for name, (count, checksum) in sorted(before.prints.items()):
        if name in declared or name not in after.prints:
            continue  # declared, or dropped: reported by dropped_data and the schema check
        new_count, new_checksum = after.prints[name]
        if new_count != count:
            out.append(f"rows of {name} {what}: {count} -> {new_count}")
        elif before.columns[name] == after.columns[name] and new_checksum != checksum:
            out.append(f"content of {name} {what}: checksum over {len(before.columns[name])} "
                       f"column(s) {', '.join(before.columns[name])} differs")
    return out


def _columns_without(snap: Snapshot, declared: set[str]) -> dict[str, list[str]]:
    return {name: [c for c in _readable_columns(snap.schema[name]) if not _covered(declared, name, c)]
            for name in _base_tables(snap)}


# --- running -------------------------------------------------------------------------

@dataclass
class _Walk:
    revisions: list  # alembic Script objects, oldest first
    start: str | None  # revision the database must be at first; None = base


def plan(script, position: str | None, from_rev: str | None, to_rev: str | None) -> _Walk:
    """The revisions to drill, oldest first, for a database at ``position``."""
    def resolve(rev: str) -> str | None:
        if rev == "base":
            return None
        try:
            found = script.get_revision(rev)
        except Exception as exc:  # alembic's ResolutionError / CommandError
            raise DrillError(f"unknown revision {rev!r}: {' '.join(str(exc).split())}") from None
        if found is None:
            return None
        if isinstance(found, tuple):
            raise DrillError(f"{rev} names {len(found)} revisions; the drill walks one chain")
        return found.revision

    heads = script.get_heads()
    if to_rev in (None, "head", "heads"):
        if len(heads) != 1:
            raise DrillError(f"the chain has {len(heads)} heads ({', '.join(heads)}); pass --to REV")
        to_id = heads[0]
    else:
        to_id = resolve(to_rev)
        if to_id is None:
            raise DrillError("--to base leaves nothing to drill")
    chain = list(reversed(list(script.iterate_revisions(to_id, "base"))))
    for i, rev in enumerate(chain):
        expected = chain[i - 1].revision if i else None
        if rev._normalized_down_revisions != ((expected,) if expected else ()):
            raise DrillError(f"revision {rev.revision} is a merge or branch point; "
                             "the drill walks a linear chain: drill each branch with --from/--to")
    ids = [r.revision for r in chain]
    if position is not None and position not in ids:
        raise DrillError(f"the database is at {position}, which is not on the chain up to {to_id}")
    at = ids.index(position) + 1 if position else 0  # index of the first revision not applied
    first = at if from_rev in (None, "base") and position else 0
    if from_rev not in (None, "base"):
        first_id = resolve(from_rev)
        if first_id not in ids:
            raise DrillError(f"--from {from_rev} is not on the chain up to {to_id}")
        first = ids.index(first_id)
    if first < at:
        raise DrillError(f"the database is at {position}, past the start of the drill "
                         f"({ids[first]}); drill from a later revision or use a scratch database")
    if first >= len(ids):
        raise DrillError(f"nothing to drill: the database is already at {to_id}")
    return _Walk(chain[first:], ids[first - 1] if first else None)


def _one_line(exc: BaseException) -> str:
    from app.runtime import StepFailed

    if isinstance(exc, StepFailed):
        # Drop the operator advice (resume/repair): the drill's database is disposable.
        text = str(exc).split("; the ledger records", 1)[0]
    else:
        text = str(getattr(exc, "orig", exc)).strip() or type(exc).__name__
    return " ".join(text.split())[:500]


@contextmanager
def _database(url: str | None):
    """The drill's database: ``url``, or a scratch embedded one removed afterwards."""
    if url is not None:
        yield url, False
        return
    path = tempfile.mkdtemp(prefix="zakaz-drill-")
    try:
        yield f"clickhouse+chdb:///default?path={path}/db", True
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _heads(conn) -> list[str]:
    from app import ledger

    schema = conn.dialect.default_schema_name or "default"
    exists = conn.exec_driver_sql(
        "SELECT count() FROM system.tables WHERE database = %(d)s AND name = %(t)s",
        {"d": schema, "t": ledger.LEDGER_TABLE},
    ).scalar()
    return ledger.current_heads(ledger.read_rows(conn, schema)) if exists else []


def run_drill(url: str | None = None, from_rev: str | None = None, to_rev: str | None = None,
              with_data: bool = False, script_location: str | None = None,
              rows_per_table: int = 20, seed: int = 0, *, today: dt.date | None = None,
              progress=None) -> DrillReport:
    """Drill every revision from ``from_rev`` (default: the first not applied) to ``to_rev`` (default: head).

    ``url=None`` drills a scratch embedded database, removed afterwards; a
    given ``url`` is migrated for real (the CLI asks for --yes), and with
    data, sample rows are written into its empty tables.  ``progress``
    receives each RevisionResult as it finishes.
    """
    from app import commands
    from app.config import mask_url
    from app.engine import connect

    today = today or dt.date.today()
    t0 = time.perf_counter()
    with _database(url) as (db_url, scratch), connect(db_url) as conn:
        cfg = commands.alembic_config(db_url, script_location=script_location)
        script = commands.script_directory(cfg)
        heads = _heads(conn)
        if len(heads) > 1:
            raise DrillError(f"the database has {len(heads)} heads ({', '.join(heads)}); the drill needs one")
        walk = plan(script, heads[0] if heads else None, from_rev, to_rev)
        migrate = dict(connection=conn, script_location=script_location)
        if walk.start and walk.start not in heads:
            commands.upgrade(db_url, walk.start, **migrate)
        report = DrillReport(
            url="scratch" if scratch else mask_url(db_url), scratch=scratch, with_data=with_data,
            rows_per_table=rows_per_table, seed=seed, start=walk.start or "base",
            end=walk.revisions[-1].revision,
        )
        snap = take_snapshot(conn)
        if with_data:
            fill_empty_tables(conn, snap, rows_per_table, seed, today)
        for rev in walk.revisions:
            result = RevisionResult(rev.revision, commands.short_doc(rev))
            report.results.append(result)
            snap = _drill_one(conn, db_url, rev, snap, result, migrate, with_data,
                              rows_per_table, seed, today)
            if progress:
                progress(result)
            if snap is None:  # a step raised: the database is not where the next revision starts
                break
        report.seconds = round(time.perf_counter() - t0, 3)
        return report


def _drill_one(conn, url, rev, before: Snapshot, result: RevisionResult, migrate: dict,
               with_data: bool, rows_per_table: int, seed: int, today: dt.date) -> Snapshot | None:
    """up, check, down, compare, up, compare: the snapshot after, or None if a step raised."""
    from app import commands
    from app.runtime import declared_loss

    declared = set(declared_loss(rev.module))
    down_to = rev.down_revision or "base"

    def step(direction: str, target: str) -> int | None:
        try:
            run = commands.upgrade if direction == "upgrade" else commands.downgrade
            # The drill exists to exercise downgrades: dropping sample rows is the point.
            extra = {"allow_data_loss": True} if direction == "downgrade" else {}
            events = run(url, target, **extra, **migrate)
        except Exception as exc:
            result.failures.append(f"{direction} failed: {_one_line(exc)}")
            return None
        skipped = sum(len(e["skipped"]) for e in events)
        if skipped and direction == "upgrade" and not any("access" in n for n in result.notes):
            result.notes.append(f"{skipped} access statement(s) checked, not run (embedded engine)")
        return sum(e["duration_ms"] for e in events)

    # -- up
    data_before = take_data(conn, before, _columns_without(before, declared)) if with_data else None
    ms = step("upgrade", rev.revision)
    if ms is None:
        return None
    result.up_ms = ms
    heads = _heads(conn)
    if heads != [rev.revision]:
        result.failures.append(f"after the upgrade the database is at {', '.join(heads) or 'base'}, "
                               f"not {rev.revision}")
    after_up = take_snapshot(conn)
    for name, obj in sorted(after_up.schema.items()):
        if obj.kind != TABLE:
            try:
                conn.exec_driver_sql(f"SELECT * FROM {name} LIMIT 0").all()
            except Exception as exc:
                result.failures.append(f"{obj.kind.replace('_', ' ')} {name} cannot be read "
                                       f"after the upgrade: {_one_line(exc)[:200]}")
    data_up = None
    if with_data:
        loaded = fill_empty_tables(conn, after_up, rows_per_table, seed, today)
        if loaded:
            result.notes.append(f"sample rows loaded into {len(loaded)} new table(s)")
        data_up = take_data(conn, after_up, _columns_without(after_up, declared))
        for col, default in sorted(data_up.unstored.items()):
            if col not in data_before.unstored and _VOLATILE.search(default):
                result.notes.append(
                    f"warning: {col} is not stored for the rows already there: each read "
                    f"computes DEFAULT {default} anew (MATERIALIZE COLUMN would store it)")

    # -- down
    ms = step("downgrade", down_to)
    if ms is None:
        return None
    result.down_ms = ms
    after_down = take_snapshot(conn)
    diffs = schema_differences(before, after_down, "after the downgrade")
    result.schema_restored = not diffs
    result.failures += [f"schema not restored: {d}" for d in diffs]

    rows_ok = True
    for name, table, column in dropped_data(after_up, after_down):
        rows = data_up.rows(table) if data_up else None
        held = f" ({rows} rows)" if rows is not None else ""
        if _covered(declared, table, column or None):
            if rows or rows is None:
                result.declared_losses.append(name + held)
        else:
            rows_ok = False
            result.failures.append(
                f"undeclared data loss: the downgrade drops {'column ' if column else ''}{name}{held}; "
                "declare it in DOWNGRADE_LOSES if that is intended")
    if with_data:
        data_down = take_data(conn, after_down, data_before.columns)
        lost = data_differences(data_before, data_down, declared, "changed by upgrade + downgrade")
        rows_ok = rows_ok and not lost
        result.failures += [f"{d} (before the step vs after the downgrade)" for d in lost]

    # -- up again
    ms = step("upgrade", rev.revision)
    if ms is None:
        return None
    result.reup_ms = ms
    after_reup = take_snapshot(conn)
    result.failures += [f"upgrade not repeatable: {d}"
                        for d in schema_differences(after_up, after_reup, "after upgrading again")]
    if with_data:
        data_reup = take_data(conn, after_reup, data_up.columns)
        changed = data_differences(data_up, data_reup, declared, "changed by downgrade + upgrade")
        rows_ok = rows_ok and not changed
        result.failures += [f"{d} (after the upgrade vs after upgrading again)" for d in changed]
        result.rows_kept = rows_ok
        fill_empty_tables(conn, after_reup, rows_per_table, seed, today)
    if result.declared_losses:
        result.notes.append("declared loss: " + _summarise(result.declared_losses))
    return after_reup


def _summarise(losses: list[str]) -> str:
    if len(losses) <= 2:
        return ", ".join(losses)
    rows = sum(int(m.group(1)) for m in (re.search(r"\((\d+) rows\)", x) for x in losses) if m)
    return f"{len(losses)} objects" + (f", {rows} rows" if rows else "")
