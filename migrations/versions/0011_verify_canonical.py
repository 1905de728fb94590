"""Verify the warehouse: every table, view and the materialized view exactly as warehouse.md's verification rule says, with the expectations frozen here.

The expected column sets are written in this revision (not read from
app.canonical), and so is the check (below the data: how the written form
and the live system tables are read and compared, as app/ did when this
revision was written), so neither later revisions nor edits to app/ change
what it checks.  It fails with a column-by-column report and changes
nothing; the downgrade has nothing to undo.  Extra objects are reported by `zakaz-schema verify`, not
failed here: adopted databases may keep integration tables of their own.
"""
import re

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

DOWNGRADE_LOSES: list[str] = []

TABLES = """
zakaz.core_sales_fct  MergeTree ORDER BY (sale_date, event_date, event_id, city, event_name)
    sale_date       Date
    event_date      Date
    event_id        String
    event_name      String
    city            String
    tickets_sold    UInt32
    revenue         Decimal(12, 2)
    refunds_amount  Decimal(12, 2)
    currency        FixedString(3)
    load_ts         DateTime DEFAULT now()

zakaz.dim_city_alias  ReplacingMergeTree ORDER BY (alias)
    alias           LowCardinality(String)
    city            LowCardinality(String)

zakaz.dim_events  ReplacingMergeTree(_ver) ORDER BY (event_id) PARTITION BY tuple()
    event_id        String
    event_name      String
    city            LowCardinality(String)
    start_date      Nullable(Date)
    end_date        Nullable(Date)
    tickets_total   UInt32 DEFAULT 0
    tickets_left    UInt32 DEFAULT 0
    _ver            UInt64
    _loaded_at      DateTime DEFAULT now()

zakaz.dm_sales_daily  ReplacingMergeTree(_ver) ORDER BY (event_date, city, event_id, event_name) PARTITION BY toYYYYMM(event_date)
    event_date      Date
    sale_date       Date
    event_id        LowCardinality(String)
    city            LowCardinality(String)
    event_name      String
    tickets_sold    UInt64
    revenue         UInt64
    refunds_amount  UInt64
    net_revenue     Int64
    currency        LowCardinality(String) DEFAULT 'RUB'
    _loaded_at      DateTime DEFAULT now()
    _ver            UInt64

zakaz.dm_vk_ads_daily  ReplacingMergeTree(_ver) ORDER BY (stat_date, city) PARTITION BY toYYYYMM(stat_date)
    stat_date       Date
    city            LowCardinality(String)
    impressions     UInt64
    clicks          UInt64
    spend           UInt64
    _loaded_at      DateTime DEFAULT now()
    _ver            UInt64

zakaz.fact_qtickets_inventory  ReplacingMergeTree(_ver) ORDER BY (event_id, city) PARTITION BY tuple()
    event_id        String
    city            LowCardinality(String)
    tickets_total   UInt32 DEFAULT 0
    tickets_left    UInt32 DEFAULT 0
    _ver            UInt64
    _loaded_at      DateTime DEFAULT now()

zakaz.fact_qtickets_inventory_latest  ReplacingMergeTree(_ver) ORDER BY (event_id, city) PARTITION BY tuple()
    snapshot_ts     DateTime
    event_id        String
    event_name      String
    city            LowCardinality(String)
    tickets_total   Nullable(UInt32)
    tickets_left    Nullable(UInt32)
    _ver            UInt64

zakaz.fact_qtickets_sales  ReplacingMergeTree(_ver) ORDER BY (date, event_id, city) PARTITION BY toYYYYMM(date)
    date            Date
    event_id        String
    event_name      String
    city            String
    tickets_sold    UInt32 DEFAULT 0
    revenue         Decimal(12, 2) DEFAULT 0
    refunds         Decimal(12, 2) DEFAULT 0
    currency        FixedString(3) DEFAULT 'RUB'
    _ver            UInt64
    _loaded_at      DateTime DEFAULT now()

zakaz.fact_qtickets_sales_daily  ReplacingMergeTree(_ver) ORDER BY (event_id, sales_date, city) PARTITION BY toYYYYMM(sales_date)
    sales_date      Date
    event_id        String
    city            LowCardinality(String)
    tickets_sold    UInt32
    revenue         Float64
    _ver            UInt64

zakaz.meta_job_runs  MergeTree ORDER BY (job, started_at) PARTITION BY toYYYYMM(started_at)
    job             LowCardinality(String)
    run_id          String DEFAULT toString(generateUUIDv4())
    started_at      DateTime
    finished_at     DateTime
    status          LowCardinality(String)
    rows_processed  UInt64 DEFAULT 0
    message         String DEFAULT ''
    metrics         String DEFAULT ''

zakaz.stg_qtickets_api_inventory_raw  ReplacingMergeTree(_ver) ORDER BY (event_id, city, snapshot_ts) PARTITION BY tuple()
    snapshot_ts     DateTime
    event_id        String
    event_name      String
    city            LowCardinality(String)
    tickets_total   Nullable(UInt32)
    tickets_left    Nullable(UInt32)
    _ver            UInt64
    _dedup_key      FixedString(32)

zakaz.stg_qtickets_api_orders_raw  ReplacingMergeTree(_ver) ORDER BY (_dedup_key) PARTITION BY tuple()
    order_id        String
    event_id        String
    city            LowCardinality(String)
    sale_ts         DateTime
    tickets_sold    UInt32
    revenue         Float64
    currency        LowCardinality(String)
    _ver            UInt64
    _dedup_key      FixedString(32)

zakaz.stg_qtickets_sales  ReplacingMergeTree(ingested_at) ORDER BY (report_date, event_date, event_id, city, event_name)
    report_date     Date
    event_date      Date
    event_id        String
    event_name      String
    city            String
    tickets_sold    UInt32
    revenue         Decimal(12, 2)
    refunds_amount  Decimal(12, 2) DEFAULT 0
    currency        FixedString(3)
    src_message_id  String
    src_message_ts  DateTime
    dedup_key       String
    ingested_at     DateTime DEFAULT now()

zakaz.stg_qtickets_sheets_events  ReplacingMergeTree(_ver) ORDER BY (event_id, city) PARTITION BY toYYYYMM(event_date)
    event_id        String
    event_name      String
    event_date      Date
    city            String
    tickets_total   UInt32 DEFAULT 0
    tickets_left    UInt32 DEFAULT 0
    _ver            UInt64
    hash_low_card   LowCardinality(String)

zakaz.stg_qtickets_sheets_inventory  ReplacingMergeTree(_ver) ORDER BY (event_id, city) PARTITION BY toYYYYMM(_loaded_at)
    event_id        String
    city            String
    tickets_total   UInt32 DEFAULT 0
    tickets_left    UInt32 DEFAULT 0
    _ver            UInt64
    hash_low_card   LowCardinality(String)
    _loaded_at      DateTime DEFAULT now()

zakaz.stg_qtickets_sheets_raw  ReplacingMergeTree(_ver) ORDER BY (source, sheet_id, tab, hash_low_card) PARTITION BY toYYYYMM(_ingest_ts) TTL _ingest_ts + toIntervalDay(30)
    source          String
    sheet_id        String
    tab             String
    payload_json    String
    _ver            UInt64
    _ingest_ts      DateTime
    hash_low_card   LowCardinality(String)

zakaz.stg_qtickets_sheets_sales  ReplacingMergeTree(_ver) ORDER BY (date, event_id, city) PARTITION BY toYYYYMM(date)
    date            Date
    event_id        String
    event_name      String
    city            String
    tickets_sold    UInt32 DEFAULT 0
    revenue         Decimal(12, 2) DEFAULT 0
    refunds         Decimal(12, 2) DEFAULT 0
    currency        FixedString(3) DEFAULT 'RUB'
    _ver            UInt64
    hash_low_card   LowCardinality(String)

zakaz.stg_sales_events  ReplacingMergeTree(_ver) ORDER BY (event_date, city, event_id, order_id) PARTITION BY toYYYYMM(event_date) TTL _loaded_at + toIntervalDay(30)
    event_date      Date
    event_id        String
    city            String
    order_id        String
    tickets_sold    Int32
    net_revenue     Float64
    currency        LowCardinality(String)
    _src            LowCardinality(String) DEFAULT 'qtickets'
    _op             LowCardinality(String) DEFAULT 'UPSERT'
    _ver            UInt64
    _loaded_at      DateTime DEFAULT now()

zakaz.stg_vk_ads_daily  ReplacingMergeTree(_ver) ORDER BY (stat_date, city, campaign_id, ad_id) PARTITION BY toYYYYMM(stat_date) TTL _loaded_at + toIntervalDay(30)
    stat_date       Date
    city            String
    campaign_id     String
    ad_id           String
    impressions     UInt64
    clicks          UInt64
    spend           Float64
    _src            LowCardinality(String) DEFAULT 'vk_ads'
    _op             LowCardinality(String) DEFAULT 'UPSERT'
    _ver            UInt64
    _loaded_at      DateTime DEFAULT now()

meta.backup_runs  MergeTree ORDER BY (ts, backup_name, mode) PARTITION BY toYYYYMM(ts)
    ts              DateTime DEFAULT now()
    backup_name     String
    mode            Enum8('full' = 1, 'incr' = 2) DEFAULT 'full'
    target          String
    status          Enum8('ok' = 1, 'fail' = 2, 'running' = 3) DEFAULT 'running'
    bytes           UInt64 DEFAULT 0
    duration_ms     UInt64 DEFAULT 0
    details         String DEFAULT ''
    error_msg       String DEFAULT ''

meta.etl_alerts  MergeTree ORDER BY (ts) PARTITION BY toYYYYMM(ts)
    ts              DateTime
    severity        LowCardinality(String)
    job             LowCardinality(String)
    code            LowCardinality(String)
    message         String
    context_json    String

meta.etl_runs  MergeTree ORDER BY (started_at, job) PARTITION BY toYYYYMM(started_at)
    job             LowCardinality(String)
    run_id          UUID
    started_at      DateTime
    finished_at     DateTime
    status          LowCardinality(String)
    rows_written    UInt64
    rows_read       UInt64
    err_msg         String
    from_date       Date
    to_date         Date
    host            String
    version_tag     String

meta.sli_daily  ReplacingMergeTree(updated_at) ORDER BY (d, table_name, metric_name)
    d               Date
    table_name      LowCardinality(String)
    metric_name     LowCardinality(String)
    metric_value    Float64
    updated_at      DateTime DEFAULT now()

meta.watermarks  ReplacingMergeTree(updated_at) ORDER BY (source, stream)
    source          LowCardinality(String)
    stream          LowCardinality(String)
    wm_type         LowCardinality(String)
    wm_value_s      String
    updated_at      DateTime DEFAULT now()
"""

