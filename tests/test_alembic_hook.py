"""app.alembic_hook: alembic's private API as this project uses it.

If a new alembic release renames or stops calling what these functions
reach into, these tests fail here, naming the hook, rather than a deploy
failing with an AttributeError deep in the runtime.
"""
from __future__ import annotations

import io

import pytest
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from app import alembic_hook
from app import impl  # noqa: F401 - registers the ClickHouse implementation with alembic
from app.config import ALEMBIC_INI, SCRIPT_LOCATION

pytestmark = pytest.mark.fast


@pytest.fixture(scope="module")
def script() -> ScriptDirectory:
    cfg = Config(str(ALEMBIC_INI))
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    return ScriptDirectory.from_config(cfg)


def offline_context(script: ScriptDirectory, fn) -> MigrationContext:
    """A real offline migration context for the ClickHouse dialect, as `zakaz-schema sql` makes one."""
    return MigrationContext.configure(
        dialect_name="clickhouse",
        opts={"as_sql": True, "output_buffer": io.StringIO(), "fn": fn, "script": script,
              "transactional_ddl": False},
    )


def test_the_wrapped_planner_sees_every_step_before_it_runs(script):
    def plan(heads, ctx):
        return script._upgrade_revs("0002", heads)

    mc = offline_context(script, plan)
    seen: list[list[str]] = []
    ran: list[str] = []

    def wrap(planner):
        def steps(heads, ctx):
            planned = list(planner(heads, ctx))
            seen.append([s.revision.revision for s in planned])
            for step in planned:
                # Noted, not run: the revisions' own code needs alembic's `op` proxy.
                step.migration_fn = lambda rev=step.revision.revision, **kw: ran.append(rev)
                yield step
        return steps

    alembic_hook.wrap_step_planner(mc, wrap)
    mc.run_migrations()
    assert seen == [["0001", "0002"]], "run_migrations no longer asks _migrations_fn for its plan"
    assert ran == ["0001", "0002"], "run_migrations no longer calls each step's migration_fn"


def test_a_purge_stamp_writes_no_version_table_rows(script):
    mc = offline_context(script, lambda heads, ctx: [])
    alembic_hook.skip_version_table_purge(mc)
    mc._ensure_version_table(purge=True)  # what alembic's stamp --purge calls
    assert mc.output_buffer.getvalue() == ""


def test_heads_after_a_step_move_as_alembic_moves_them(script):
    rev = script.get_revision("0005")
    assert alembic_hook.down_revisions(rev) == ("0004",)
    assert alembic_hook.heads_after_step(script, {"0004"}, rev, upgrade=True) == {"0005"}
    assert alembic_hook.heads_after_step(script, {"0005"}, rev, upgrade=False) == {"0004"}
    first = script.get_revision("0001")
    assert alembic_hook.heads_after_step(script, set(), first, upgrade=True) == {"0001"}
    assert alembic_hook.heads_after_step(script, {"0001"}, first, upgrade=False) == set()


def test_an_alembic_without_the_hook_is_named():
    class Changed:  # what a release that renamed the attribute would hand us
        pass

    with pytest.raises(RuntimeError, match="_migrations_fn.*app/alembic_hook.py"):
        alembic_hook.wrap_step_planner(Changed(), lambda planner: planner)
    with pytest.raises(RuntimeError, match="_ensure_version_table"):
        alembic_hook.skip_version_table_purge(Changed())
