"""What migrations/env.py runs: alembic's migration context wired to the ledger.

Options reach this module through ``Config.attributes`` (from the CLI, which
may also share its open connection) or ``alembic -x key=value``:

* ``url``: the database (else ZAKAZ_DATABASE_URL, else the embedded default);
* ``allow_data_loss``: let a step drop tables or columns holding rows, or a
  database holding objects no revision created;
* ``resume``: re-run on top of a failed or interrupted step;
* ``strict``: refuse to run while an applied revision file has changed since;
* ``warn``: a callable receiving each warning line (else logged);
* ``reporter``: a callable receiving one dict per finished step (CLI output);
* ``cluster`` (and ``cluster_keeper_path``, ``cluster_replica``,
  ``cluster_ledger_keeper_path``, ``cluster_ledger_replica``,
  ``ddl_task_timeout``, ``ddl_output_mode``): cluster mode, see app.cluster;
  also from the environment (ZAKAZ_CLUSTER, ...).
"""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import io
import logging
import os
import time
import uuid
from dataclasses import dataclass
from typing import Callable

from app import cluster as cluster_mode
from app import impl as _impl  # noqa: F401 - registers the ClickHouse implementation with alembic
from app import ledger
from app import losses
from app.config import ConfigError, resolve_url
from app.sql import clickhouse_error_code, clickhouse_error_message

log = logging.getLogger("zakaz_schema")

TRUE = {"1", "true", "yes", "on"}


class MigrationBlocked(Exception):
    """The run was refused before any statement: nothing changed."""


class StepFailed(Exception):
    """A statement of a revision failed; the ledger has the failed step."""

    def __init__(self, message: str, revision: str, statement: int, code: int):
        super().__init__(message)
        self.revision = revision
        self.statement = statement
        self.code = code


@dataclass
class Options:
    url: str
    allow_data_loss: bool = False
    resume: bool = False
    reporter: Callable[[dict], None] | None = None
    fail_at: tuple[str, int] | None = None
    lock_wait: float = 60.0
    cluster: cluster_mode.Cluster | None = None
    strict: bool = False
    warn: Callable[[str], None] | None = None


def options_from(context) -> Options:
    attrs = context.config.attributes
    x = context.get_x_argument(as_dictionary=True)
    fail_at = attrs.get("fail_at")
    return Options(
        url=attrs.get("url") or resolve_url(x.get("url")),
        allow_data_loss=bool(attrs.get("allow_data_loss")) or x.get("allow_data_loss", "").lower() in TRUE,
        resume=bool(attrs.get("resume")) or x.get("resume", "").lower() in TRUE,
        reporter=attrs.get("reporter"),
        fail_at=fail_at,
        lock_wait=float(attrs.get("lock_wait") or x.get("lock_wait") or 60),
        cluster=cluster_mode.from_options(attrs, x),
        strict=bool(attrs.get("strict")) or x.get("strict", "").lower() in TRUE,
        warn=attrs.get("warn"),
    )


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
    from alembic.util import CommandError

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


applied_checksums = ledger.applied_checksums  # pure, so app.fastpath shares it


def changed_files(script, rows: list[dict]) -> list[dict]:
    """Applied revisions whose file no longer has the checksum recorded when applied."""
    heads = ledger.current_heads(rows)
    # Only what is applied now: a stamp (`--purge` included) or a repair may
    # have moved the version past revisions whose checksums are recorded.
    applied, _ = version_of(script, heads)
    changed = []
    for rev, recorded in sorted(applied_checksums(rows).items()):
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
    if problem["direction"] != "downgrade":
        return "`zakaz-schema upgrade --resume`"
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


def declared_loss(module, *, upgrade: bool = False) -> list[str]:
    """What a revision declares its downgrade (or upgrade) drops with its data.

    ``DOWNGRADE_LOSES`` (``UPGRADE_LOSES``): ``db.table`` or ``db.table.column``.
    """
    return list(getattr(module, "UPGRADE_LOSES" if upgrade else "DOWNGRADE_LOSES", ()) or ())


rows_at_risk = losses.rows_at_risk


