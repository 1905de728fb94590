"""`users apply` without a server: the statements it builds, what it refuses, and
that no password reaches its output, offline SQL or the revisions.

The server side (users created, passwords rotated, grants effective) is in
tests/test_server.py.
"""
from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from app import commands, users
from app.cli import main
from app.config import PROJECT_ROOT
from app.sql import quote_literal
from app.engine import connect

# make test-fast: pure and unit tests (pyproject.toml, marker `fast`).
pytestmark = pytest.mark.fast

# Quote, backslash, percent and a pyformat look-alike: what breaks naive quoting.
AWKWARD = "pa'ss\\wo%rd%(x)s"
PASSWORDS = {
    "ZAKAZ_ETL_WRITER_PASSWORD": AWKWARD,
    "ZAKAZ_DATALENS_READER_PASSWORD": "reader-Secret-42",
    "ZAKAZ_BACKUP_USER_PASSWORD": "backup-Secret-43",
}
SERVER_URL = "clickhouse+native://admin:urlsecret@127.0.0.1:1/default"  # nothing listens on port 1


def run_cli(args, env=None):
    # Start from no password variables at all, whatever the caller's shell has.
    base = {name: None for name in PASSWORDS} | {"ZAKAZ_DATABASE_URL": None, "ZAKAZ_CLUSTER": None}
    return CliRunner().invoke(main, args, env=base | (env or {}))


def assert_no_secret(text: str, secrets=(*PASSWORDS.values(), "urlsecret")) -> None:
    for secret in secrets:
        assert secret not in text


def test_users_and_roles_are_the_access_section():
    assert {(u.name, u.role) for u in users.APP_USERS} == {
        ("etl_writer", "zakaz_etl"), ("datalens_reader", "zakaz_reader"), ("backup_user", "zakaz_backup"),
    }


def test_plan_creates_updates_grants_and_sets_the_default_role_per_user():
    passwords = {u.name: PASSWORDS[u.password_env] for u in users.APP_USERS}
    shown = [str(s) for s in users.plan_statements(passwords)]
    assert shown[:4] == [
        "CREATE USER IF NOT EXISTS etl_writer IDENTIFIED WITH sha256_password BY '***'",
        "ALTER USER etl_writer IDENTIFIED WITH sha256_password BY '***'",
        "GRANT zakaz_etl TO etl_writer",
        "SET DEFAULT ROLE zakaz_etl TO etl_writer",
    ]
    assert len(shown) == 12
    for user in users.APP_USERS:
        assert f"GRANT {user.role} TO {user.name}" in shown
        assert f"SET DEFAULT ROLE {user.role} TO {user.name}" in shown


def test_the_password_is_a_bound_parameter_and_never_in_what_is_shown():
    stmts = users.plan_statements({"etl_writer": AWKWARD}, [users.APP_USERS[0]])
    for stmt in stmts:
        assert AWKWARD not in stmt.template
        assert AWKWARD not in str(stmt) and AWKWARD not in repr(stmt) and AWKWARD not in stmt.shown
    assert AWKWARD not in repr(stmts) and AWKWARD not in str(stmts)
    # ... yet the statements that set it do carry it, for the driver to quote.
    assert [s.params.get("password") for s in stmts] == [AWKWARD, AWKWARD, None, None]


def test_statements_parse_as_clickhouse_and_the_driver_quotes_the_password(tmp_path):
    # chDB cannot run access statements, but its parser is ClickHouse's: each
    # statement, with the password as a driver binds it, must parse.
    url = f"clickhouse+chdb:///default?path={tmp_path / 'db'}"
    stmts = users.plan_statements({u.name: PASSWORDS[u.password_env] for u in users.APP_USERS})
    with connect(url) as conn:
        for stmt in stmts:
            sql = stmt.template
            if stmt.params:
                password = stmt.params["password"]
                # Bound through the driver, the password arrives exactly as given.
                assert conn.exec_driver_sql("SELECT %(password)s", dict(stmt.params)).scalar() == password
                sql = stmt.template % {"password": quote_literal(password)}
            formatted = conn.exec_driver_sql("SELECT formatQuery(%(q)s)", {"q": sql}).scalar()
            assert formatted.split()[:2] == sql.split()[:2]


