"""Ledger rows around every step alembic runs, and the checks before a run.

alembic plans the steps; the recorder (through app.alembic_hook) sees the
plan before the first step, refuses it when the ledger has an open step,
an applied file changed (``--strict``) or data would be lost, writes a
``started`` row before each step and an ``applied`` or ``failed`` row
after, and reports each finished step (app.step_event).
"""
from __future__ import annotations

import datetime as dt
import functools
import io
import logging
import time
import uuid

from app import cluster as cluster_mode
from app import ledger
from app import losses
from app.losses import DOWNGRADE, UPGRADE
from app.errors import CheckFailed, UsageError, ZakazError
from app.settings import Settings
from app.engine import ConnectionLost, lost_reason
from app.sql import (
    ACCESS_DENIED, clickhouse_error_code, clickhouse_error_message, connection_lost, describe_clickhouse_error,
)
from app.step_event import StepEvent
from app.versions import changed_files, file_checksum, resume_command, version_of

log = logging.getLogger("zakaz_schema")


class MigrationBlocked(UsageError):
    """The run was refused before any statement: nothing changed."""


class StepFailed(CheckFailed):
    """A statement of a revision failed; the ledger has the failed step."""

    def __init__(self, message: str, revision: str, statement: int, code: int):
        super().__init__(message)
        self.revision = revision
        self.statement = statement
        self.code = code


