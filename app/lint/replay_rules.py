"""Rules read from replaying the chain: each step applies, restores, declares its losses, keeps views working."""
from __future__ import annotations

import re

from alembic import command as alembic_command

from app import losses
from app.dependencies import query_sources
from app.lint.revisions import Revision
from app.lint.statements import ALTER, Statement, copies, deleted_rows_of, full_name
from app.losses import DOWNGRADE, UPGRADE
from app.operations.definitions import RebuildTable
from app.operations.materialized import ModifyQuery
from app.schema import TABLE, VIEW
from app.schema_diff import Difference, diff_databases, diff_objects
from app.snapshot import SYSTEM_DATABASES, Snapshot, take_snapshot
from app.sql import (
    clickhouse_error_code, clickhouse_error_message, in_list, quote_identifier, quote_literal, quote_name,
)


class ReplayRules:
    """Mixed into the linter (app.lint.context.Context supplies conn, url_db, report, ...)."""

    # -- replay ---------------------------------------------------------------------
    def _alembic(self, direction: str, target: str) -> None:
        cfg = self.cfg_factory(connection=self.conn, allow_data_loss=True)
        (alembic_command.upgrade if direction == UPGRADE else alembic_command.downgrade)(cfg, target)

    def _reset(self, at: str | None) -> None:
        """Empty the scratch database, then upgrade it to ``at`` in one run."""
        for (db,) in self.conn.exec_driver_sql(
                f"SELECT name FROM system.databases WHERE name NOT IN ({in_list(SYSTEM_DATABASES)})").all():
            if db in (self.url_db, "default"):
                for (name,) in self.conn.exec_driver_sql(
                        f"SELECT name FROM system.tables WHERE database = {quote_literal(db)} "
                        "AND NOT startsWith(name, '.inner')").all():
                    self.conn.exec_driver_sql(f"DROP TABLE IF EXISTS {quote_name(f'{db}.{name}')} SYNC")
            else:
                self.conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {quote_identifier(db)} SYNC")
        if at:
            self._alembic(UPGRADE, at)

    def replay(self) -> None:
        """Upgrade revision by revision, then downgrade revision by revision.

        Each downgrade is compared with the snapshot taken before that
        revision's upgrade.  Revisions not asked for are passed in one
        alembic run each way.  After a failure or a wrong downgrade the
        scratch database is rebuilt from nothing, so one bad revision does
        not spoil the checks of the others.
        """
        last = max((i for i, r in enumerate(self.revisions) if r.id in self.checked), default=-1)
        plan = self.revisions[: last + 1]
        states: dict[str, tuple[Snapshot, Snapshot]] = {}
        replayed: list[Revision] = []
        broken = False
        for i, rev in enumerate(plan):
            if rev.id not in self.checked:
                continue
            if rev.parent and not self._applied(rev.parent):
                try:
                    self._alembic(UPGRADE, rev.parent)
                except Exception as exc:
                    failed = self._failed_revision(exc) or rev
                    self.report("replay-upgrade", failed,
                                f"the upgrade fails, so {rev.id} cannot be replayed: {_step_error(exc)}",
                                self._failing_names(exc), UPGRADE, force=True)
                    self.not_replayed = [r.id for r in plan[i:] if r.id in self.checked]
                    broken = True
                    break
            heads = self._heads()
            before = states[rev.parent][1] if rev.parent in states and heads == [rev.parent] else \
                take_snapshot(self.conn)
            readers = self._column_readers(rev, before)
            try:
                self._alembic(UPGRADE, rev.id)
            except Exception as exc:
                self._upgrade_failed(rev, exc)
                self.not_replayed = [r.id for r in plan[i + 1:] if r.id in self.checked]
                broken = True
                break
            after = take_snapshot(self.conn)
            states[rev.id] = (before, after)
            replayed.append(rev)
            self._check_losses(rev, UPGRADE, before, after)
            self._recheck_views(rev, before, after)
            self._check_view_columns(rev, before, after, readers)
        if broken:
            # The failed step left half a revision behind: start again from
            # the last good state.
            self._reset(replayed[-1].id if replayed else None)
        pre: Snapshot | None = None  # the state right before the next downgrade
        for rev in reversed(replayed):
            before = states[rev.id][0]
            try:
                heads = self._heads()
                if rev.id not in heads:
                    if len(heads) == 1 and rev.id in self._ancestors(heads[0]):
                        self._alembic(DOWNGRADE, rev.id)  # revisions not asked for, in one run
                    else:
                        self._reset(rev.id)
                    pre = None
                if pre is None:
                    pre = take_snapshot(self.conn)
                self._alembic(DOWNGRADE, f"{rev.id}@-1")
            except Exception as exc:
                failed = self._failed_revision(exc) or rev
                self.report("replay-downgrade", failed, f"the downgrade fails: {_step_error(exc)}",
                            self._failing_names(exc), DOWNGRADE, force=True)
                self._reset(rev.parent)
                pre = None
                continue
            down = take_snapshot(self.conn)
            self._check_losses(rev, DOWNGRADE, pre, down)
            pre = down
            differences = restore_differences(before, down)
            if differences:
                shown = "; ".join(differences[:6])
                if len(differences) > 6:
                    shown += f"; and {len(differences) - 6} more"
                self.report("downgrade-restores", rev,
                            f"the downgrade does not restore the schema from before the upgrade: {shown}",
                            (), DOWNGRADE)
                self._reset(rev.parent)
                pre = None

    # -- replay helpers ---------------------------------------------------------------
    def _failed_revision(self, exc: BaseException) -> Revision | None:
        return self.by_id.get(getattr(exc, "revision", None) or "")

    def _failing_names(self, exc: BaseException) -> list[str]:
        sql = getattr(exc.__cause__, "statement", None) or ""
        names = re.findall(r"\b([A-Za-z_]\w*\.[A-Za-z_]\w*)\b", sql)
        return names[:1] + [n.split(".", 1)[1] for n in names[:1]]

    def _upgrade_failed(self, rev: Revision, exc: BaseException) -> None:
        code = clickhouse_error_code(exc)
        text = _step_error(exc)
        sql = getattr(exc.__cause__, "statement", None) or ""
        norm = self.conn.exec_driver_sql(
            "SELECT formatQuerySingleLineOrNull(%(q)s)", {"q": sql}).scalar() if sql else None
        st = Statement(sql, norm)
        created = st.creates(self.url_db)
        if created and created[0] in ("VIEW", "MATERIALIZED VIEW"):
            view = created[1]
            missing = _missing_name(text, code)
            later = self._created_after(rev, view, missing)
            if later:
                self.report("view-order", rev,
                            f"view {view} is created before {later}, which this revision creates after it: "
                            f"the first run fails ({text})",
                            self._needles(view), UPGRADE)
            else:
                self.report("view-reference", rev,
                            f"view {view} reads an object or column that does not exist at this point: {text}",
                            self._needles(view), UPGRADE)
            return
        if code == 36 and "deterministic" in text or "does not depend on any of the columns" in text:
            if rev.id in self.nondeterministic_found:
                return  # already reported from the statement, with its line
            name = created[1] if created else ""
            self.report("nondeterministic-key", rev, f"upgrade: {text}",
                        self._needles(name) if name else self._failing_names(exc), UPGRADE)
            return
        self.report("replay-upgrade", rev, f"the upgrade fails on top of {rev.parent or 'base'}: {text}",
                    self._failing_names(exc), UPGRADE)

    def _created_after(self, rev: Revision, view: str, missing: str | None) -> str | None:
        """The missing object (or column) if ``rev`` creates it after ``view``."""
        if not missing:
            return None
        stmts = rev.statements.get(UPGRADE, [])
        view_at = next((i for i, s in enumerate(stmts)
                        if (s.creates(self.url_db) or ("", ""))[1] == view), None)
        if view_at is None:
            return None
        for s in stmts[view_at + 1:]:
            created = s.creates(self.url_db)
            if created and (created[1] == missing or created[1].endswith("." + missing)):
                return created[1]
            m = s.match(ALTER)
            if m and re.search(rf"\(ADD COLUMN (?:IF NOT EXISTS )?`?{re.escape(missing)}`? ", s.norm or ""):
                return f"column {full_name(m.group('name'), self.url_db)}.{missing}"
        return None

    def _check_losses(self, rev: Revision, direction: str, before: Snapshot, after: Snapshot) -> None:
        declared = rev.declared(direction)
        stmts = rev.statements.get(direction, [])
        replaced = {n for n in before.schema if n in after.schema and after.uuids.get(n) != before.uuids.get(n)}
        lost = losses.schema_losses(before.schema, after.schema, replaced=replaced,
                                    copies=copies(rev.operations.get(direction, []), self.url_db))
        check = losses.check_declared(declared, lost)
        attr = losses.DECLARATIONS[direction]
        for loss in check.undeclared:
            then = ("; it stops before the copy if stored rows would merge, unless --allow-data-loss"
                    if loss.kind == losses.MERGE else "")
            self.report(f"destructive-{loss.kind}", rev,
                        f"{direction}: {loss.message}, and {attr} does not declare {loss.target}{then}",
                        self._needles(loss.target), direction)
        for d in check.unused:
            self.report("loss-declaration", rev, f"{attr} declares {d}, but the {direction} does not drop it",
                        [d, attr], None)
        # deletes found in statements (not visible in an empty scratch database)
        for st in stmts:
            target = deleted_rows_of(st, self.url_db)
            if target and target in before.schema and not losses.covers(declared, target):
                self.report("destructive-drop", rev,
                            f"{direction}: deletes rows of {target} ({(st.norm or '')[:60]}...), "
                            f"and {attr} does not declare {target}", self._needles(target), direction)

    def _recheck_views(self, rev: Revision, before: Snapshot, after: Snapshot) -> None:
        """A revision that drops or changes objects may break views of earlier revisions.

        Only views whose query names a changed object (or a view that does)
        are selected from: added columns break nothing, so they do not count.
        """
        changed = set()
        for name, obj in before.schema.items():
            new = after.schema.get(name)
            if new is None or (obj.kind == VIEW and new != obj):
                changed.add(name)
            elif obj.kind != VIEW and (after.uuids.get(name) != before.uuids.get(name) or any(
                    new.column(c.name) is None or new.column(c.name).type != c.type for c in obj.columns)):
                changed.add(name)
        culprits = sorted(changed)
        pending = dict(after.queries)
        while changed:
            affected = {v: q for v, q in pending.items() if any(_mentions(q, c) for c in changed)}
            changed = set()
            for name, query in sorted(affected.items()):
                del pending[name]
                changed.add(name)
                obj = after.schema[name]
                sql = f"SELECT * FROM {quote_name(name)} LIMIT 0" if obj.kind == VIEW else \
                    f"SELECT * FROM ({query}) LIMIT 0"
                try:
                    self.conn.exec_driver_sql(sql).all()
                except Exception as exc:
                    culprit = next((c for c in culprits if _mentions(query, c)), culprits[0])
                    self.report("view-reference", rev,
                                f"{'view' if obj.kind == VIEW else 'materialized view'} {name} no longer works "
                                f"after this revision: {clickhouse_error_message(exc)}",
                                self._needles(culprit), UPGRADE)


    def _column_readers(self, rev: Revision, before: Snapshot) -> dict[str, dict[str, set[str] | None]]:
        """Before ``rev``'s upgrade: the columns each view reads of the tables the upgrade alters, drops or swaps.

        Asked of ClickHouse's analyzer (app.dependencies) while those columns
        still exist; only views naming such a table are asked.
        """
        if rev.id not in self.checked:
            return {}
        changing = [st.norm for st in rev.statements.get(UPGRADE, [])
                    if st.norm and st.norm.startswith(("ALTER ", "DROP ", "EXCHANGE ", "RENAME "))]
        touched = {n for n, obj in before.schema.items()
                   if obj.kind == TABLE and any(_mentions(q, n) for q in changing)}
        return {view: query_sources(self.conn, query, view.split(".", 1)[0])
                for view, query in sorted(before.queries.items()) if any(_mentions(query, t) for t in touched)}

    def _check_view_columns(self, rev: Revision, before: Snapshot, after: Snapshot, readers: dict) -> None:
        """``view-column-change``: a column a view reads is dropped or retyped, and the view is not recreated."""
        recreated = {c[1] for st in rev.statements.get(UPGRADE, [])
                     if (c := st.creates(self.url_db)) and c[0] in ("VIEW", "MATERIALIZED VIEW")}
        # A view rebuilt under another name and swapped in, or given a new
        # query in place, is analysed afresh too.
        recreated |= {full_name(o.name, self.url_db) for o in rev.operations.get(UPGRADE, [])
                      if isinstance(o, (RebuildTable, ModifyQuery))}
        for view, sources in sorted(readers.items()):
            if view in recreated or view not in after.schema:
                continue
            kind = after.schema[view].kind.replace("_", " ")
            for table, columns in sorted(sources.items()):
                old, new = before.schema.get(table), after.schema.get(table)
                for column in sorted(columns or ()) if old and new else ():
                    was, now = old.column(column), new.column(column)
                    if was is None or (now is not None and now.type == was.type):
                        continue
                    change = "drops" if now is None else f"retypes ({was.type} -> {now.type})"
                    self.report("view-column-change", rev,
                                f"upgrade {change} {table}.{column}, which {kind} {view} reads, and does not "
                                f"recreate {view}: recreate it after the change (create_view), "
                                "or stop reading the column first",
                                self._needles(f"{table}.{column}"), UPGRADE)


