"""Cluster mode on a real cluster: Keeper and two replicas (ch1, ch2) of one shard.

Part of `make test` (`pytest -m cluster` alone).  The cluster is the compose
profile ``cluster`` where a Docker engine exists, else ZooKeeper and two local
24.8 servers (tests/server_support.py); the deploys run with ``cluster="zakaz"``.
The SQL cluster mode renders is checked everywhere by test_cluster_sql.py.
"""
from __future__ import annotations

import threading
import time
import uuid

import pytest

import server_support as support
from app import cluster as cluster_mode
from app import commands, ledger, users
from app.canonical import MANAGED_DATABASES
from app.engine import connect
from app.errors import UsageError
from app.runtime import StepFailed

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

CLUSTER = "zakaz"
NODES = ("ch1", "ch2")


@pytest.fixture
def urls(cluster) -> dict[str, str]:
    """An empty cluster and a fresh database for this test's ledger: node -> deploy URL."""
    _reset(cluster)
    db = f"zc_{uuid.uuid4().hex[:12]}"
    cluster.sql("ch1", f"CREATE DATABASE {db} ON CLUSTER '{CLUSTER}'")
    yield {node: cluster.url(node, db) for node in NODES}
    _reset(cluster)


def _reset(cluster: support.Cluster) -> None:
    dbs = [r[0] for r in cluster.sql("ch1", "SELECT name FROM system.databases WHERE startsWith(name, 'zc_')")]
    for db in [*MANAGED_DATABASES, *dbs]:
        cluster.sql("ch1", f"DROP DATABASE IF EXISTS {db} ON CLUSTER '{CLUSTER}' SYNC")
    for user in users.USER_NAMES:
        cluster.sql("ch1", f"DROP USER IF EXISTS {user} ON CLUSTER '{CLUSTER}'")
    for role in support.ROLES:
        cluster.sql("ch1", f"DROP ROLE IF EXISTS {role} ON CLUSTER '{CLUSTER}'")


def _db(url: str) -> str:
    return url.rsplit("/", 1)[-1]


def sync(url: str, table: str) -> None:
    support.run_sql(url, f"SYSTEM SYNC REPLICA {table}")


def assert_verified_at_head(url: str) -> None:
    st = commands.status(url)
    assert st.heads == st.script_heads and st.problem is None and st.skipped == []
    result = commands.verify(url, cluster=CLUSTER)
    assert [str(f) for f in result["findings"] if f.fatal] == []


# --- the chain on a cluster ---------------------------------------------------------

def test_upgrade_through_either_replica_and_the_rebuild_keeps_every_row(cluster, urls):
    commands.upgrade(urls["ch1"], "0007", cluster=CLUSTER)
    table = "zakaz.stg_qtickets_sheets_inventory"
    support.run_sql(urls["ch1"], f"INSERT INTO {table} (event_id, city, tickets_total, tickets_left, _ver, "
                                 "hash_low_card) VALUES ('e1', 'msk', 10, 5, 1, 'a'), ('e2', 'spb', 8, 8, 1, 'b'), "
                                 "('e3', 'kzn', 3, 0, 2, 'c')")
    # Deploy the rest through the other replica: it must see 0007 applied (the
    # replicated ledger) and the rebuild (0008) must copy rows inserted on ch1.
    commands.upgrade(urls["ch2"], "head", cluster=CLUSTER)
    for node, url in urls.items():
        sync(url, table)
        assert support.run_sql(url, f"SELECT count() FROM {table}")[0] == [(3,)], node
        engine, partition_key = support.run_sql(
            url, "SELECT engine, partition_key FROM system.tables "
                 "WHERE database = 'zakaz' AND name = 'stg_qtickets_sheets_inventory'")[0][0]
        assert engine == "ReplicatedReplacingMergeTree" and partition_key == "toYYYYMM(_loaded_at)", node
        assert support.run_sql(url, "SELECT count() FROM system.tables WHERE endsWith(name, '__rebuild') "
                                    "OR endsWith(name, '__shape')")[0] == [(0,)], node
        assert_verified_at_head(url)


