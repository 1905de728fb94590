"""Seeded, sized sample rows for the Zakaz warehouse (content fingerprints: ``app.fingerprint``).

Used by rollback drills, smoke checks, tests and benchmarks.  The generator
reads the live schema (the columns differ by revision) and fills every base
table of ``zakaz``, ``meta`` and ``bi`` with realistic rows chosen by column
name, falling back to the column type for anything it does not know, so it
works on any table at any revision.

Determinism: the rows depend only on ``seed``, ``today`` and the table name.
Each row draws the same facts whatever columns the table has, so a table at an
older revision gets the same values in the columns it shares with head.
Nothing is left to ``now()`` or ``generateUUIDv4()`` defaults, which would make
two loads differ.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import re
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from app.warehouse import MANAGED_DATABASES
from app.schema import TABLE, unwrap_type
from app.snapshot import Snapshot, take_snapshot
from app.sql import quote_identifier, quote_literal, quote_name

# How a snapshot's column DEFAULT names a kind other than DEFAULT.
_OTHER_KINDS = ("MATERIALIZED ", "ALIAS ", "EPHEMERAL")
# Engines that collapse rows with equal sorting keys: on merge, and already on
# INSERT (optimize_on_insert=1 is the default), so sample keys must be unique.
COLLAPSING = ("Replacing", "Collapsing", "Summing", "Aggregating", "Graphite")
DAYS = 10  # every date lies in the last DAYS days, today included

# Raw spellings as the loaders see them: odd case and spaces exercise the
# lower(trimBoth()) + dim_city_alias normalisation of the bi views.
CITY_SPELLINGS = [
    "Moscow", " Moscow", "moscow", "MSK", "SPB", "Saint Petersburg", "saint petersburg ",
    "Kazan", "kazan ", "Novosibirsk", "Yekaterinburg", "EKB", "Nizhny Novgorod",
    "Samara", "Krasnodar", "Sochi",
]
# alias (lower-case, trimmed, as the bi views look it up) -> canonical city
CITY_ALIASES = [
    ("msk", "moscow"), ("moskva", "moscow"), ("moscow", "moscow"),
    ("spb", "saint petersburg"), ("piter", "saint petersburg"),
    ("st. petersburg", "saint petersburg"), ("saint petersburg", "saint petersburg"),
    ("ekb", "yekaterinburg"), ("ekaterinburg", "yekaterinburg"), ("yekaterinburg", "yekaterinburg"),
    ("nsk", "novosibirsk"), ("novosibirsk", "novosibirsk"), ("kzn", "kazan"), ("kazan", "kazan"),
    ("nn", "nizhny novgorod"), ("nizhniy novgorod", "nizhny novgorod"),
    ("nizhny novgorod", "nizhny novgorod"), ("samara", "samara"), ("krasnodar", "krasnodar"),
    ("sochi", "sochi"), ("rostov", "rostov-on-don"), ("rostov-on-don", "rostov-on-don"),
]
# Cyrillic and an apostrophe on purpose: both must survive quoting.
EVENT_NAMES = [
    "Щелкунчик", "Лебединое озеро", "Стендап: большой концерт", "Ночь джаза",
    "Rock'n'Roll Night", "Органный вечер при свечах", "Кино: симфоническое шоу",
    "Детский новогодний спектакль", "Hans Zimmer Tribute", "Вечер романса",
    "Импровизация LIVE", "Balalaika Show",
]
JOBS = ["qtickets_api", "qtickets_sheets", "vk_ads", "dm_sales_daily", "backup"]
SEVERITIES = ["info", "warning", "error", "critical"]
ALERT_CODES = ["STALE_DATA", "ROW_COUNT_DROP", "API_TIMEOUT", "SCHEMA_DRIFT", "DUPLICATES"]
ERRORS = ["HTTP 502 from api.qtickets.ru", "timeout after 300 s", "sheet range not found",
          "Code: 241. Memory limit exceeded"]
SOURCES = ["qtickets_api", "qtickets_sheets", "vk_ads"]
STREAMS = ["orders", "inventory", "events", "ads_stats", "sales"]
SHEET_TABS = ["sales", "events", "inventory"]
METRICS = ["row_count", "freshness_hours", "null_share", "dup_share"]
SLI_TABLES = ["zakaz.dm_sales_daily", "zakaz.dm_vk_ads_daily", "zakaz.fact_qtickets_sales",
              "zakaz.fact_qtickets_inventory_latest", "zakaz.dim_events"]
MONEY = {"revenue", "refunds", "refunds_amount", "net_revenue", "spend"}
# Nullable columns that go NULL together (a snapshot has both counts or neither).
NULL_GROUPS = {"tickets_total": "tickets", "tickets_left": "tickets"}
NULL_SHARE = 0.1


class _Sql(str):
    """A ready SQL expression, written as is instead of quoted."""


@dataclass
class Table:
    name: str  # "db.table"
    engine: str
    sorting_key: list[str]
    columns: list[tuple[str, str, str]] = field(default_factory=list)  # name, type, default_kind


# --- schema -----------------------------------------------------------------

def tables_of(snap: Snapshot) -> dict[str, Table]:
    """The snapshot's base tables with their columns, as the generator reads them."""
    tables: dict[str, Table] = {}
    for name, obj in snap.schema.items():
        # Dictionaries, live and window views are no tables to fill.
        if obj.kind != TABLE or not snap.creates.get(name, "").startswith("CREATE TABLE"):
            continue
        table = tables[name] = Table(name, obj.engine, _key_columns(obj.order_by))
        for col in obj.columns:
            kind = col.default.split(" ", 1)[0] if col.default.startswith(_OTHER_KINDS) else \
                ("DEFAULT" if col.default else "")
            table.columns.append((col.name, col.type, kind))
    return tables