def test_missing_password_names_every_missing_variable():
    with pytest.raises(users.MissingPassword) as err:
        users.passwords_from_env(users.APP_USERS, {"ZAKAZ_DATALENS_READER_PASSWORD": "x",
                                                   "ZAKAZ_BACKUP_USER_PASSWORD": ""})
    message = str(err.value)
    assert "ZAKAZ_ETL_WRITER_PASSWORD" in message and "ZAKAZ_BACKUP_USER_PASSWORD" in message
    assert "ZAKAZ_DATALENS_READER_PASSWORD" not in message
    assert "\n" not in message


def test_cli_missing_password_is_one_line_naming_the_variable_exit_2():
    env = {k: v for k, v in PASSWORDS.items() if k != "ZAKAZ_DATALENS_READER_PASSWORD"}
    result = run_cli(["users", "apply", "--url", SERVER_URL], env)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "ZAKAZ_DATALENS_READER_PASSWORD" in lines[0]
    assert_no_secret(result.output)


def test_cli_only_the_named_user_needs_its_password():
    env = {"ZAKAZ_BACKUP_USER_PASSWORD": PASSWORDS["ZAKAZ_BACKUP_USER_PASSWORD"]}
    result = run_cli(["users", "apply", "--url", SERVER_URL, "--user", "backup_user", "--dry-run"], env)
    assert result.exit_code == 0, result.output
    assert "backup_user" in result.output and "etl_writer" not in result.output
    bad = run_cli(["users", "apply", "--url", SERVER_URL, "--user", "root", "--dry-run"], env)
    assert bad.exit_code == 2 and "unknown user root" in bad.output


def test_cli_refuses_the_embedded_engine_in_one_line_without_touching_it(tmp_path):
    path = tmp_path / "never-created"
    result = run_cli(["users", "apply", "--url", f"clickhouse+chdb:///default?path={path}"], PASSWORDS)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert "embedded engine" in lines[0] and "no access storage" in lines[0]
    assert not path.exists()


def test_cli_dry_run_prints_every_statement_masked_without_connecting():
    # Port 1 has no server: a dry run that tried to connect would fail.
    result = run_cli(["users", "apply", "--url", SERVER_URL, "--dry-run"], PASSWORDS)
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 12
    assert lines[0] == "CREATE USER IF NOT EXISTS etl_writer IDENTIFIED WITH sha256_password BY '***';"
    assert sum("'***'" in line for line in lines) == 6
    assert_no_secret(result.output)


def test_cluster_mode_runs_every_statement_on_cluster_with_a_salted_hash_instead_of_the_password(tmp_path):
    import hashlib

    from app.cluster import Cluster

    passwords = {u.name: PASSWORDS[u.password_env] for u in users.APP_USERS}
    stmts = users.plan_statements(passwords, cluster=Cluster("zakaz"))
    assert [str(s) for s in stmts[:4]] == [
        "CREATE USER IF NOT EXISTS etl_writer ON CLUSTER 'zakaz' IDENTIFIED WITH sha256_hash BY '***' SALT '***'",
        "ALTER USER etl_writer ON CLUSTER 'zakaz' IDENTIFIED WITH sha256_hash BY '***' SALT '***'",
        "GRANT ON CLUSTER 'zakaz' zakaz_etl TO etl_writer",
        "ALTER USER etl_writer ON CLUSTER 'zakaz' DEFAULT ROLE zakaz_etl",  # SET DEFAULT ROLE has no ON CLUSTER
    ]
    assert len(stmts) == 12
    url = f"clickhouse+chdb:///default?path={tmp_path / 'db'}"
    with connect(url) as conn:
        for stmt in stmts:
            # ON CLUSTER statements are kept as text in Keeper's DDL queue: never the password.
            assert all(p not in stmt.template and p not in v for p in PASSWORDS.values() for v in stmt.params.values())
            if stmt.params:  # what the server checks: SHA-256 of the password, then the salt
                digest = hashlib.sha256((passwords[stmt.user] + stmt.params["salt"]).encode()).hexdigest()
                assert stmt.params["hash"] == digest
            sql = stmt.template % {k: quote_literal(v) for k, v in stmt.params.items()}
            formatted = conn.exec_driver_sql("SELECT formatQuery(%(q)s)", {"q": sql}).scalar()
            assert "ON CLUSTER zakaz" in formatted, formatted
    # The CLI takes the cluster as upgrade does: --cluster or ZAKAZ_CLUSTER.
    for args, env in ((["--cluster", "zakaz"], {}), ([], {"ZAKAZ_CLUSTER": "zakaz"})):
        result = run_cli(["users", "apply", "--url", SERVER_URL, "--dry-run", *args], PASSWORDS | env)
        assert result.exit_code == 0, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 12 and all("ON CLUSTER 'zakaz'" in line for line in lines)
        assert_no_secret(result.output)


