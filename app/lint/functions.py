"""What ClickHouse knows about the functions a statement calls, and the parse tree it calls them in."""
from __future__ import annotations

import re
from dataclasses import dataclass


_CURRENT_TIME_24_8 = {
    "now", "now64", "nowInBlock", "today", "yesterday", "curdate", "current_date",
    "current_timestamp", "localtime", "localtimestamp", "UTCTimestamp", "UTC_timestamp",
}
_NONDETERMINISTIC_PREFIXES_24_8 = (
    "rand", "generateUUID", "generateSnowflakeID", "rowNumberIn", "blockNumber", "blockSize",
    "arrayShuffle", "arrayPartialShuffle", "arrayRandomSample", "fuzzBits", "dictGet", "dictHas",
    "joinGet", "hostName", "hostname", "FQDN", "queryID", "query_id", "initialQueryID", "uptime",
    "currentDatabase", "currentUser", "filesystem",
)


@dataclass
class Functions:
    nondeterministic: set[str]
    current_time: set[str]
    aggregate: set[str]

    @staticmethod
    def load(conn) -> "Functions":
        has_deterministic = conn.exec_driver_sql(
            "SELECT count() FROM system.columns "
            "WHERE database = 'system' AND table = 'functions' AND name = 'deterministic'"
        ).scalar()
        if not has_deterministic:
            return Functions._load_24_8(conn)
        rows = conn.exec_driver_sql(
            "SELECT name, alias_to, deterministic, is_aggregate, case_insensitive, categories "
            "FROM system.functions"
        ).all()
        nondet, current, agg = set(), set(), set()
        by_name = {r[0]: r for r in rows}
        for name, alias_to, deterministic, is_aggregate, case_insensitive, categories in rows:
            base = by_name.get(alias_to, (name, "", deterministic, is_aggregate, 0, categories))
            det, is_agg, cats = base[2], base[3], base[5] or ""
            keys = {name, name.lower()} if case_insensitive else {name}
            if det == 0:
                nondet |= keys
                # now(), today(), ...: the non-deterministic date functions,
                # not the time zone ones (constant on a server).
                if "Date" in cats and "imezone" not in (alias_to or name):
                    current |= keys
            if is_agg:
                agg |= keys
        return Functions(nondet, current, agg)

    @staticmethod
    def _load_24_8(conn) -> "Functions":
        # ClickHouse 24.8 (the production servers): system.functions has
        # no `deterministic` column and empty categories.  The current-time
        # functions and the families of other non-deterministic ones a key or
        # a view could call are named here, as 26.x classes them.
        rows = conn.exec_driver_sql(
            "SELECT name, is_aggregate, case_insensitive FROM system.functions"
        ).all()
        nondet, current, agg = set(), set(), set()
        for name, is_aggregate, case_insensitive in rows:
            keys = {name, name.lower()} if case_insensitive else {name}
            if name in _CURRENT_TIME_24_8:
                current |= keys
            if name in _CURRENT_TIME_24_8 or name.startswith(_NONDETERMINISTIC_PREFIXES_24_8):
                nondet |= keys
            if is_aggregate:
                agg |= keys
        return Functions(nondet, current, agg)

    def _lookup(self, name: str, names: set[str]) -> bool:
        return name in names or name.lower() in names

    def is_nondeterministic(self, name: str) -> bool:
        return self._lookup(name, self.nondeterministic)

    def is_current_time(self, name: str) -> bool:
        return self._lookup(name, self.current_time)

    def is_aggregate(self, name: str) -> bool:
        # sumIf, maxState, ...: combinators are not listed in system.functions.
        for suffix in ("", "If", "Array", "Map", "State", "Merge", "MergeState", "ForEach",
                       "Distinct", "OrDefault", "OrNull", "Resample", "SimpleState"):
            base = name[: -len(suffix)] if suffix and name.endswith(suffix) else name
            if (not suffix or name.endswith(suffix)) and self._lookup(base, self.aggregate):
                return True
        return False


def explain_ast(conn, sql: str) -> list[tuple[int, str]]:
    """EXPLAIN AST as (depth, label) lines; the parse only, nothing is resolved."""
    rows = conn.exec_driver_sql("EXPLAIN AST " + sql).all()
    return [(len(line) - len(line.lstrip(" ")), line.strip()) for (line,) in rows]


def subtrees(tree: list[tuple[int, str]], label_prefixes: tuple[str, ...]) -> list[list[tuple[int, str]]]:
    found = []
    for i, (depth, label) in enumerate(tree):
        if label.startswith(label_prefixes):
            j = i + 1
            while j < len(tree) and tree[j][0] > depth:
                j += 1
            found.append(tree[i:j])
    return found


def function_names(nodes: list[tuple[int, str]]) -> list[str]:
    return [m.group(1) for _, label in nodes if (m := re.match(r"Function (\S+)", label))]
