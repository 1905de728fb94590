"""Smoke checks: the warehouse at head gives sensible answers on a realistic sample.

Upgrade to head, fill every table with ``app.sample_data.load_sample``, then:

* every view and the materialized view answers a SELECT, with rows (the old
  smoke SQL only selected and asserted nothing: an empty answer is a failure);
* inventory: ``v_qtickets_inventory.tickets_sold`` is total − left for every
  row of ``fact_qtickets_inventory_latest``;
* freshness: ``v_qtickets_freshness`` reports, per source, the latest date and
  row count of the table it names, days behind today, within the sample's days;
* ROI: both ROI views divide safely where spend (clicks, tickets) is zero, and
  the sample has such rows, so the check is not vacuous;
* the materialized view holds, per event and city, the sums of the orders inserted.

Runs on a scratch embedded database by default (removed afterwards).  A
database given by URL must hold no rows in the warehouse tables: sample rows
mixed with real ones would prove nothing, and real ones must not get samples.
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from app.warehouse import MANAGED_DATABASES
from app.config import mask_url
from app.engine import connect
from app.losses import row_count
from app.errors import UsageError
from app.replay import given_or_scratch, upgrade_to
from app.sample_data import DAYS, load_sample
from app.schema import TABLE
from app.snapshot import take_snapshot
from app.sql import clickhouse_error_message


class SmokeRefused(UsageError):
    """The database given cannot be used for smoke checks; nothing was changed."""


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class SmokeReport:
    url: str
    rows_per_table: int
    seed: int
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    @property
    def ok(self) -> bool:
        return bool(self.checks) and not self.failed

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def to_dict(self) -> dict:
        return {"ok": self.ok, "url": self.url, "rows_per_table": self.rows_per_table, "seed": self.seed,
                "seconds": round(self.seconds, 3), "checks": [asdict(c) for c in self.checks],
                "failed": [c.name for c in self.failed]}


def _rows(conn, sql: str) -> list[tuple]:
    return [tuple(r) for r in conn.exec_driver_sql(sql).all()]


# --- the checks -----------------------------------------------------------------------
# Each returns (ok, detail); an exception fails the check with its message.

def check_inventory(conn) -> tuple[bool, str]:
    view = {(e, c): (t, lft, s) for e, c, t, lft, s in _rows(conn, (
        "SELECT event_id, city, tickets_total, tickets_left, tickets_sold FROM zakaz.v_qtickets_inventory"))}
    table = {(e, c): (t, lft) for e, c, t, lft in _rows(conn, (
        "SELECT event_id, city, tickets_total, tickets_left FROM zakaz.fact_qtickets_inventory_latest FINAL"))}
    if set(view) != set(table):
        missing, extra = len(set(table) - set(view)), len(set(view) - set(table))
        return False, f"the view has {len(view)} rows, the table {len(table)} ({missing} missing, {extra} extra)"
    wrong = []
    for key, (total, left) in sorted(table.items()):
        expected = None if total is None or left is None else total - left
        v_total, v_left, sold = view[key]
        if (v_total, v_left, sold) != (total, left, expected):
            wrong.append(f"{key[0]}/{key[1]}: total {v_total}, left {v_left}, sold {sold} (expected {expected})")
    counted = sum(1 for t, lft in table.values() if t is not None and lft is not None)
    if wrong:
        return False, f"{len(wrong)} row(s) with tickets_sold != total - left: " + "; ".join(wrong[:3])
    if not counted:
        return False, "no inventory row with both counts: the check proves nothing"
    return True, f"{len(view)} rows, tickets_sold = total - left in each ({counted} with both counts)"


# Where each source of v_qtickets_freshness comes from (warehouse.md).
FRESHNESS_SOURCES = {
    "sales": "SELECT max(date), count() FROM zakaz.fact_qtickets_sales",
    "events": "SELECT max(start_date), count() FROM zakaz.dim_events",
    "inventory": "SELECT toDate(max(snapshot_ts)), count() FROM zakaz.fact_qtickets_inventory_latest",
}


def check_freshness(conn) -> tuple[bool, str]:
    today = conn.exec_driver_sql("SELECT today()").scalar()
    rows = {r[0]: r for r in _rows(conn, (
        "SELECT source, table_name, latest_date, days_behind, total_rows FROM zakaz.v_qtickets_freshness"))}
    if set(rows) != set(FRESHNESS_SOURCES):
        return False, f"sources {sorted(rows)}, expected {sorted(FRESHNESS_SOURCES)}"
    problems, shown = [], []
    for source, sql in FRESHNESS_SOURCES.items():
        _, table_name, latest, behind, total = rows[source]
        want_latest, want_total = conn.exec_driver_sql(sql).one()
        if latest != want_latest:
            problems.append(f"{source}: latest_date {latest}, the table's is {want_latest}")
        if total != want_total:
            problems.append(f"{source}: total_rows {total}, the table has {want_total}")
        if latest is not None and behind != (today - latest).days:
            problems.append(f"{source}: days_behind {behind}, expected {(today - latest).days}")
        if latest is None or not (today - dt.timedelta(days=DAYS) <= latest <= today):
            problems.append(f"{source}: latest_date {latest} is outside the sample's days "
                            f"({today - dt.timedelta(days=DAYS)}..{today})")
        shown.append(f"{source} {latest} ({behind} d, {total} rows)")
    if problems:
        return False, "; ".join(problems)
    return True, "; ".join(shown)


def _roi_check(conn, view: str, zero_conditions: list[tuple[str, str, str]]) -> tuple[bool, str]:
    """``zero_conditions``: (divisor zero, what the ratio must then be, label)."""
    selects = ["count()", "countIf(spend = 0)",
               "countIf(NOT isFinite(roas)) + countIf(ifNull(NOT isFinite(cpc), 0)) "
               "+ countIf(ifNull(NOT isFinite(cpt), 0))"]
    selects += [f"countIf(({zero}) AND NOT ({then}))" for zero, then, _ in zero_conditions]
    counts = conn.exec_driver_sql(f"SELECT {', '.join(selects)} FROM {view}").one()
    total, zero_spend, not_finite, *wrong = counts
    problems = []
    if not zero_spend:
        problems.append("no row with zero spend in the sample: the check proves nothing")
    if not_finite:
        problems.append(f"{not_finite} infinite or NaN ratio(s)")
    for (_, _, label), n in zip(zero_conditions, wrong):
        if n:
            problems.append(f"{n} row(s) where {label}")
    if problems:
        return False, "; ".join(problems)
    return True, f"{total} rows, {zero_spend} with zero spend; every ratio finite and guarded"


def check_roi_zakaz(conn) -> tuple[bool, str]:
    return _roi_check(conn, "zakaz.v_marketing_roi_daily", [
        ("spend = 0", "roas = 0", "spend is 0 but roas is not 0"),
        ("clicks = 0", "cpc = 0", "clicks are 0 but cpc is not 0"),
        ("tickets_sold = 0", "cpt = 0", "tickets_sold is 0 but cpt is not 0"),
        ("spend != 0", "abs(roas - net_revenue / spend) < 1e-6", "roas != net_revenue / spend"),
    ])


def check_roi_bi(conn) -> tuple[bool, str]:
    return _roi_check(conn, "bi.v_marketing_roi_daily", [
        ("spend = 0", "roas = 0", "spend is 0 but roas is not 0"),
        ("clicks = 0", "cpc IS NULL", "clicks are 0 but cpc is not NULL"),
        ("tickets_sold = 0", "cpt IS NULL", "tickets_sold is 0 but cpt is not NULL"),
    ])


def check_materialized_view(conn) -> tuple[bool, str]:
    # load_sample inserts each table in one block, so the view's per-block
    # sums are the whole sums (across several inserts they would not be:
    # the lint warning on 0004).
    mv = {(e, c): (int(t), float(r)) for e, c, t, r in _rows(conn, (
        "SELECT event_id, city, tickets_sold_14d, revenue_14d FROM zakaz.mv_qtickets_sales_latest FINAL"))}
    orders = {(e, c): (int(t), float(r)) for e, c, t, r in _rows(conn, (
        "SELECT event_id, city, sum(tickets_sold), sum(revenue) FROM zakaz.stg_qtickets_api_orders_raw "
        "WHERE sale_ts >= now() - toIntervalDay(14) GROUP BY event_id, city"))}
    if not orders:
        return False, "no sample order in the last 14 days: the check proves nothing"
    if set(mv) != set(orders):
        return False, f"{len(mv)} (event, city) rows in the view, {len(orders)} in the orders"
    wrong = [k for k in orders if mv[k][0] != orders[k][0] or abs(mv[k][1] - orders[k][1]) > 0.005]
    if wrong:
        k = wrong[0]
        return False, f"{len(wrong)} row(s) differ, e.g. {k[0]}/{k[1]}: view {mv[k]}, orders {orders[k]}"
    return True, f"{len(mv)} (event, city) rows match the orders of the last 14 days"


INVARIANTS: list[tuple[str, Callable[[Any], tuple[bool, str]]]] = [
    ("inventory: sold = total - left", check_inventory),
    ("freshness: the sample's dates", check_freshness),
    ("roi: zakaz divides safely", check_roi_zakaz),
    ("roi: bi divides safely", check_roi_bi),
    ("mv: sums of the orders", check_materialized_view),
]


# --- running ---------------------------------------------------------------------------

def _refuse_if_rows(conn) -> None:
    """A given database must have no rows in the warehouse tables."""
    snap = take_snapshot(conn, MANAGED_DATABASES)
    held = sorted((name, rows) for name, rows in snap.total_rows.items() if rows)[:3]
    if held:
        listing = ", ".join(f"{name} ({row_count(rows)})" for name, rows in held)
        raise SmokeRefused(f"the database already holds rows ({listing}); smoke checks load sample rows "
                           "and need an empty warehouse: use a scratch database (leave out --url)")


def _select_every_view(conn, report: SmokeReport) -> None:
    views = sorted(name for name, obj in take_snapshot(conn, MANAGED_DATABASES).schema.items()
                   if obj.kind != TABLE)
    if not views:
        report.checks.append(Check("select every view", False, "no view found in zakaz, meta or bi"))
    for name in views:
        try:
            count = conn.exec_driver_sql(f"SELECT count() FROM {name}").scalar()
        except Exception as exc:
            report.checks.append(Check(f"select {name}", False, clickhouse_error_message(exc)))
            continue
        detail = f"{count} row{'s' if count != 1 else ''}" if count else "no rows from the sample"
        report.checks.append(Check(f"select {name}", bool(count), detail))


def run_smoke_checks(url: str | None = None, *, rows_per_table: int = 50, seed: int = 0,
                     script_location: str | None = None) -> SmokeReport:
    """Upgrade ``url`` (default: a scratch embedded database) to head, load the sample, check."""
    t0 = time.perf_counter()
    report = SmokeReport(url="a scratch embedded database" if url is None else mask_url(url),
                         rows_per_table=rows_per_table, seed=seed)
    try:
        with given_or_scratch(url, "zakaz-smoke-") as (db_url, scratch), connect(db_url) as conn:
            if not scratch:
                _refuse_if_rows(conn)
            try:
                upgrade_to(conn, db_url, "heads", script_location=script_location)
            except Exception as exc:
                report.checks.append(Check("upgrade to head", False, clickhouse_error_message(exc)))
                return report
            report.checks.append(Check("upgrade to head", True, ""))
            # The views' today() is the server's: the sample is dated by it too.
            today: dt.date = conn.exec_driver_sql("SELECT today()").scalar()
            try:
                inserted = load_sample(conn, rows_per_table=rows_per_table, seed=seed, today=today)
            except Exception as exc:
                report.checks.append(Check("load sample", False, clickhouse_error_message(exc)))
                return report
            empty = sorted(t for t, n in inserted.items() if not n)
            report.checks.append(Check(
                "load sample", bool(inserted) and not empty,
                f"{sum(inserted.values())} rows into {len(inserted)} tables"
                + (f"; none into {', '.join(empty)}" if empty else "")))
            _select_every_view(conn, report)
            for name, check in INVARIANTS:
                try:
                    ok, detail = check(conn)
                except Exception as exc:
                    ok, detail = False, clickhouse_error_message(exc)
                report.checks.append(Check(name, ok, detail))
        return report
    finally:
        report.seconds = time.perf_counter() - t0
