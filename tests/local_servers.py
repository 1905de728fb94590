"""Real ClickHouse 24.8 servers and ZooKeeper as local processes, for machines without Docker.

PyPI's ``chdb==2.1.1`` wheel carries clickhouse-server 24.8.4.1 whole: its
``_chdb*.so`` still exports ``mainEntryClickHouseServer(int, char**)``.  A
child Python loads the library with ctypes (without importing ``chdb``, whose
import would start an embedded engine) and calls that entry point with a
normal server config, so what runs is a real server: native and HTTP
protocols, SQL users, roles and grants in a local access directory, ON
CLUSTER and Replicated tables with ZooKeeper.  ZooKeeper is Debian's package,
run as ``QuorumPeerMain`` directly (``zkServer.sh`` would listen on every
address).  The wheel is installed on its own (``make setup-servers``, into
``.venv-server``) because it and chdb-core both install the ``chdb`` package.

Every process is started in its own session, stopped by its pid, listens on
127.0.0.1 only on ports the OS hands out, and keeps its data in a directory
the caller owns (a pytest temporary directory).
"""
from __future__ import annotations

import glob
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SERVER_VENV = PROJECT_ROOT / ".venv-server"
LIBRARY_ENV = "ZAKAZ_SERVER_LIBRARY"
ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")
ENTRY_POINT = "_Z25mainEntryClickHouseServeriPPc"  # mainEntryClickHouseServer(int, char**)

# Every child asks the kernel to stop it when the test process dies
# (PR_SET_PDEATHSIG, kept across exec), so a killed test run leaves no server
# or ZooKeeper behind; a child whose parent died before it asked exits at once.
# The signal comes when the thread that started the child ends: pytest-xdist
# (>= 3.6) runs tests, and so fixtures, on each worker's main thread.
PARENT_ENV = "ZAKAZ_TEST_PARENT_PID"
_DIE_WITH_PARENT = ("import ctypes, os, signal, sys; ctypes.CDLL(None).prctl(1, signal.SIGTERM); "
                    f"os.getppid() == int(os.environ['{PARENT_ENV}']) or sys.exit('the test process is gone')")
# ZooKeeper's JVM, started through that.
_EXEC = _DIE_WITH_PARENT + "; import os, sys; os.execv(sys.argv[1], sys.argv[1:])"
# The server's main() on the calling thread, like the clickhouse-server
# binary.  No `import chdb`.
_LAUNCH = _DIE_WITH_PARENT + f"""
import sys
lib = ctypes.CDLL(sys.argv[1], mode=ctypes.RTLD_GLOBAL)
main = lib.{ENTRY_POINT}
main.restype = ctypes.c_int
args = [b"clickhouse-server", ("--config-file=" + sys.argv[2]).encode()]
sys.exit(main(len(args), (ctypes.c_char_p * (len(args) + 1))(*args, None)))
"""

# Settings where the wheel's built-in defaults follow chDB rather than a stock
# 24.8 server; the profile puts the stock values back so tests see what
# production sees (checked in tests/test_server.py).
STOCK_SETTINGS = {"mutations_sync": "0"}


class Unavailable(Exception):
    """This machine cannot run local servers; the message says what is missing and how to get it."""


class StartFailed(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_library() -> Path:
    """The wheel's library, or Unavailable saying how to install it."""
    if os.environ.get(LIBRARY_ENV):
        path = Path(os.environ[LIBRARY_ENV])
        if not path.is_file():
            raise Unavailable(f"{LIBRARY_ENV}={path} is not a file")
        return path
    found = sorted(glob.glob(str(SERVER_VENV / "**" / "chdb" / "_chdb*.so"), recursive=True))
    if not found:
        raise Unavailable(f"no ClickHouse 24.8 server library in {SERVER_VENV} "
                          "(run `make setup-servers`: it installs PyPI chdb==2.1.1 there)")
    return Path(found[0])


def zookeeper_command() -> list[str]:
    java = shutil.which("java")
    if not java or not ZOOKEEPER_JAR.is_file():
        missing = "java" if not java else str(ZOOKEEPER_JAR)
        raise Unavailable(f"no ZooKeeper for the cluster ({missing} missing): "
                          "run `make setup-servers` as root (apt-get install zookeeper)")
    return [java, "-Xmx256m", "-XX:+UseSerialGC", "-cp", str(ZOOKEEPER_JAR),
            "org.apache.zookeeper.server.quorum.QuorumPeerMain"]


def _start(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **(env or {}), PARENT_ENV: str(os.getpid())},
                                start_new_session=True)


