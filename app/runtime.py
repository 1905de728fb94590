"""What migrations/env.py runs: alembic's migration context wired to the ledger.

Settings reach this module through ``Config.attributes`` (from the CLI, which
may also share its open connection), ``alembic -x key=value`` or the
environment; app.settings reads them all, in one precedence:

* ``url``: the database (else ZAKAZ_DATABASE_URL, else the embedded default);
* ``allow_data_loss``: let a step drop tables or columns holding rows, or a
  database holding objects no revision created;
* ``resume``: re-run on top of a failed or interrupted step;
* ``strict``: refuse to run while an applied revision file has changed since;
* ``lock_wait``: seconds to wait for another deploy's lock;
* ``warn``: a callable receiving each warning line (else logged);
* ``reporter``: a callable receiving one StepEvent per finished step (CLI output);
* ``cluster`` (and ``cluster_keeper_path``, ``cluster_replica``,
  ``cluster_ledger_keeper_path``, ``cluster_ledger_replica``,
  ``ddl_task_timeout``, ``ddl_output_mode``): cluster mode, see app.cluster;
  also from the environment (ZAKAZ_CLUSTER, ...).

The steps themselves are recorded by app.recorder.
"""
from __future__ import annotations

import importlib
from logging.config import fileConfig

from alembic.util import CommandError

from app import alembic_hook
from app import cluster as cluster_mode
from app import fastpath
from app import impl as _impl  # noqa: F401 - registers the ClickHouse implementation with alembic
from app import ledger
from app.chain import share_loaded_revisions
from app.config import ConfigError, mask_text, parse_url
from app.engine import connect
from app.errors import ZakazError
from app.lock import deploy_lock
from app.operations import render
from app.recorder import StepRecorder
from app.settings import Settings

# Names other modules and tests import from here.
from app.recorder import MigrationBlocked, StepFailed  # noqa: F401
from app.versions import file_checksum  # noqa: F401


def run_env(context) -> None:
    """Entry point for migrations/env.py."""
    config = context.config
    plain_alembic = bool(config.config_file_name) and "url" not in config.attributes
    if plain_alembic:
        # Plain `alembic` on the command line: log as alembic.ini says.  The
        # zakaz-schema CLI and the tests report through ``reporter`` instead.
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    try:
        settings = Settings.from_alembic(context)
        revision_context = alembic_hook.revision_command(context)
        if revision_context is None:
            # alembic's command made a new ScriptDirectory that would load
            # every revision file again (`alembic revision` adds to its map: not shared).
            share_loaded_revisions(context.script)
        if revision_context is not None and revision_context.command_args.get("autogenerate"):
            # `alembic revision --autogenerate`: compared by our planner, never on the live database.
            # Loaded only here: it reads the canonical schema, which a migration must not need
            # (a mistake in it is autogenerate's error, not every upgrade's).
            autogenerate = importlib.import_module("app.revision_autogenerate")
            autogenerate.run_alembic_autogenerate(context, revision_context, allow_loss=settings.allow_data_loss)
        elif context.is_offline_mode():
            _run_offline(context, settings)
        else:
            _run_online(context, settings)
            fastpath.remember(context.script)  # the chain's heads, for app.fastpath's next answer
    except Exception as exc:
        if not plain_alembic or not isinstance(exc, ZakazError):
            raise
        # alembic's command line prints a CommandError as one line (FAILED:
        # ...) and anything else with a traceback; these messages say it all.
        raise CommandError(mask_text(str(exc))) from None


def _configure(context, schema: str, recorder_box: list, **kw) -> None:
    context.configure(
        version_table=ledger.VERSION_VIEW,
        version_table_schema=schema,
        transactional_ddl=False,
        on_version_apply=lambda **a: recorder_box[0].on_version_apply(**a),
        **kw,
    )