VIEWS = """
zakaz.v_sales_latest: sale_date, event_date, event_id, event_name, city, tickets_sold, revenue, refunds_amount, currency
zakaz.v_sales_14d: d, city, event_id, event_name, tickets_sold, revenue, refunds_amount
zakaz.v_dm_sales_daily: event_date, sale_date, event_id, city, event_name, tickets_sold, revenue, refunds_amount, net_revenue, currency, _loaded_at
zakaz.v_vk_ads_daily: stat_date, city, impressions, clicks, spend
zakaz.v_marketing_roi_daily: d, city, net_revenue, tickets_sold, spend, clicks, impressions, roas, cpc, cpt
zakaz.v_qtickets_sales_latest: date, event_id, event_name, city, tickets_sold, revenue, refunds, currency
zakaz.v_qtickets_sales_14d: date, city, event_id, event_name, tickets_sold, revenue, refunds, currency
zakaz.v_qtickets_inventory: event_id, city, tickets_total, tickets_left, tickets_sold
zakaz.v_qtickets_freshness: source, table_name, latest_date, days_behind, total_rows
zakaz.v_qtickets_sales_dashboard: event_id, event_name, city, tickets_sold_today, revenue_today, tickets_sold_14d, revenue_14d, tickets_total, tickets_left, inventory_updated_at, start_date, end_date
meta.v_quality_last_day: d, sales_rows, sales_revenue, vk_rows, vk_spend
meta.v_sli_latest: d, table_name, metric_name, metric_value, updated_at
bi.v_sales_daily: d, city, event_id, tickets_sold, revenue, currency, _loaded_at
bi.v_vk_ads_daily: d, city, impressions, clicks, spend, _loaded_at
bi.v_marketing_roi_daily: d, city, revenue, tickets_sold, impressions, clicks, spend, roas, cpc, cpt, _loaded_at
bi.v_ops_freshness: d, source, loaded_at_sales, loaded_at_vk, freshness_hours_sales, freshness_hours_vk
"""