def _mentions(query: str, name: str) -> bool:
    # Views may name tables with or without their database: the bare name
    # counts too (an extra check costs a query, a missed one a broken view).
    return re.search(r"(?<![\w`])`?" + re.escape(name.split(".", 1)[1]) + r"`?(?![\w`])", query) is not None


def _step_error(exc: BaseException) -> str:
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    return clickhouse_error_message(cause)


def _missing_name(text: str, code: int) -> str | None:
    for pattern in (r"identifier '([^']+)'", r"[Tt]able ([\w.`]+) does(?:n't| not) exist",
                    r"identifier `([^`]+)`", r"Missing columns: '([^']+)'"):
        m = re.search(pattern, text)
        if m:
            return m.group(1).replace("`", "")
    return None




# How each aspect of an object is named in a finding.
_LABELS = {"engine": "engine", "order_by": "ORDER BY", "partition_by": "PARTITION BY", "ttl": "TTL",
           "primary_key": "PRIMARY KEY", "security": "SQL SECURITY", "type": "type", "default": "DEFAULT",
           "codec": "CODEC", "comment": "COMMENT"}


def _restore_difference(d: Difference) -> str:
    """One difference between before an upgrade and after its downgrade, worded as what was not restored."""
    if d.aspect in ("database", "object", "column"):
        what = {"database": "database", "column": "column"}.get(d.aspect) or (d.before or d.after).replace("_", " ")
        return f"{what} {d.target} is {'not restored' if d.removed else 'left behind'}"
    if d.aspect == "kind":
        return f"{d.object} is a {d.after.replace('_', ' ')}, was a {d.before.replace('_', ' ')}"
    was, now = d.before or "(none)", d.after or "(none)"
    if d.aspect == "column_order":
        return f"column order of {d.object} differs (not fatal): was {was}; now {now}"
    return f"{_LABELS[d.aspect]} of {d.target}: was {was}, now {now}"


def restore_differences(before: Snapshot, after: Snapshot) -> list[str]:
    out = [_restore_difference(d) for d in diff_databases(before.databases, after.databases)]
    for name in sorted(set(before.schema) | set(after.schema)):
        old, new = before.schema.get(name), after.schema.get(name)
        if old == new:
            if old is not None and old.kind != TABLE and before.queries.get(name) != after.queries.get(name):
                out.append(f"{old.kind.replace('_', ' ')} {name} is restored with a different query")
            continue
        if new is None or old is None:
            out.append(_restore_difference(Difference(name, "", "object", old.kind if old else "",
                                                      new.kind if new else "")))
        else:
            out += [_restore_difference(d) for d in diff_objects(old, new)]
    return out
