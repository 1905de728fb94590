"""Lint the revision files: replay the chain on a scratch embedded database and check each revision.

Rules (E error, W warning); a finding names its rule, revision, line and what is wrong:

* ``syntax`` (E): a revision file does not compile; nothing else is checked
  (no command can load the chain), and the finding names the file and line.
* ``docstring`` (E): the revision module has no docstring, or the template's TODOs.
* ``docstring-why`` (W): the docstring lists the changes (``- ...`` lines, as
  ``new --autogenerate`` writes them) and only its ``Why: TODO`` line is left.
* ``heads`` (E): the chain has more than one head.
* ``offline-sql`` (E): the revision cannot be rendered as offline SQL (``zakaz-schema sql``).
* ``replay-upgrade`` (E): the upgrade fails on top of its predecessor.
* ``replay-downgrade`` (E): the downgrade fails.
* ``downgrade-restores`` (E): after the downgrade the schema (databases, tables,
  columns, keys, view queries) is not what it was before the upgrade.
* ``view-order`` (E): a view is created before the table or column it reads,
  which the same revision creates later (the old SQL files' first-run failure).
* ``view-reference`` (E): a view or materialized view reads an object or column
  that does not exist, at creation or after a later revision dropped or changed it.
* ``view-column-change`` (E): an upgrade drops or retypes a column a view or
  materialized view reads (as ClickHouse's analyzer resolves it,
  ``app.dependencies``) and does not recreate that view in the same revision.
* ``nondeterministic-key`` (E): PARTITION BY / ORDER BY / PRIMARY KEY / SAMPLE BY /
  TTL calls a non-deterministic function (now(), today(), rand(), ...).
* ``destructive-drop`` (E): a table (or a materialized view's storage) or a
  column is dropped, a rebuild does not copy a column, or rows are deleted
  (TRUNCATE, ALTER DELETE, DROP PARTITION), and the step does not declare it:
  ``DOWNGRADE_LOSES`` for the downgrade, ``UPGRADE_LOSES`` for the upgrade.
* ``destructive-narrowing`` (E): a column's type changes to one that cannot hold
  every old value (MODIFY COLUMN UInt64 -> UInt32, String -> FixedString, ...), undeclared.
* ``destructive-recreate`` (E): a table is replaced by a new one (engine or
  ORDER BY change, or DROP + CREATE) without copying its rows, undeclared.
* ``destructive-ttl`` (E): a table's TTL is added or tightened (anything but the
  same ``expr + INTERVAL`` with a period at least as long): ClickHouse deletes
  the rows already past it at once, undeclared.
* ``loss-declaration`` (W): ``*_LOSES`` names something the step does not drop.
* ``create-if-not-exists`` (W): CREATE without IF NOT EXISTS / OR REPLACE (or ADD
  COLUMN without IF NOT EXISTS): a re-run after a half-applied revision fails.
  A CREATE right after ``DROP ... IF EXISTS`` of the same name is re-runnable.
* ``drop-if-exists`` (W): DROP (or DROP COLUMN) without IF EXISTS, for the same reason.
* ``rerun-data`` (E): a statement that moves rows repeats its effect when the
  revision is resumed after a later statement failed: an INSERT (... SELECT or
  VALUES) into a table the step neither empties first (DROP / TRUNCATE) nor
  reads in the INSERT (a guard such as ``copy_rows_once``'s emptiness check),
  or an ALTER ... UPDATE whose new value depends on the old one (or is
  random, or the time) with no WHERE on that column to skip updated rows.
* ``grant-unknown-object`` (E): GRANT / REVOKE on an object or database that does
  not exist at that statement.
* ``mv-current-time`` (W): a materialized view's query uses the current time:
  it is evaluated once per inserted block, so a time window never moves.
* ``mv-replacing-aggregate`` (W): a materialized view stores aggregates in a
  ReplacingMergeTree: every insert block writes its own partial row for a key
  and merges keep one of them, not their total.

Where the facts come from: each step's ClickHouse operations as data
(``op.rebuild_table`` says which columns it copies), collected while
alembic renders the offline SQL; statements from that offline SQL (each
revision, both directions, as ``zakaz-schema sql`` renders them: raw
``op.run`` SQL has no other form), normalised and parsed by ClickHouse
itself (``formatQuery``, ``EXPLAIN AST``, ``system.functions``); schema state from replaying the chain on a scratch
chDB directory (``app.replay``), with a snapshot (``app.snapshot``) before and
after every step.  The chain is upgraded revision by revision, then downgraded
revision by revision, each downgrade compared (``app.schema_diff``) with the
snapshot taken before that revision's upgrade.  Losses are held against the
declarations by ``app.losses``, type changes judged by ``app.types``.
Access statements never run on chDB (no access storage), so grants are checked
against the objects the chain's own statements have created at that point.

Modules: ``statements`` (offline SQL and what its text says), ``functions``
(what ClickHouse knows of a function), ``revisions`` (files and lines),
``statement_rules`` and ``replay_rules`` (the rules), ``context`` (what the
rules share), ``report`` (findings).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

from app.chain import alembic_config, script_directory
from app.config import script_location as default_script_location
from app.engine import connect
from app.lint.context import Context
from app.lint.replay_rules import ReplayRules
from app.lint.report import ERROR, RULES, WARNING, Finding, LintReport
from app.lint.revisions import Revision, Source
from app.lint.statement_rules import StatementRules
from app.replay import scratch_database

__all__ = ["ERROR", "RULES", "WARNING", "Finding", "LintReport", "lint_revisions"]


class _Lint(StatementRules, ReplayRules, Context):
    """The linter: the shared context and both families of rules."""


def lint_revisions(revisions: Sequence[str] | None = None, *,
                   script_location: str | None = None) -> LintReport:
    """Lint ``revisions`` (ids; default all) of the chain in ``script_location``.

    Builds a throwaway embedded database in a temporary directory; nothing
    outside it is touched.  Unknown revision ids raise alembic's CommandError.
    """
    t0 = time.perf_counter()
    broken = unparsable_files(script_location)
    if broken:
        # Every command refuses such a chain (exit 2); lint reports it as what it checks for.
        return LintReport(revisions=[], findings=broken, seconds=time.perf_counter() - t0)
    with scratch_database("zakaz-lint-") as url:
        def cfg_factory(**attributes):
            return alembic_config(url, script_location=script_location, **attributes)

        script = script_directory(cfg_factory())
        ordered = list(reversed(list(script.walk_revisions("base", "heads"))))
        revs = []
        for s in ordered:
            parents = tuple(s.down_revision) if isinstance(s.down_revision, (tuple, list)) else (
                (s.down_revision,) if s.down_revision else ())
            revs.append(Revision(s.revision, parents, s.path, s.module, Source(s.path)))
        wanted = [script.get_revision(r).revision for r in revisions] if revisions else [r.id for r in revs]
        checked = set(wanted)
        report = LintReport(revisions=[r.id for r in revs if r.id in checked])
        with connect(url) as conn:
            linter = _Lint(conn, "default", cfg_factory, revs, checked)
            heads = [r for r in revs if linter._is_head(r.id)]
            for rev in revs:
                doc = (rev.module.__doc__ or "").strip()
                todo = [line.strip() for line in doc.splitlines() if "TODO" in line]
                listed = any(line.strip().startswith("- ") for line in doc.splitlines())
                if todo and listed and all(line.startswith("Why: TODO") for line in todo):
                    # new --autogenerate lists the changes and the losses and
                    # leaves only the reason to the author: a reminder, not an error.
                    linter.report("docstring-why", rev, f"revision {rev.id}'s docstring still says "
                                  "`Why: TODO`: say why, in a sentence or two (the changelog line)", ("TODO",), None)
                elif not doc or todo:
                    linter.report("docstring", rev, f"revision {rev.id} has "
                                  f"{'the template' + chr(39) + 's TODO in its' if doc else 'no'} docstring: "
                                  "say what changes and why, and what a downgrade loses", ("TODO",), None)
            if len(heads) > 1:
                for rev in heads:
                    others = ", ".join(h.id for h in heads if h is not rev)
                    linter.report("heads", rev, f"{rev.id} is one of {len(heads)} heads (also {others}): "
                                  "merge them or re-point down_revision",
                                  ["down_revision"], None)
            linter.render_statements()
            linter.check_statements()
            linter.replay()
        report.findings = sorted(linter.findings, key=lambda f: (f.revision, f.line, f.rule))
        report.not_replayed = linter.not_replayed
        report.seconds = time.perf_counter() - t0
        return report


def unparsable_files(script_location: str | None = None) -> list[Finding]:
    """A ``syntax`` finding for each revision file Python cannot compile."""
    found = []
    for path in sorted((Path(default_script_location(script_location)) / "versions").glob("*.py")):
        try:
            compile(path.read_bytes(), str(path), "exec", dont_inherit=True)
        except SyntaxError as exc:
            found.append(Finding("syntax", path.name.split("_", 1)[0], exc.lineno or 0,
                                 f"{path.name} does not compile: {exc.msg}", str(path)))
    return found
