"""What every lint rule shares: the scratch connection, the chain, and the findings so far."""
from __future__ import annotations

from typing import Iterable

from app.lint.functions import Functions
from app.lint.report import Finding
from app.lint.revisions import Revision
from app.lint.statements import Statement, render
from app.losses import DOWNGRADE, UPGRADE
from app.sql import clickhouse_error_message, quote_identifier

class Context:
    """The scratch database and the chain being linted; ``report`` keeps a finding once."""

    def __init__(self, conn, url_db: str, cfg_factory, revisions: list[Revision], checked: set[str]):
        self.conn = conn
        self.url_db = url_db
        self.cfg_factory = cfg_factory
        self.revisions = revisions
        self.by_id = {r.id: r for r in revisions}
        self.checked = checked
        self.findings: list[Finding] = []
        self.not_replayed: list[str] = []
        self.functions = Functions.load(conn)
        # Engines of the tables the chain's CREATE statements make (for a
        # materialized view written TO one of them).
        self.engines: dict[str, str] = {}
        self.nondeterministic_found: set[str] = set()

    # -- output ---------------------------------------------------------------
    def report(self, rule: str, rev: Revision, message: str, needles: Iterable[str] = (),
               function: str | None = None, force: bool = False) -> None:
        if rev.id not in self.checked and not force:
            return
        line = rev.source.line(needles, function)
        finding = Finding(rule, rev.id, line, message, rev.path)
        if finding not in self.findings:
            self.findings.append(finding)

    @staticmethod
    def _needles(name: str) -> list[str]:
        """Ways a revision may spell ``db.table[.column]``, most specific first."""
        parts = name.split(".")
        out = [name]
        if len(parts) == 3:
            out += [f"{parts[0]}.{parts[1]}", parts[2]]
        elif len(parts) == 2:
            out.append(parts[1])
        return out

    # -- statements --------------------------------------------------------------
    def render_statements(self) -> None:
        raw: dict[str, dict[str, list[str]]] = {r.id: {} for r in self.revisions}
        ops: dict[str, dict[str, list]] = {UPGRADE: {}, DOWNGRADE: {}}
        try:
            for rev_id, stmts in render(self.cfg_factory, "base:heads", UPGRADE, ops[UPGRADE]).items():
                raw[rev_id][UPGRADE] = stmts
            for head in [r.id for r in self.revisions if self._is_head(r.id)]:
                for rev_id, stmts in render(self.cfg_factory, f"{head}:base", DOWNGRADE, ops[DOWNGRADE]).items():
                    raw[rev_id].setdefault(DOWNGRADE, stmts)
        except Exception:
            # Render revision by revision to name the one that fails.
            for rev in self.revisions:
                for direction, rng in ((UPGRADE, f"{rev.parent or 'base'}:{rev.id}"),
                                       (DOWNGRADE, f"{rev.id}:{rev.parent or 'base'}")):
                    if direction in raw[rev.id]:
                        continue
                    try:
                        raw[rev.id][direction] = render(self.cfg_factory, rng, direction,
                                                        ops[direction]).get(rev.id, [])
                    except Exception as exc:
                        raw[rev.id][direction] = []
                        self.report("offline-sql", rev,
                                    f"the {direction} cannot be rendered as offline SQL "
                                    f"(`zakaz-schema sql`): {clickhouse_error_message(exc)}", function=direction)
        flat = [s for rev in self.revisions for d in (UPGRADE, DOWNGRADE) for s in raw[rev.id].get(d, [])]
        normalised = self.conn.exec_driver_sql(
            "SELECT arrayMap(q -> formatQuerySingleLineOrNull(q), %(qs)s)", {"qs": flat}
        ).scalar() if flat else []
        it = iter(normalised)
        for rev in self.revisions:
            for d in (UPGRADE, DOWNGRADE):
                rev.statements[d] = [Statement(s, next(it)) for s in raw[rev.id].get(d, [])]
                rev.operations[d] = ops[d].get(rev.id, [])

    def _is_head(self, rev_id: str) -> bool:
        return not any(rev_id in r.parents for r in self.revisions)

    def _ancestors(self, rev_id: str) -> set[str]:
        """``rev_id`` and every revision it builds on."""
        out, todo = set(), [rev_id]
        while todo:
            r = todo.pop()
            if r not in out and r in self.by_id:
                out.add(r)
                todo.extend(self.by_id[r].parents)
        return out

    def _heads(self) -> list[str]:
        """The scratch database's heads, as the ledger's version view has them."""
        try:
            rows = self.conn.exec_driver_sql(
                f"SELECT version_num FROM {quote_identifier(self.url_db)}.alembic_version").all()
        except Exception:
            return []  # no ledger yet (fresh or reset)
        return sorted(r[0] for r in rows)

    def _applied(self, rev_id: str) -> bool:
        return any(rev_id in self._ancestors(h) for h in self._heads())
