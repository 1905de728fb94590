"""What the server suite (tests/test_server.py) needs besides pytest-docker:
whether a Docker engine and the compose plugin are really there, the compose
project's credentials and URLs, and a clean server between tests."""
from __future__ import annotations

import functools
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from urllib.parse import quote

from app.config import PROJECT_ROOT
from app.users import APP_USERS

WAREHOUSE_DATABASES = ("zakaz", "meta", "bi")
ROLES = ("zakaz_etl", "zakaz_reader", "zakaz_backup")
TEST_DATABASE_PREFIX = "zt_"
SERVER_TESTS_ENV = "ZAKAZ_SERVER_TESTS"


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
    """Why the compose service cannot start here, asked of Docker itself; None if it can."""
    docker = shutil.which("docker")
    if not docker:
        return ("no Docker engine: the docker client is not installed "
                "(the server suite needs a Docker engine and the compose plugin)")
    problems = []
    rc, out, err = _probe([docker, "info", "--format", "{{.ServerVersion}}"])
    if rc != 0 or not out.strip():
        problems.append(f"no Docker engine (`docker info`: {_first_line(err) or 'no server answered'})")
    rc, out, err = _probe([docker, "compose", "version"])
    if rc != 0:
        problems.append(f"no Docker compose plugin (`docker compose version`: {_first_line(err) or _first_line(out) or f'exit {rc}'})")
    if not problems:
        return None
    return "; ".join(problems) + ": the server suite needs both"


def server_suite_selected(config) -> bool:
    """The suite starts a container, so it runs only when asked for: `-m server` or ZAKAZ_SERVER_TESTS=1."""
    expr = config.getoption("markexpr") or ""
    return bool(re.search(r"(?<!not )\bserver\b", expr)) or os.environ.get(SERVER_TESTS_ENV) == "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """The compose service as the tests reach it: the admin (deploy) user and both protocols."""

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
        *(f"DROP USER IF EXISTS {u.name}" for u in APP_USERS),
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


def start_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "app", *args], cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})},
    )
