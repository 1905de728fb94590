"""Cluster mode without a cluster: the SQL it renders, its rules, its refusals.

These run everywhere.  ClickHouse's own parser checks the rendered SQL:
``formatQuery`` on chDB parses ON CLUSTER and Replicated engines even though
chDB cannot run them, and normalises each statement, so "where did ON
CLUSTER land" is read from ClickHouse's answer, not from our text.  The real
cluster is exercised by tests/test_cluster.py.
"""
from __future__ import annotations

import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

from app import cluster as cluster_mode
from app import cluster_rewrite
from app import commands, ledger
from app.cli import main
from app.cluster import Cluster
from app.cluster_rewrite import ClusterRewriteError, rewrite
from app.config import PROJECT_ROOT, ConfigError
from app.engine import connect
from app.schema import logical_engine
from app.sql import clickhouse_error_code

# make test-fast: pure and unit tests (pyproject.toml, marker `fast`).
pytestmark = pytest.mark.fast

SERVER_URL = "clickhouse+native://deploy@db.example:9000/default"
MERGE_TREE = re.compile(r"^(Replacing|Summing|Aggregating|Collapsing|VersionedCollapsing|Graphite)?MergeTree$")


def statements(script: str) -> list[str]:
    """An offline script cut into statements (``;`` outside quotes), comments dropped."""
    out, start = [], 0
    for tok in cluster_rewrite._tokens(script):
        if tok.text == ";" and tok.kind == "punct":
            out.append(script[start:tok.start])
            start = tok.end
    out.append(script[start:])
    cleaned = []
    for stmt in out:
        body = "\n".join(line for line in stmt.splitlines() if not line.lstrip().startswith("--")).strip()
        if body:
            cleaned.append(body)
    return cleaned


@pytest.fixture
def format_query(db_url):
    """ClickHouse's parser and formatter (chDB), one line per statement."""
    with connect(db_url) as conn:
        def fmt(sql: str) -> str:
            return " ".join(conn.exec_driver_sql("SELECT formatQuery(%(q)s)", {"q": sql}).scalar().split())
        yield fmt


@pytest.fixture(scope="module")
def single_sql() -> str:
    return commands.offline_sql(SERVER_URL, "head")


@pytest.fixture(scope="module")
def cluster_sql() -> str:
    return commands.offline_sql(SERVER_URL, "head", cluster="zakaz")


def first_word(stmt: str) -> str:
    return stmt.split(None, 1)[0].upper()


def engines_of(formatted: str) -> list[str]:
    return re.findall(r"\bENGINE = (\w+)", formatted)


# --- the whole chain, rendered for a cluster ---------------------------------------

def test_every_ddl_statement_of_the_chain_runs_on_cluster(cluster_sql, format_query):
    stmts = statements(cluster_sql)
    ddl = [s for s in stmts if first_word(s) not in ("INSERT", "SYSTEM", "SET")]
    assert len(ddl) > 100  # the whole chain, ledger and access statements included
    for stmt in ddl:
        formatted = format_query(stmt)  # parses as ClickHouse
        assert " ON CLUSTER zakaz" in formatted, formatted[:200]
        assert formatted.count(" ON CLUSTER ") == 1, formatted[:200]
    kinds = {" ".join(s.split()[:2]) for s in ddl}
    assert {"CREATE DATABASE", "CREATE TABLE", "CREATE OR", "CREATE MATERIALIZED", "ALTER TABLE",
            "DROP TABLE", "EXCHANGE TABLES", "CREATE ROLE", "GRANT ON"} <= kinds


def test_ledger_inserts_and_copies_carry_no_on_cluster(cluster_sql, format_query):
    inserts = [s for s in statements(cluster_sql) if first_word(s) == "INSERT"]
    assert sum(1 for s in inserts if "zakaz_schema_ledger" in s) == 13
    assert len(inserts) == 15  # + the 0008 rebuild copy and the 0009 backfill
    for stmt in inserts:
        assert "ON CLUSTER" not in format_query(stmt)