def base_tables(conn) -> dict[str, Table]:
    """Base tables of zakaz, meta and bi with their columns (``tables_of`` a fresh snapshot)."""
    return tables_of(take_snapshot(conn, MANAGED_DATABASES))


def _split_top(text: str) -> list[str]:
    """Split on commas outside brackets and quotes: 'a, f(b, c)' -> ['a', 'f(b, c)']."""
    parts, depth, quote, cur = [], 0, None, ""
    for ch in text:
        if quote:
            quote = None if ch == quote and not cur.endswith("\\") else quote
        elif ch in "'`\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
            continue
        cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


def _key_columns(sorting_key: str) -> list[str]:
    """Parts of a sorting key.  ClickHouse 26 reports ``ORDER BY (alias)`` as
    '(alias)' but ``ORDER BY (a, b)`` as 'a, b', so strip one enclosing pair."""
    key = sorting_key.strip()
    if key.startswith("(") and key.endswith(")") and key.count("(") == 1:
        key = key[1:-1]
    return [] if key in ("", "tuple()") else _split_top(key)




def _enum_values(base: str) -> list[str]:
    return [re.sub(r"\\(.)", r"\1", v) for v in re.findall(r"'((?:[^'\\]|\\.)*)'\s*=", base)]


def _int_bounds(base: str) -> tuple[int, int]:
    """The range of Int8..Int256 / UInt8..UInt256."""
    bits = int(re.sub(r"\D", "", base) or 64)
    if base.startswith("UInt"):
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


# --- row facts ----------------------------------------------------------------

@dataclass
class _Event:
    event_id: str
    name: str
    city: str