def test_a_rebuild_moves_rows_written_through_either_replica_during_its_swap(cluster, urls, monkeypatch):
    """Issue 15.8 on a cluster: the wait for every replica to hold the copy sits between the copy
    and the swap; rows written meanwhile, through this node or another, reach the swapped-out
    table and are moved, not dropped with it."""
    from app.operations import rebuild as operations

    table = "zakaz.stg_qtickets_sheets_inventory"
    columns = "event_id, city, tickets_total, tickets_left, _ver, hash_low_card"
    commands.upgrade(urls["ch1"], "0007", cluster=CLUSTER)
    support.run_sql(urls["ch1"], f"INSERT INTO {table} ({columns}) VALUES ('e1', 'msk', 10, 5, 1, 'a'), "
                                 "('e2', 'spb', 8, 8, 1, 'b')")
    real = operations.exchange_tables

    def exchange_while_etl_writes(a, b):
        support.run_sql(urls["ch2"], f"INSERT INTO {table} ({columns}) VALUES ('e1', 'msk', 10, 4, 2, 'a')")
        support.run_sql(urls["ch1"], f"INSERT INTO {table} ({columns}) VALUES ('e3', 'kzn', 3, 0, 1, 'c')")
        real(a, b)

    monkeypatch.setattr(operations, "exchange_tables", exchange_while_etl_writes)
    commands.upgrade(urls["ch1"], "0008", cluster=CLUSTER)
    for node, url in urls.items():
        sync(url, table)
        assert support.run_sql(url, f"SELECT event_id, _ver FROM {table} ORDER BY event_id, _ver")[0] == [
            ("e1", 1), ("e1", 2), ("e2", 1), ("e3", 1)], node
        assert support.run_sql(url, "SELECT count() FROM system.tables WHERE database = 'zakaz' "
                                    "AND startsWith(name, 'stg_qtickets_sheets_inventory__')")[0] == [(0,)], node


def test_every_replica_has_every_object_replicated_on_the_same_keeper_paths(cluster, urls):
    commands.upgrade(urls["ch1"], "head", cluster=CLUSTER)
    databases = ", ".join(f"'{d}'" for d in (*MANAGED_DATABASES, _db(urls["ch1"])))
    seen = {}
    for node, url in urls.items():
        assert_verified_at_head(url)
        with connect(url) as conn:
            assert cluster_mode.unreplicated_tables(conn, (*MANAGED_DATABASES, _db(url))) == []
        seen[node] = {
            "replicas": support.run_sql(url, "SELECT database, table, zookeeper_path FROM system.replicas "
                                             f"WHERE database IN ({databases}) ORDER BY database, table")[0],
            "objects": support.run_sql(url, "SELECT database, name, engine FROM system.tables "
                                            f"WHERE database IN ({databases}) ORDER BY database, name")[0],
            "roles": support.run_sql(url, "SELECT name FROM system.roles ORDER BY name")[0],
            "grants": support.run_sql(url, "SELECT role_name, access_type, database, table FROM system.grants "
                                           "WHERE role_name != '' "
                                           "ORDER BY role_name, access_type, database, table")[0],
        }
    assert seen["ch1"] == seen["ch2"]
    # Views and the materialized view exist on both; the ledger and the lock are replicated.
    engines = [e for _, _, e in seen["ch1"]["objects"]]
    assert engines.count("View") == 16 + 1 and engines.count("MaterializedView") == 1  # + alembic_version
    replicated = {(d, t) for d, t, _ in seen["ch1"]["replicas"]}
    assert (_db(urls["ch1"]), ledger.LEDGER_TABLE) in replicated and (_db(urls["ch1"]), "zakaz_schema_lock") in replicated
    assert len(replicated) == 24 + 1 + 2  # tables, the MV's storage, ledger and lock
    assert set(support.ROLES) <= {r for (r,) in seen["ch1"]["roles"]}
    # Same Keeper paths (compared above), each node under its own replica name.
    for node, url in urls.items():
        names = support.run_sql(url, "SELECT DISTINCT replica_name FROM system.replicas "
                                     f"WHERE database IN ({databases}) ORDER BY replica_name")[0]
        assert names == [(f"01-{node}",), (node,)], (node, names)