MATERIALIZED_VIEWS = """
zakaz.mv_qtickets_sales_latest ReplacingMergeTree ORDER BY (event_id, city) PARTITION BY tuple(): event_id, city, latest_sale_ts, tickets_sold_14d, revenue_14d
"""


def upgrade() -> None:
    context = op.get_context()
    if context.as_sql:
        context.impl.static_output("-- 0011: the schema check runs online only" + context.impl.command_terminator)
        return
    assert_schema(op.get_bind(), expected_schema())


def downgrade() -> None:
    pass


# --- the check, frozen with the expectations -----------------------------------------
# Both sides in one normalised form: ClickHouse 24.8 and 26.x print keys,
# DEFAULTs and TTLs differently (brackets, tuple()), and a cluster deploy
# makes engines Replicated.  Revision 0013 reuses these (it reads this module).

# How a view runs when created without the clause (servers print it only once given).
_DEFAULT_SECURITY = {"table": "", "view": "INVOKER", "materialized_view": "NONE"}
ENGINE_CLAUSES = ("PARTITION BY", "PRIMARY KEY", "ORDER BY", "SAMPLE BY", "TTL", "SETTINGS", "COMMENT")


class SchemaMismatch(Exception):
    """The live schema is not the expected one; the message lists every difference."""

    def __init__(self, findings: list[str]):
        self.findings = findings
        super().__init__(f"schema differs from the expected one ({len(findings)} finding(s)): " + "; ".join(findings))


