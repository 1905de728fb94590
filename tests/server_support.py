"""Real ClickHouse servers for the server and cluster suites, and what those tests share.

Where a Docker engine with compose exists, the servers are docker-compose.yml's
(pytest-docker, the pinned 24.8 image); elsewhere they are local processes
from the chdb 2.1.1 wheel (tests/local_servers.py).  The tests are the same
either way.  Each backend starts with a random admin password on free
loopback ports and is removed afterwards."""
from __future__ import annotations

import functools
import os
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest

import local_servers
from app.config import PROJECT_ROOT, mask_url
from app.users import APP_USERS

WAREHOUSE_DATABASES = ("zakaz", "meta", "bi")
ROLES = ("zakaz_etl", "zakaz_reader", "zakaz_backup")
VIEW_DEFINER = "zakaz_view_definer"  # revision 0012
TEST_DATABASE_PREFIX = "zt_"
BACKEND_ENV = "ZAKAZ_SERVER_BACKEND"
COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"


def _first_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[0] if lines else ""


def _probe(args: list[str]) -> tuple[int, str, str]:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return 124, "", f"`{' '.join(args)}` timed out"
    except OSError as exc:
        return 127, "", str(exc)
    return done.returncode, done.stdout, done.stderr


@functools.lru_cache(maxsize=1)
def docker_unavailable_reason() -> str | None:
    """Why compose cannot start servers here, asked of Docker itself; None if it can."""
    docker = shutil.which("docker")
    if not docker:
        return "no Docker engine (the docker client is not installed)"
    problems = []
    rc, out, err = _probe([docker, "info", "--format", "{{.ServerVersion}}"])
    if rc != 0 or not out.strip():
        problems.append(f"no Docker engine (`docker info`: {_first_line(err) or 'no server answered'})")
    rc, out, err = _probe([docker, "compose", "version"])
    if rc != 0:
        problems.append(f"no Docker compose plugin (`docker compose version`: {_first_line(err) or _first_line(out) or f'exit {rc}'})")
    return "; ".join(problems) or None


def local_unavailable_reason(cluster: bool) -> str | None:
    """Why local server processes cannot start here; None if they can."""
    try:
        local_servers.server_library()
        if cluster:
            local_servers.zookeeper_command()
    except local_servers.Unavailable as exc:
        return str(exc)
    return None


def backend(cluster: bool = False) -> str:
    """``docker`` where a Docker engine with compose exists, else ``local`` (processes from
    the chdb 2.1.1 wheel); ZAKAZ_SERVER_BACKEND forces one.  Skips, saying why, when neither can run."""
    forced = os.environ.get(BACKEND_ENV)
    docker = docker_unavailable_reason() if forced in (None, "", "docker") else "not chosen"
    if forced not in (None, "", "docker", "local"):
        pytest.fail(f"{BACKEND_ENV}={forced!r}: use docker or local")
    if docker is None:
        return "docker"
    local = local_unavailable_reason(cluster) if forced != "docker" else "not chosen"
    if local is None:
        return "local"
    what = "cluster" if cluster else "server"
    pytest.skip(f"no ClickHouse {what} can start here: docker: {docker}; local processes: {local}")


def free_port() -> int:
    return local_servers.free_port()


@dataclass
class Server:
    """A ClickHouse server as the tests reach it: the admin (deploy) user and both protocols."""

    user: str = "zakaz_admin"
    password: str = field(default_factory=lambda: "adm-" + secrets.token_urlsafe(18))
    native_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"

    def compose_environment(self) -> dict[str, str]:
        """Variables docker-compose.yml reads, for this test project only."""
        return {
            "CLICKHOUSE_USER": self.user,
            "CLICKHOUSE_PASSWORD": self.password,
            "CLICKHOUSE_NATIVE_PORT": str(self.native_port),
            "CLICKHOUSE_HTTP_PORT": str(self.http_port),
        }

    def url(self, protocol: str = "native", database: str = "default",
            user: str | None = None, password: str | None = None) -> str:
        user = user or self.user
        password = self.password if password is None else password
        port = self.native_port if protocol == "native" else self.http_port
        return (f"clickhouse+{protocol}://{quote(user, safe='')}:{quote(password, safe='')}"
                f"@{self.host}:{port}/{database}")

    def secrets(self) -> list[str]:
        return [self.password]


