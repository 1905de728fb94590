"""docker-compose.yml and .env.example, read as data: these run everywhere, with
or without a Docker engine (the server itself is exercised by test_server.py)."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from app.config import PROJECT_ROOT
from app.users import APP_USERS

# make test-fast: pure and unit tests (pyproject.toml, marker `fast`).
pytestmark = pytest.mark.fast

COMPOSE = PROJECT_ROOT / "docker-compose.yml"
ENV_EXAMPLE = PROJECT_ROOT / ".env.example"
# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, ${VAR?message}; $$ is a literal $.
VARIABLE = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
PINNED_24_8 = re.compile(r"^clickhouse/clickhouse-server:24\.8\.\d+\.\d+(-alpine)?$")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def clickhouse(compose) -> dict:
    return compose["services"]["clickhouse"]


def strings(node):
    """Every string in a YAML tree, keys included."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from strings(k)
            yield from strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from strings(v)
    elif isinstance(node, str):
        yield node


def default_of(value: str) -> str:
    """The value compose uses when no variable is set (``${X:-d}`` -> d)."""
    return VARIABLE.sub(lambda m: m["arg"] if m["op"] in (":-", "-") else "", value)


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def commented_env_example() -> set[str]:
    return set(re.findall(r"^#\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.M))


def test_image_is_pinned_to_a_24_8_lts_release_and_can_be_overridden(clickhouse):
    image = clickhouse["image"]
    assert VARIABLE.fullmatch(image) and VARIABLE.fullmatch(image)["name"] == "CLICKHOUSE_IMAGE", image
    pinned = default_of(image)
    assert PINNED_24_8.match(pinned), pinned
    assert "latest" not in pinned


def test_admin_user_with_access_management_and_a_password_from_the_environment(clickhouse):
    env = clickhouse["environment"]
    assert str(env["CLICKHOUSE_DEFAULT_ACCESS_MANAGEMENT"]) == "1"
    assert VARIABLE.fullmatch(env["CLICKHOUSE_USER"])
    password = VARIABLE.fullmatch(env["CLICKHOUSE_PASSWORD"])
    # Required, with no fallback: compose refuses to start without it.
    assert password and password["op"] in (":?", "?"), env["CLICKHOUSE_PASSWORD"]


def test_healthcheck_runs_a_query(clickhouse):
    check = clickhouse["healthcheck"]
    test = check["test"]
    if isinstance(test, list):
        assert test[0] in ("CMD", "CMD-SHELL"), test
        test = " ".join(test[1:])
    assert "clickhouse-client" in test and "SELECT 1" in test
    assert check.get("interval") and check.get("retries")


def test_every_published_port_is_on_loopback_only(compose):
    published = 0
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            published += 1
            if isinstance(port, dict):  # long syntax
                assert port.get("host_ip") == "127.0.0.1", (name, port)
            else:
                # As compose reads it with no variables set: ip:host:container.
                ip, host, container = default_of(str(port)).split(":")
                assert ip == "127.0.0.1", (name, port)
        assert "network_mode" not in service or service["network_mode"] != "host", name
    assert published >= 2  # native and HTTP


def test_native_and_http_ports_are_published(clickhouse):
    containers = {str(p).rsplit(":", 1)[-1] if not isinstance(p, dict) else str(p["target"])
                  for p in clickhouse["ports"]}
    assert {"9000", "8123"} <= containers


def test_data_lives_in_a_named_volume(compose, clickhouse):
    mounts = {}
    for volume in clickhouse["volumes"]:
        source, target = (volume["source"], volume["target"]) if isinstance(volume, dict) else volume.split(":")[:2]
        mounts[target] = source
    source = mounts["/var/lib/clickhouse"]
    assert source in (compose.get("volumes") or {}), source  # named, not a bind mount


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # ["KEY=value", ...]
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: str(v) for k, v in env.items()}


def test_no_literal_password_anywhere(compose):
    secretish = re.compile(r"PASSWORD|SECRET|TOKEN", re.I)
    for name, service in compose["services"].items():
        for key, value in environment(service).items():
            if secretish.search(key):
                # Only ${VAR} forms, and none falling back to a literal.
                assert VARIABLE.fullmatch(value), (name, key)
                assert default_of(value) == "", (name, key)
    for text in strings(compose):
        for m in re.finditer(r"--password[ =]+(\S+)", text):
            assert m.group(1).strip("\"'").startswith("$"), text


def test_env_example_documents_every_variable_and_holds_no_password():
    compose_vars = {m["name"] for m in VARIABLE.finditer(COMPOSE.read_text())}
    documented = set(env_example()) | commented_env_example()
    assert compose_vars <= documented, compose_vars - documented
    assert {u.password_env for u in APP_USERS} <= set(env_example())
    for name, value in env_example().items():
        if "PASSWORD" in name:
            assert value == "", f"{name} has a value in .env.example"


def test_env_file_is_git_ignored():
    ignored = (PROJECT_ROOT / ".gitignore").read_text().splitlines()
    assert ".env" in [line.strip() for line in ignored]


def test_docker_compose_accepts_the_file(tmp_path):
    """`docker compose config` validates the file where the compose plugin exists."""
    if not shutil.which("docker"):
        pytest.skip("no docker client: cannot run `docker compose config`")
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip("no Docker compose plugin (`docker compose version` failed): cannot run `docker compose config`")
    env_file = tmp_path / "test.env"
    env_file.write_text("CLICKHOUSE_PASSWORD=x\n")
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "--env-file", str(env_file), "config", "--quiet"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
