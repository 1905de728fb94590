"""What migrations/env.py runs: alembic's migration context wired to the ledger.

Options reach this module through ``Config.attributes`` (from the CLI, which
may also share its open connection) or ``alembic -x key=value``:

* ``url``: the database (else ZAKAZ_DATABASE_URL, else the embedded default);
* ``allow_data_loss``: let a downgrade drop tables or columns holding rows;
* ``resume``: re-run on top of a failed or interrupted step;
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
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Callable

from app import cluster as cluster_mode
from app import impl as _impl  # noqa: F401 - registers the ClickHouse implementation with alembic
from app import ledger
from app.config import ConfigError, resolve_url
from app.errors import clickhouse_error_code, clickhouse_error_message

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
    )


def file_checksum(path: str | None) -> str:
    if not path:
        return ""
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def declared_loss(module) -> list[str]:
    """What a revision's downgrade declares it drops with its data (``DOWNGRADE_LOSES``)."""
    return list(getattr(module, "DOWNGRADE_LOSES", ()))


def rows_at_risk(conn, objects: list[str]) -> dict[str, int]:
    """Row counts of the declared tables (``db.table``) or columns (``db.table.column``)."""
    at_risk = {}
    for obj in objects:
        db, table = obj.split(".")[:2]
        exists = conn.exec_driver_sql(
            "SELECT count() FROM system.tables WHERE database = %(d)s AND name = %(t)s",
            {"d": db, "t": table},
        ).scalar()
        if not exists:
            continue
        count = conn.exec_driver_sql(f"SELECT count() FROM {db}.{table}").scalar()
        if count:
            at_risk[obj] = count
    return at_risk


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
        self._heads = ledger.current_heads(rows)
        problem = ledger.open_problem(rows)
        runs_revisions = any(hasattr(step, "revision") for step in planned)
        if problem and runs_revisions and not self.options.resume:
            raise MigrationBlocked(
                f"revision {problem['revision']} {problem['direction']} is {problem['state']}"
                + (f" at statement {problem['failed_statement']}: {problem['error']}" if problem["state"] == "failed" else "")
                + "; fix the cause, then run `zakaz-schema upgrade --resume` "
                "(or `zakaz-schema repair` if it was finished by hand)"
            )
        if self.options.allow_data_loss:
            return
        losses = {}
        for step in planned:
            if hasattr(step, "revision") and not step.is_upgrade:
                losses.update(rows_at_risk(conn, declared_loss(step.revision.module)))
        if losses:
            listing = ", ".join(f"{obj} ({n} rows)" for obj, n in losses.items())
            raise MigrationBlocked(
                f"downgrade would drop data: {listing}; back it up, then re-run with "
                "--allow-data-loss (alembic: -x allow_data_loss=true)"
            )

    def _wrap_step(self, step, fn):
        rev = step.revision
        direction = "upgrade" if step.is_upgrade else "downgrade"

        @functools.wraps(fn)  # alembic logs the function's name ("upgrade")
        def run(**kw):
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
                    "`zakaz-schema upgrade --resume`",
                    rev.revision, index, code,
                ) from exc
        return run

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
    options = options_from(context)
    config = context.config
    if config.config_file_name and "url" not in config.attributes:
        # Plain `alembic` on the command line: log as alembic.ini says.  The
        # zakaz-schema CLI and the tests report through ``reporter`` instead.
        from logging.config import fileConfig

        fileConfig(config.config_file_name, disable_existing_loggers=False)
    if context.is_offline_mode():
        _run_offline(context, options)
    else:
        _run_online(context, options)


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
    _configure(context, schema, box, url=url.set(password=None), literal_binds=True)
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
    with context.begin_transaction():
        try:
            context.run_migrations()
        finally:
            recorder.flush()  # the last finished step's row