def _wait_responsive(urls: list[str], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    for url in urls:
        while not responds(url):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{mask_url(url)} did not answer within {timeout:.0f} s")
            time.sleep(0.5)


@contextmanager
def running_server(tmp: Path):
    """One server for the session: compose's `clickhouse` service, or a local process."""
    server = Server()
    if backend() == "docker":
        from pytest_docker.plugin import get_docker_services

        # compose takes these from the environment before .env, so the suite
        # never uses (or needs) a developer's .env passwords or ports.
        with pytest.MonkeyPatch.context() as env:
            for key, value in server.compose_environment().items():
                env.setenv(key, value)
            with get_docker_services("docker compose", str(COMPOSE_FILE), f"zakaz-schema-test-{os.getpid()}",
                                     ["up -d --wait clickhouse"], ["down -v"]) as services:
                server.native_port = services.port_for("clickhouse", 9000)
                server.http_port = services.port_for("clickhouse", 8123)
                _wait_responsive([server.url(p) for p in ("native", "http")])
                yield server
        return
    process = local_servers.LocalServer(tmp, server.user, server.password,
                                        native_port=server.native_port, http_port=server.http_port)
    process.start()
    try:
        yield server
    finally:
        process.stop()


class Cluster:
    """Two replicas of one shard (cluster `zakaz`) and a Keeper, either backend."""

    name = "zakaz"
    nodes = ("ch1", "ch2")

    def __init__(self, user: str, password: str):
        self.user, self.password = user, password
        self.ports: dict[str, int] = {}
        self._compose = None  # pytest-docker's executor, docker backend
        self._services = None
        self._local: local_servers.LocalCluster | None = None

    def url(self, node: str, database: str = "default", protocol: str = "native") -> str:
        native, http = self.ports[node]
        return Server(self.user, self.password, native_port=native, http_port=http).url(protocol, database)

    def sql(self, node: str, statement: str, database: str = "default") -> list[tuple]:
        return run_sql(self.url(node, database), statement)[0]

    def address(self, node: str) -> str:
        """The node as the cluster's configuration names it (and so do ClickHouse's DDL errors)."""
        if self._local:
            return f"127.0.0.1:{self._local.nodes[node].native_port}"
        return f"{node}:9000"

    def stop(self, node: str) -> None:
        if self._local:
            self._local.nodes[node].stop()
        else:
            self._compose.execute(f"stop {node}")

    def start(self, node: str) -> None:
        if self._local:
            self._local.nodes[node].start()
        else:
            self._compose.execute(f"--profile cluster up -d --wait {node}")
            self._docker_ports()
        _wait_responsive([self.url(node)])

    def stop_keeper(self) -> None:
        if self._local:
            self._local.zookeeper.stop()
        else:
            self._compose.execute("stop keeper")

    def start_keeper(self) -> None:
        if self._local:
            self._local.zookeeper.start()
        else:
            self._compose.execute("--profile cluster up -d --wait keeper")

    def _docker_ports(self) -> None:
        for node in self.nodes:
            self.ports[node] = (self._services.port_for(node, 9000), self._services.port_for(node, 8123))


@contextmanager
def running_cluster(tmp: Path):
    creds = Server()
    cluster = Cluster(creds.user, creds.password)
    if backend(cluster=True) == "docker":
        from pytest_docker.plugin import DockerComposeExecutor, get_docker_services

        project = f"zakaz-schema-cluster-{os.getpid()}"
        with pytest.MonkeyPatch.context() as env:
            env.setenv("CLICKHOUSE_USER", creds.user)
            env.setenv("CLICKHOUSE_PASSWORD", creds.password)
            with get_docker_services("docker compose", str(COMPOSE_FILE), project,
                                     ["--profile cluster up -d --wait keeper ch1 ch2"],
                                     ["--profile cluster down -v"]) as services:
                cluster._services = services
                cluster._compose = DockerComposeExecutor("docker compose", str(COMPOSE_FILE), project)
                cluster._docker_ports()
                _wait_responsive([cluster.url(n) for n in cluster.nodes])
                yield cluster
        return
    local = local_servers.LocalCluster(tmp, creds.user, creds.password, cluster.name, cluster.nodes)
    local.start()
    cluster._local = local
    cluster.ports = {n: (s.native_port, s.http_port) for n, s in local.nodes.items()}
    try:
        yield cluster
    finally:
        local.stop()


def responds(url: str) -> bool:
    from app.engine import connect

    try:
        with connect(url) as conn:
            return conn.exec_driver_sql("SELECT 1").scalar() == 1
    except Exception:
        return False


def run_sql(url: str, *statements: str) -> list[list[tuple]]:
    from app.engine import connect

    out = []
    with connect(url) as conn:
        for sql in statements:
            result = conn.exec_driver_sql(sql)
            out.append([tuple(r) for r in result.all()] if result.returns_rows else [])
    return out


def reset(server: Server) -> None:
    """Back to an empty server: no warehouse, no roles or users, no test ledgers."""
    admin = server.url("native")
    (test_dbs,) = run_sql(admin, f"SELECT name FROM system.databases WHERE startsWith(name, '{TEST_DATABASE_PREFIX}')")
    run_sql(
        admin,
        *(f"DROP DATABASE IF EXISTS {db} SYNC" for db in [*WAREHOUSE_DATABASES, *(r[0] for r in test_dbs)]),
        *(f"DROP USER IF EXISTS {u}" for u in (*(u.name for u in APP_USERS), VIEW_DEFINER)),
        *(f"DROP ROLE IF EXISTS {r}" for r in ROLES),
    )


def fresh_database(server: Server) -> str:
    """A new, empty database for the ledger and the lock of one test."""
    name = f"{TEST_DATABASE_PREFIX}{uuid.uuid4().hex[:12]}"
    run_sql(server.url("native"), f"CREATE DATABASE {name}")
    return name


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """`zakaz-schema ARGS` in a child process, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "app", *args], cwd=PROJECT_ROOT, capture_output=True, text=True,
        env={**os.environ, **(env or {})}, timeout=timeout,
    )


def one_revision_chain(folder: Path, filename: str, text: str) -> dict[str, str]:
    """A migrations folder under ``folder`` holding one revision; the environment that deploys it."""
    chain = folder / "migrations"
    (chain / "versions").mkdir(parents=True)
    for name in ("env.py", "script.py.mako"):
        shutil.copy(PROJECT_ROOT / "migrations" / name, chain / name)
    (chain / "versions" / filename).write_text(text)
    return {"ZAKAZ_MIGRATIONS": str(chain)}


def start_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "app", *args], cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})},
    )