class StepRecorder:
    """Writes ledger rows around every migration step alembic runs."""

    def __init__(self, context, schema: str, options: Options):
        self.mc = context.get_context()
        self.schema = schema
        self.options = options
        self.impl = self.mc.impl
        self.impl.fail_at = options.fail_at
        self.impl.cluster = options.cluster
        self.impl.default_database = schema
        # Read by the drop operations (app.operations), which check again
        # right before their statement.
        self.impl.allow_data_loss = options.allow_data_loss
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
        self.recorded = 0  # completed steps written in this run

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
            ledger.write(self.mc.connection, self.schema, *rows)

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

    def _preflight(self, planned) -> None:
        conn = self.mc.connection
        rows = ledger.read_rows(conn, self.schema)
        ledger.check_order(rows, self.schema)
        self._heads = ledger.current_heads(rows)
        problem = ledger.open_problem(rows)
        runs_revisions = any(hasattr(step, "revision") for step in planned)
        # An empty plan too: "Nothing to do" on top of a failed downgrade would
        # hide it (a stamp, which settles nothing, plans stamp steps).
        if problem and (runs_revisions or not planned) and not self.options.resume:
            raise MigrationBlocked(
                f"revision {problem['revision']} {problem['direction']} is {problem['state']}"
                + (f" at statement {problem['failed_statement']}: {problem['error']}" if problem["state"] == "failed" else "")
                + f"; fix the cause, then run {self._settle(problem)}"
            )
        if problem and self.options.resume and not any(
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
            if changed and self.options.strict:
                raise MigrationBlocked(
                    f"--strict: {len(changed)} applied revision file(s) changed since they were applied "
                    f"({', '.join(c['revision'] for c in changed)}); restore them as applied (see "
                    "`zakaz-schema history`), or run without --strict; nothing was changed"
                )
        if self.options.allow_data_loss:
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
            declared = declared_loss(rev.module, upgrade=step.is_upgrade)
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
        held = losses.rows_at_risk(conn, objects)
        chain = dropped | set(objects)
        left = [s for db, rev_id in databases
                for s in losses.unmanaged(conn, db, chain | self._owned[rev_id])]
        if not held and not left:
            return
        direction = "upgrade" if all(step.is_upgrade for step in steps) else "downgrade"
        what = []
        if held:
            what.append("drop data: " + losses.listing([f"{obj} ({n} rows)" for obj, n in held.items()]))
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
        by_hand = "applied" if problem["direction"] == "upgrade" else "reverted"
        return (f"{resume_command(self.script, problem)} (or `zakaz-schema repair {problem['revision']} "
                f"--mark-{by_hand}` if it was finished by hand)")

    def _warn(self, message: str) -> None:
        if self.options.warn:
            self.options.warn(message)
        else:
            log.warning("%s", message)

    def _wrap_step(self, step, fn):
        rev = step.revision
        direction = "upgrade" if step.is_upgrade else "downgrade"

        @functools.wraps(fn)  # alembic logs the function's name ("upgrade")
        def run(**kw):
            if not self.mc.as_sql and not self.options.allow_data_loss:
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
                raise StepFailed(
                    f"{direction} {rev.revision} failed at statement {index}: {text}; "
                    "the ledger records it as failed: fix the cause and run "
                    + resume_command(self.script, {"direction": direction, "revision": rev.revision}),
                    rev.revision, index, code,
                ) from exc
        return run

    def record_purge_to_base(self) -> None:
        now = dt.datetime.now()
        self._write(ledger.Row(str(uuid.uuid4()), "base", "stamp", "stamped", [],
                               "stamped base with --purge", started_at=now, finished_at=now))
        self._heads = []
        if self.options.reporter:
            self.options.reporter({
                "revision": "base", "direction": "stamp", "status": "stamped", "message": "",
                "duration_ms": 0, "statements": 0, "skipped": [], "heads": [],
                "at_head": not self.script.get_heads(),
            })

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
        self._heads = list(row.heads)
        if row.skipped:
            log.info("%s: %d access statement(s) checked with formatQuery and skipped "
                     "(the embedded engine has no access storage); see `zakaz-schema status`",
                     revision, len(row.skipped))
        if self.options.reporter:
            self.options.reporter({
                "revision": revision, "direction": direction, "status": status,
                "message": row.message, "duration_ms": duration_ms,
                "statements": row.statements, "skipped": row.skipped, "heads": row.heads,
                # The chain is loaded already: callers need not load it again
                # (nor reconnect) to say whether the database is now at head.
                "at_head": row.heads == sorted(self.script.get_heads()),
            })


def run_env(context) -> None:
    """Entry point for migrations/env.py."""
    config = context.config
    plain_alembic = bool(config.config_file_name) and "url" not in config.attributes
    if plain_alembic:
        # Plain `alembic` on the command line: log as alembic.ini says.  The
        # zakaz-schema CLI and the tests report through ``reporter`` instead.
        from logging.config import fileConfig

        fileConfig(config.config_file_name, disable_existing_loggers=False)
    try:
        options = options_from(context)
        if context.is_offline_mode():
            _run_offline(context, options)
        else:
            _run_online(context, options)
            from app import fastpath

            fastpath.remember(context.script)  # the chain's heads, for app.fastpath's next answer
    except Exception as exc:
        if not plain_alembic or not isinstance(exc, _one_line_errors()):
            raise
        # alembic's command line prints a CommandError as one line (FAILED:
        # ...) and anything else with a traceback; these messages say it all.
        from alembic.util import CommandError

        from app.config import mask_text

        raise CommandError(mask_text(str(exc))) from None


def _one_line_errors() -> tuple[type[Exception], ...]:
    """Refusals and failures whose message is a complete one-line explanation."""
    from app.engine import ConnectionFailed
    from app.lock import LockTimeout

    return (MigrationBlocked, StepFailed, ConfigError, ConnectionFailed, ledger.LedgerError, LockTimeout)


def _configure(context, schema: str, recorder_box: list, **kw) -> None:
    context.configure(
        version_table=ledger.VERSION_VIEW,
        version_table_schema=schema,
        transactional_ddl=False,
        on_version_apply=lambda **a: recorder_box[0].on_version_apply(**a),
        **kw,
    )


def _run_offline(context, options: Options) -> None:
    from app.config import parse_url

    url = parse_url(options.url)
    schema = url.database or "default"
    box: list = []
    # paramstyle "named" (as in alembic's own offline template): no DB-API
    # interpolates this SQL, so "%" and literals are written as they are.
    _configure(context, schema, box, url=url.set(password=None), literal_binds=True,
               dialect_opts={"paramstyle": "named"})
    recorder = StepRecorder(context, schema, options)
    box.append(recorder)
    mc = context.get_context()
    # clickhouse-client keeps SET for the session: the waits apply to the whole script.
    for sql in cluster_mode.set_statements(options.cluster) + ledger.ledger_ddl(schema, cluster=options.cluster):
        mc.impl.static_output(sql + mc.impl.command_terminator)
    # alembic offers no per-step hook before a step runs; wrapping the step
    # generator is the narrowest place to add the ledger's "started" rows.
    mc._migrations_fn = recorder.wrap(mc._migrations_fn)
    with context.begin_transaction():
        context.run_migrations()


def _run_online(context, options: Options) -> None:
    from app.engine import connect

    shared = context.config.attributes.get("connection")
    if shared is not None:
        _migrate(context, shared, options)
        return
    with connect(options.url) as conn:
        _migrate(context, conn, options)


def _migrate(context, conn, options: Options) -> None:
    schema = conn.dialect.default_schema_name or "default"
    if options.cluster is not None:
        options.cluster = prepare_cluster(conn, options.cluster)
    # chDB's directory lock already keeps other processes out: no lock table there.
    embedded = conn.dialect.driver == "chdb"
    ledger.ensure(conn, schema, cluster=options.cluster, lock=not embedded)
    if embedded:
        _run_steps(context, conn, schema, options)
        return
    from app.lock import deploy_lock

    with deploy_lock(conn, schema, wait=options.lock_wait, cluster=options.cluster, create_table=False):
        if options.cluster is not None:
            # Steps applied through another node reach this one by
            # replication: read the whole history before deciding anything.
            conn.exec_driver_sql(f"SYSTEM SYNC REPLICA {schema}.{ledger.LEDGER_TABLE}")
        _run_steps(context, conn, schema, options)


def prepare_cluster(conn, cluster: cluster_mode.Cluster) -> cluster_mode.Cluster:
    """Check the server can run cluster mode; learn its shards and Replicated databases."""
    if conn.dialect.driver == "chdb":
        raise ConfigError(
            f"--cluster {cluster.name} needs a ClickHouse server: the embedded engine has no "
            "clusters or Keeper; review the cluster SQL offline with `zakaz-schema sql --cluster NAME`"
        )
    shards = cluster_mode.check_cluster_exists(conn, cluster)
    cluster_mode.apply_ddl_settings(conn, cluster)
    return cluster.with_shards(shards).with_replicated_databases(cluster_mode.replicated_databases(conn))


def _run_steps(context, conn, schema: str, options: Options) -> None:
    box: list = []
    _configure(context, schema, box, connection=conn)
    recorder = StepRecorder(context, schema, options)
    box.append(recorder)
    mc = context.get_context()
    mc._migrations_fn = recorder.wrap(mc._migrations_fn)
    if mc.purge:
        # alembic's --purge DELETEs every row of its version table (which
        # clickhouse-sqlalchemy cannot even compile); ours is a view over the
        # insert-only ledger, where the stamp's row, whose heads are exactly
        # the target, is the purge.  alembic then stamps from no heads.
        mc._ensure_version_table = lambda purge=False: None
    with context.begin_transaction():
        try:
            context.run_migrations()
        finally:
            recorder.flush()  # the last finished step's row
    if mc.purge and not recorder.recorded:
        # `stamp base --purge`: from no heads alembic has nothing to stamp,
        # but the ledger still holds the old heads.
        recorder.record_purge_to_base()
    outcome = context.config.attributes.get("outcome")
    if isinstance(outcome, dict) and recorder._heads is not None:
        # Where the run left the database, for a caller whose run had no step
        # to report it (the CLI's "Nothing to do"): no second connection.
        outcome["heads"] = list(recorder._heads)
        outcome["at_head"] = sorted(recorder._heads) == sorted(recorder.script.get_heads())