def test_the_ledger_is_identical_on_every_replica(cluster, urls):
    commands.upgrade(urls["ch1"], "0004", cluster=CLUSTER)
    commands.upgrade(urls["ch2"], "head", cluster=CLUSTER)
    commands.downgrade(urls["ch1"], "0009", cluster=CLUSTER)
    rows = {}
    for node, url in urls.items():
        sync(url, f"{_db(url)}.{ledger.LEDGER_TABLE}")
        with connect(url) as conn:
            rows[node] = ledger.read_rows(conn, _db(url))
        assert commands.status(url).heads == ["0009"], node
    assert rows["ch1"] == rows["ch2"]
    assert {r["host"] for r in rows["ch1"]}  # written by this test process, read on both


def test_a_deploy_returns_once_every_replica_has_its_ledger_rows(cluster, urls):
    """`status` on any node right after a deploy must not read its last step as running."""
    commands.upgrade(urls["ch1"], "0001", cluster=CLUSTER)
    ledger_table = f"{_db(urls['ch2'])}.{ledger.LEDGER_TABLE}"
    support.run_sql(urls["ch2"], f"SYSTEM STOP FETCHES {ledger_table}")
    failure: list[BaseException] = []

    def deploy() -> None:
        try:
            commands.upgrade(urls["ch1"], "0002", cluster=CLUSTER)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failure.append(exc)

    worker = threading.Thread(target=deploy)
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while not any(r["revision"] == "0002" and r["status"] == "applied" for r in ledger_rows(urls["ch1"])):
            assert worker.is_alive() and time.monotonic() < deadline, failure
            time.sleep(0.2)
        time.sleep(1.5)
        assert worker.is_alive(), "the deploy returned while ch2 had not got its ledger rows"
    finally:
        support.run_sql(urls["ch2"], f"SYSTEM START FETCHES {ledger_table}")
        worker.join(120)
    assert not worker.is_alive() and failure == []
    st = commands.status(urls["ch2"])
    assert st.heads == ["0002"] and st.problem is None