class StepRecorder:
    """Writes ledger rows around every migration step alembic runs."""

    def __init__(self, context, schema: str, settings: Settings):
        self.mc = context.get_context()
        self.schema = schema
        self.settings = settings
        self.impl = self.mc.impl
        self.impl.fail_at = settings.fail_at
        self.impl.cluster = settings.cluster
        self.impl.default_database = schema
        # Read by the drop operations (app.operations), which check again
        # right before their statement.
        self.impl.allow_data_loss = settings.allow_data_loss
        self.impl.announced = None
        self.impl.step_owned = set()
        # revision -> what its downgrade may drop with a database: what its
        # upgrade creates and what it declares (from dry runs, see _plan).
        self._owned: dict[str, set[str]] = {}
        self._dry: dict[tuple[str, bool], list[tuple[str, str]] | None] = {}
        # The step _preflight checked with the whole run, just before it runs.
        self._checked_step = None
        self.script = context.script
        # Steps run one at a time: the wrapper notes when the current one
        # started, alembic's callback closes it.
        self._current: tuple[str, float, dt.datetime] | None = None
        # The head set after the latest completed step: read from the ledger
        # once (preflight), then kept from alembic's callbacks.  Re-reading the
        # whole ledger before every step made a chain of n revisions O(n^2).
        self._heads: list[str] | None = None
        # A finished step's row waits here for the next step's "started" row,
        # so one INSERT (one part, atomic) carries both: an insert costs about
        # as much as a small CREATE TABLE.  flush() writes what is left.
        self._unwritten: list[ledger.Row] = []
        # The ledger's rows alembic's heads were read from, for the preflight.
        self._rows: list[dict] | None = None
        # The seq of this run's next row: the maximum the preflight read, plus
        # one per row written since.  Writers are serialised (the deploy lock,
        # chDB's directory lock), so this is the seq the server would take
        # (app.insert_order), without a scalar sub-query in every INSERT: that
        # made a ledger INSERT cost twice a plain one on chDB.
        self._next_seq: int | None = None
        self.recorded = 0  # completed steps written in this run

    @property
    def heads(self) -> list[str] | None:
        """The head set after the latest completed step (None: the ledger was not read)."""
        return None if self._heads is None else list(self._heads)

    # -- ledger output ---------------------------------------------------------
    def _write(self, row: ledger.Row, *, defer: bool = False) -> None:
        if self.mc.as_sql:
            self.impl.static_output(ledger.insert_sql(self.schema, row) + self.impl.command_terminator)
            return
        self._unwritten.append(row)
        if not defer:
            self.flush()

    def flush(self) -> None:
        if self._unwritten and not self.mc.as_sql:
            rows, self._unwritten = self._unwritten, []
            if self._next_seq is not None:
                for row in rows:
                    row.seq, self._next_seq = self._next_seq, self._next_seq + 1
            try:
                ledger.write(self.mc.connection, self.schema, *rows)
            except Exception as exc:
                lost = self._lost(exc, rows)
                if lost is None:
                    raise
                raise lost from exc

    def _lost(self, exc: BaseException, rows: list[ledger.Row]) -> Exception | None:
        """The one line for a ledger INSERT that failed because Keeper or the server went away, else None.

        A step's end row (and the next step's "started" row, which shares its
        INSERT) not written: the ledger still shows that step as started, which
        `status` reads as interrupted and --resume re-runs.
        """
        keeper = self.settings.cluster is not None and cluster_mode.is_keeper_error(exc)
        if not keeper and not connection_lost(exc):
            return None
        ended = next((r for r in rows if r.status != "started"), None)
        if ended is not None and ended.direction in ("upgrade", "downgrade"):
            step = {"direction": ended.direction, "revision": ended.revision}
            how = "ran" if ended.status == "applied" else "failed"
            state = (f"{ended.direction} {ended.revision} {how} but is left open in the ledger "
                     f"(its end could not be recorded)")
            then = f"`zakaz-schema status`, then {resume_command(self.script, step)}"
        elif ended is not None:  # a stamp: no statement ran
            state = f"the {ended.direction} to {ended.revision} was not recorded"
            then = "`zakaz-schema status`, then the same command again"
        else:
            state = f"{rows[0].direction} {rows[0].revision} did not start"
            then = "`zakaz-schema status`, then the same command again"
        if keeper:
            return cluster_mode.KeeperLost(
                f"the server lost ZooKeeper/Keeper ({describe_clickhouse_error(exc)[:160]}); {state}. "
                f"Once Keeper is back, run {then}"
            )
        return ConnectionLost(f"the connection to the server was lost ({lost_reason(exc)}); {state}. "
                              f"Once the server is back, run {then}")

    # -- wrapping ---------------------------------------------------------------
    def wrap(self, migrations_fn):
        def steps(heads, ctx):
            if not self.mc.as_sql:
                # Before alembic plans from them: it would fail on either with
                # an internal error ("No such revision", "overlaps").
                _, problem = version_of(self.script, heads)
                if problem:
                    raise MigrationBlocked(f"{problem}; nothing was changed")
            planned = list(migrations_fn(heads, ctx))
            if not self.mc.as_sql:
                self._preflight(planned)
            for step in planned:
                if hasattr(step, "revision"):
                    step.migration_fn = self._wrap_step(step, step.migration_fn)
                yield step
        return steps

    def ledger_heads(self) -> tuple[str, ...]:
        """The database's heads for alembic to plan from (app.alembic_hook.read_heads_with).

        Read from the ledger's rows, which the preflight then checks: alembic's
        own read of the version view, the latest completed head set, says the same.
        """
        self._rows = ledger.read_rows(self.mc.connection, self.schema)
        return tuple(ledger.current_heads(self._rows))

    def _preflight(self, planned) -> None:
        conn = self.mc.connection
        # Read just before planning, in this run (under the deploy lock on a server).
        rows, self._rows = self._rows, None
        if rows is None:
            rows = ledger.read_rows(conn, self.schema)
        ledger.check_order(rows, self.schema)
        self._next_seq = (rows[-1]["seq"] if rows else 0) + 1
        self._heads = ledger.current_heads(rows)
        problem = ledger.open_problem(rows)
        runs_revisions = any(hasattr(step, "revision") for step in planned)
        if problem and problem["direction"] == "adopt":
            # A stamp settles the latest step: it would hide the half-done
            # adoption (and a half-rebuilt table) from status and upgrade.
            raise MigrationBlocked(
                f"an adoption at {problem['revision']} is {problem['state']}; finish it with "
                "`zakaz-schema adopt --apply` (it resumes where it stopped); nothing was changed"
            )
        # An empty plan too: "Nothing to do" on top of a failed downgrade would
        # hide it (a stamp, which settles nothing, plans stamp steps).
        if problem and (runs_revisions or not planned) and not self.settings.resume:
            raise MigrationBlocked(
                f"revision {problem['revision']} {problem['direction']} is {problem['state']}"
                + (f" at statement {problem['failed_statement']}: {problem['error']}" if problem["state"] == "failed" else "")
                + f"; fix the cause, then run {self._settle(problem)}"
            )
        if problem and self.settings.resume and not any(
                hasattr(step, "revision") and step.revision.revision == problem["revision"]
                and ("upgrade" if step.is_upgrade else "downgrade") == problem["direction"]
                for step in planned):
            # Otherwise --resume in the other direction said "Nothing to do"
            # (or ran other steps) and left the failed step open.
            raise MigrationBlocked(
                f"this run does not resume the {problem['state']} {problem['direction']} of "
                f"{problem['revision']}: run {self._settle(problem)}; nothing was changed"
            )
        if not self.mc.purge:
            changed = changed_files(self.script, rows)
            for c in changed:
                self._warn(f"{c['revision']}: {c['problem']}")
            if changed and self.settings.strict:
                raise MigrationBlocked(
                    f"--strict: {len(changed)} applied revision file(s) changed since they were applied "
                    f"({', '.join(c['revision'] for c in changed)}); restore them as applied (see "
                    "`zakaz-schema history`), or run without --strict; nothing was changed"
                )
        if self.settings.allow_data_loss:
            return
        steps = [step for step in planned if hasattr(step, "revision")]
        self._refuse_losses(steps)
        self._checked_step = steps[0] if steps else None

    # -- what a run would delete ---------------------------------------------------
    def _dry_run(self, rev, upgrade: bool) -> list[tuple[str, str]] | None:
        """What a step's operations announce they create and drop, rendered offline: nothing runs.

        The step is run as ``zakaz-schema sql`` renders it (alembic's offline
        mode, into a buffer nobody reads), with the operations noting their
        targets.  None if it cannot be rendered (lint's offline-sql rule
        reports that); the operations still check before each drop.
        """
        key = (rev.revision, upgrade)
        if key in self._dry:
            return self._dry[key]
        mc, impl = self.mc, self.impl
        saved = mc.as_sql, impl.as_sql, impl.output_buffer, mc.connection, impl.connection
        notes: list[tuple[str, str]] = []
        impl.announced = notes
        mc.as_sql = impl.as_sql = True
        impl.output_buffer = io.StringIO()
        # No connection, as offline: code that would reach the database
        # directly fails here instead of running before the run is checked.
        mc.connection = impl.connection = None
        impl.reset_step(None)
        try:
            (rev.module.upgrade if upgrade else rev.module.downgrade)()
        except Exception as exc:  # the real run will meet it again, with the ledger recording it
            log.debug("dry run of %s %s failed: %s", "upgrade" if upgrade else "downgrade", rev.revision, exc)
            notes = None
        finally:
            mc.as_sql, impl.as_sql, impl.output_buffer, mc.connection, impl.connection = saved
            impl.announced = None
            impl.reset_step(None)
        self._dry[key] = notes
        return notes

    def _refuse_losses(self, steps, *, before_step: bool = False) -> None:
        """Refuse ``steps`` if they would drop rows, or objects no revision created, not allowed.

        Declared losses are counted for every step.  A downgrade is also dry
        run: undeclared drops of tables or columns holding rows are counted
        too, and a database it drops must hold nothing but what the chain
        created (what this run's downgrades drop, and what the revision that
        drops the database creates).  Upgrades are held to their
        declarations here (a dry run of each would slow every deploy); their
        drop operations check before their statement.
        """
        conn = self.mc.connection
        objects: list[str] = []
        dropped: set[str] = set()
        databases: list[tuple[str, str]] = []
        for step in steps:
            rev = step.revision
            declared = losses.declared(rev.module, UPGRADE if step.is_upgrade else DOWNGRADE)
            objects += declared
            if step.is_upgrade:
                continue
            for action, name in self._dry_run(rev, upgrade=False) or ():
                if action == "drop":
                    dropped.add(name)
                elif action == "drop_database":
                    created = {n for a, n in self._dry_run(rev, upgrade=True) or () if a == "create"}
                    self._owned[rev.revision] = created | set(declared)
                    databases.append((name, rev.revision))
        objects += sorted(dropped - set(objects))
        on = self.settings.cluster.name if self.settings.cluster is not None else None
        held = losses.rows_at_risk(conn, objects, cluster=on)
        chain = dropped | set(objects)
        left = [s for db, rev_id in databases
                for s in losses.unmanaged(conn, db, chain | self._owned[rev_id], cluster=on)]
        if not held and not left:
            return
        direction = "upgrade" if all(step.is_upgrade for step in steps) else "downgrade"
        what = []
        if held:
            # "holding": a declared TTL, narrowing or merge loses some of the rows counted, a drop all of them.
            what.append("drop data from: " + losses.listing(
                [f"{obj} (holding {losses.row_count(n)})" for obj, n in held.items()]))
        if left:
            dbs = list(dict.fromkeys(db for db, _ in databases))
            # Rows first: they are what an operator must not lose.
            left.sort(key=lambda s: (not s.rows, s.rows is None, s.name))
            what.append(f"drop objects no revision created, with database{'s' if len(dbs) > 1 else ''} "
                        f"{', '.join(dbs)}: " + losses.listing([s.describe() for s in left]))
        done = "nothing was changed"
        if before_step:
            done = (f"nothing of {steps[0].revision.revision} ran, the database is at "
                    f"{', '.join(self._heads_now()) or 'base'}")
        raise MigrationBlocked(
            f"{direction} would {'; and '.join(what)}; {done}: back them up or move them, then re-run "
            "with --allow-data-loss (alembic: -x allow_data_loss=true)"
        )

    def _settle(self, problem: dict) -> str:
        if problem["direction"] == "adopt":
            return resume_command(self.script, problem)  # no repair marks an adoption done
        by_hand = "applied" if problem["direction"] == "upgrade" else "reverted"
        return (f"{resume_command(self.script, problem)} (or `zakaz-schema repair {problem['revision']} "
                f"--mark-{by_hand}` if it was finished by hand)")

    def _warn(self, message: str) -> None:
        if self.settings.warn:
            self.settings.warn(message)
        else:
            log.warning("%s", message)

    def _wrap_step(self, step, fn):
        rev = step.revision
        direction = "upgrade" if step.is_upgrade else "downgrade"

        @functools.wraps(fn)  # alembic logs the function's name ("upgrade")
        def run(**kw):
            if not self.mc.as_sql and not self.settings.allow_data_loss:
                # Rows may have arrived since the run was checked: check this
                # step again before its first statement.
                if step is not self._checked_step:
                    self._refuse_losses([step], before_step=True)
                self._checked_step = None
            self.impl.step_owned = self._owned.get(rev.revision, set())
            self.impl.reset_step(rev.revision)
            step_id = str(uuid.uuid4())
            started = dt.datetime.now()
            t0 = time.perf_counter()
            self._current = (step_id, t0, started)
            if not self.mc.as_sql:
                self._write(ledger.Row(step_id, rev.revision, direction, "started",
                                       self._heads_now(), rev.doc or "", started_at=started,
                                       checksum=file_checksum(rev.path)))
            try:
                fn(**kw)
            except Exception as exc:
                if self.mc.as_sql:
                    raise
                if connection_lost(exc):
                    # The statement may have finished on the server: no "failed"
                    # row, the "started" one leaves the step interrupted.
                    resume = resume_command(self.script, {"direction": direction, "revision": rev.revision})
                    raise ConnectionLost(
                        f"the connection to the server was lost during {direction} {rev.revision} "
                        f"({lost_reason(exc)}); the step is recorded as interrupted. Once the server "
                        f"is back, run `zakaz-schema status`, then {resume}"
                    ) from exc
                code = clickhouse_error_code(exc)
                text = clickhouse_error_message(exc)
                index = self.impl.statements
                self._write(ledger.Row(step_id, rev.revision, direction, "failed",
                                       self._heads_now(), rev.doc or "", started_at=started,
                                       finished_at=dt.datetime.now(),
                                       duration_ms=int((time.perf_counter() - t0) * 1000),
                                       statements=index, failed_statement=index,
                                       error_code=code, error=text[:2000],
                                       skipped=self.impl.skipped,
                                       checksum=file_checksum(rev.path)))
                # Worded as every other server error (the same on native and
                # HTTP, no version suffix); the ledger keeps the server's full text.
                said = (describe_clickhouse_error(exc) if code and not isinstance(exc, ZakazError) else "") or text
                resume = resume_command(self.script, {"direction": direction, "revision": rev.revision})
                if code == ACCESS_DENIED:
                    cause = ("the ledger records it as failed: the deploying user lacks that grant: grant it, "
                             f"or run as a user that has it, then run {resume}")
                else:
                    cause = f"the ledger records it as failed: fix the cause and run {resume}"
                raise StepFailed(
                    f"{direction} {rev.revision} failed at statement {index}: {said}; {cause}",
                    rev.revision, index, code,
                ) from exc
        return run

    def record_purge_to_base(self) -> None:
        now = dt.datetime.now()
        self._write(ledger.Row(str(uuid.uuid4()), "base", "stamp", "stamped", [],
                               "stamped base with --purge", started_at=now, finished_at=now))
        self._heads = []
        if self.settings.reporter:
            self.settings.reporter(StepEvent(
                revision="base", direction="stamp", status="stamped", message="", duration_ms=0,
                statements=0, skipped=[], heads=[], at_head=not self.script.get_heads()))

    def _heads_now(self) -> list[str]:
        if self._heads is None:
            self._heads = ledger.current_heads(ledger.read_rows(self.mc.connection, self.schema))
        return list(self._heads)

    def on_version_apply(self, ctx, step, heads, run_args) -> None:
        """alembic's per-step callback: the step is done and ``heads`` is the new head set."""
        if step.is_stamp:
            direction, status, revision = "stamp", "stamped", ",".join(sorted(heads)) or "base"
        else:
            direction = "upgrade" if step.is_upgrade else "downgrade"
            status, revision = "applied", step.up_revision_id
        script = self.script.get_revision(revision) if not step.is_stamp else None
        step_id, t0, started = self._current or (str(uuid.uuid4()), time.perf_counter(), dt.datetime.now())
        self._current = None
        duration_ms = int((time.perf_counter() - t0) * 1000)
        row = ledger.Row(
            step_id, revision, direction, status, sorted(heads),
            (script.doc if script else "") or "", started_at=started,
            finished_at=dt.datetime.now(), duration_ms=duration_ms,
            statements=self.impl.statements if not step.is_stamp else 0,
            skipped=list(self.impl.skipped) if not step.is_stamp else [],
            checksum=file_checksum(script.path) if script else "",
        )
        self._write(row, defer=True)
        self.recorded += 1
        if self.settings.operations_sink and not step.is_stamp:
            self.settings.operations_sink(revision, direction, list(self.impl.operations))
        self._heads = list(row.heads)
        if row.skipped:
            log.info("%s: %d access statement(s) checked with formatQuery and skipped "
                     "(the embedded engine has no access storage); see `zakaz-schema status`",
                     revision, len(row.skipped))
        if self.settings.reporter:
            self.settings.reporter(StepEvent(
                revision=revision, direction=direction, status=status, message=row.message,
                duration_ms=duration_ms, statements=row.statements, skipped=row.skipped,
                heads=row.heads, at_head=row.heads == sorted(self.script.get_heads())))

