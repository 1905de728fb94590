"""Rules read from the statements alone: re-run safety, keys, materialized views, grants."""
from __future__ import annotations

import re

from app.lint.functions import explain_ast, function_names, subtrees
from app.lint.revisions import Revision
from app.lint.statements import (
    ACCESS_ON, ALTER, CREATE, DROP, FROM, GLOBAL_KINDS, IDENT, INSERT, KEY_COMMANDS, MV_TO, RENAME,
    RENAME_PAIR, TRUNCATE, Statement, full_name, object_name, unquote,
)
from app.losses import DOWNGRADE, UPGRADE


class StatementRules:
    """Mixed into the linter (app.lint.context.Context supplies conn, url_db, report, ...)."""


    def check_statements(self) -> None:
        """Checks that need only the statements: re-run safety, keys, MVs, grants."""
        objects: set[str] = set()
        databases: set[str] = {self.url_db, "default"}
        for rev in self.revisions:
            for direction in (UPGRADE, DOWNGRADE):
                stmts = rev.statements.get(direction, [])
                self._check_rerun(rev, direction, stmts)
                self._check_rerun_data(rev, direction, stmts)
                for st in stmts:
                    self._check_keys(rev, direction, st)
                    created = st.creates(self.url_db)
                    if direction == UPGRADE and created and created[0] == "MATERIALIZED VIEW":
                        self._check_materialized_view(rev, st)
            # Grants: the chain's own statements say what exists at each one.
            for st in rev.statements.get(UPGRADE, []):
                self._check_access(rev, st, objects, databases)
                self._track_names(st, objects, databases)

    def _check_rerun(self, rev: Revision, direction: str, stmts: list[Statement]) -> None:
        dropped_if_exists: set[str] = set()
        for st in stmts:
            if not st.norm:
                continue
            m = st.match(DROP)
            if m:
                name = object_name(m.group("kind"), m.group("name"), self.url_db)
                if m.group("ie"):
                    dropped_if_exists.add(name)
                else:
                    self.report("drop-if-exists", rev,
                                f"{direction}: DROP {m.group('kind')} {name} without IF EXISTS fails "
                                "when the revision is re-run after a partial failure",
                                self._needles(name), direction)
                continue
            m = st.match(CREATE)
            if m:
                kind, name = st.creates(self.url_db)
                if m.group("replace") == "CREATE " and not m.group("ine") and name not in dropped_if_exists:
                    self.report("create-if-not-exists", rev,
                                f"{direction}: CREATE {kind} {name} without IF NOT EXISTS (or OR REPLACE) "
                                "fails when the revision is re-run after a partial failure",
                                self._needles(name), direction)
                continue
            m = st.match(ALTER)
            if m:
                table = full_name(m.group("name"), self.url_db)
                for rule, verb, guard in (("create-if-not-exists", "ADD", "IF NOT EXISTS"),
                                          ("drop-if-exists", "DROP", "IF EXISTS")):
                    for col in re.findall(rf"\({verb} COLUMN (?!{guard} )({IDENT})", st.norm):
                        column = f"{table}.{unquote(col)}"
                        self.report(rule, rev, f"{direction}: {verb} COLUMN {column} without {guard} "
                                    "fails when the revision is re-run", self._needles(column), direction)

    def _check_rerun_data(self, rev: Revision, direction: str, stmts: list[Statement]) -> None:
        """Row-moving statements a resume would repeat (rows copied twice, values changed twice)."""
        emptied: set[str] = set()  # dropped or truncated earlier in the step: a re-run empties it again
        for st in stmts:
            if not st.norm:
                continue
            if (m := st.match(DROP)) and m.group("kind") == "TABLE":
                emptied.add(full_name(m.group("name"), self.url_db))
            elif m := st.match(TRUNCATE):
                emptied.add(full_name(m.group("name"), self.url_db))
            elif m := st.match(INSERT):
                target = full_name(m.group("name"), self.url_db)
                sources = {full_name(t, self.url_db) for t in FROM.findall(st.norm[m.end():])}
                if target in emptied or target in sources:
                    continue
                shape = "SELECT" if sources else "VALUES"
                self.report("rerun-data", rev,
                            f"{direction}: INSERT INTO {target} ... {shape} runs again when the revision is "
                            "resumed after a later statement fails, and its rows are then there twice: use "
                            f"copy_rows_once(), or guard it (read {target} in the INSERT so it skips what "
                            "a first run wrote)",
                            [f"INSERT INTO {target}", *self._needles(target)], direction)
            elif (m := st.match(ALTER)) and "(UPDATE " in st.norm:
                table = full_name(m.group("name"), self.url_db)
                for column, why in self._repeated_updates(st):
                    self.report("rerun-data", rev,
                                f"{direction}: ALTER TABLE {table} UPDATE {column} = ... {why}, so a resume "
                                f"after a later statement fails changes {column} again: add a WHERE on {column} "
                                "that skips rows already updated",
                                [f"UPDATE {column}", *self._needles(table)], direction)

    def _repeated_updates(self, st: Statement) -> list[tuple[str, str]]:
        """Assignments of an ALTER ... UPDATE that a second run would change again: (column, why)."""
        out = []
        for command in subtrees(explain_ast(self.conn, st.norm), ("AlterCommand UPDATE",)):
            depth = command[0][0]
            children = [sub for sub in subtrees(command[1:], ("",)) if sub[0][0] == depth + 1]
            assignments = subtrees(command, ("Assignment ",))
            predicate = next((c for c in children
                              if not any(label.startswith("Assignment ") for _, label in c)), [])
            guarded = {label.split(" ", 1)[1].split(".")[-1] for _, label in predicate
                       if label.startswith("Identifier ")}
            assigned = {a[0][1].split(" ")[1] for a in assignments}
            for assignment in assignments:
                column = assignment[0][1].split(" ")[1]
                reads = {label.split(" ", 1)[1].split(".")[-1] for _, label in assignment[1:]
                         if label.startswith("Identifier ")}
                random = [f for f in function_names(assignment)
                          if self.functions.is_nondeterministic(f) or self.functions.is_current_time(f)]
                if column in guarded:
                    continue
                if reads & assigned:
                    out.append((column, f"reads {', '.join(sorted(reads & assigned))}, which it changes"))
                elif random:
                    out.append((column, f"calls {random[0]}(), which gives another value each run"))
        return out

    def _check_keys(self, rev: Revision, direction: str, st: Statement) -> None:
        if not st.norm:
            return
        created = st.match(CREATE)
        is_storage = created and created.group("kind") in ("TABLE", "MATERIALIZED VIEW")
        is_alter = st.match(ALTER) and re.search(r"\(MODIFY (TTL|ORDER BY|SAMPLE BY|PRIMARY KEY) ", st.norm)
        if not (is_storage or is_alter):
            return
        try:
            tree = explain_ast(self.conn, st.norm)
        except Exception:
            return  # does not parse: the replay reports it
        if created and created.group("kind") == "TABLE" and direction == UPGRADE:
            storage = subtrees(tree, ("Storage definition",))
            if storage:
                self.engines[st.creates(self.url_db)[1]] = next(iter(function_names(storage[0])), "")
        parts = subtrees(tree, ("Storage definition",)) + subtrees(
            tree, tuple(f"AlterCommand {c}" for c in KEY_COMMANDS))
        bad = sorted({f for part in parts for f in function_names(part)
                      if self.functions.is_nondeterministic(f)})
        if bad:
            self.nondeterministic_found.add(rev.id)
            name = st.creates(self.url_db)[1] if created else \
                full_name(st.match(ALTER).group("name"), self.url_db)
            self.report("nondeterministic-key", rev,
                        f"{direction}: {name}: PARTITION BY / ORDER BY / TTL uses "
                        f"{', '.join(b + '()' for b in bad)}, which gives a different value each time",
                        [f"{b}()" for b in bad] + self._needles(name), direction)

    def _check_materialized_view(self, rev: Revision, st: Statement) -> None:
        name = st.creates(self.url_db)[1]
        try:
            tree = explain_ast(self.conn, st.norm)
        except Exception:
            return
        query = [n for part in subtrees(tree, ("SelectWithUnionQuery",))[:1] for n in part]
        functions = function_names(query)
        now = sorted({f for f in functions if self.functions.is_current_time(f)})
        if now:
            self.report("mv-current-time", rev,
                        f"materialized view {name} filters on the current time "
                        f"({', '.join(f + '()' for f in now)}): "
                        "it is evaluated once per inserted block, so rows never leave the window; "
                        "filter on time in a view over it instead",
                        [f"{f}()" for f in now] + self._needles(name), UPGRADE)
        engine = ""
        storage = subtrees(tree, ("Storage definition",))
        if storage:
            engine = next(iter(function_names(storage[0])), "")
        elif (m := st.match(MV_TO)):
            engine = self.engines.get(full_name(m.group("target"), self.url_db), "")
        aggregates = sorted({f for f in functions if self.functions.is_aggregate(f)})
        if aggregates and engine.startswith("ReplacingMergeTree"):
            self.report("mv-replacing-aggregate", rev,
                        f"materialized view {name} stores aggregates ({', '.join(aggregates)}) in a "
                        "ReplacingMergeTree: each insert block writes its own partial row per key and "
                        "merges keep one of them, not their total (AggregatingMergeTree or "
                        "SummingMergeTree add them up)",
                        self._needles(name), UPGRADE)

    def _track_names(self, st: Statement, objects: set[str], databases: set[str]) -> None:
        if not st.norm:
            return
        created = st.creates(self.url_db)
        if created:
            kind, name = created
            if kind == "DATABASE":
                databases.add(name)
            elif kind not in GLOBAL_KINDS:
                objects.add(name)
            return
        m = st.match(DROP)
        if m:
            if m.group("kind") == "DATABASE":
                db = unquote(m.group("name"))
                databases.discard(db)
                objects.difference_update({o for o in objects if o.split(".", 1)[0] == db})
            else:
                objects.discard(full_name(m.group("name"), self.url_db))
            return
        if st.match(RENAME):
            for a, b in RENAME_PAIR.findall(st.norm):
                a, b = full_name(a, self.url_db), full_name(b, self.url_db)
                if a in objects:
                    objects.discard(a)
                    objects.add(b)

    def _check_access(self, rev: Revision, st: Statement, objects: set[str], databases: set[str]) -> None:
        m = st.match(ACCESS_ON)
        if not m:
            return
        parts = [unquote(p) for p in re.findall(IDENT, m.group("target"))]
        if parts[0] == "*":
            return
        if len(parts) == 1:
            parts = [self.url_db, parts[0]]
        db, name = parts[0], parts[1]
        if name == "*":
            missing = db not in databases
            what = f"database {db}"
        else:
            missing = f"{db}.{name}" not in objects
            what = f"{db}.{name}"
        if missing:
            self.report("grant-unknown-object", rev,
                        f"{m.group('verb')} on {what}, which does not exist at that point of the chain "
                        "(a grant on a missing object fails on a server)",
                        self._needles(f"{db}.{name}" if name != "*" else f"{db}.*"), UPGRADE)