def _scan(text: str):
    """(index, char, depth) of each character outside quotes; a bracket counts at its outer depth."""
    depth, quote, i = 0, "", 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"`":
            quote = ch
        elif ch in "([":
            yield i, ch, depth
            depth += 1
        elif ch in ")]":
            depth -= 1
            yield i, ch, depth
        else:
            yield i, ch, depth
        i += 1


def _squash(text: str) -> str:
    """Whitespace outside quotes collapsed to one space."""
    keep = {i for i, _, _ in _scan(text)}
    return re.sub(r"\x00+", " ", "".join("\x00" if i in keep and ch.isspace() else ch
                                          for i, ch in enumerate(text or ""))).strip()


def _wrapped(text: str) -> bool:
    if not text.startswith("("):
        return False
    return next(i for i, ch, depth in _scan(text) if ch == ")" and depth == 0) == len(text) - 1


def _has_comma(text: str) -> bool:
    return any(ch == "," and depth == 0 for _, ch, depth in _scan(text))


def _expression(text: str) -> str:
    """Grouping brackets dropped (26.x keeps them); a tuple is (a, b) on both lines."""
    text = _squash(text or "")
    while _wrapped(text) and not _has_comma(text[1:-1]):
        text = text[1:-1].strip()
    if text.startswith("tuple(") and _wrapped(text[5:]) and _has_comma(text[6:-1]):
        text = text[5:]
    return text


