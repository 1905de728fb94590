"""app.replay: scratch databases, the chain's states and template databases, on real chDB."""
from __future__ import annotations

import os

import pytest

from app import ledger
from app.engine import connect
from app.replay import copy_template, revision_states, scratch_database, template_database
from app.snapshot import take_snapshot

pytestmark = pytest.mark.replay


def test_scratch_database_is_removed_afterwards():
    with scratch_database() as url:
        with connect(url) as conn:
            conn.exec_driver_sql("CREATE DATABASE zakaz")
        folder = url.split("path=", 1)[1]
        assert os.path.isdir(folder)
    assert not os.path.exists(folder)


@pytest.mark.slow
def test_templates_are_the_chain_at_each_revision(tmp_path):
    cache = tmp_path / "cache"
    states = revision_states(cache_dir=cache)
    for index in (1, 3):  # the second built from a copy of the first
        state = states.states[index]
        url = copy_template(state.revision, tmp_path / f"copy-{index}", cache_dir=cache)
        with connect(url) as conn:
            assert ledger.current_heads(ledger.read_rows(conn, "default")) == [state.revision]
            snap = take_snapshot(conn, state.databases)
        assert snap.schema == state.schema
        assert sorted(snap.databases) == state.databases
    # Built once: the same folder again, not a new one.
    assert template_database(states.states[3].revision, cache_dir=cache) == \
        template_database(states.states[3].revision, cache_dir=cache)
    assert len([p for p in cache.iterdir() if p.name.startswith("template-")]) == 2


@pytest.mark.fast
def test_scratch_databases_go_where_they_are_told_or_to_memory(tmp_path, monkeypatch):
    from app.replay import scratch_folder, scratch_root

    monkeypatch.setenv("ZAKAZ_SCRATCH_DIR", str(tmp_path))
    with scratch_folder("zakaz-t-") as folder:
        assert folder.parent == tmp_path and folder.exists()
    assert not folder.exists()  # removed afterwards
    monkeypatch.delenv("ZAKAZ_SCRATCH_DIR")
    root = scratch_root()
    assert root in (None, "/dev/shm")
    if root:  # memory-backed, with room
        st = os.statvfs(root)
        assert st.f_bavail * st.f_frsize >= 1 << 30