def test_rebuild_waits_for_replicas_and_swaps_on_cluster(cluster_sql, format_query):
    stmts = statements(cluster_sql)
    table = "zakaz.stg_qtickets_sheets_inventory"
    copy = next(i for i, s in enumerate(stmts) if s.startswith(f"INSERT INTO {table}__rebuild"))
    # The copy reads this node's replica of the original, so it is synced first;
    # the original is dropped only after every replica holds the copy.
    assert format_query(stmts[copy - 1]) == f"SYSTEM SYNC REPLICA {table}"
    assert format_query(stmts[copy + 1]) == f"SYSTEM SYNC REPLICA ON CLUSTER zakaz {table}__rebuild"
    assert format_query(stmts[copy + 2]) == f"EXCHANGE TABLES {table} AND {table}__rebuild ON CLUSTER zakaz"
    assert format_query(stmts[copy + 3]) == f"DROP TABLE IF EXISTS {table}__rebuild ON CLUSTER zakaz SYNC"
    backfill = next(i for i, s in enumerate(stmts) if s.startswith("INSERT INTO zakaz.fact_qtickets_inventory_latest"))
    assert format_query(stmts[backfill - 1]) == "SYSTEM SYNC REPLICA zakaz.fact_qtickets_inventory_latest"


def test_every_merge_tree_engine_is_replicated_ledger_included(single_sql, cluster_sql, format_query):
    single = [e for s in statements(single_sql) for e in engines_of(format_query(s))]
    clustered = [(s, e) for s in statements(cluster_sql) for e in engines_of(format_query(s))]
    assert len(single) == len(clustered) == 27  # 24 tables, 0008's work table, the MV's storage, the ledger
    assert all(MERGE_TREE.match(e) for e in single)
    for stmt, engine in clustered:
        assert engine.startswith("Replicated") and MERGE_TREE.match(engine[len("Replicated"):]), stmt[:120]
    ledger_stmt = next(s for s, _ in clustered if "zakaz_schema_ledger" in s)
    assert "ReplicatedMergeTree('/clickhouse/zakaz_schema/{database}/{table}', '{shard}-{replica}')" in ledger_stmt
    data = [s for s, _ in clustered if "zakaz_schema_ledger" not in s]
    assert all("('/clickhouse/tables/{uuid}/{shard}', '{replica}'" in s for s in data)
    mv = next(s for s in data if s.startswith("CREATE MATERIALIZED VIEW"))
    assert "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{uuid}/{shard}', '{replica}')" in mv


def _as_single_server(stmt: str) -> str:
    """Undo exactly what cluster mode adds (an independent oracle, not app.cluster)."""
    stmt = stmt.replace(" ON CLUSTER 'zakaz'", "")
    stmt = re.sub(r"Replicated(\w*MergeTree)\('[^']*', '[^']*'\)", r"\1", stmt)
    stmt = re.sub(r"Replicated(\w*MergeTree)\('[^']*', '[^']*', ", r"\1(", stmt)
    return stmt


def _stable(stmt: str) -> str:
    # Ledger rows carry a sequence number, a step id and times of their own.
    return re.sub(r"(INSERT INTO default\.zakaz_schema_ledger \(.*?\) VALUES) \(.*\)$", r"\1 (...)", stmt, flags=re.S)


def test_cluster_mode_changes_nothing_else_and_nothing_leaks_into_single_server_sql(single_sql, cluster_sql):
    for marker in ("ON CLUSTER", "Replicated", "SYSTEM SYNC REPLICA", "{replica}", "{uuid}"):
        assert marker not in single_sql
    single = [_stable(s) for s in statements(single_sql)]
    clustered = [_stable(_as_single_server(s)) for s in statements(cluster_sql)
                 if not s.startswith(("SYSTEM SYNC REPLICA", "SET alter_sync = 2"))]
    assert clustered == single


def test_the_downgrade_chain_drops_on_cluster(format_query):
    down = statements(commands.offline_sql(SERVER_URL, "head:base", cluster="zakaz"))
    ddl = [s for s in down if first_word(s) not in ("INSERT", "SYSTEM", "SET")]
    assert any(s.startswith("DROP ROLE IF EXISTS zakaz_etl ON CLUSTER 'zakaz'") for s in ddl)
    assert any(s.startswith("DROP DATABASE IF EXISTS zakaz ON CLUSTER 'zakaz' SYNC") for s in ddl)
    for stmt in ddl:
        assert " ON CLUSTER zakaz" in format_query(stmt), stmt[:120]


# --- how the setting travels -----------------------------------------------------------

