"""Template databases for tests: the chain replayed once per test session, kept
as one embedded chDB directory per revision (app.replay.template_database),
copied for each test that needs a database at some revision.

Copying a directory (tens of milliseconds) replaces a replay from empty (up to
seconds).  The templates of a session live in its temporary directory, shared
by its pytest-xdist workers (a template is renamed into place whole, so two
workers building the same one is safe), and never in the project's var/cache:
a test must not start from a database an older checkout built.  They are
built from the project's migrations, whatever a test sets ZAKAZ_MIGRATIONS to.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from app.config import PROJECT_ROOT
from app.engine import connect
from app.replay import copy_template, embedded_url
from app.sample_data import load_sample

BASE = "base"
MIGRATIONS = str(PROJECT_ROOT / "migrations")


class ChainTemplates:
    """Per-revision template databases under ``root``, built on first use."""

    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def copy(self, revision: str, target: Path, *, sample_rows: int = 0, seed: int = 7) -> str:
        """A database of its own at ``target`` as the chain leaves it at ``revision``
        (``base``: empty), with app.sample_data's rows if asked; its URL."""
        if revision == BASE:
            target.mkdir(parents=True)
            return embedded_url(target)
        if not sample_rows:
            return copy_template(revision, target, script_location=MIGRATIONS, cache_dir=self.root)
        sampled = self.root / f"sample-{revision}-{sample_rows}-{seed}"
        if not sampled.is_dir():
            building = self.root / f".building-{sampled.name}-{os.getpid()}"
            with connect(copy_template(revision, building, script_location=MIGRATIONS,
                                       cache_dir=self.root)) as conn:
                load_sample(conn, rows_per_table=sample_rows, seed=seed)
            try:
                building.rename(sampled)
            except OSError:  # another worker's copy won
                shutil.rmtree(building, ignore_errors=True)
        shutil.copytree(sampled, target, symlinks=True)
        return embedded_url(target)