def _key(text: str) -> str:
    """``(a, b)`` and ``a, b`` alike, ``(x)`` is ``x``, and tuple() (one partition) is ''."""
    text = _squash(text or "")
    if _wrapped(text):
        text = text[1:-1].strip()
    if not _has_comma(text):
        text = _expression(text)
    return "" if text == "tuple()" else text


def _clauses(engine_full: str) -> dict[str, str]:
    text = _squash(engine_full or "")
    starts = [(i, c) for i, ch, depth in _scan(text) if ch == " " and not depth
              for c in ENGINE_CLAUSES if text[i + 1:].startswith(c + " ")]
    parts = {"ENGINE": text[: starts[0][0]] if starts else text}
    for n, (pos, clause) in enumerate(starts):
        parts[clause] = text[pos + 1 + len(clause): starts[n + 1][0] if n + 1 < len(starts) else len(text)].strip()
    return parts


def _logical_engine(engine: str) -> str:
    """ReplicatedReplacingMergeTree('/path', '{replica}', _ver) is ReplacingMergeTree(_ver)."""
    m = re.match(r"^Replicated(\w*MergeTree)\s*(?:\((.*)\))?\s*$", engine or "", re.S)
    if not m:
        return engine
    args = re.sub(r"^\s*'(?:[^'\\]|\\.)*'\s*,\s*'(?:[^'\\]|\\.)*'\s*,?\s*", "", m.group(2) or "")
    return m.group(1) + (f"({args.strip()})" if args.strip() else "")


def _object(kind: str, clause: str, columns: list[tuple[str, str, str]], security: str = "") -> dict:
    parts = _clauses(clause) if clause else {}
    return {"kind": kind, "columns": columns, "security": security,
            "engine": _logical_engine(parts.get("ENGINE", "")), "order_by": _key(parts.get("ORDER BY", "")),
            "partition_by": _key(parts.get("PARTITION BY", "")), "ttl": _expression(parts.get("TTL", ""))}


def expected_schema(views_security: str = "") -> dict[str, dict]:
    """TABLES, VIEWS and MATERIALIZED_VIEWS above, parsed: name -> kind, columns (name, type, DEFAULT), engine, keys."""
    out = {}
    for block in TABLES.strip().split("\n\n"):
        head, *lines = block.strip().splitlines()
        name, clause = head.split(None, 1)
        columns = []
        for line in lines:
            column, rest = line.split(None, 1)
            type_, _, default = rest.partition(" DEFAULT ")
            columns.append((column, _squash(type_), _expression(default)))
        out[name] = _object("table", clause, columns)
    for text, kind, security in ((VIEWS, "view", views_security), (MATERIALIZED_VIEWS, "materialized_view", "")):
        for line in text.strip().splitlines():
            head, _, names = line.rpartition(":")
            name, _, clause = head.strip().partition(" ")
            out[name] = _object(kind, clause, [(n.strip(), "", "") for n in names.split(",")], security)
    return out


