"""On a cluster, ON CLUSTER DDL that waits for a replica that is down says so while it waits (app/waiting.py).

Part of the cluster suite (`pytest -m cluster`): Keeper and two replicas,
see tests/test_cluster.py.
"""
from __future__ import annotations

import json
import uuid

import pytest

from app import commands, progress
from app.canonical import MANAGED_DATABASES
from app.runtime import StepFailed
from stderr_lines import StderrLines

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

CLUSTER = "zakaz"


def _reset(cluster) -> None:
    dbs = [r[0] for r in cluster.sql("ch1", "SELECT name FROM system.databases WHERE startsWith(name, 'zw_')")]
    for db in [*MANAGED_DATABASES, *dbs]:
        cluster.sql("ch1", f"DROP DATABASE IF EXISTS {db} ON CLUSTER '{CLUSTER}' SYNC")


@pytest.fixture
def deploy_url(cluster) -> str:
    _reset(cluster)
    db = f"zw_{uuid.uuid4().hex[:12]}"
    cluster.sql("ch1", f"CREATE DATABASE {db} ON CLUSTER '{CLUSTER}'")
    yield cluster.url("ch1", db)
    _reset(cluster)


def test_ddl_waiting_for_a_stopped_replica_names_it_before_the_step_fails(cluster, deploy_url, monkeypatch):
    commands.upgrade(deploy_url, "0001", cluster=CLUSTER)
    stderr = StderrLines()
    monkeypatch.setattr("sys.stderr", stderr)
    monkeypatch.setattr(progress, "_mode", progress.JSON)
    cluster.stop("ch2")
    try:
        with pytest.raises(StepFailed) as failed:
            commands.upgrade(deploy_url, "0002", cluster=CLUSTER, ddl_task_timeout=10)
    finally:
        cluster.start("ch2")
    assert failed.value.code == 159 and failed.value.statement == 1
    events = [json.loads(line) for line in stderr.lines if line.startswith('{"event": "waiting"')]
    assert events, stderr.lines
    said = events[0]
    assert (said["waiting_for"], said["revision"], said["statement"]) == ("distributed_ddl", "0002", 1), said
    assert said["detail"]["hosts_not_finished"] == [cluster.address("ch2")], said
    assert said["detail"]["cluster"] == CLUSTER and said["detail"]["hosts"] == 2
    assert cluster.address("ch2") in said["message"] and "1 of 2 hosts done" in said["message"]
    assert "ON CLUSTER" in said["sql"] and cluster.password not in json.dumps(events)