def _run_offline(context, settings: Settings) -> None:
    url = parse_url(settings.url)
    schema = url.database or "default"
    box: list = []
    # paramstyle "named" (as in alembic's own offline template): no DB-API
    # interpolates this SQL, so "%" and literals are written as they are.
    _configure(context, schema, box, url=url.set(password=None), literal_binds=True,
               dialect_opts={"paramstyle": "named"})
    recorder = StepRecorder(context, schema, settings)
    box.append(recorder)
    mc = context.get_context()
    # clickhouse-client keeps SET for the session: the waits apply to the whole script.
    for sql in cluster_mode.set_statements(settings.cluster) + ledger.ledger_ddl(schema, cluster=settings.cluster):
        mc.impl.static_output(sql + mc.impl.command_terminator)
    # alembic offers no per-step hook before a step runs; wrapping the step
    # generator is the narrowest place to add the ledger's "started" rows.
    alembic_hook.wrap_step_planner(mc, recorder.wrap)
    with context.begin_transaction():
        context.run_migrations()
    if settings.cluster is not None and recorder.recorded:
        mc.impl.static_output(_sync_ledger_everywhere(schema, settings.cluster) + mc.impl.command_terminator)


def _sync_ledger_everywhere(schema: str, cluster: cluster_mode.Cluster) -> str:
    """Wait until every node has the ledger's rows.

    They reach the other replicas by replication, after the INSERT returns:
    without this wait, `status` on another node right after a deploy read
    its last step as still running (seen in CI).  Done means done on every
    node, as alter_sync = 2 makes it for the steps' own ALTERs.
    """
    return render.sync_replica(f"{schema}.{ledger.LEDGER_TABLE}", render.Placement(cluster), everywhere=True)


def _run_online(context, settings: Settings) -> None:
    shared = context.config.attributes.get("connection")
    if shared is not None:
        _migrate(context, shared, settings)
        return
    with connect(settings.url) as conn:
        _migrate(context, conn, settings)


def _migrate(context, conn, settings: Settings) -> None:
    schema = conn.dialect.default_schema_name or "default"
    if settings.cluster is not None:
        settings.cluster = prepare_cluster(conn, settings.cluster)
    # chDB's directory lock already keeps other processes out: no lock table there.
    embedded = conn.dialect.driver == "chdb"
    ledger.ensure(conn, schema, cluster=settings.cluster, lock=not embedded)
    if embedded:
        _run_steps(context, conn, schema, settings)
        return
    with deploy_lock(conn, schema, wait=settings.lock_wait, cluster=settings.cluster, create_table=False):
        if settings.cluster is not None:
            # Steps applied through another node reach this one by
            # replication: read the whole history before deciding anything.
            conn.exec_driver_sql(f"SYSTEM SYNC REPLICA {schema}.{ledger.LEDGER_TABLE}")
        recorded = _run_steps(context, conn, schema, settings)
        if settings.cluster is not None and recorded:
            cluster_mode.run_ddl(conn, _sync_ledger_everywhere(schema, settings.cluster), settings.cluster)


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


def _run_steps(context, conn, schema: str, settings: Settings) -> int:
    """Run alembic's steps, each recorded in the ledger; how many steps the run recorded (0: none)."""
    box: list = []
    _configure(context, schema, box, connection=conn)
    recorder = StepRecorder(context, schema, settings)
    box.append(recorder)
    mc = context.get_context()
    alembic_hook.wrap_step_planner(mc, recorder.wrap)
    alembic_hook.read_heads_with(mc, recorder.ledger_heads)
    if mc.purge:
        # The stamp's row, whose heads are exactly the target, is the purge;
        # alembic then stamps from no heads.
        alembic_hook.skip_version_table_purge(mc)
    with context.begin_transaction():
        try:
            context.run_migrations()
        finally:
            recorder.flush()  # the last finished step's row
    written = recorder.recorded
    if mc.purge and not written:
        # `stamp base --purge`: from no heads alembic has nothing to stamp,
        # but the ledger still holds the old heads.
        recorder.record_purge_to_base()
        written = 1
    outcome = context.config.attributes.get("outcome")
    heads = recorder.heads
    if isinstance(outcome, dict) and heads is not None:
        # Where the run left the database, for a caller whose run had no step
        # to report it (the CLI's "Nothing to do"): no second connection.
        outcome["heads"] = heads
        outcome["at_head"] = sorted(heads) == sorted(recorder.script.get_heads())
    return written