def test_cluster_from_alembic_x_argument():
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "-x", f"url={SERVER_URL}", "-x", "cluster=zakaz",
         "-x", "ddl_task_timeout=300", "upgrade", "base:0001", "--sql"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("SET alter_sync = 2;\n\nSET distributed_ddl_task_timeout = 300;")
    assert "CREATE DATABASE IF NOT EXISTS zakaz ON CLUSTER 'zakaz';" in done.stdout


def test_cluster_sql_ends_waiting_for_every_replica_of_the_ledger(format_query):
    *_, last = statements(commands.offline_sql(SERVER_URL, "0002", cluster="zakaz"))
    assert format_query(last) == f"SYSTEM SYNC REPLICA ON CLUSTER zakaz default.{ledger.LEDGER_TABLE}"
    *_, last = statements(commands.offline_sql(SERVER_URL, "0002"))
    assert "SYNC REPLICA" not in last


def test_cluster_from_the_environment_and_the_argument_wins(monkeypatch):
    monkeypatch.setenv("ZAKAZ_CLUSTER", "from_env")
    assert "CREATE DATABASE IF NOT EXISTS zakaz ON CLUSTER 'from_env'" in commands.offline_sql(SERVER_URL, "0001")
    assert "ON CLUSTER 'given'" in commands.offline_sql(SERVER_URL, "0001", cluster="given")
    monkeypatch.delenv("ZAKAZ_CLUSTER")
    assert "ON CLUSTER" not in commands.offline_sql(SERVER_URL, "0001")