def test_cli_unreachable_server_fails_in_one_line_without_any_password():
    result = run_cli(["users", "apply", "--url", SERVER_URL], PASSWORDS)
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
    assert "cannot reach the ClickHouse server" in result.output
    assert_no_secret(result.output)


DEFINER_USER = "CREATE USER IF NOT EXISTS zakaz_view_definer NOT IDENTIFIED HOST NONE"


def test_offline_sql_of_the_whole_chain_has_the_access_statements_and_no_password(monkeypatch):
    for name, value in PASSWORDS.items():
        monkeypatch.setenv(name, value)
    url = "clickhouse+native://admin:secret@127.0.0.1:9000/default"
    up = commands.offline_sql(url, "head")
    lines = [line.rstrip(";") for line in up.splitlines()]
    for role in ("zakaz_etl", "zakaz_reader", "zakaz_backup"):
        assert f"CREATE ROLE IF NOT EXISTS {role}" in lines
    assert "GRANT INSERT, SELECT ON zakaz.stg_qtickets_sales TO zakaz_etl" in lines
    assert "GRANT SELECT ON meta.* TO zakaz_etl" in lines
    assert "GRANT SELECT ON bi.v_sales_daily TO zakaz_reader" in lines
    assert "GRANT INSERT, SELECT ON meta.backup_runs TO zakaz_backup" in lines
    down = commands.offline_sql(url, "head:base")
    assert "DROP ROLE IF EXISTS zakaz_etl;" in down.splitlines()
    for text in (up, down):
        assert "secret" not in text
        assert_no_secret(text)
        # Users (and so passwords) are never part of the chain, but for the
        # views' definer (0012), which has none and cannot log in.
        text = text.replace(DEFINER_USER, "")
        assert not re.search(r"\b(CREATE|ALTER) USER\b|IDENTIFIED", text)
    assert DEFINER_USER + ";" in up.splitlines()


def test_no_revision_mentions_a_user_or_a_password():
    for path in sorted((PROJECT_ROOT / "migrations" / "versions").glob("*.py")):
        text = path.read_text().replace('f"CREATE USER IF NOT EXISTS {DEFINER} NOT IDENTIFIED HOST NONE"', "")
        assert not re.search(r"IDENTIFIED|(CREATE|ALTER) USER|PASSWORD", text), path.name


class _Rows:
    """A connection answering the one query of ``users.users_without_role`` with ``rows``."""

    def __init__(self, rows):
        self.rows, self.queries = rows, []

    def exec_driver_sql(self, sql, params=None):
        self.queries.append(sql)
        return self

    def all(self):
        return self.rows


def test_users_without_their_role_are_found_in_one_query_and_missing_users_are_not():
    conn = _Rows([
        ("user", "etl_writer", "", 0), ("user", "datalens_reader", "", 0),
        ("role", "zakaz_etl", "", 0), ("role", "zakaz_reader", "", 0), ("role", "zakaz_backup", "", 0),
        ("grant", "etl_writer", "zakaz_etl", 1),
    ])  # backup_user does not exist: `users apply` has not made it yet, not a finding
    found = users.role_findings(conn)
    assert len(conn.queries) == 1
    assert [(f.object, f.expected, f.actual, f.fatal) for f in found] == [
        ("datalens_reader", "zakaz_reader", "not granted", True)]
    assert str(found[0]).endswith("run `zakaz-schema users apply`")
    # Granted but not a default role: DataLens sets no role, so it is as good as none.
    conn = _Rows([("user", "datalens_reader", "", 0), ("role", "zakaz_reader", "", 0),
                  ("grant", "datalens_reader", "zakaz_reader", 0)])
    assert [f.actual for f in users.role_findings(conn)] == ["not a default role"]
    conn = _Rows([("user", "datalens_reader", "", 0)])  # behind 0010: the role itself is gone
    (missing,) = users.role_findings(conn)
    assert "run `zakaz-schema upgrade`, then `zakaz-schema users apply`" in str(missing)