def _stop(proc: subprocess.Popen | None, timeout: float = 10) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    except ProcessLookupError:
        pass


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait(ready, proc: subprocess.Popen, what: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StartFailed(f"{what} exited with {proc.returncode} while starting; its log ends:\n{_tail(log)}")
        if ready():
            return
        time.sleep(0.1)
    _stop(proc)
    raise StartFailed(f"{what} did not answer within {timeout:.0f} s; its log ends:\n{_tail(log)}")


# --- ZooKeeper -----------------------------------------------------------------------

@dataclass
class ZooKeeper:
    directory: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    def start(self) -> "ZooKeeper":
        command = zookeeper_command()
        (self.directory / "data").mkdir(parents=True, exist_ok=True)
        config = self.directory / "zoo.cfg"
        config.write_text("\n".join([
            "tickTime=500", "initLimit=10", "syncLimit=5",
            f"dataDir={self.directory / 'data'}",
            f"clientPort={self.port}", "clientPortAddress=127.0.0.1",
            "admin.enableServer=false", "4lw.commands.whitelist=ruok",
            "maxSessionTimeout=30000", "",
        ]))
        log = self.directory / "zookeeper.log"
        self.proc = _start([sys.executable, "-c", _EXEC, *command, str(config)], log)
        _wait(self._ok, self.proc, "ZooKeeper", log)
        return self

    def _ok(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"ruok")
                return s.recv(4) == b"imok"
        except OSError:
            return False

    def stop(self) -> None:
        _stop(self.proc)


# --- a ClickHouse server ----------------------------------------------------------------

@dataclass
class LocalServer:
    """One clickhouse-server process; ``user`` has access management (the deploy user)."""

    directory: Path
    user: str
    password: str
    name: str = "clickhouse"
    native_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    interserver_port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    cluster_xml: str = ""  # zookeeper, remote_servers, macros: set by LocalCluster
    proc: subprocess.Popen | None = None

    @property
    def log(self) -> Path:
        return self.directory / "server.log"

    def write_config(self) -> Path:
        d = self.directory
        for sub in ("data", "tmp", "user_files", "format_schemas", "access"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        settings = "".join(f"<{k}>{v}</{k}>" for k, v in STOCK_SETTINGS.items())
        digest = hashlib.sha256(self.password.encode()).hexdigest()
        (d / "users.xml").write_text(f"""<clickhouse>
  <profiles><default>{settings}</default></profiles>
  <quotas><default/></quotas>
  <users>
    <{self.user}>
      <password_sha256_hex>{digest}</password_sha256_hex>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile><quota>default</quota>
      <access_management>1</access_management>
      <named_collection_control>1</named_collection_control>
    </{self.user}>
  </users>
</clickhouse>
""")
        config = d / "config.xml"
        config.write_text(f"""<clickhouse>
  <logger><level>warning</level><log>{d / 'server.log'}</log><errorlog>{d / 'server.err.log'}</errorlog>
    <console>0</console></logger>
  <display_name>{escape(self.name)}</display_name>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>{self.native_port}</tcp_port>
  <http_port>{self.http_port}</http_port>
  <interserver_http_port>{self.interserver_port}</interserver_http_port>
  <interserver_http_host>127.0.0.1</interserver_http_host>
  <path>{d / 'data'}/</path>
  <tmp_path>{d / 'tmp'}/</tmp_path>
  <user_files_path>{d / 'user_files'}/</user_files_path>
  <format_schema_path>{d / 'format_schemas'}/</format_schema_path>
  <user_directories>
    <users_xml><path>{d / 'users.xml'}</path></users_xml>
    <local_directory><path>{d / 'access'}/</path></local_directory>
  </user_directories>
  <mark_cache_size>268435456</mark_cache_size>
  <max_server_memory_usage_to_ram_ratio>0.3</max_server_memory_usage_to_ram_ratio>
  <query_log><database>system</database><table>query_log</table>
    <flush_interval_milliseconds>1000</flush_interval_milliseconds></query_log>
  {self.cluster_xml}
</clickhouse>
""")
        return config

    def start(self) -> "LocalServer":
        library = server_library()
        config = self.write_config()
        self.proc = _start([sys.executable, "-c", _LAUNCH, str(library), str(config)], self.log,
                           env={"CLICKHOUSE_WATCHDOG_ENABLE": "0"})
        _wait(self.responds, self.proc, f"clickhouse-server {self.name}", self.log)
        return self

    def responds(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/ping", timeout=1) as r:
                return r.read().strip() == b"Ok."
        except OSError:
            return False

    def stop(self) -> None:
        _stop(self.proc)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class LocalCluster:
    """ZooKeeper and two replicas of one shard, cluster ``zakaz``, as the compose profile has them."""

    def __init__(self, directory: Path, user: str, password: str, name: str = "zakaz",
                 nodes: tuple[str, ...] = ("ch1", "ch2")):
        self.name = name
        self.zookeeper = ZooKeeper(directory / "zookeeper")
        self.nodes = {n: LocalServer(directory / n, user, password, name=n) for n in nodes}

    def _cluster_xml(self, node: LocalServer) -> str:
        first = next(iter(self.nodes.values()))
        replicas = "".join(
            f"<replica><host>127.0.0.1</host><port>{s.native_port}</port>"
            f"<user>{escape(first.user)}</user><password>{escape(first.password)}</password></replica>"
            for s in self.nodes.values())
        return f"""
  <zookeeper><node><host>127.0.0.1</host><port>{self.zookeeper.port}</port></node>
    <session_timeout_ms>10000</session_timeout_ms></zookeeper>
  <remote_servers><{self.name}><shard><internal_replication>true</internal_replication>{replicas}</shard></{self.name}></remote_servers>
  <macros><cluster>{self.name}</cluster><shard>01</shard><replica>{node.name}</replica></macros>
  <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
  <default_replica_path>/clickhouse/tables/{{uuid}}/{{shard}}</default_replica_path>
  <default_replica_name>{{replica}}</default_replica_name>"""

    def start(self) -> "LocalCluster":
        self.zookeeper.start()
        try:
            for node in self.nodes.values():
                node.cluster_xml = self._cluster_xml(node)
                node.start()
        except Exception:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()
        self.zookeeper.stop()
