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

Sample rows go only into the scratch database, removed with them.  A given
database (``--url``) gets none: the drill cannot tell its own rows from
the ones a loader, a backfill or a materialized view adds meanwhile, so it
could neither remove them all (dashboards would read them) nor remove them
without risking rows it did not insert.  There the data checks hold the
database's own rows to the same round trips.

Columns and tables a revision declares lost are left out of the checksums
(0008's downgrade keeps the rows but not their ``_loaded_at``).  Content that
legitimately changes on an upgrade (a materialized view's storage, a backfill
into a new table) is never compared with the state before the step.

Each state is one ``app.snapshot`` snapshot (what ``verify`` compares, plus
each object's definition as the server prints it, compared by
``app.drill_checks``), and each table's fingerprint is read again only when
its data parts changed (``app.fingerprint.DataProbe``): on one connection,
this keeps the drill's own checks to a fraction of the steps' time.
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import asdict, dataclass, field

from app import commands, ledger
from app.warehouse import MANAGED_DATABASES
from app.config import mask_url
from app.drill_checks import (
    columns_without, covered, data_differences, dropped_data, schema_differences, summarise, views_to_read,
)
from app.engine import connect
from app.losses import DOWNGRADE, UPGRADE, declared as declared_loss, row_count
from app.errors import UsageError
from app.fingerprint import VOLATILE, DataProbe
from app.recorder import StepFailed
from app.replay import given_or_scratch
from app.sample_data import load_sample
from app.schema_check import unreadable_views
from app.snapshot import Snapshot, take_snapshot, with_fresh_parts
from app.sql import clickhouse_error_message


class DrillError(UsageError):
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
    # Tables that got sample rows, and what became of those rows.
    sample_tables: list[str] = field(default_factory=list)
    sample_rows: str = ""

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


def fill_empty_tables(conn, snap: Snapshot, rows_per_table: int, seed: int, today: dt.date) -> dict[str, int]:
    """Load sample rows into every base table that has none.

    Only empty tables: a table a step backfilled already holds realistic rows
    (derived from the sample), and a second load would repeat its keys, which
    a ReplacingMergeTree collapses whenever it merges: counts would then
    depend on timing.
    """
    empty = []
    for name in snap.tables():
        n = snap.total_rows.get(name)
        if n is None:  # engines without a cheap row count
            n = conn.exec_driver_sql(f"SELECT count() FROM {name}").scalar()
        if not n:
            empty.append(name)
    if not empty:
        return {}
    return load_sample(conn, rows_per_table=rows_per_table, seed=seed, tables=empty, today=today, snapshot=snap)


def _snapshot(conn, with_data: bool) -> Snapshot:
    # With data, the data parts too: the data probe reads them from the snapshot.
    return take_snapshot(conn, MANAGED_DATABASES, parts=with_data)


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
    if isinstance(exc, StepFailed):
        # Drop the operator advice (resume/repair): the drill's database is disposable.
        text = str(exc).split("; the ledger records", 1)[0]
    else:
        text = clickhouse_error_message(exc)
    return " ".join(text.split())[:500]


def _heads(conn) -> list[str]:
    schema = conn.dialect.default_schema_name or "default"
    exists = conn.exec_driver_sql(
        "SELECT count() FROM system.tables WHERE database = %(d)s AND name = %(t)s",
        {"d": schema, "t": ledger.LEDGER_TABLE},
    ).scalar()
    return ledger.current_heads(ledger.read_rows(conn, schema)) if exists else []


@dataclass
class _Run:
    """What every step of one drill shares: one connection, one data probe, the sample's settings."""

    conn: object
    url: str
    migrate: dict
    with_data: bool
    rows_per_table: int
    seed: int
    today: dt.date
    probe: DataProbe
    # Downgrades (and upgrades declaring losses) may delete the rows they
    # drop: always on the scratch database, on a given one only when asked.
    allow_loss: bool = True
    # Sample rows are loaded (the scratch database only), and where they went.
    sample: bool = False
    sampled: set[str] = field(default_factory=set)

    def fill(self, snap: Snapshot) -> dict[str, int]:
        """Sample rows into ``snap``'s empty tables, when this drill loads any."""
        if not self.sample:
            return {}
        loaded = fill_empty_tables(self.conn, snap, self.rows_per_table, self.seed, self.today)
        self.sampled.update(loaded)
        return loaded


def run_drill(url: str | None = None, from_rev: str | None = None, to_rev: str | None = None,
              with_data: bool = False, script_location: str | None = None,
              rows_per_table: int = 20, seed: int = 0, *, today: dt.date | None = None,
              progress=None, allow_data_loss: bool = False, started=None) -> DrillReport:
    """Drill every revision from ``from_rev`` (default: the first not applied) to ``to_rev`` (default: head).

    ``url=None`` drills a scratch embedded database, removed afterwards; a
    given ``url`` is migrated for real (the CLI asks for --yes), and with
    data, only the rows it holds are checked (no sample rows are written
    into it); there a step that would delete rows is refused (a failure of
    the drill) unless ``allow_data_loss``.  ``started`` is called once the
    range is known to hold something to drill; ``progress`` receives each
    RevisionResult as it finishes.
    """
    today = today or dt.date.today()
    t0 = time.perf_counter()
    with given_or_scratch(url, "zakaz-drill-") as (db_url, scratch), connect(db_url) as conn:
        cfg = commands.alembic_config(db_url, script_location=script_location)
        script = commands.script_directory(cfg)
        heads = _heads(conn)
        if len(heads) > 1:
            raise DrillError(f"the database has {len(heads)} heads ({', '.join(heads)}); the drill needs one")
        walk = plan(script, heads[0] if heads else None, from_rev, to_rev)
        if started:
            started()
        migrate = dict(connection=conn, script_location=script_location)
        if walk.start and walk.start not in heads:
            commands.upgrade(db_url, walk.start, **migrate)
        report = DrillReport(
            url="scratch" if scratch else mask_url(db_url), scratch=scratch, with_data=with_data,
            rows_per_table=rows_per_table, seed=seed, start=walk.start or "base",
            end=walk.revisions[-1].revision,
        )
        run = _Run(conn, db_url, migrate, with_data, rows_per_table, seed, today, DataProbe(conn),
                   allow_loss=scratch or allow_data_loss, sample=with_data and scratch)
        snap = _snapshot(conn, with_data)
        if run.fill(snap):
            snap = with_fresh_parts(conn, snap, MANAGED_DATABASES)
        for rev in walk.revisions:
            result = RevisionResult(rev.revision, commands.short_doc(rev))
            report.results.append(result)
            snap = _drill_one(run, rev, snap, result)
            if progress:
                progress(result)
            if snap is None:  # a step raised: the database is not where the next revision starts
                break
        report.sample_tables = sorted(run.sampled)
        report.sample_rows = _sample_rows(run, scratch)
        report.seconds = round(time.perf_counter() - t0, 3)
        return report


def _sample_rows(run: _Run, scratch: bool) -> str:
    """What became of the sample rows, as the report says it."""
    if not run.with_data:
        return ""
    if scratch:
        return "removed with the scratch database" if run.sampled else "none loaded"
    return ("none written: a given database keeps only its own rows, checked through every step "
            "(drill without --url to rehearse with sample rows)")


def _step(run: _Run, result: RevisionResult, direction: str, target: str,
          allow_loss: bool = False) -> tuple[int, list[str]] | None:
    """Run one alembic step: its time and the heads it left, or None (recorded as a failure).

    ``allow_loss``: the upgrade declares losses (UPGRADE_LOSES); they are
    rehearsed like a downgrade's, and the data checks hold them to the declaration.
    """
    try:
        if direction == "upgrade":
            events = commands.upgrade(run.url, target, allow_data_loss=allow_loss and run.allow_loss,
                                      **run.migrate)
        else:
            # The drill exists to exercise downgrades: dropping sample rows is the point
            # (a given database's own rows only with --allow-data-loss).
            events = commands.downgrade(run.url, target, allow_data_loss=run.allow_loss, **run.migrate)
    except Exception as exc:
        result.failures.append(f"{direction} failed: {_one_line(exc)}")
        return None
    skipped = sum(len(e.skipped) for e in events)
    if skipped and direction == "upgrade" and not any("access" in n for n in result.notes):
        result.notes.append(f"{skipped} access statement(s) checked, not run (embedded engine)")
    heads = list(events[-1].heads) if events else _heads(run.conn)
    return sum(e.duration_ms for e in events), heads


def _drill_one(run: _Run, rev, before: Snapshot, result: RevisionResult) -> Snapshot | None:
    """up, check, down, compare, up, compare: the snapshot after, or None if a step raised."""
    conn, with_data = run.conn, run.with_data
    up_declared = declared_loss(rev.module, UPGRADE)
    declared = set(declared_loss(rev.module, DOWNGRADE)) | set(up_declared)
    down_to = rev.down_revision or "base"

    # -- up
    data_before = run.probe.take(before, columns_without(before, declared)) if with_data else None
    done = _step(run, result, "upgrade", rev.revision, bool(up_declared))
    if done is None:
        return None
    result.up_ms, heads = done
    if heads != [rev.revision]:
        result.failures.append(f"after the upgrade the database is at {', '.join(heads) or 'base'}, "
                               f"not {rev.revision}")
    after_up = _snapshot(conn, with_data)
    unreadable = unreadable_views(conn, views_to_read(before, after_up))
    for name, exc in sorted(unreadable.items()):
        result.failures.append(f"{after_up.schema[name].kind.replace('_', ' ')} {name} cannot be read "
                               f"after the upgrade: {_one_line(exc)[:200]}")
    data_up = None
    if with_data:
        loaded = run.fill(after_up)
        if loaded:
            result.notes.append(f"sample rows loaded into {len(loaded)} new table(s)")
            after_up = with_fresh_parts(conn, after_up, MANAGED_DATABASES)
        data_up = run.probe.take(after_up, columns_without(after_up, declared))
        for col, default in sorted(data_up.unstored.items()):
            if col not in data_before.unstored and VOLATILE.search(default):
                result.notes.append(
                    f"warning: {col} is not stored for the rows already there: each read "
                    f"computes DEFAULT {default} anew (MATERIALIZE COLUMN would store it)")

    # -- down
    done = _step(run, result, "downgrade", down_to)
    if done is None:
        return None
    result.down_ms = done[0]
    after_down = _snapshot(conn, with_data)
    diffs = schema_differences(before, after_down, "after the downgrade")
    result.schema_restored = not diffs
    result.failures += [f"schema not restored: {d}" for d in diffs]

    rows_ok = True
    for name, table, column in dropped_data(after_up, after_down):
        rows = data_up.rows(table) if data_up else None
        held = f" ({row_count(rows)})" if rows is not None else ""
        if covered(declared, table, column or None):
            if rows or rows is None:
                result.declared_losses.append(name + held)
        else:
            rows_ok = False
            result.failures.append(
                f"undeclared data loss: the downgrade drops {'column ' if column else ''}{name}{held}; "
                "declare it in DOWNGRADE_LOSES if that is intended")
    if with_data:
        data_down = run.probe.take(after_down, data_before.columns)
        lost = data_differences(data_before, data_down, declared, "changed by upgrade + downgrade")
        rows_ok = rows_ok and not lost
        result.failures += [f"{d} (before the step vs after the downgrade)" for d in lost]

    # -- up again
    done = _step(run, result, "upgrade", rev.revision, bool(up_declared))
    if done is None:
        return None
    result.reup_ms = done[0]
    after_reup = _snapshot(conn, with_data)
    result.failures += [f"upgrade not repeatable: {d}"
                        for d in schema_differences(after_up, after_reup, "after upgrading again")]
    if with_data:
        data_reup = run.probe.take(after_reup, data_up.columns)
        changed = data_differences(data_up, data_reup, declared, "changed by downgrade + upgrade")
        rows_ok = rows_ok and not changed
        result.failures += [f"{d} (after the upgrade vs after upgrading again)" for d in changed]
        result.rows_kept = rows_ok
        if run.fill(after_reup):
            # The parts as loaded, for the next revision's probe (its row
            # counts, read only by a fill, stay as they were: before this one).
            after_reup = with_fresh_parts(conn, after_reup, MANAGED_DATABASES)
    if result.declared_losses:
        result.notes.append("declared loss: " + summarise(result.declared_losses))
    return after_reup
