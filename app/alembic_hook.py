"""Every use of alembic's private API, in one place (why pyproject pins alembic ``<1.21``).

alembic offers no hook before a step runs (only ``on_version_apply``, after
it), no way to stamp with ``--purge`` onto a version table that is a view,
and no public function for the head set one step leaves.  These functions
reach into ``MigrationContext`` and ``HeadMaintainer`` for that.  A new
alembic release that changes them fails ``tests/test_alembic_hook.py``, here,
rather than a deploy.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

from alembic.autogenerate.api import RevisionContext
from alembic.runtime.migration import HeadMaintainer, MigrationContext, RevisionStep
from alembic.script import Script, ScriptDirectory
from alembic.script.revision import RevisionMap

# heads, migration context -> the steps alembic will run, in order.
StepPlanner = Callable[[tuple, MigrationContext], Iterable]


def wrap_step_planner(mc: MigrationContext, wrap: Callable[[StepPlanner], StepPlanner]) -> None:
    """Replace the function ``run_migrations`` asks for the planned steps with ``wrap(it)``.

    The wrapper sees the whole plan before any step runs (the run's checks)
    and can wrap each step's ``migration_fn`` (the ledger's "started" row).
    """
    planner = getattr(mc, "_migrations_fn", None)
    if not callable(planner):
        raise RuntimeError(
            "alembic's MigrationContext has no _migrations_fn: this alembic release changed the "
            "private API app/alembic_hook.py relies on; install the alembic version pyproject.toml pins"
        )
    mc._migrations_fn = wrap(planner)


def skip_version_table_purge(mc: MigrationContext) -> None:
    """Keep ``stamp --purge`` from DELETEing the version table's rows.

    Ours is a view over the insert-only ledger (clickhouse-sqlalchemy cannot
    even compile that DELETE): the stamp's ledger row is the purge.
    """
    if not hasattr(mc, "_ensure_version_table"):
        raise RuntimeError(
            "alembic's MigrationContext has no _ensure_version_table: this alembic release changed "
            "the private API app/alembic_hook.py relies on; install the alembic version pyproject.toml pins"
        )
    mc._ensure_version_table = lambda purge=False: None


def read_heads_with(mc: MigrationContext, read_heads: Callable[[], tuple[str, ...]]) -> None:
    """Let ``run_migrations`` take the database's heads from ``read_heads`` (online runs).

    alembic would ask whether its version table exists and then read it (two
    statements), and create it when the heads are empty; ours is a view over
    the ledger that app.ledger.ensure has just made sure of, and the recorder
    reads the ledger's rows anyway: one read answers both.
    """
    for name in ("get_current_heads", "_ensure_version_table"):
        if not callable(getattr(mc, name, None)):
            raise RuntimeError(
                f"alembic's MigrationContext has no {name}: this alembic release changed the private API "
                "app/alembic_hook.py relies on; install the alembic version pyproject.toml pins"
            )
    mc.get_current_heads = read_heads
    mc._ensure_version_table = lambda purge=False: None


def revision_map(script: ScriptDirectory) -> RevisionMap:
    """The object ``script`` loads its revision files into, on first use (``ScriptDirectory.revision_map``)."""
    found = getattr(script, "revision_map", None)
    if not isinstance(found, RevisionMap):
        raise RuntimeError(
            "alembic's ScriptDirectory has no revision_map: this alembic release changed the private API "
            "app/alembic_hook.py relies on; install the alembic version pyproject.toml pins"
        )
    return found


def use_revision_map(script: ScriptDirectory, loaded: RevisionMap) -> None:
    """Let ``script`` read its revisions from ``loaded`` (another ScriptDirectory's, of the same files).

    alembic builds a new ScriptDirectory for every command and loads (compiles
    and executes) every revision file again: in one process that runs many
    commands (the drill: 39), that was ~10 ms of CPU a command.
    """
    revision_map(script)  # the attribute is still where this relies on it
    script.revision_map = loaded


def down_revisions(rev: Script) -> tuple[str, ...]:
    """The revisions ``rev`` follows (all parents of a merge), as a tuple."""
    return tuple(rev._normalized_down_revisions)


class _Bookkeeping(HeadMaintainer):
    """alembic's head moves without its writes to a version table (ours is the ledger)."""

    def _insert_version(self, version: str) -> None:
        self.heads.add(version)

    def _delete_version(self, version: str) -> None:
        self.heads.remove(version)

    def _update_version(self, from_: str, to_: str) -> None:
        self.heads.remove(from_)
        self.heads.add(to_)


def heads_after_step(script: ScriptDirectory, heads: set[str], rev: Script, upgrade: bool) -> set[str]:
    """The head set after running ``rev`` up (or down) from ``heads``, as alembic itself moves it."""
    maintainer = _Bookkeeping(None, set(heads))
    maintainer.update_to_step(RevisionStep(script.revision_map, rev, upgrade))
    return set(maintainer.heads)


def revision_command(context) -> RevisionContext | None:
    """The ``alembic revision`` run env.py is part of, if any (its ``command_args``: message, autogenerate, ...).

    alembic's env.py learns of the command only through the EnvironmentContext
    options, which its ``context`` module proxy does not expose.
    """
    environment = getattr(context, "_proxy", context)
    opts = getattr(environment, "context_opts", None)
    if not isinstance(opts, dict):
        raise RuntimeError(
            "alembic's context has no context_opts: this alembic release changed the private API "
            "app/alembic_hook.py relies on; install the alembic version pyproject.toml pins"
        )
    found = opts.get("revision_context")
    return found if isinstance(found, RevisionContext) else None


@contextmanager
def nested_alembic_runs(context) -> Iterator[None]:
    """Let the block run other alembic commands in-process (a replay of the chain) inside env.py.

    Each command's EnvironmentContext installs itself as the ``alembic.context``
    module proxy and deletes the proxy's names on exit, the outer one's
    included: reinstall the outer one afterwards.
    """
    environment = getattr(context, "_proxy", None)
    if environment is None or not hasattr(environment, "_install_proxy"):
        raise RuntimeError(
            "alembic's context module has no _proxy: this alembic release changed the private API "
            "app/alembic_hook.py relies on; install the alembic version pyproject.toml pins"
        )
    try:
        yield
    finally:
        environment._install_proxy()
