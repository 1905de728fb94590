"""app.alembic_hook: alembic's private API as this project uses it.

If a new alembic release renames or stops calling what these functions
reach into, these tests fail here, naming the hook, rather than a deploy
failing with an AttributeError deep in the runtime.
"""
from __future__ import annotations

import io
import os

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
    with pytest.raises(RuntimeError, match="get_current_heads"):
        alembic_hook.read_heads_with(Changed(), lambda: ())
    with pytest.raises(RuntimeError, match="revision_map"):
        alembic_hook.use_revision_map(Changed(), None)


def test_run_migrations_plans_from_the_heads_we_read(script):
    planned_from = []
    mc = offline_context(script, lambda heads, ctx: planned_from.append(heads) or [])
    alembic_hook.read_heads_with(mc, lambda: ("0003",))
    mc.run_migrations()
    assert planned_from == [("0003",)], "run_migrations no longer takes its heads from get_current_heads"
    mc._ensure_version_table()  # alembic's create-if-missing, for empty heads: ours is the ledger's view
    assert mc.output_buffer.getvalue() == ""


def test_a_shared_revision_map_loads_no_file_again(script):
    loaded = alembic_hook.revision_map(script)
    script.get_revision("0001")  # loaded now
    cfg = Config(str(ALEMBIC_INI))
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    other = ScriptDirectory.from_config(cfg)
    alembic_hook.use_revision_map(other, loaded)
    assert other.get_revision("0005").module is script.get_revision("0005").module
    assert other.get_heads() == script.get_heads()
    fresh = ScriptDirectory.from_config(cfg)
    assert fresh.get_revision("0005").module is not script.get_revision("0005").module


def test_the_chain_is_loaded_once_per_version_of_its_files(versions_copy):
    from app.chain import alembic_config, script_directory

    def load():
        return script_directory(alembic_config("clickhouse+chdb:///default?path=/nonexistent",
                                               script_location=str(versions_copy)))

    first = load()
    assert load().get_revision("0005").module is first.get_revision("0005").module
    edited = next((versions_copy / "versions").glob("0005_*.py"))
    stat = edited.stat()
    # Edited in place with the same size and mtime: its checksum tells.
    edited.write_text(edited.read_text().replace("Add", "add", 1))
    os.utime(edited, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = load()
    assert again.get_revision("0005").module is not first.get_revision("0005").module
    assert load().get_revision("0005").module is again.get_revision("0005").module
    # A folder the fingerprint cannot vouch for is loaded as alembic always does.
    (versions_copy / "versions" / "old").mkdir()
    assert load().get_revision("0005").module is not load().get_revision("0005").module