def _events(n: int, seed: int) -> list[_Event]:
    """Event i is the same in every table, so joins (dashboard, ROI) find matches."""
    rng = random.Random(f"{seed}:events")
    cities = CITY_SPELLINGS[:]
    rng.shuffle(cities)
    # Row i falls on day i % DAYS and in city (i // DAYS): (date, city) stays
    # unique for up to DAYS * len(cities) rows, as dm_vk_ads_daily's key needs.
    return [_Event(f"evt-{i + 1:04d}", rng.choice(EVENT_NAMES), cities[(i // DAYS) % len(cities)])
            for i in range(n)]


class _Row:
    """The facts of one sample row, drawn in a fixed order whatever the columns."""

    def __init__(self, i: int, rng: random.Random, today: dt.date, ver_base: int):
        self.i = i
        self.day = i % DAYS
        self.date = today - dt.timedelta(days=self.day)
        # Times fall in the day before `date` (so never in the future, even
        # for today's rows), leaving an hour for finished_at.
        self.ts = dt.datetime.combine(self.date, dt.time()) - dt.timedelta(seconds=rng.randint(3601, 86399))
        self.ts_end = self.ts + dt.timedelta(seconds=rng.randint(1, 3600))
        self.lag = rng.randint(0, DAYS - 1 - self.day)  # days before `date`, still in range
        self.span = min(rng.randint(0, 2), self.day)  # event length, not past today
        self.tickets_total = rng.randint(50, 2000)
        self.tickets_left = rng.randint(0, self.tickets_total)
        self.tickets_sold = rng.randint(1, 40)
        self.revenue = Decimal(self.tickets_sold * rng.randint(500, 6000)) + Decimal(rng.randint(0, 99)) / 100
        self.refunds = (self.revenue * rng.randint(1, 30) / 100).quantize(Decimal("0.01")) \
            if rng.random() < 0.3 else Decimal("0.00")
        self.impressions = rng.randint(1000, 200000)
        self.clicks = rng.randint(1, self.impressions // 50)
        spend = Decimal(rng.randint(10000, 2000000)) / 100
        self.spend = Decimal("0.00") if i % 7 == 3 else spend  # zero spend: division safety
        self.outcome = rng.choices(["ok", "fail", "running"], [8, 1, 1])[0]
        self.uuid = uuid.UUID(int=rng.getrandbits(128), version=4)
        self.rows = rng.randint(0, 500000)
        self.pick = rng.random()  # for list choices, so they do not shift other facts
        self.number = rng.randint(1, 10**6)
        self.ver = ver_base + i


def _pick(row: _Row, items: list) -> Any:
    return items[int(row.pick * len(items))]


def _semantic(row: _Row, ev: _Event, table: str, cols: set[str], seed: int) -> dict[str, Any]:
    """Realistic values by column name for one row; a name not here falls back to its type."""
    digest = hashlib.md5(f"{seed}:{table}:{row.i}".encode()).hexdigest()
    failed = row.outcome == "fail"
    wm_is_time = row.pick < 0.7
    # One watermark per (source, stream): number the streams past the list.
    stream = STREAMS[row.i % len(STREAMS)]
    if row.i >= len(STREAMS):
        stream = f"{stream}_p{row.i // len(STREAMS)}"
    values = {
        "event_id": ev.event_id, "event_name": ev.name, "city": ev.city, "currency": "RUB",
        "tickets_total": row.tickets_total, "tickets_left": row.tickets_left,
        "tickets_sold": row.tickets_sold, "revenue": row.revenue, "refunds": row.refunds,
        "refunds_amount": row.refunds, "net_revenue": row.revenue - row.refunds,
        "impressions": row.impressions, "clicks": row.clicks, "spend": row.spend,
        "_ver": row.ver, "_dedup_key": digest, "dedup_key": digest, "hash_low_card": digest[:16],
        "order_id": f"ord-{row.i + 1:07d}", "run_id": row.uuid,
        "sale_date": row.date - dt.timedelta(days=row.lag),
        "report_date": row.date - dt.timedelta(days=row.lag),
        "from_date": row.date - dt.timedelta(days=row.lag), "to_date": row.date,
        "end_date": row.date + dt.timedelta(days=row.span),
        "finished_at": row.ts_end, "job": _pick(row, JOBS), "status": row.outcome,
        "rows_processed": row.rows, "rows_read": row.rows, "rows_written": row.rows * 9 // 10,
        "bytes": row.rows * 1873, "duration_ms": row.number,
        "host": f"etl-{row.number % 3 + 1:02d}.zakaz.internal",
        "version_tag": f"v1.{row.number % 9}.{row.number % 5}",
        "severity": _pick(row, SEVERITIES), "code": _pick(row, ALERT_CODES),
        "table_name": _pick(row, SLI_TABLES), "metric_name": _pick(row, METRICS),
        "metric_value": Decimal(row.number) / 1000,
        "src_message_id": f"<{digest[:12]}@mail.qtickets.ru>",
        "campaign_id": f"cmp-{1000 + row.number % 40}", "ad_id": f"ad-{row.i + 1:06d}",
        "_src": "vk_ads" if "vk" in table else "qtickets", "_op": "UPSERT",
        "source": "google_sheets" if "sheet_id" in cols else _pick(row, SOURCES),
        "stream": stream,
        "sheet_id": "1" + digest + digest[:11],  # Google sheet ids are 44 characters
        "tab": _pick(row, SHEET_TABS),
        "wm_type": "datetime" if wm_is_time else "id",
        "wm_value_s": row.ts.isoformat(sep=" ") if wm_is_time else str(row.number),
        "backup_name": f"zakaz_{row.date:%Y%m%d}_{row.i + 1:04d}",
        "target": "s3://zakaz-backups/clickhouse/", "mode": "full" if row.pick < 0.3 else "incr",
        "message": (f"{_pick(row, ALERT_CODES)} on {_pick(row, SLI_TABLES)}" if "severity" in cols
                    else _pick(row, ERRORS) if failed else ""),
        "err_msg": _pick(row, ERRORS) if failed else "",
        "error_msg": _pick(row, ERRORS) if failed else "",
    }
    # JSON only for the tables that have such a column: dumps is the slow part.
    for name in cols.intersection(("metrics", "details", "context_json")):
        values[name] = json.dumps({"job": _pick(row, JOBS), "rows": row.rows, "seed": seed}, sort_keys=True)
    if "payload_json" in cols:
        values["payload_json"] = json.dumps(
            {"event_id": ev.event_id, "event_name": ev.name, "city": ev.city,
             "date": row.date.isoformat(), "tickets_sold": row.tickets_sold,
             "revenue": str(row.revenue), "share": "100%"},
            ensure_ascii=False, sort_keys=True)
    if table.endswith(".dim_city_alias"):
        values["alias"], values["city"] = CITY_ALIASES[(row.i + seed) % len(CITY_ALIASES)]
    return values


def _coerce(value: Any, base: str) -> Any:
    """Fit a semantic value to the column type, or None if it does not fit."""
    if base.startswith(("Enum8(", "Enum16(")):
        return value if value in _enum_values(base) else None
    if base == "UUID":
        return str(value) if isinstance(value, uuid.UUID) else None
    if base == "String" or base.startswith("FixedString("):
        if isinstance(value, (dt.date, Decimal, int, float)):
            return None
        text = str(value)
        if base.startswith("FixedString("):
            size = int(base[len("FixedString("):-1])
            text = text.encode()[:size].decode(errors="ignore")
        return text
    if base.startswith(("Int", "UInt")):
        if isinstance(value, Decimal):
            value = int(value * 100)  # money in integer columns is kopecks (bi divides by 100)
        if not isinstance(value, int) or isinstance(value, bool):
            return None
        low, high = _int_bounds(base)
        return min(max(value, low), high)
    if base.startswith("Float"):
        return float(value) if isinstance(value, (int, Decimal, float)) and not isinstance(value, bool) else None
    if base.startswith("Decimal"):
        if not isinstance(value, (int, Decimal)) or isinstance(value, bool):
            return None
        scale = int(base.rstrip(")").split(",")[-1]) if "," in base else 0
        return Decimal(value).quantize(Decimal(1).scaleb(-scale))
    if base in ("Date", "Date32"):
        if isinstance(value, dt.datetime):
            return value.date()
        return value if isinstance(value, dt.date) else None
    if base.startswith("DateTime"):
        if isinstance(value, dt.datetime):
            return value
        return dt.datetime.combine(value, dt.time()) if isinstance(value, dt.date) else None
    return None


def _fallback(base: str, name: str, row: _Row, rng: random.Random) -> Any:
    """A plausible value for any type, for columns no name rule knows."""
    base, _ = unwrap_type(base)
    if base.startswith(("Int", "UInt")):
        low, high = _int_bounds(base)
        return rng.randint(max(low, -1000), min(high, 10**6))
    if base.startswith("Float"):
        return round(rng.uniform(0, 1000), 2)
    if base.startswith("Decimal"):
        precision, scale = (int(a) for a in re.findall(r"\d+", base)[-2:])  # Decimal(12, 2)
        digits = max(min(precision - scale, 6), 1)
        return _coerce(Decimal(rng.randint(0, 10**digits - 1)) + Decimal(rng.randint(0, 99)) / 100, base)
    if base == "String":
        return f"{name}-{row.i + 1:04d}"
    if base.startswith("FixedString("):
        size = int(base[len("FixedString("):-1])
        return (hashlib.md5(f"{name}:{row.i}".encode()).hexdigest() * (size // 32 + 1))[:size]
    if base in ("Date", "Date32"):
        return row.date
    if base.startswith("DateTime"):
        return row.ts
    if base == "UUID":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    if base.startswith(("Enum8(", "Enum16(")):
        return rng.choice(_enum_values(base))
    if base == "Bool":
        return rng.random() < 0.5
    if base == "IPv4":
        return f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    if base.startswith("Array("):
        return [_fallback(base[6:-1], name, row, rng) for _ in range(rng.randint(0, 3))]
    if base.startswith("Map("):
        key_type, value_type = _split_top(base[4:-1])
        return {_fallback(key_type, name, row, rng): _fallback(value_type, name, row, rng)}
    # Tuple, Nested, JSON, ...: the type's own default value, as an expression.
    return _Sql(f"defaultValueOfTypeName({quote_literal(base)})")


def _literal(value: Any) -> str:
    return value if isinstance(value, _Sql) else quote_literal(value)


def _rows_for(table: Table, n: int, seed: int, today: dt.date, events: list[_Event]):
    """(column names, rows) for one table."""
    columns = [(name, ctype) for name, ctype, kind in table.columns if kind in ("", "DEFAULT")]
    names = [name for name, _ in columns]
    colset = set(names)
    rng = random.Random(f"{seed}:{table.name}")
    fallback_rng = random.Random(f"{seed}:{table.name}:fallback")
    null_rngs = {
        name: random.Random(f"{seed}:{table.name}:null:{NULL_GROUPS.get(name, name)}")
        for name, ctype in columns if unwrap_type(ctype)[1] and name not in table.sorting_key
    }
    # _ver grows with time and row number: ms since epoch of today's midnight + i.
    ver_base = int(dt.datetime.combine(today, dt.time(), dt.timezone.utc).timestamp()) * 1000
    plan = [(name, *unwrap_type(ctype)) for name, ctype in columns]  # (name, base, nullable)
    rows = []
    for i in range(n):
        row = _Row(i, rng, today, ver_base)
        semantic = _semantic(row, events[i], table.name, colset, seed)
        values = []
        for name, base, nullable in plan:
            if nullable and name in null_rngs and null_rngs[name].random() < NULL_SHARE:
                values.append(None)
                continue
            value = semantic.get(name)
            if value is None and (base == "Date" or base.startswith("DateTime")):
                value = row.date if base == "Date" else row.ts  # date, d, stat_date, ts, *_at ...
            value = _coerce(value, base) if value is not None else None
            values.append(value if value is not None else _fallback(base, name, row, fallback_rng))
        rows.append(values)
    if any(part in table.engine for part in COLLAPSING):
        _make_keys_unique(table, columns, rows)
    return names, rows


def _make_keys_unique(table: Table, columns: list[tuple[str, str]], rows: list[list]) -> None:
    """Suffix a String key column where sample rows would share a sorting key.

    Past the curated lists (e.g. more dim_city_alias rows than aliases) keys
    repeat, and a collapsing engine would keep one row of each: the counts and
    fingerprints would then depend on when merges run.
    """
    positions = {name: pos for pos, (name, _) in enumerate(columns)}
    key = [positions[k] for k in table.sorting_key if k in positions]
    if len(key) != len(table.sorting_key):
        return  # an expression key: we cannot reason about it
    strings = [p for p in key if unwrap_type(columns[p][1]) == ("String", False)]
    if not key or not strings:
        return
    seen = set()
    for i, values in enumerate(rows):
        while tuple(values[p] for p in key) in seen:
            values[strings[-1]] = f"{values[strings[-1]]}-{i + 1}"
        seen.add(tuple(values[p] for p in key))


# --- public API ----------------------------------------------------------------

def load_sample(conn, rows_per_table: int = 50, seed: int = 0, tables: list[str] | None = None,
                today: dt.date | None = None, snapshot: Snapshot | None = None) -> dict[str, int]:
    """Insert ``rows_per_table`` sample rows into every base table (or ``tables``).

    One INSERT per table.  ``today`` defaults to the local date; rows are
    deterministic for a given seed and day.  ``snapshot``: the database as
    the caller just read it, else it is read here.  Returns rows inserted
    per "db.table".
    """
    today = today or dt.date.today()
    schema = tables_of(snapshot) if snapshot is not None else base_tables(conn)
    if tables is not None:
        unknown = sorted(set(tables) - set(schema))
        if unknown:
            raise ValueError(f"not a base table of {', '.join(MANAGED_DATABASES)}: {', '.join(unknown)}")
        schema = {name: schema[name] for name in tables}
    events = _events(rows_per_table, seed)
    inserted = {}
    for name, table in schema.items():
        if rows_per_table <= 0:
            inserted[name] = 0
            continue
        columns, rows = _rows_for(table, rows_per_table, seed, today, events)
        values = ",\n".join("(" + ", ".join(_literal(v) for v in row) + ")" for row in rows)
        conn.exec_driver_sql(
            f"INSERT INTO {quote_name(name)} ({', '.join(quote_identifier(c) for c in columns)}) VALUES\n{values}")
        inserted[name] = len(rows)
    return inserted
