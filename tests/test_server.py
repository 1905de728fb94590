"""The framework on a real ClickHouse 24.8 server, over native and HTTP.

Part of `make test` (`pytest -m server` alone).  The server is compose's where
a Docker engine exists (CLICKHOUSE_IMAGE=clickhouse/clickhouse-server:<tag>
runs the suite on another release), else a local process from the chdb 2.1.1
wheel: see tests/server_support.py.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import time

import pytest

import server_support as support
from app import commands, users
from app.canonical import CANONICAL
from app.engine import ConnectionFailed, connect
from app.ledger import LEDGER_TABLE
from app.lock import LOCK_TABLE

pytestmark = pytest.mark.server

PROTOCOLS = ("native", "http")
# A password that breaks naive quoting in any of the three drivers.
PASSWORDS = {
    "ZAKAZ_ETL_WRITER_PASSWORD": "etl-'q\\b%s%%(x)s-Secret1",
    "ZAKAZ_DATALENS_READER_PASSWORD": "reader-Secret-2",
    "ZAKAZ_BACKUP_USER_PASSWORD": "backup-Secret-3",
}


# --- fixtures (the session's `server` is in conftest.py) ------------------------

@pytest.fixture
def clean_server(server) -> support.Server:
    support.reset(server)
    yield server
    support.reset(server)


@pytest.fixture(params=PROTOCOLS)
def server_url(request, clean_server) -> str:
    """A deploy URL on an empty server: admin user, a fresh database for the ledger."""
    return clean_server.url(request.param, support.fresh_database(clean_server))


# --- helpers -------------------------------------------------------------------

def protocol_of(url: str) -> str:
    return "http" if url.startswith("clickhouse+http") else "native"


def ledger_db(url: str) -> str:
    return url.rsplit("/", 1)[-1]


def sql(url: str, statement: str) -> list[tuple]:
    return support.run_sql(url, statement)[0]


def assert_denied(url: str, statement: str) -> None:
    with connect(url) as conn:
        with pytest.raises(Exception) as err:
            conn.exec_driver_sql(statement)
    text = str(err.value)
    assert "ACCESS_DENIED" in text or "Not enough privileges" in text, text


def literal_for(type_: str) -> str:
    """A valid literal of a column type, for one-row inserts."""
    base = re.sub(r"^(Nullable|LowCardinality)\((.*)\)$", r"\2", type_)
    if base.startswith("Enum"):
        return re.search(r"'[^']*'", base).group(0)
    if base.startswith("FixedString"):
        return "'" + "x" * int(re.search(r"\d+", base).group(0)) + "'"
    if base == "Date":
        return f"'{dt.date.today()}'"
    if base.startswith("DateTime"):
        return f"'{dt.datetime.now().replace(microsecond=0)}'"
    if base == "UUID":
        return "'00000000-0000-0000-0000-000000000001'"
    if base.startswith(("UInt", "Int")):
        return "1"
    if base.startswith(("Float", "Decimal")):
        return "1.5"
    return "'x'"


def one_row_insert(name: str) -> str:
    """INSERT of one row into a canonical table, every column without a DEFAULT given."""
    cols = [c for c in CANONICAL[name].columns if not c.default]
    return (f"INSERT INTO {name} ({', '.join(c.name for c in cols)}) "
            f"VALUES ({', '.join(literal_for(c.type) for c in cols)})")


def revision_module(rev: str):
    script = commands.script_directory(commands.alembic_config(None))
    return script.get_revision(rev).module


def covered(grants: list[tuple], access: str, name: str) -> bool:
    db, _, table = name.partition(".")
    return any(a == access and d == db and (t is None or t == table or t == "*") for a, d, t in grants)


def role_grants(admin: str, role: str) -> list[tuple]:
    return sql(admin, "SELECT access_type, database, table FROM system.grants "
                      f"WHERE role_name = '{role}' AND NOT is_partial_revoke")


def assert_at_head_and_canonical(url: str) -> None:
    st = commands.status(url)
    assert st.heads == st.script_heads and st.problem is None
    # The server runs the access statements: nothing is recorded as skipped.
    assert st.skipped == []
    result = commands.verify(url)
    assert [str(f) for f in result["findings"] if f.fatal] == []


# --- the chain -------------------------------------------------------------------

@pytest.mark.slow
def test_upgrade_downgrade_upgrade_with_verify(server_url):
    admin = server_url
    commands.upgrade(server_url, "head")
    assert_at_head_and_canonical(server_url)

    # Revision 0010 ran for real: the roles exist with grants on exactly the
    # objects the revision names, every one of which exists.
    roles = {r for (r,) in sql(admin, "SELECT name FROM system.roles")}
    assert set(support.ROLES) <= roles
    m = revision_module("0010")
    etl, reader, backup = (role_grants(admin, r) for r in support.ROLES)
    for name in m.ETL_WRITES:
        assert covered(etl, "INSERT", name) and covered(etl, "SELECT", name), name
    assert covered(etl, "SELECT", "meta.etl_alerts") and not covered(etl, "INSERT", "meta.backup_runs")
    for name in m.READER_SELECTS:
        assert covered(reader, "SELECT", name), name
    assert not any(a == "INSERT" for a, _, _ in reader)
    assert covered(backup, "INSERT", "meta.backup_runs") and covered(backup, "SELECT", "meta.backup_runs")
    existing = {(d, t) for d, t in sql(admin, "SELECT database, name FROM system.tables")}
    for a, d, t in etl + reader + backup:
        assert t is None or (d, t) in existing, (a, d, t)

    commands.downgrade(server_url, "base")
    assert commands.status(server_url).heads == []
    assert sql(admin, "SELECT name FROM system.databases WHERE name IN ('zakaz', 'meta', 'bi')") == []
    # The downgrade of 0010 removed what it created.
    assert not set(support.ROLES) & {r for (r,) in sql(admin, "SELECT name FROM system.roles")}

    commands.upgrade(server_url, "head")
    assert_at_head_and_canonical(server_url)


@pytest.mark.slow
def test_ledger_is_exact_with_the_default_mutations_sync(server_url):
    # The server's default: UPDATE/DELETE would be asynchronous here.  The
    # ledger never relies on one, so every read right after a step is exact.
    assert int(sql(server_url, "SELECT getSetting('mutations_sync')")[0][0]) == 0
    script = commands.script_directory(commands.alembic_config(server_url))
    chain = [s.revision for s in reversed(list(script.walk_revisions()))]
    for rev in chain:
        commands.upgrade(server_url, rev)
        assert commands.status(server_url).heads == [rev]
        assert sql(server_url, "SELECT version_num FROM alembic_version") == [(rev,)]
    for i in range(len(chain) - 1, -1, -1):
        commands.downgrade(server_url, "-1", allow_data_loss=True)
        expected = chain[i - 1: i] if i else []
        assert commands.status(server_url).heads == expected
    db = ledger_db(server_url)
    rows = sql(server_url, "SELECT step_id, arrayStringConcat(arraySort(groupArray(status)), ',') "
                           f"FROM {db}.{LEDGER_TABLE} GROUP BY step_id")
    assert len(rows) == 2 * len(chain)
    assert all(statuses == "applied,started" for _, statuses in rows), rows
    assert sql(server_url, f"SELECT count() FROM system.mutations WHERE database = '{db}'") == [(0,)]


# --- users and grants ------------------------------------------------------------

def apply_users(url: str, passwords: dict[str, str] = PASSWORDS) -> list[dict]:
    return users.apply(url, environ=passwords)


def user_url(server: support.Server, protocol: str, env_name: str, database: str,
             passwords: dict[str, str] = PASSWORDS) -> str:
    name = next(u.name for u in users.APP_USERS if u.password_env == env_name)
    return server.url(protocol, database, user=name, password=passwords[env_name])


def test_users_apply_creates_then_updates_and_the_grants_take_effect(server_url, clean_server):
    commands.upgrade(server_url, "head")
    assert {d["action"] for d in apply_users(server_url)} == {"created"}
    p = protocol_of(server_url)

    etl = user_url(clean_server, p, "ZAKAZ_ETL_WRITER_PASSWORD", "zakaz")
    with connect(etl) as conn:
        # SET DEFAULT ROLE took effect: the role is active on login.
        assert conn.exec_driver_sql("SELECT arrayStringConcat(currentRoles(), ',')").scalar() == "zakaz_etl"
        # Loaders' tables, one of them the source of the materialized view
        # (which then writes with its definer's rights, not the loader's).
        for name in ("zakaz.stg_vk_ads_daily", "zakaz.stg_qtickets_api_orders_raw", "meta.etl_runs"):
            conn.exec_driver_sql(one_row_insert(name))
            assert conn.exec_driver_sql(f"SELECT count() FROM {name}").scalar() == 1, name
    assert_denied(etl, "DROP TABLE zakaz.stg_vk_ads_daily")
    assert_denied(etl, one_row_insert("meta.backup_runs"))

    reader = user_url(clean_server, p, "ZAKAZ_DATALENS_READER_PASSWORD", "bi")
    views = [name for name, obj in CANONICAL.items() if obj.kind != "table"]
    assert len(views) == 17
    with connect(reader) as conn:
        for name in views:  # every dashboard view, as DataLens reads it
            conn.exec_driver_sql(f"SELECT * FROM {name} LIMIT 1").all()
        for name in revision_module("0010").READER_SELECTS:
            conn.exec_driver_sql(f"SELECT * FROM {name} LIMIT 1").all()
        # The row etl_writer loaded reached the materialized view.
        assert conn.exec_driver_sql("SELECT count() FROM zakaz.mv_qtickets_sales_latest").scalar() == 1
    assert_denied(reader, one_row_insert("zakaz.dm_sales_daily"))
    assert_denied(reader, "SELECT * FROM zakaz.stg_qtickets_sales LIMIT 1")

    backup = user_url(clean_server, p, "ZAKAZ_BACKUP_USER_PASSWORD", "meta")
    with connect(backup) as conn:
        conn.exec_driver_sql(one_row_insert("meta.backup_runs"))
        assert conn.exec_driver_sql("SELECT count() FROM meta.backup_runs").scalar() == 1
    assert_denied(backup, "SELECT * FROM zakaz.fact_qtickets_sales LIMIT 1")

    # A second apply with new passwords updates the users: old ones stop working.
    rotated = {k: v + "-rotated" for k, v in PASSWORDS.items()}
    assert {d["action"] for d in apply_users(server_url, rotated)} == {"updated"}
    with pytest.raises(ConnectionFailed, match="authentication failed"):
        with connect(etl):
            pass
    assert support.responds(user_url(clean_server, p, "ZAKAZ_ETL_WRITER_PASSWORD", "zakaz", rotated))


# What each role exists for, and no more, on every object of the warehouse.
# DataLens reads the dashboards over HTTP; each view gets a query shaped like a
# chart's: filters on dates, GROUP BY, ORDER BY, LIMIT.
DASHBOARD_QUERIES = {
    "zakaz.v_sales_latest": "SELECT event_date, city, sum(tickets_sold), sum(revenue) FROM zakaz.v_sales_latest "
                            "WHERE event_date >= today() - 60 GROUP BY event_date, city ORDER BY event_date LIMIT 100",
    "zakaz.v_sales_14d": "SELECT d, sum(tickets_sold) AS t FROM zakaz.v_sales_14d GROUP BY d ORDER BY d",
    "zakaz.v_dm_sales_daily": "SELECT city, sum(net_revenue) FROM zakaz.v_dm_sales_daily "
                              "WHERE event_date BETWEEN today() - 30 AND today() GROUP BY city ORDER BY 2 DESC",
    "zakaz.v_vk_ads_daily": "SELECT stat_date, sum(spend), sum(clicks) FROM zakaz.v_vk_ads_daily "
                            "GROUP BY stat_date ORDER BY stat_date",
    "zakaz.v_marketing_roi_daily": "SELECT d, city, roas, cpc, cpt FROM zakaz.v_marketing_roi_daily "
                                   "WHERE d >= today() - 30 ORDER BY d, city LIMIT 500",
    "zakaz.v_qtickets_sales_latest": "SELECT event_name, sum(tickets_sold), sum(revenue) FROM zakaz.v_qtickets_sales_latest "
                                     "GROUP BY event_name ORDER BY 3 DESC LIMIT 20",
    "zakaz.v_qtickets_sales_14d": "SELECT date, city, sum(revenue) FROM zakaz.v_qtickets_sales_14d GROUP BY date, city",
    "zakaz.v_qtickets_inventory": "SELECT city, sum(tickets_total), sum(tickets_left), sum(tickets_sold) "
                                  "FROM zakaz.v_qtickets_inventory GROUP BY city",
    "zakaz.v_qtickets_freshness": "SELECT source, table_name, latest_date, days_behind FROM zakaz.v_qtickets_freshness",
    "zakaz.v_qtickets_sales_dashboard": "SELECT event_name, city, tickets_sold_14d, tickets_left FROM "
                                        "zakaz.v_qtickets_sales_dashboard ORDER BY tickets_sold_14d DESC LIMIT 50",
    "meta.v_quality_last_day": "SELECT * FROM meta.v_quality_last_day",
    "meta.v_sli_latest": "SELECT table_name, metric_name, max(metric_value) FROM meta.v_sli_latest "
                         "GROUP BY table_name, metric_name",
    "bi.v_sales_daily": "SELECT d, city, sum(tickets_sold), sum(revenue) FROM bi.v_sales_daily "
                        "WHERE d >= today() - 90 GROUP BY d, city ORDER BY d",
    "bi.v_vk_ads_daily": "SELECT d, sum(impressions), sum(clicks), sum(spend) FROM bi.v_vk_ads_daily GROUP BY d ORDER BY d",
    "bi.v_marketing_roi_daily": "SELECT d, sum(revenue), sum(spend), if(sum(spend) = 0, NULL, sum(revenue) / sum(spend)) "
                                "FROM bi.v_marketing_roi_daily GROUP BY d ORDER BY d",
    "bi.v_ops_freshness": "SELECT source, freshness_hours_sales, freshness_hours_vk FROM bi.v_ops_freshness",
    "zakaz.mv_qtickets_sales_latest": "SELECT city, sum(tickets_sold_14d) FROM zakaz.mv_qtickets_sales_latest GROUP BY city",
}


def warehouse_objects(admin: str) -> dict[str, str]:
    """Every object in zakaz, meta and bi, as the server lists it: name -> engine."""
    return {f"{d}.{t}": e for d, t, e in sql(
        admin, "SELECT database, name, engine FROM system.tables "
               "WHERE database IN ('zakaz', 'meta', 'bi') AND NOT startsWith(name, '.inner')")}


@pytest.mark.slow
def test_each_role_can_do_what_it_exists_for_and_no_more(clean_server):
    admin = clean_server.url("native", support.fresh_database(clean_server))
    commands.upgrade(admin, "head")
    apply_users(admin)
    with connect(admin) as conn:
        from app.sample_data import load_sample

        load_sample(conn, rows_per_table=20)
    objects = warehouse_objects(admin)
    views = sorted(n for n, e in objects.items() if e in ("View", "MaterializedView"))
    assert sorted(DASHBOARD_QUERIES) == views  # a new view needs its dashboard query here
    m = revision_module("0010")

    reader = user_url(clean_server, "http", "ZAKAZ_DATALENS_READER_PASSWORD", "bi")
    with connect(reader) as conn:
        for name in views:
            rows = conn.exec_driver_sql(DASHBOARD_QUERIES[name]).all()
            assert rows or name in ("meta.v_quality_last_day",), f"{name}: no rows from the sample"
        for name in m.READER_SELECTS:
            conn.exec_driver_sql(f"SELECT count() FROM {name}").scalar()
    for name in sorted(set(objects) - set(views) - set(m.READER_SELECTS)):
        assert_denied(reader, f"SELECT * FROM {name} LIMIT 1")
    for name in views:
        assert_denied(reader, f"INSERT INTO {name} SELECT * FROM {name} LIMIT 0")

    etl = user_url(clean_server, "http", "ZAKAZ_ETL_WRITER_PASSWORD", "zakaz")
    with connect(etl) as conn:
        for name in m.ETL_WRITES:
            before = conn.exec_driver_sql(f"SELECT count() FROM {name}").scalar()
            conn.exec_driver_sql(one_row_insert(name))
            assert conn.exec_driver_sql(f"SELECT count() FROM {name}").scalar() == before + 1, name
    for name in sorted(n for n, e in objects.items() if e not in ("View", "MaterializedView")
                       and n not in m.ETL_WRITES):
        assert_denied(etl, one_row_insert(name) if name in CANONICAL else f"INSERT INTO {name} SELECT * FROM {name}")

    backup = user_url(clean_server, "http", "ZAKAZ_BACKUP_USER_PASSWORD", "meta")
    with connect(backup) as conn:
        conn.exec_driver_sql(one_row_insert("meta.backup_runs"))
    for name in sorted(set(objects) - {"meta.backup_runs"}):
        assert_denied(backup, f"SELECT * FROM {name} LIMIT 1")

    # The views' definer exists for them alone: nobody logs in as it.
    with pytest.raises(ConnectionFailed, match="authentication failed"):
        with connect(clean_server.url("http", user=support.VIEW_DEFINER, password="")):
            pass


def test_users_apply_writes_no_password_to_output_ledger_or_server_logs(server_url):
    commands.upgrade(server_url, "head")
    env = {"ZAKAZ_DATABASE_URL": server_url, **PASSWORDS}
    done = support.cli("users", "apply", env=env)
    assert done.returncode == 0, done.stderr
    assert "3 user(s) applied" in done.stdout
    db = ledger_db(server_url)
    ledger_text = "\n".join(str(v) for row in sql(server_url, f"SELECT * FROM {db}.{LEDGER_TABLE}") for v in row)
    with connect(server_url) as conn:
        conn.exec_driver_sql("SYSTEM FLUSH LOGS")
        for secret in PASSWORDS.values():
            assert secret not in done.stdout + done.stderr
            assert secret not in ledger_text
            # Searched for reversed, so this query's own log entry cannot match.
            logged = conn.exec_driver_sql(
                "SELECT count() FROM system.query_log WHERE position(query, reverse(%(r)s)) > 0",
                {"r": secret[::-1]},
            ).scalar()
            assert logged == 0, "the server's query log holds a password"


def test_users_apply_refuses_before_the_roles_exist(server_url):
    done = support.cli("users", "apply", env={"ZAKAZ_DATABASE_URL": server_url, **PASSWORDS})
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert "zakaz_etl" in done.stderr and "zakaz-schema upgrade" in done.stderr
    assert sql(server_url, "SELECT count() FROM system.users WHERE name = 'etl_writer'") == [(0,)]


# --- operations that other commands build on ---------------------------------------

def test_two_concurrent_upgrades_apply_once(clean_server):
    # The lock is protocol-independent: exercised once, over native.
    server_url = clean_server.url("native", support.fresh_database(clean_server))
    env = {"ZAKAZ_DATABASE_URL": server_url}
    procs = [support.start_cli("upgrade", "head", "--json", env=env) for _ in range(2)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=900)
        results.append((proc.returncode, out, err))
    applied_by = []
    for rc, out, err in results:
        assert clean_server.password not in out + err
        if rc == 0:
            steps = json.loads(out)["steps"]
            if steps:
                applied_by.append(len(steps))
        else:
            # The loser failed clearly, naming the lock, in one line.
            assert len(err.strip().splitlines()) == 1 and "lock" in err.lower(), err
    script_len = len(list(commands.script_directory(commands.alembic_config(server_url)).walk_revisions()))
    assert applied_by == [script_len], results
    db = ledger_db(server_url)
    counts = sql(server_url, f"SELECT revision, countIf(status = 'applied'), countIf(status = 'failed') "
                             f"FROM {db}.{LEDGER_TABLE} WHERE direction = 'upgrade' GROUP BY revision")
    assert len(counts) == script_len and all(a == 1 and f == 0 for _, a, f in counts), counts
    assert_at_head_and_canonical(server_url)


@pytest.mark.slow
def test_drill(server_url, clean_server):
    env = {"ZAKAZ_DATABASE_URL": server_url}
    done = support.cli("drill", "--url", server_url, "--yes", env=env)
    assert "No such command" not in done.stderr, "zakaz-schema drill is not there yet"
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    output = done.stdout + done.stderr
    assert clean_server.password not in output
    assert not re.search(r"Traceback", output)
    assert commands.status(server_url).problem is None


# --- bad input that needs a server (the rest of the catalogue is in test_failures.py) ---

@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_wrong_password_is_one_line_and_not_echoed(server, protocol):
    from click.testing import CliRunner

    from app.cli import main

    url = server.url(protocol, password="Wr0ngPassw0rd")
    result = CliRunner().invoke(main, ["status", "--url", url])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "authentication failed" in errors[0]
    assert "Wr0ngPassw0rd" not in result.output and server.password not in result.output


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_missing_database_is_one_line(server, protocol):
    from click.testing import CliRunner

    from app.cli import main

    result = CliRunner().invoke(main, ["status", "--url", server.url(protocol, "no_such_db")])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "does not exist" in errors[0]
    assert server.password not in result.output


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_server_that_is_down_is_one_line_and_not_echoed(server, protocol):
    from click.testing import CliRunner

    from app.cli import main

    url = support.Server(password=server.password, native_port=support.free_port(),
                         http_port=support.free_port()).url(protocol)  # nothing listens there
    result = CliRunner().invoke(main, ["upgrade", "--url", url])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "cannot reach the ClickHouse server" in errors[0], result.output
    assert "is it running?" in errors[0] and len(errors[0]) < 300, errors[0]
    assert server.password not in result.output


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_deploy_user_without_access_management_is_told_which_grant_is_missing(clean_server, protocol):
    """The roles revision needs CREATE ROLE: the step fails at its first statement,
    having changed nothing, and the message names the grant."""
    admin = clean_server.url("native")
    db = support.fresh_database(clean_server)
    password = "dep'loy-S3cret"
    support.run_sql(admin, "CREATE USER zt_deployer IDENTIFIED BY 'dep\\'loy-S3cret'",
                    "GRANT CREATE, DROP, ALTER, INSERT, SELECT, SYSTEM, OPTIMIZE, TRUNCATE, SHOW ON *.* TO zt_deployer")
    try:
        url = clean_server.url(protocol, db, user="zt_deployer", password=password)
        commands.upgrade(url, "0009")
        done = support.cli("upgrade", "--url", url)
        assert done.returncode == 1, done.stdout + done.stderr
        errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1, done.stderr
        assert "CREATE ROLE ON *.*" in errors[0] and "upgrade 0010 failed at statement 1" in errors[0], errors[0]
        assert password not in done.stdout + done.stderr
        problem = commands.status(url).problem
        assert problem["revision"] == "0010" and problem["error_code"] == 497
        assert sql(admin, "SELECT count() FROM system.roles WHERE startsWith(name, 'zakaz_')") == [(0,)]
    finally:
        support.run_sql(admin, "DROP USER IF EXISTS zt_deployer")


SLOW_STATEMENT = '''
"""A statement that runs a while on the server (for the Ctrl-C test)."""
import os
from alembic import op
revision = "s001"
down_revision = None
branch_labels = None
depends_on = None
DOWNGRADE_LOSES = []
def upgrade():
    if os.environ.get("ZAKAZ_STALL"):
        print("STALLED", flush=True)
        for _ in range(5):
            op.execute("SELECT sleep(3)")
def downgrade():
    pass
'''


def test_ctrl_c_during_a_statement_is_the_interrupted_line_and_resumable(server_url, tmp_path):
    # Over native the driver drops the connection mid-query: releasing the deploy lock on it
    # said "unexpected error: Can't reconnect until invalid transaction is rolled back".
    import signal

    env = support.one_revision_chain(tmp_path, "s001_slow.py", SLOW_STATEMENT)
    proc = support.start_cli("upgrade", "--url", server_url, env={**env, "ZAKAZ_STALL": "1"})
    for line in proc.stdout:
        if "STALLED" in line:
            break
    time.sleep(1.5)  # into the statement
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr
    assert stderr.strip().splitlines() == [stderr.strip()], stderr
    assert stderr.startswith("Error: interrupted: ") and "zakaz-schema status" in stderr, stderr
    status = support.cli("status", "--json", "--url", server_url, env=env)
    problem = json.loads(status.stdout)["problem"]
    assert problem["state"] == "interrupted" and problem["revision"] == "s001", status.stdout
    # The deploy lock was released on a new connection: nothing waits for its ttl.
    db = ledger_db(server_url)
    assert sql(server_url, f"SELECT count() FROM {db}.{LOCK_TABLE} WHERE action = 'release'") == [(1,)]
    resumed = support.cli("upgrade", "s001", "--resume", "--lock-wait", "0", "--url", server_url, env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    status = json.loads(support.cli("status", "--json", "--url", server_url, env=env).stdout)
    assert status["heads"] == ["s001"] and status["problem"] is None


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_user_without_a_grant_is_told_which_one_over_either_protocol(clean_server, protocol):
    # Over native this was "unexpected error: Orig exception: Code: 497. DB::***@ 0x...":
    # the driver's message is on a second line, and masking took the stack trace for a URL.
    admin = clean_server.url("native")
    db = support.fresh_database(clean_server)
    commands.upgrade(clean_server.url("native", db), "head")
    password = "we@k-S3cret"
    support.run_sql(admin, "CREATE USER zt_weak IDENTIFIED BY 'we@k-S3cret'", "GRANT SELECT ON *.* TO zt_weak")
    try:
        url = clean_server.url(protocol, db, user="zt_weak", password=password)
        done = support.cli("downgrade", "0012", "--url", url)
        errors = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 2 and len(errors) == 1, done.stdout + done.stderr
        assert errors[0].startswith("Error: ClickHouse error 497 (ACCESS_DENIED): "), errors[0]
        assert "grant INSERT(seq" in errors[0] and "zakaz_schema_lock" in errors[0] and "unexpected" not in errors[0] and "0x" not in errors[0], errors[0]
        assert password not in done.stdout + done.stderr and "we%40k" not in done.stderr
    finally:
        support.run_sql(admin, "DROP USER IF EXISTS zt_weak")


class _Proxy:
    """A TCP proxy in front of the server whose ``cut()`` drops every connection and stops
    listening: the server as a deploy sees it when it is killed, without killing it."""

    def __init__(self, port: int):
        import socket
        import threading

        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass

    def cut(self) -> None:
        import socket

        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept(): close() alone leaves it listening
        except OSError:
            pass
        self.listener.close()
        with self.lock:
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_server_lost_during_a_step_says_so_and_the_step_is_left_to_resume(clean_server, protocol, tmp_path):
    # Was "unexpected error: Orig exception: Code: 210. Connection refused".
    env = support.one_revision_chain(tmp_path, "s001_slow.py", SLOW_STATEMENT)
    db = support.fresh_database(clean_server)
    proxy = _Proxy(clean_server.native_port if protocol == "native" else clean_server.http_port)
    port = f":{proxy.port}/"
    url = clean_server.url(protocol, db).replace(
        f":{clean_server.native_port if protocol == 'native' else clean_server.http_port}/", port)
    proc = support.start_cli("upgrade", "--url", url, env={**env, "ZAKAZ_STALL": "1"})
    try:
        for line in proc.stdout:
            if "STALLED" in line:
                break
        proxy.cut()
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    errors = [line for line in stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and len(errors) == 1, stderr
    assert errors[0].startswith("Error: the connection to the server was lost during upgrade s001"), errors[0]
    assert "zakaz-schema status" in errors[0] and "upgrade s001 --resume" in errors[0], errors[0]
    assert clean_server.password not in stderr
    direct = clean_server.url(protocol, db)
    problem = commands.status(direct).problem
    assert problem["state"] == "interrupted" and problem["revision"] == "s001", problem
    resumed = support.cli("upgrade", "s001", "--resume", "--url", direct, env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr


# --- users left without their role (tryout defect D2) -------------------------------

def test_roles_dropped_and_created_again_are_reported_until_users_apply(server_url, clean_server):
    """0010's downgrade drops the roles and with them their grants to users; the upgrade
    creating them again does not give those back (datalens_reader then gets Code 497 on
    every view).  The downgrade and upgrade say so, and verify fails until `users apply`."""
    env = {"ZAKAZ_DATABASE_URL": server_url}
    commands.upgrade(server_url, "head")
    # Only datalens_reader exists: the other users are not findings.
    users.apply(server_url, ["datalens_reader"], environ=PASSWORDS)
    down = support.cli("downgrade", "0007", "--allow-data-loss", env=env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert [line for line in down.stdout.splitlines() if line.startswith("WARNING:")] == [
        "WARNING:   user datalens_reader exists but its role zakaz_reader does not (a downgrade dropped it, "
        "and with it its grant to the user): run `zakaz-schema upgrade`, then `zakaz-schema users apply`"]
    up = support.cli("upgrade", "--json", env=env)
    assert up.returncode == 0, up.stdout + up.stderr
    assert json.loads(up.stdout)["warnings"] == [
        "user datalens_reader exists but does not hold its role zakaz_reader (roles dropped by a downgrade "
        "and created again lose their grants to users): run `zakaz-schema users apply`"]
    reader = user_url(clean_server, protocol_of(server_url), "ZAKAZ_DATALENS_READER_PASSWORD", "bi")
    assert_denied(reader, "SELECT * FROM bi.v_sales_daily LIMIT 1")

    result = commands.verify(server_url)
    assert [(f.kind, f.object, f.expected, f.fatal) for f in result["findings"]] == [
        ("user_role", "datalens_reader", "zakaz_reader", True)]
    done = support.cli("verify", env=env)
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        str(result["findings"][0]),
        "USERS: 1 application user(s) without their role: run `zakaz-schema users apply`"]
    data = json.loads(support.cli("verify", "--json", env=env).stdout)
    assert not data["ok"] and [f["kind"] for f in data["findings"]] == ["user_role"]
    assert data["findings"][0]["message"].endswith("run `zakaz-schema users apply`")

    users.apply(server_url, ["datalens_reader"], environ=PASSWORDS)
    assert commands.verify(server_url)["findings"] == []
    with connect(reader) as conn:
        conn.exec_driver_sql("SELECT * FROM bi.v_sales_daily LIMIT 1").all()


def test_a_statement_longer_than_the_connect_timeout_runs_to_its_end_over_http(clean_server):
    # A rebuild's copy of a big table runs for minutes, and over HTTP
    # (wait_end_of_query) the server answers only at its end: the driver's one
    # 10 s timeout for connecting also cut every longer statement off.
    url = clean_server.url("http")
    with connect(url) as conn:
        started = time.monotonic()
        rows = conn.exec_driver_sql(
            "SELECT count(), sum(sleepEachRow(1)) FROM numbers(12) SETTINGS max_block_size = 1").all()
    assert rows == [(12, 0)] and time.monotonic() - started >= 12


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_password_with_letters_beyond_latin_1_logs_in_over_either_protocol(clean_server, protocol):
    # requests encoded Basic auth as Latin-1: "'latin-1' codec can't encode characters" over HTTP.
    admin = clean_server.url("native")
    password = "Пароль-é-2026"
    support.run_sql(admin, "CREATE USER IF NOT EXISTS zt_unicode IDENTIFIED BY 'Пароль-é-2026'")
    try:
        with connect(clean_server.url(protocol, user="zt_unicode", password=password)) as conn:
            assert conn.exec_driver_sql("SELECT currentUser()").scalar() == "zt_unicode"
        done = support.cli("status", "--url", clean_server.url(protocol, user="zt_unicode", password=password))
        assert done.returncode == 0 and password not in done.stdout + done.stderr, done.stderr
    finally:
        support.run_sql(admin, "DROP USER IF EXISTS zt_unicode")


def test_a_missing_grant_inside_a_step_reads_alike_on_both_protocols(clean_server):
    """ACCESS_DENIED in a migration step: the same wording as other ClickHouse errors, on native
    and HTTP alike (no stack trace, no version, no doubled period), saying what to do about the
    grant; the ledger keeps the server's full text."""
    admin = clean_server.url("native")
    said = {}
    for protocol in PROTOCOLS:
        support.reset(clean_server)
        db = support.fresh_database(clean_server)
        user = f"zt_nogrant_{protocol}"
        support.run_sql(admin, f"CREATE USER {user} IDENTIFIED BY 'n0-grant'",
                        f"GRANT CREATE, DROP, ALTER, INSERT, SELECT, SYSTEM, OPTIMIZE, TRUNCATE, SHOW ON *.* TO {user}")
        try:
            url = clean_server.url(protocol, db, user=user, password="n0-grant")
            commands.upgrade(url, "0009")
            done = support.cli("upgrade", "--url", url)
            assert done.returncode == 1, done.stdout + done.stderr
            [error] = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
            said[protocol] = error.replace(user, "<user>")
            problem = commands.status(url).problem
            assert problem["error_code"] == 497 and "Not enough privileges" in problem["error"], problem
        finally:
            support.run_sql(admin, f"DROP USER IF EXISTS {user}")
    assert said["native"] == said["http"], said
    error = said["native"]
    assert error.startswith("Error: upgrade 0010 failed at statement 1: ClickHouse error 497 (ACCESS_DENIED): "
                            "<user>: Not enough privileges"), error
    assert "CREATE ROLE ON *.*" in error and ".;" not in error, error
    assert not any(noise in error for noise in ("Code:", "DB::Exception", "(version", "Stack trace")), error
    assert ("the deploying user lacks that grant: grant it, or run as a user that has it, "
            "then run `zakaz-schema upgrade 0010 --resume`") in error, error


def test_an_application_user_with_more_than_its_role_fails_verify(server_url, clean_server):
    # users apply grants and never revokes: a role or privilege given by hand stayed, and
    # verify said OK while DataLens's user could write into a fact table (tryout).
    commands.upgrade(server_url, "head")
    users.apply(server_url, ["datalens_reader"], environ=PASSWORDS)
    admin = clean_server.url("native")
    support.run_sql(admin, "GRANT zakaz_etl TO datalens_reader",
                    "GRANT INSERT ON zakaz.dim_events TO datalens_reader")
    try:
        findings = [f for f in commands.verify(server_url)["findings"] if f.fatal]
        assert [(f.kind, f.object) for f in findings] == [("user_rights", "datalens_reader")]
        assert str(findings[0]) == ("user datalens_reader holds more than its role zakaz_reader: ROLE zakaz_etl, "
                                    "INSERT ON zakaz.dim_events; revoke them from datalens_reader (`users apply` "
                                    "grants, never revokes)")
    finally:
        support.run_sql(admin, "REVOKE zakaz_etl FROM datalens_reader",
                        "REVOKE INSERT ON zakaz.dim_events FROM datalens_reader")
    assert [f for f in commands.verify(server_url)["findings"] if f.fatal] == []
