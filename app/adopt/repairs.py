"""The repair operations that make a live database what a revision defines, keeping its rows."""
from __future__ import annotations

from app import types
from app.adopt.matching import KEY_FIELDS, OBJECT_FIELDS, col_def, column_spec, first_index, in_key, versions_from
from app.adopt.plan import Operation
from app.replay import RevisionState
from app.schema import TABLE, VIEW, Column, DbObject, Schema

COLLAPSING = ("Replacing", "Collapsing", "Summing", "Aggregating", "Graphite")
_OTHER_DEFAULT_KINDS = ("MATERIALIZED ", "ALIAS ", "EPHEMERAL")


class Planner:
    """Turns the differences between live and the revision schemas into operations."""

    def __init__(self, live: Schema, states: list[RevisionState], r: int,
                 view_sql: dict[str, str], unselectable: dict[str, str]):
        self.live = live
        self.states = states
        self.r = r
        self.view_sql = view_sql
        self.unselectable = unselectable
        self.ops: list[Operation] = []
        self.refusals: list[str] = []
        self.ahead: list[dict] = []
        self.unmanaged: list[str] = []
        self.notes: list[str] = []
        self.rev = lambda i: states[i].revision

    # -- entry ------------------------------------------------------------------------
    def plan(self) -> None:
        at_r = self.states[self.r].schema
        for name in sorted(self.live):
            got = self.live[name]
            if name in at_r:
                base = self.r
            else:
                base = first_index(self.states, name, start=self.r + 1)
                if base is None:
                    self.unmanaged.append(f"{name} ({got.kind.replace('_', ' ')})")
                    if name.endswith("__adopt"):
                        self.notes.append(f"{name} looks like the copy left by an interrupted adoption's "
                                          "rebuild; check it and drop it by hand")
                    continue
                self.ahead.append({"object": name, "column": "", "revision": self.rev(base),
                                   "matches": not self._object_differs(got, base)})
            target = self.states[base].schema[name]
            if got.kind != target.kind:
                self.refusals.append(
                    f"{name} is a {got.kind.replace('_', ' ')} but revision {self.rev(base)} has a "
                    f"{target.kind.replace('_', ' ')}: no operation turns one into the other keeping its rows"
                )
            elif got.kind == TABLE:
                self._table(got, base)
            elif got.kind == VIEW:
                self._view(got, base)
            else:
                self._materialized_view(got, base)
        for name, exp in sorted(at_r.items()):
            if name not in self.live and exp.kind == VIEW:
                self._create_view(name, self.r, f"missing view (revision {self.rev(self.r)} has it)")

    def _object_differs(self, got: DbObject, base: int) -> bool:
        versions = versions_from(self.states, base, got.name)
        target = versions[0]
        if got.kind != target.kind:
            return True
        if any(getattr(got, f) not in {getattr(v, f) for v in versions} for f in OBJECT_FIELDS):
            return True
        if got.kind != TABLE:
            return set(got.column_names) != set(target.column_names)
        for col in target.columns:
            have = got.column(col.name)
            if have is None or col_def(have) not in {col_def(c) for v in versions if (c := v.column(col.name))}:
                return True
        return False

    # -- tables -----------------------------------------------------------------------
    def _table(self, got: DbObject, base: int) -> None:
        name = got.name
        versions = versions_from(self.states, base, name)
        target = versions[0]
        rebuild_to: tuple[int, str] | None = None
        for f in KEY_FIELDS:
            if getattr(got, f) not in {getattr(v, f) for v in versions}:
                rebuild_to = (base, f"{f} is {getattr(got, f) or '(none)'}, revision "
                                    f"{self.rev(base)} has {getattr(target, f) or '(none)'}")
        if got.ttl not in {v.ttl for v in versions}:
            self._ttl(got, target, base)

        kept: list[str] = []
        for col in got.columns:
            if target.column(col.name) is not None:
                self._column(got, col, target.column(col.name), base, versions)
                kept.append(col.name)
                continue
            k = first_index(self.states, name, col.name, start=base + 1)
            if k is not None:
                later = versions_from(self.states, k, name)
                exp = later[0].column(col.name)
                ok = col_def(col) in {col_def(c) for v in later if (c := v.column(col.name))}
                self.ahead.append({"object": name, "column": col.name, "revision": self.rev(k), "matches": ok})
                if not ok:
                    self._column(got, col, exp, k, later)
                kept.append(col.name)
                continue
            self._drop_column(got, col)

        previous = None
        for col in target.columns:
            if got.column(col.name) is None:
                where = f" AFTER {previous}" if previous else " FIRST"
                self.ops.append(Operation(
                    "add_column", f"{name}.{col.name}",
                    f"missing column (revision {self.rev(base)} has {col.spec}); added empty, no row changes",
                    [f"ALTER TABLE {name} ADD COLUMN IF NOT EXISTS {column_spec(col)}{where}"],
                ))
            previous = col.name

        if rebuild_to is None:
            rebuild_to = self._chain_rebuild_would_drop(got, base, kept)
        if rebuild_to is not None:
            self._rebuild(got, *rebuild_to, kept=kept)

    def _chain_rebuild_would_drop(self, got: DbObject, base: int, kept: list[str]) -> tuple[int, str] | None:
        """A later revision rebuilds this table (engine or keys change) and the live table has
        columns the rebuild's copy may not know: do that rebuild now, keeping every column."""
        name = got.name
        for j in range(base + 1, len(self.states)):
            before, after = self.states[j - 1].schema.get(name), self.states[j].schema.get(name)
            if before is None or after is None:
                return None
            if any(getattr(before, f) != getattr(after, f) for f in KEY_FIELDS):
                if any(getattr(got, f) != getattr(before, f) for f in KEY_FIELDS):
                    return None  # the live table has other keys already
                extra = [c for c in kept if before.column(c) is None]
                if not extra:
                    return None
                missing_later = [c for c in extra if after.column(c) is None]
                if missing_later:
                    self.refusals.append(
                        f"{name}: revision {self.rev(j)} rebuilds the table and its columns "
                        f"{', '.join(missing_later)} (added by hand) have no place in it"
                    )
                    return None
                return (j, f"revision {self.rev(j)} rebuilds it (new keys) copying only the columns it "
                           f"knows; {', '.join(extra)} (added by hand) would lose its values: rebuilt "
                           "now with every column, so that revision finds it done")
        return None

    def _ttl(self, got: DbObject, target: DbObject, base: int) -> None:
        name = got.name
        if not target.ttl:
            self.ops.append(Operation("remove_ttl", name, f"TTL {got.ttl} is not in revision {self.rev(base)}; "
                                      "removing it deletes nothing", [f"ALTER TABLE {name} REMOVE TTL"]))
            return
        self.ops.append(Operation(
            "modify_ttl", name,
            f"TTL is {got.ttl or '(none)'}, revision {self.rev(base)} has {target.ttl}; rows already past "
            "the new TTL are deleted by it",
            [f"ALTER TABLE {name} MODIFY TTL {target.ttl} SETTINGS mutations_sync = 2"], loses=[name],
            risk_sql=f"SELECT countIf(({target.ttl}) <= now()) FROM {name}",
        ))

    def _column(self, got: DbObject, have: Column, want: Column, base: int, versions: list[DbObject]) -> None:
        name = got.name
        target = f"{name}.{have.name}"
        if col_def(have) in {col_def(c) for v in versions if (c := v.column(have.name))}:
            return
        if any(have.default.startswith(k) or want.default.startswith(k) for k in _OTHER_DEFAULT_KINDS):
            self.refusals.append(
                f"{target} is {have.spec}, revision {self.rev(base)} has {want.spec}: "
                "MATERIALIZED/ALIAS/EPHEMERAL columns are not converted automatically"
            )
            return
        change = types.type_change(have.type, want.type)
        if not (change.keeps_every_value or change.only_nulls):
            self.refusals.append(
                f"{target} is {have.type}, revision {self.rev(base)} has {want.type}: no known conversion "
                f"keeps every value ({change.reason}); convert it by hand (or restore the expected type), "
                "then adopt again"
            )
            return
        if change.kind != types.SAME and in_key(got, have.name):
            self.refusals.append(
                f"{target} is {have.type}, revision {self.rev(base)} has {want.type}, and it is part of "
                "the table's key, which ALTER cannot retype; rebuild the table by hand, then adopt again"
            )
            return
        statements = []
        if have.default and have.default != want.default:
            # Rows written before the column existed have no stored value and
            # read the DEFAULT expression: store it first, so changing the
            # expression changes no existing row.
            statements.append(f"ALTER TABLE {name} MATERIALIZE COLUMN {have.name} SETTINGS mutations_sync = 2")
        # Waited for: on a server a type change is a mutation, and the stamp
        # must come after the data is converted.
        statements.append(f"ALTER TABLE {name} MODIFY COLUMN {column_spec(want)} SETTINGS mutations_sync = 2")
        if have.default and not want.default:
            # MODIFY COLUMN with a type only keeps the old DEFAULT.
            statements.append(f"ALTER TABLE {name} MODIFY COLUMN {have.name} REMOVE DEFAULT")
        what = []
        if have.type != want.type:
            what.append(f"type {have.type} -> {want.type}")
        if have.default != want.default:
            what.append(f"DEFAULT {have.default or '(none)'} -> {want.default or '(none)'}")
        reason = f"{'; '.join(what)} as revision {self.rev(base)} defines it"
        op = Operation("modify_column", target, reason, statements)
        if change.kind != types.SAME:
            op.converts_to = want.type
        if change.only_nulls:
            op.reason += f"; {change.reason}"
            op.loses = [target]
            op.risk_sql = f"SELECT countIf(isNull({have.name})) FROM {name}"
        else:
            op.reason += "; every value is kept"
        self.ops.append(op)

    def _drop_column(self, got: DbObject, col: Column) -> None:
        target = f"{got.name}.{col.name}"
        if in_key(got, col.name):
            self.refusals.append(f"{target} is in no revision but part of the table's key; it cannot be dropped")
            return
        self.ops.append(Operation(
            "drop_column", target,
            f"column {col.spec} is in no revision; verify would report it as unmanaged",
            [f"ALTER TABLE {got.name} DROP COLUMN IF EXISTS {col.name} SETTINGS mutations_sync = 2"], loses=[target],
            risk_sql=f"SELECT count() FROM {got.name}",
        ))

    def _rebuild(self, got: DbObject, index: int, why: str, kept: list[str]) -> None:
        name = got.name
        target = self.states[index].schema[name]
        create = self.states[index].ddl.get(name, "")
        work = f"{name}__adopt"
        prefix = f"CREATE TABLE {name} "
        if not create.startswith(prefix):
            self.refusals.append(f"{name}: {why}, but the CREATE statement of revision {self.rev(index)} is unusable")
            return
        columns = [c for c in kept if (t := target.column(c)) is not None
                   and not t.default.startswith(_OTHER_DEFAULT_KINDS)]
        cols = ", ".join(columns)
        statements = [
            f"DROP TABLE IF EXISTS {work} SYNC",
            f"CREATE TABLE {work} " + create[len(prefix):],
            # optimize_on_insert = 0: a collapsing engine must not merge rows in the copy.
            f"INSERT INTO {work} ({cols}) SELECT {cols} FROM {name} SETTINGS optimize_on_insert = 0",
            f"EXCHANGE TABLES {name} AND {work}",
            f"DROP TABLE IF EXISTS {work} SYNC",
        ]
        op = Operation("rebuild_table", name,
                       f"{why}; new table, copy of every row (counted before the swap), swap",
                       statements, count_check=(name, work), count_check_after=2)
        if any(part in target.engine for part in COLLAPSING) and target.order_by != got.order_by:
            # Rows equal on the new sorting key collapse on merge.
            op.loses = [name]
            op.risk_sql = f"SELECT count() - uniqExact(tuple({target.order_by})) FROM {name}"
        self.ops.append(op)

    # -- views --------------------------------------------------------------------------
    def _view(self, got: DbObject, base: int) -> None:
        name = got.name
        target = self.states[base].schema[name]
        problems = []
        if set(got.column_names) != set(target.column_names):
            problems.append(f"columns are ({', '.join(got.column_names)}), revision {self.rev(base)} has "
                            f"({', '.join(target.column_names)})")
        if name in self.unselectable:
            problems.append(f"it cannot be selected from ({self.unselectable[name]})")
        if not problems:
            # A query a later revision gives (repointed by hand) is as good:
            # that revision replaces the view anyway.
            allowed = {_normal_sql(s.ddl[name]) for s in self.states[base:] if name in s.ddl}
            if _normal_sql(self.view_sql.get(name, "")) not in allowed:
                problems.append(f"its query differs from revision {self.rev(base)}'s")
        if problems:
            self._create_view(name, base, "; ".join(problems))

    def _create_view(self, name: str, index: int, why: str) -> None:
        select = self.states[index].ddl.get(name)
        if not select:
            self.refusals.append(f"view {name}: {why}, and revision {self.rev(index)}'s query is unknown")
            return
        self.ops.append(Operation(
            "create_view", name, f"{why}: recreated as revision {self.rev(index)} defines it (a view holds no rows)",
            [f"CREATE OR REPLACE VIEW {name} AS {select}"],
        ))

    def _materialized_view(self, got: DbObject, base: int) -> None:
        name = got.name
        if not self._object_differs(got, base) and name not in self.unselectable:
            return
        create = self.states[base].ddl.get(name, "")
        prefix = f"CREATE MATERIALIZED VIEW {name} "
        if not create.startswith(prefix):
            self.refusals.append(f"materialized view {name} differs from revision {self.rev(base)} and "
                                 "its definition there is unusable")
            return
        self.ops.append(Operation(
            "recreate_materialized_view", name,
            f"differs from revision {self.rev(base)} (columns, engine or keys); recreated, its stored rows are dropped",
            [f"DROP VIEW IF EXISTS {name} SYNC", create], loses=[name],
            risk_sql=f"SELECT count() FROM {name}",
        ))


def _normal_sql(text: str) -> str:
    return " ".join((text or "").split())


OP_ORDER = ("create_database", "drop_column", "modify_column", "add_column", "remove_ttl",
             "modify_ttl", "rebuild_table", "recreate_materialized_view", "create_view")