def test_drill_on_the_cluster(cluster, urls):
    env = {"ZAKAZ_CLUSTER": CLUSTER, "ZAKAZ_DATABASE_URL": urls["ch1"]}
    done = support.cli("drill", "--url", urls["ch1"], "--yes", env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert cluster.password not in done.stdout + done.stderr
    for url in urls.values():
        st = commands.status(url)
        assert st.problem is None
        result = commands.verify(url, cluster=CLUSTER)
        assert [str(f) for f in result["findings"] if f.fatal] == []


def ledger_rows(url: str) -> list[dict]:
    sync(url, f"{_db(url)}.{ledger.LEDGER_TABLE}")
    with connect(url) as conn:
        return ledger.read_rows(conn, _db(url))


@pytest.mark.parametrize("protocol", ["native", "http"])
def test_a_ddl_timeout_names_the_replica_that_did_not_finish_and_resume_completes(cluster, urls, protocol):
    # Over HTTP the driver's exception carries the HTTP status as its code and
    # ClickHouse's 159 only in its text: the ledger must still record 159.
    deploy = cluster.url("ch1", _db(urls["ch1"]), protocol)
    commands.upgrade(deploy, "0009", cluster=CLUSTER)
    cluster.stop("ch2")
    try:
        with pytest.raises(StepFailed) as info:
            commands.upgrade(deploy, "0010", cluster=CLUSTER, ddl_task_timeout=5)
        message = str(info.value)
        assert info.value.code == cluster_mode.DISTRIBUTED_DDL_TIMEOUT and info.value.revision == "0010"
        assert cluster.address("ch2") in message and cluster.address("ch1") not in message
        assert len(message.splitlines()) == 1
        # The ledger has the step as failed, with the code and the host that did not finish.
        last = ledger_rows(urls["ch1"])[-1]
        assert (last["revision"], last["direction"], last["status"]) == ("0010", "upgrade", "failed")
        assert last["error_code"] == 159 and last["failed_statement"] == info.value.statement == 1
        assert cluster.address("ch2") in last["error"] and cluster.address("ch1") not in last["error"]
        problem = commands.status(deploy).problem
        assert problem["state"] == "failed" and problem["error_code"] == 159
    finally:
        cluster.start("ch2")
    commands.upgrade(deploy, "head", cluster=CLUSTER, resume=True)
    for url in urls.values():
        assert_verified_at_head(url)
        assert set(support.ROLES) <= {r for (r,) in support.run_sql(url, "SELECT name FROM system.roles")[0]}
        statuses = [(r["revision"], r["status"]) for r in ledger_rows(url) if r["revision"] == "0010"]
        assert statuses == [("0010", "started"), ("0010", "failed"), ("0010", "started"), ("0010", "applied")]


def test_with_a_replica_down_status_and_an_upgrade_with_nothing_to_do_do_not_wait_for_it(cluster, urls):
    # The ledger, its view and the lock exist: the preamble must not run ON
    # CLUSTER DDL, which would wait for ch2 (here up to 5 s, then fail).
    commands.upgrade(urls["ch1"], "head", cluster=CLUSTER)
    cluster.stop("ch2")
    try:
        started = time.monotonic()
        st = commands.status(urls["ch1"])
        assert st.heads == st.script_heads and st.problem is None
        assert commands.upgrade(urls["ch1"], "head", cluster=CLUSTER, ddl_task_timeout=5) == []
        done = support.cli("upgrade", "--url", urls["ch1"], "--cluster", CLUSTER,
                           env={"ZAKAZ_DDL_TASK_TIMEOUT": "5"})
        assert done.returncode == 0 and "Nothing to do" in done.stdout, done.stderr
        assert time.monotonic() - started < 5
    finally:
        cluster.start("ch2")
    assert commands.status(urls["ch2"]).heads == st.script_heads


def test_a_changed_version_view_is_replaced_and_a_current_one_left_alone(cluster, urls):
    commands.upgrade(urls["ch1"], "0001", cluster=CLUSTER)
    db = _db(urls["ch1"])
    view = f"{db}.{ledger.VERSION_VIEW}"
    for node in NODES:  # an older definition, by hand on each node
        cluster.sql(node, f"CREATE OR REPLACE VIEW {view} AS SELECT 'x' AS version_num")
    commands.upgrade(urls["ch1"], "0001", cluster=CLUSTER)
    view_uuid = f"SELECT uuid FROM system.tables WHERE database = '{db}' AND name = '{ledger.VERSION_VIEW}'"
    replaced = {}
    for node in NODES:  # replaced ON CLUSTER, so on ch2 too
        assert cluster.sql(node, f"SELECT version_num FROM {view}") == [("0001",)], node
        replaced[node] = cluster.sql(node, view_uuid)
    commands.upgrade(urls["ch1"], "0001", cluster=CLUSTER)
    for node in NODES:  # the current definition is left alone: same object
        assert cluster.sql(node, view_uuid) == replaced[node], node


APP_PASSWORDS = {
    "ZAKAZ_ETL_WRITER_PASSWORD": "etl-Cluster'pw%(x)s",
    "ZAKAZ_DATALENS_READER_PASSWORD": "reader-Cluster-pw-1",
    "ZAKAZ_BACKUP_USER_PASSWORD": "backup-Cluster-pw-2",
}


def test_users_apply_on_the_cluster_lets_each_user_log_in_on_every_replica(cluster, urls):
    commands.upgrade(urls["ch1"], "head", cluster=CLUSTER)
    done = users.apply(urls["ch1"], environ={**APP_PASSWORDS, "ZAKAZ_CLUSTER": CLUSTER})
    assert {d["action"] for d in done} == {"created"}
    for node in NODES:
        for user in users.APP_USERS:
            url = support.Server(user.name, APP_PASSWORDS[user.password_env], *cluster.ports[node]).url()
            assert support.run_sql(url, "SELECT 1, currentUser(), currentRoles()")[0] == [
                (1, user.name, [user.role])], (node, user.name)
        reader = support.Server("datalens_reader", APP_PASSWORDS["ZAKAZ_DATALENS_READER_PASSWORD"],
                                *cluster.ports[node]).url()
        support.run_sql(reader, "SELECT * FROM bi.v_sales_daily LIMIT 1")
    # ON CLUSTER statements are kept as text in Keeper's DDL queue: they carry
    # a salted hash, never the password.
    queue = " ".join(q for (q,) in cluster.sql("ch1", "SELECT query FROM system.distributed_ddl_queue"))
    assert "IDENTIFIED WITH sha256_hash" in queue
    for password in APP_PASSWORDS.values():
        assert password not in queue
    # The CLI takes --cluster like upgrade; a second apply rotates on every replica.
    rotated = {k: v + "-2" for k, v in APP_PASSWORDS.items()}
    cli = support.cli("users", "apply", "--url", urls["ch2"], "--cluster", CLUSTER, env=rotated)
    assert cli.returncode == 0 and "3 user(s) applied" in cli.stdout, cli.stderr
    for password in (*rotated.values(), cluster.password):
        assert password not in cli.stdout + cli.stderr
    for node in NODES:
        url = support.Server("etl_writer", rotated["ZAKAZ_ETL_WRITER_PASSWORD"], *cluster.ports[node]).url()
        assert support.responds(url), node
        old = support.Server("etl_writer", APP_PASSWORDS["ZAKAZ_ETL_WRITER_PASSWORD"], *cluster.ports[node]).url()
        assert not support.responds(old), node


def _wait_for_keeper(cluster: support.Cluster, timeout: float = 90) -> None:
    """Until every replicated table on both nodes has its Keeper session back."""
    deadline = time.monotonic() + timeout
    for node in NODES:
        while cluster.sql(node, "SELECT count() FROM system.replicas WHERE is_readonly") != [(0,)]:
            assert time.monotonic() < deadline, f"{node}: replicated tables still read-only"
            time.sleep(0.5)


def test_with_keeper_down_a_deploy_fails_in_one_line_and_changes_nothing(cluster, urls):
    commands.upgrade(urls["ch1"], "0001", cluster=CLUSTER)
    cluster.stop_keeper()
    try:
        deadline = time.monotonic() + 30
        while cluster.sql("ch1", "SELECT min(is_readonly) FROM system.replicas "
                                 f"WHERE database = '{_db(urls['ch1'])}'") != [(1,)]:
            assert time.monotonic() < deadline, "the ledger did not notice Keeper stopped"
            time.sleep(0.2)
        started = time.monotonic()
        done = support.cli("upgrade", "--url", urls["ch1"], "--cluster", CLUSTER)
        elapsed = time.monotonic() - started
    finally:
        cluster.start_keeper()
    _wait_for_keeper(cluster)
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(errors) == 1, done.stdout + done.stderr
    assert errors[0].startswith("Error: ") and "Keeper" in errors[0] and "nothing was changed" in errors[0]
    assert cluster.password not in done.stdout + done.stderr
    assert elapsed < 30  # not an INSERT's Keeper retries (minutes on 24.8)
    for url in urls.values():
        sync(url, f"{_db(url)}.{ledger.LEDGER_TABLE}")  # ch2 may not have fetched 0001's rows yet
        st = commands.status(url)
        assert st.heads == ["0001"] and st.problem is None
        assert support.run_sql(url, "SELECT count() FROM system.tables WHERE database IN ('zakaz', 'meta', 'bi')")[0] == [(0,)]


def test_deploying_without_cluster_mode_is_refused_on_a_cluster_ledger(cluster, urls):
    commands.upgrade(urls["ch1"], "0001", cluster=CLUSTER)
    with pytest.raises(ledger.LedgerError, match="pass --cluster NAME"):
        commands.upgrade(urls["ch1"], "head")
    assert commands.status(urls["ch1"]).heads == ["0001"]



def test_a_downgrade_counts_rows_on_every_replica_not_only_the_one_it_is_connected_to(cluster, urls):
    """ch2 has not fetched the rows ch1 holds: DROP TABLE ON CLUSTER would delete them on ch1 too."""
    commands.upgrade(urls["ch1"], "head", cluster=CLUSTER)
    table = "zakaz.fact_qtickets_inventory_latest"  # 0009 creates it; its downgrade drops it (declared)
    support.run_sql(urls["ch2"], f"SYSTEM STOP FETCHES {table}")
    try:
        support.run_sql(urls["ch1"], f"INSERT INTO {table} SELECT * FROM generateRandom() LIMIT 3")
        assert support.run_sql(urls["ch2"], f"SELECT count() FROM {table}")[0] == [(0,)]
        with pytest.raises(UsageError, match=r"downgrade would drop data from: zakaz\.fact_qtickets_inventory_latest "
                                             r"\(holding 3 rows\)"):
            commands.downgrade(urls["ch2"], "0008", cluster=CLUSTER)
        assert support.run_sql(urls["ch1"], f"SELECT count() FROM {table}")[0] == [(3,)]
        assert commands.status(urls["ch2"]).heads == ["0013"]
    finally:
        support.run_sql(urls["ch2"], f"SYSTEM START FETCHES {table}")


STALLING = '''
"""A statement that runs a while (Keeper is stopped during it)."""
from alembic import op
revision = "k001"
down_revision = None
branch_labels = None
depends_on = None
DOWNGRADE_LOSES = []
def upgrade():
    print("STALLED", flush=True)
    op.execute("SELECT sleep(3)")
def downgrade():
    pass
'''


def test_keeper_lost_during_a_step_fails_in_seconds_and_the_step_is_left_to_resume(cluster, urls, tmp_path):
    # The step's own statement needs no Keeper; the ledger row after it does.  An
    # INSERT into a Replicated table retries Keeper for minutes by default (~142 s
    # on 24.8 per INSERT, the lock's release another): the deploy seemed to hang.
    env = support.one_revision_chain(tmp_path, "k001_stall.py", STALLING)
    proc = support.start_cli("upgrade", "--url", urls["ch1"], "--cluster", CLUSTER, env=env)
    try:
        for line in proc.stdout:
            if "STALLED" in line:
                break
        cluster.stop_keeper()
        started = time.monotonic()
        _, stderr = proc.communicate(timeout=400)
        elapsed = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
        cluster.start_keeper()
    _wait_for_keeper(cluster)
    # A loaded machine stretches sleep(3) past app.waiting's first report: that line is progress.
    errors = [line for line in stderr.splitlines() if line.strip() and not line.startswith("waiting ")]
    assert proc.returncode != 0 and len(errors) == 1, stderr
    assert "Keeper" in errors[0] and "k001" in errors[0], errors[0]
    assert cluster.password not in stderr
    assert elapsed < 30, elapsed
    problem = commands.status(urls["ch1"]).problem  # written before Keeper went: the step is open
    assert problem is not None and problem["revision"] == "k001"
    resumed = support.cli("upgrade", "k001", "--resume", "--url", urls["ch1"], "--cluster", CLUSTER, env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