def live_schema(conn, databases: list[str]) -> dict[str, dict]:
    """The same form, from system.tables and system.columns (a materialized view's keys from its storage)."""
    where = ", ".join(f"'{d}'" for d in databases)
    tables = {(db, name): row for db, name, *row in conn.exec_driver_sql(
        "SELECT database, name, toString(uuid), engine, engine_full, create_table_query FROM system.tables "
        f"WHERE database IN ({where})").all()}
    columns: dict[tuple[str, str], list] = {}
    for db, table, name, type_, kind, expression in conn.exec_driver_sql(
            "SELECT database, table, name, type, default_kind, default_expression FROM system.columns "
            f"WHERE database IN ({where}) ORDER BY database, table, position").all():
        default = _expression(expression)
        if kind and kind != "DEFAULT":
            default = f"{kind} {default}".strip()
        columns.setdefault((db, table), []).append((name, _squash(type_), default))
    out = {}
    for (db, name), (uuid, engine, engine_full, create) in tables.items():
        if name.startswith(".inner"):
            continue
        kind = {"View": "view", "MaterializedView": "materialized_view"}.get(engine, "table")
        storage = engine_full
        if kind == "view":
            storage = ""
        elif kind == "materialized_view":
            inner = tables.get((db, f".inner_id.{uuid}")) or tables.get((db, f".inner.{name}"))
            storage = inner[2] if inner else ""
        security = re.search(r"\sSQL SECURITY (DEFINER|INVOKER|NONE) AS ", create or "")
        out[f"{db}.{name}"] = _object(kind, storage, columns.get((db, name), []),
                                      security.group(1) if security else _DEFAULT_SECURITY[kind])
    return out


def differences(live: dict[str, dict], expected: dict[str, dict]) -> list[str]:
    """What makes ``live`` not ``expected``; a different column order and extra objects are not."""
    out = []
    for name in sorted(expected):
        want, got = expected[name], live.get(name)
        if got is None:
            out.append(f"missing {want['kind'].replace('_', ' ')} {name}")
            continue
        if got["kind"] != want["kind"]:
            out.append(f"{name} is a {got['kind'].replace('_', ' ')}, expected a {want['kind'].replace('_', ' ')}")
            continue
        for aspect, label in (("engine", "engine"), ("order_by", "ORDER BY"), ("partition_by", "PARTITION BY"),
                              ("ttl", "TTL"), ("security", "SQL SECURITY")):
            if got[aspect] != want[aspect] and (aspect != "security" or want["security"]):
                out.append(f"{label} of {name}: expected {want[aspect] or '(none)'}, found {got[aspect] or '(none)'}")
        typed = want["kind"] == "table"
        have = {c[0]: c for c in got["columns"]}
        for column, type_, default in want["columns"]:
            spec = f"{type_} DEFAULT {default}" if default else type_
            if column not in have:
                out.append(f"missing column {name}.{column}" + (f" (expected {spec})" if typed else ""))
            elif typed and have[column][1] != type_:
                out.append(f"type of {name}.{column}: expected {type_}, found {have[column][1]}")
            elif typed and have[column][2] != default:
                out.append(f"DEFAULT of {name}.{column}: expected {default or '(none)'}, "
                           f"found {have[column][2] or '(none)'}")
        wanted = {c[0] for c in want["columns"]}
        out += [f"unmanaged column {name}.{c[0]}" for c in got["columns"] if c[0] not in wanted]
    return out


def unselectable(conn, views: list[str]) -> list[str]:
    """Views that do not answer a SELECT: all asked in one statement, one by one only to name them."""
    if not views:
        return []
    try:
        conn.exec_driver_sql(" UNION ALL ".join(
            f"SELECT '{v}' AS view, toTypeName(tuple(*)) AS columns FROM {v} LIMIT 0" for v in sorted(views)))
        return []
    except Exception:
        pass
    out = []
    for view in sorted(views):
        try:
            conn.exec_driver_sql(f"SELECT * FROM {view} LIMIT 0").all()
        except Exception as exc:
            out.append(f"{view} is not selectable: {str(getattr(exc, 'orig', exc)).splitlines()[0]}")
    return out


def assert_schema(conn, expected: dict[str, dict], more: list[str] = ()) -> None:
    """Raise SchemaMismatch unless the live databases of ``expected`` match it and its views answer."""
    live = live_schema(conn, sorted({name.split(".", 1)[0] for name in expected}))
    findings = differences(live, expected)
    findings += unselectable(conn, [n for n, o in expected.items() if o["kind"] != "table" and n in live])
    findings += list(more)
    if findings:
        raise SchemaMismatch(findings)