def test_cli_sql_takes_cluster():
    result = CliRunner().invoke(main, ["sql", "base:0001", "--url", SERVER_URL, "--cluster", "zakaz"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "CREATE DATABASE IF NOT EXISTS meta ON CLUSTER 'zakaz';" in result.output
    assert "ReplicatedMergeTree('/clickhouse/zakaz_schema/{database}/{table}'" in result.output


def test_distributed_ddl_wait_settings_lead_the_script(format_query):
    sql = commands.offline_sql(SERVER_URL, "0001", cluster="zakaz", ddl_task_timeout=600,
                               ddl_output_mode="null_status_on_timeout")
    alter, first, second = statements(sql)[:3]
    # Every replica has each ALTER before the next statement runs.
    assert format_query(alter) == "SET alter_sync = 2"
    assert format_query(first) == "SET distributed_ddl_task_timeout = 600"
    assert format_query(second) == "SET distributed_ddl_output_mode = 'null_status_on_timeout'"
    assert "distributed_ddl" not in commands.offline_sql(SERVER_URL, "0001", cluster="zakaz")


def test_settings_precedence_attributes_then_x_then_environment():
    env = {"ZAKAZ_CLUSTER": "e", "ZAKAZ_CLUSTER_REPLICA": "{replica}_e", "ZAKAZ_DDL_TASK_TIMEOUT": "7"}
    c = cluster_mode.from_options({"cluster": "a"}, {"cluster": "x", "ddl_task_timeout": "9"}, env)
    assert (c.name, c.replica, c.ddl_task_timeout) == ("a", "{replica}_e", 9)
    assert cluster_mode.from_options({}, {}, env).name == "e"
    assert cluster_mode.from_options({}, {}, {}) is None


@pytest.mark.parametrize("options, message", [
    ({"cluster": "bad name"}, "not a name from remote_servers"),
    ({"cluster": "c", "cluster_keeper_path": "/clickhouse/tables/{shard}/{database}/{table}"}, "must contain {uuid}"),
    ({"cluster": "c", "cluster_replica": "r1"}, "must use a macro"),
    ({"cluster": "c", "cluster_ledger_keeper_path": "/zakaz_schema/ledger"}, "must contain {table}"),
    ({"cluster": "c", "ddl_output_mode": "loud"}, "is not one of throw, none"),
    ({"cluster": "c", "ddl_task_timeout": "soon"}, "not a whole number"),
    ({"ddl_task_timeout": "60"}, "given without a cluster"),
])
def test_bad_cluster_settings_are_refused_in_one_line(options, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        cluster_mode.from_options(options, {}, {})
    assert "\n" not in str(info.value)


# --- the rewriting rules, statement by statement ------------------------------------

C = Cluster("zakaz")

RULES = [
    # database-level: always ON CLUSTER
    ("CREATE DATABASE IF NOT EXISTS zakaz", "CREATE DATABASE IF NOT EXISTS zakaz ON CLUSTER 'zakaz'"),
    ("DROP DATABASE IF EXISTS bi SYNC", "DROP DATABASE IF EXISTS bi ON CLUSTER 'zakaz' SYNC"),
    # tables, quoted names, explicit UUID, engines with and without arguments
    ("CREATE TABLE `zakaz`.`t x` (a UInt8) ENGINE = MergeTree() ORDER BY a",
     "CREATE TABLE `zakaz`.`t x` ON CLUSTER 'zakaz' (a UInt8) ENGINE = "
     "ReplicatedMergeTree('/clickhouse/tables/{uuid}/{shard}', '{replica}') ORDER BY a"),
    ("CREATE TABLE zakaz.t UUID '9d7928f2-4cc3-4425-bcd5-5a6c2d23e729' (a UInt8, v UInt64) "
     "ENGINE = SummingMergeTree((a), v) ORDER BY a",
     "CREATE TABLE zakaz.t UUID '9d7928f2-4cc3-4425-bcd5-5a6c2d23e729' ON CLUSTER 'zakaz' (a UInt8, v UInt64) "
     "ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{uuid}/{shard}', '{replica}', (a), v) ORDER BY a"),
    # non-MergeTree engines stay; an ENGINE inside the query or a string is not an engine
    ("CREATE TABLE zakaz.l (a UInt8) ENGINE = Log", "CREATE TABLE zakaz.l ON CLUSTER 'zakaz' (a UInt8) ENGINE = Log"),
    ("CREATE MATERIALIZED VIEW zakaz.mv ENGINE = ReplacingMergeTree ORDER BY e AS "
     "SELECT engine AS e FROM system.tables WHERE engine = 'MergeTree'",
     "CREATE MATERIALIZED VIEW zakaz.mv ON CLUSTER 'zakaz' ENGINE = "
     "ReplicatedReplacingMergeTree('/clickhouse/tables/{uuid}/{shard}', '{replica}') ORDER BY e AS "
     "SELECT engine AS e FROM system.tables WHERE engine = 'MergeTree'"),
    ("CREATE OR REPLACE VIEW v AS SELECT 'ENGINE = MergeTree' AS x",
     "CREATE OR REPLACE VIEW v ON CLUSTER 'zakaz' AS SELECT 'ENGINE = MergeTree' AS x"),
    ("DROP TABLE IF EXISTS zakaz.a, zakaz.b SYNC", "DROP TABLE IF EXISTS zakaz.a, zakaz.b ON CLUSTER 'zakaz' SYNC"),
    ("ALTER TABLE zakaz.t DROP COLUMN IF EXISTS c", "ALTER TABLE zakaz.t ON CLUSTER 'zakaz' DROP COLUMN IF EXISTS c"),
    ("TRUNCATE TABLE IF EXISTS zakaz.t", "TRUNCATE TABLE IF EXISTS zakaz.t ON CLUSTER 'zakaz'"),
    ("OPTIMIZE TABLE zakaz.t FINAL", "OPTIMIZE TABLE zakaz.t ON CLUSTER 'zakaz' FINAL"),
    ("RENAME TABLE zakaz.a TO zakaz.b;", "RENAME TABLE zakaz.a TO zakaz.b ON CLUSTER 'zakaz';"),
    # access statements
    ("CREATE ROLE IF NOT EXISTS a, b", "CREATE ROLE IF NOT EXISTS a, b ON CLUSTER 'zakaz'"),
    ("CREATE USER IF NOT EXISTS u@'%' IDENTIFIED WITH sha256_password BY 'p'",
     "CREATE USER IF NOT EXISTS u@'%' ON CLUSTER 'zakaz' IDENTIFIED WITH sha256_password BY 'p'"),
    ("ALTER USER u DEFAULT ROLE r", "ALTER USER u ON CLUSTER 'zakaz' DEFAULT ROLE r"),
    ("REVOKE SELECT ON zakaz.t FROM r", "REVOKE ON CLUSTER 'zakaz' SELECT ON zakaz.t FROM r"),
    ("DROP USER IF EXISTS u", "DROP USER IF EXISTS u ON CLUSTER 'zakaz'"),
    # left alone: data statements, SYSTEM, a statement that already says where
    ("INSERT INTO zakaz.t SELECT * FROM zakaz.s", "INSERT INTO zakaz.t SELECT * FROM zakaz.s"),
    ("SYSTEM SYNC REPLICA zakaz.t", "SYSTEM SYNC REPLICA zakaz.t"),
    ("ALTER TABLE zakaz.t ON CLUSTER other DELETE WHERE 1", "ALTER TABLE zakaz.t ON CLUSTER other DELETE WHERE 1"),
    ("CREATE TEMPORARY TABLE tmp (a UInt8)", "CREATE TEMPORARY TABLE tmp (a UInt8)"),
]


@pytest.mark.parametrize("sql, expected", RULES, ids=[r[0][:40] for r in RULES])
def test_rewrite_rules(sql, expected, format_query):
    assert rewrite(sql, C, default_database="default") == expected
    format_query(expected)  # and ClickHouse parses it
    assert rewrite(sql, None) == sql


def test_replicated_databases_get_no_on_cluster_and_no_keeper_arguments(format_query):
    c = C.with_replicated_databases({"zakaz"})
    table = "CREATE TABLE IF NOT EXISTS zakaz.t (a UInt8, v UInt64) ENGINE = ReplacingMergeTree(v) ORDER BY a"
    assert rewrite(table, c) == table.replace("ReplacingMergeTree(v)", "ReplicatedReplacingMergeTree(v)")
    assert rewrite("ALTER TABLE zakaz.t ADD COLUMN b String", c) == "ALTER TABLE zakaz.t ADD COLUMN b String"
    assert rewrite("EXCHANGE TABLES zakaz.a AND zakaz.b", c) == "EXCHANGE TABLES zakaz.a AND zakaz.b"
    # Unqualified names belong to the URL's database.
    assert rewrite("DROP VIEW IF EXISTS v", c, default_database="zakaz") == "DROP VIEW IF EXISTS v"
    # Other databases, the database itself and access entities still need ON CLUSTER.
    assert "ON CLUSTER" in rewrite("ALTER TABLE meta.t ADD COLUMN b String", c)
    assert "ON CLUSTER" in rewrite("CREATE DATABASE IF NOT EXISTS zakaz", c)
    assert "ON CLUSTER" in rewrite("GRANT SELECT ON zakaz.t TO r", c)
    format_query(rewrite(table, c))


@pytest.mark.parametrize("sql", [
    "CREATE LIVE VIEW zakaz.lv AS SELECT 1",
    "SET DEFAULT ROLE r TO u",
    "UNDROP TABLE zakaz.t",
])
def test_unknown_ddl_is_refused_rather_than_run_on_one_node(sql):
    with pytest.raises(ClusterRewriteError):
        rewrite(sql, C)


@pytest.mark.parametrize("engine, logical", [
    ("ReplicatedReplacingMergeTree('/clickhouse/tables/{uuid}/{shard}', '{replica}', _ver)", "ReplacingMergeTree(_ver)"),
    ("ReplicatedMergeTree('/clickhouse/tables/{uuid}/{shard}', '{replica}')", "MergeTree"),
    ("ReplicatedSummingMergeTree('/p', 'r', (a, b), v)", "SummingMergeTree((a, b), v)"),
    ("ReplicatedReplacingMergeTree(_ver)", "ReplacingMergeTree(_ver)"),
    ("ReplacingMergeTree(_ver)", "ReplacingMergeTree(_ver)"),
    ("Log", "Log"),
])
def test_logical_engine(engine, logical):
    assert logical_engine(engine) == logical


# --- refusals online ------------------------------------------------------------------

def test_cluster_mode_is_refused_on_the_embedded_engine_before_anything_is_written(db_url, query):
    with pytest.raises(ConfigError, match="needs a ClickHouse server"):
        commands.upgrade(db_url, "head", cluster="zakaz")
    assert query("SELECT count() FROM system.tables WHERE database = 'default'") == [(0,)]
    result = CliRunner().invoke(main, ["upgrade", "--url", db_url, "--cluster", "zakaz"])
    assert result.exit_code == 2
    assert "needs a ClickHouse server" in result.output and "Traceback" not in result.output


@pytest.mark.replay  # replays the chain: not in make test-fast
def test_a_local_ledger_is_refused_in_cluster_mode_and_a_replicated_one_without(db_url):
    commands.upgrade(db_url, "0001")
    with connect(db_url) as conn:
        with pytest.raises(ledger.LedgerError, match="is not replicated") as info:
            ledger.ensure(conn, "default", cluster=C)
        assert "--cluster zakaz" in str(info.value)
        ledger.ensure(conn, "default")  # single-server mode: fine
    with pytest.raises(ledger.LedgerError, match="pass --cluster NAME"):
        ledger.check_mode("default", "ReplicatedMergeTree", None)


@pytest.mark.replay  # replays the chain: not in make test-fast
def test_verify_in_cluster_mode_reports_tables_that_are_not_replicated(db_url):
    commands.upgrade(db_url, "head")
    assert not [f for f in commands.verify(db_url)["findings"] if f.fatal]
    findings = commands.verify(db_url, cluster="zakaz")["findings"]
    local = [f for f in findings if f.kind == "engine"]
    assert len(local) == 25 and all(f.expected.startswith("Replicated") for f in local)
    assert {f.object for f in local} >= {"zakaz.dim_events", "meta.etl_runs"}


# --- distributed DDL timeouts ------------------------------------------------------

TIMEOUT_TEXT = (
    "Code: 159. DB::Exception: Distributed DDL task /clickhouse/task_queue/ddl/query-0000000007 is not "
    "finished on 1 of 2 hosts (0 of them are currently executing the task, 1 are inactive). They are going "
    "to execute the query in background. Was waiting for 5.000 seconds, which is longer than "
    "distributed_ddl_task_timeout. (TIMEOUT_EXCEEDED) (version 24.8.14.39 (official build))"
)


def test_a_ddl_timeout_is_explained_in_one_line(db_url):
    exc = Exception(TIMEOUT_TEXT)
    assert clickhouse_error_code(exc) == 159
    c = Cluster("zakaz", ddl_task_timeout=5)
    with connect(db_url) as conn:
        # chDB has no DDL queue to read: the message still names the task to look up.
        explained = cluster_mode.explain_ddl_timeout(conn, c, exc, "CREATE ROLE IF NOT EXISTS r ON CLUSTER 'zakaz'")
    text = str(explained)
    assert explained.code == 159 and "\n" not in text
    assert "ON CLUSTER 'zakaz'" in text and "query-0000000007" in text
    assert "distributed_ddl_task_timeout=5" in text and "--resume" in text and "ZAKAZ_DDL_TASK_TIMEOUT" in text


def test_error_code_reads_through_sqlalchemy_and_driver_wrappers(db_url):
    with connect(db_url) as conn:
        with pytest.raises(Exception) as info:
            conn.exec_driver_sql("SELECT * FROM default.no_such_table")
    assert clickhouse_error_code(info.value) == 60  # UNKNOWN_TABLE


def test_alembic_own_operations_are_rewritten_too():
    """op.create_table / op.add_column & co. (not only app.operations) get ON CLUSTER."""
    import io

    import sqlalchemy as sa
    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext
    from clickhouse_sqlalchemy import engines, types
    from clickhouse_sqlalchemy.drivers.native.base import ClickHouseDialect_native

    buf = io.StringIO()
    ctx = MigrationContext.configure(dialect=ClickHouseDialect_native(), opts={"as_sql": True, "output_buffer": buf})
    ctx.impl.cluster = C
    op = Operations(ctx)
    op.create_table("events", sa.Column("event_id", types.String), schema="zakaz",
                    info={"clickhouse_engine": engines.MergeTree(order_by=("event_id",))})
    op.add_column("events", sa.Column("city", types.String), schema="zakaz")
    op.rename_table("events", "events_v2", schema="zakaz")
    out = [s.strip() for s in buf.getvalue().split(";") if s.strip()]
    assert len(out) == 3
    assert out[0].startswith("CREATE TABLE zakaz.events ON CLUSTER 'zakaz'")
    assert "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{uuid}/{shard}', '{replica}')" in out[0]
    assert out[1] == "ALTER TABLE zakaz.events ON CLUSTER 'zakaz' ADD COLUMN city String"
    assert out[2] == "RENAME TABLE zakaz.events TO zakaz.events_v2 ON CLUSTER 'zakaz'"
