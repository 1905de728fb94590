"""zakaz-schema next to clickhouse-migrations on a real ClickHouse server, whole processes.

The peer is PyPI's ``clickhouse-migrations`` (pinned below): plain ``.sql``
files applied in order, a ``schema_versions`` table, no Python revisions, no
checks.  It is a benchmark peer only, not a dependency: it is installed into
its own venv (``var/bench-peer``, created on demand) and run as its own
command.

The server is a local clickhouse-server 24.8 process (tests/local_servers.py,
library from ``make setup-servers``).  The peer gets the same chain as SQL:
one file per revision, ``NNN_<slug>.sql``, each the offline SQL of that one
revision (``zakaz-schema sql <down>:<rev>``) without the ledger statements
and comments; the two verification revisions (0011, 0013) check the schema
online only, so their files hold a comment and nothing to run (the peer
records such a file as applied).

Each round: for each tool, in alternating order, the warehouse databases,
roles and users are dropped, the tool's bookkeeping database is a new one,
then three commands are timed as whole processes (``subprocess.run``, wall
time): a deploy from empty, the same deploy again (nothing to do), and the
version query (``zakaz-schema status`` vs ``clickhouse-migrations status``).
After each tool's deploy the schema it left is fingerprinted (objects,
columns with types, roles, grants of the warehouse roles); the two must be
identical.  The table shows medians of each side and the median of the
per-round ratios (zakaz-schema / clickhouse-migrations).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

from bench.harness import PROJECT_ROOT, median, row, scratch, seconds

PEER = "clickhouse-migrations"
PEER_VERSION = "0.16.0"
PEER_VENV = PROJECT_ROOT / "var" / "bench-peer"
ROUNDS = 7
# zakaz-schema / clickhouse-migrations, whole process, same server, same run.
TARGETS = {"deploy": 1.3, "noop": 1.0, "status": 1.0}
WAREHOUSE = ("zakaz", "meta", "bi")
ROLES = ("zakaz_etl", "zakaz_reader", "zakaz_backup")
USERS = ("zakaz_view_definer", "etl_writer", "datalens_reader", "backup_user")
CASES = (
    ("deploy", "deploy from empty"),
    ("noop", "deploy again, nothing to do"),
    ("status", "version query (status)"),
)


# --- the peer ------------------------------------------------------------------------

def peer_command() -> Path:
    """The peer's console script, installed into its own venv on first use."""
    script = PEER_VENV / "bin" / PEER
    python = PEER_VENV / "bin" / "python"
    if script.exists() and _installed_version(python) == PEER_VERSION:
        return script
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
    done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", f"{PEER}=={PEER_VERSION}"],
                          capture_output=True, text=True)
    if done.returncode != 0 or not script.exists():
        raise RuntimeError(f"cannot install {PEER}=={PEER_VERSION} into {PEER_VENV}: {done.stderr.strip()[-500:]}")
    return script


def _installed_version(python: Path) -> str | None:
    if not python.exists():
        return None
    done = subprocess.run([str(python), "-c", f"from importlib.metadata import version; print(version({PEER!r}))"],
                          capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def render_peer_migrations(target: Path, url: str) -> list[tuple[str, int]]:
    """The chain as the peer's files, one per revision: (file name, statements)."""
    from app import commands
    from bench.chain import statements_of

    script = commands.script_directory(commands.alembic_config(url))
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for rev in reversed(list(script.walk_revisions())):
        down = rev.down_revision or "base"
        if not isinstance(down, str):
            raise RuntimeError(f"{rev.revision} is a merge point: the peer's files are one linear sequence")
        sql = commands.offline_sql(url, f"{down}:{rev.revision}")
        statements = [text for kind, text in statements_of(sql) if kind != "ledger"]
        slug = Path(rev.path).stem.split("_", 1)[-1]
        name = f"{int(rev.revision):03d}_{slug}.sql"
        body = "".join(f"{text};\n\n" for text in statements) or (
            f"-- {rev.revision}: a verification revision; its schema check runs online only, in zakaz-schema\n")
        (target / name).write_text(body)
        written.append((name, len(statements)))
    return written


# --- the server ------------------------------------------------------------------------

def _local_servers():
    tests = str(PROJECT_ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    import local_servers

    return local_servers


class Admin:
    """Statements on the server for setting up rounds (the native driver, outside both tools)."""

    def __init__(self, port: int, user: str, password: str):
        from clickhouse_driver import Client

        self.client = Client("127.0.0.1", port=port, user=user, password=password)

    def run(self, sql: str):
        return self.client.execute(sql)

    def reset_warehouse(self) -> None:
        for db in WAREHOUSE:
            self.run(f"DROP DATABASE IF EXISTS {db} SYNC")
        for user in USERS:
            self.run(f"DROP USER IF EXISTS {user}")
        for role in ROLES:
            self.run(f"DROP ROLE IF EXISTS {role}")

    def fingerprint(self) -> dict:
        """What a deploy left: counts, and a checksum of every object, column and grant."""
        dbs = ", ".join(f"'{d}'" for d in WAREHOUSE)
        roles = ", ".join(f"'{r}'" for r in ROLES)
        # A materialized view's inner table is named after its UUID: counted, not hashed by name.
        (objects, objects_sum), = self.run(
            "SELECT count(), groupBitXor(cityHash64(database, if(startsWith(name, '.inner'), '.inner', name), engine)) "
            f"FROM system.tables WHERE database IN ({dbs})")
        (columns, columns_sum), = self.run(
            "SELECT count(), groupBitXor(cityHash64(database, if(startsWith(table, '.inner'), '.inner', table), "
            f"name, type, default_expression)) FROM system.columns WHERE database IN ({dbs})")
        (roles_n,), = self.run(f"SELECT count() FROM system.roles WHERE name IN ({roles})")
        (grants, grants_sum), = self.run(
            "SELECT count(), groupBitXor(cityHash64(role_name, access_type, ifNull(database, ''), ifNull(table, ''))) "
            f"FROM system.grants WHERE role_name IN ({roles})")
        return {"objects": objects, "columns": columns, "roles": roles_n, "grants": grants,
                "checksum": f"{objects_sum:x}-{columns_sum:x}-{grants_sum:x}"}


# --- where each millisecond goes ----------------------------------------------------------
#
# One more deploy and one more no-op, each in a fresh process (bench.harness.in_fresh_process)
# timed phase by phase the way the CLI runs them: imports in the CLI's order, then the
# command itself with every statement timed (bench.harness.QueryLog).

def profile_deploy(url: str) -> dict:
    t = time.perf_counter
    out: dict = {}
    t0 = t()
    import click  # noqa: F401

    import app.cli  # noqa: F401
    sys.modules.setdefault("mako.ext.pygmentplugin", None)  # as the CLI's main() does
    t1 = t()
    from app import fastpath

    declined = fastpath.nothing_to_upgrade(url) is None  # a fresh database: the fast path declines
    t2 = t()
    import alembic.command  # noqa: F401
    import sqlalchemy  # noqa: F401
    t3 = t()
    from app import commands  # noqa: F401
    import app.impl  # noqa: F401
    import app.operations  # noqa: F401
    import app.runtime  # noqa: F401
    t4 = t()
    from app.engine import create_engine

    create_engine(url).dispose()  # loads clickhouse-sqlalchemy's dialect and the driver
    t5 = t()
    from bench.harness import QueryLog

    with QueryLog() as log:
        steps = commands.upgrade(url, "head")
    t6 = t()
    assert declined and len(steps) == 13, (declined, len(steps))
    out["phases"] = [
        ("imports: click and the CLI", t1 - t0),
        ("fast path tried (declines: no ledger)", t2 - t1),
        ("imports: alembic and SQLAlchemy", t3 - t2),
        ("imports: zakaz-schema's modules", t4 - t3),
        ("imports: clickhouse-sqlalchemy dialect, clickhouse-driver", t5 - t4),
    ]
    out["upgrade"] = t6 - t5
    out["statements"] = log.count
    out["by_kind"] = log.by_kind()
    return out


def profile_noop(url: str) -> dict:
    t = time.perf_counter
    t0 = t()
    import click  # noqa: F401

    import app.cli  # noqa: F401
    t1 = t()
    from app import fastpath

    t2 = t()
    chain = fastpath.load_chain()
    t3 = t()
    heads = fastpath.nothing_to_upgrade(url)
    t4 = t()
    assert chain is not None and heads, heads
    return {"phases": [("imports: click and the CLI", t1 - t0),
                       ("imports: app.fastpath, app.ledger", t2 - t1),
                       ("the chain's heads from the cache (13 files hashed)", t3 - t2),
                       ("driver import, connect, the one query, the judgement", t4 - t3 - (t3 - t2))]}


def breakdown_rows(python_start: float, deploy: dict, noop: dict) -> list[dict]:
    rows = [row("peer", "where the time goes: Python start (python -c pass)", seconds(python_start))]
    for label, spent in deploy["phases"]:
        rows.append(row("peer", f"where the time goes, deploy: {label}", seconds(spent)))
    accounted = 0.0
    for kind, (count, spent) in sorted(deploy["by_kind"].items(), key=lambda kv: -kv[1][1]):
        accounted += spent
        rows.append(row("peer", f"where the time goes, deploy: {kind}", f"{count} stmts, {seconds(spent)}",
                        note="round trips, as the client waits for them"))
    rows.append(row("peer", "where the time goes, deploy: Python in the run (alembic, revisions, ledger rows)",
                    seconds(deploy["upgrade"] - accounted),
                    note=f"the run {seconds(deploy['upgrade'])}, {deploy['statements']} statements"))
    for label, spent in noop["phases"]:
        rows.append(row("peer", f"where the time goes, no-op: {label}", seconds(spent)))
    return rows


# --- timing --------------------------------------------------------------------------------

def _wall(argv: list[str], env: dict, expect: str | None = None) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(argv, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    spent = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:2])} exited {done.returncode}: "
                           f"{(done.stderr or done.stdout).strip()[-800:]}")
    if expect is not None and expect not in done.stdout:
        raise RuntimeError(f"{' '.join(argv[:2])}: expected {expect!r} in its output, got:\n{done.stdout[-800:]}")
    return spent


def zakaz_cli() -> list[str]:
    script = Path(sys.executable).parent / "zakaz-schema"
    return [str(script)] if script.exists() else [sys.executable, "-m", "app"]


def run(rounds: int = ROUNDS) -> list[dict]:
    local_servers = _local_servers()
    try:
        local_servers.server_library()
    except local_servers.Unavailable as exc:
        return [row("peer", "zakaz-schema vs clickhouse-migrations", "skipped", note=str(exc))]
    peer = peer_command()
    env = {k: v for k, v in os.environ.items() if k not in ("ZAKAZ_DATABASE_URL", "ZAKAZ_CLUSTER")}
    user, password = "bench_admin", "bench-pw-" + os.urandom(6).hex()

    with scratch("zakaz-bench-peer-") as tmp:
        server = local_servers.LocalServer(tmp / "server", user, password)
        server.start()
        try:
            admin = Admin(server.native_port, user, password)
            (server_version,), = admin.run("SELECT version()")

            def url(kind: str, database: str) -> str:
                port = server.http_port if kind == "http" else server.native_port
                scheme = {"native": "clickhouse+native", "http": "clickhouse+http", "peer": "clickhouse"}[kind]
                return f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{port}/{database}"

            migrations = tmp / "peer-migrations"
            files = render_peer_migrations(migrations, url("native", "default"))

            def ours(kind: str, database: str) -> dict[str, float]:
                admin.run(f"CREATE DATABASE {database}")
                u = url(kind, database)
                return {
                    "deploy": _wall(zakaz_cli() + ["upgrade", "--url", u], env, "(head)"),
                    "noop": _wall(zakaz_cli() + ["upgrade", "--url", u], env, "Nothing to do"),
                    "status": _wall(zakaz_cli() + ["status", "--url", u], env, "pending:   none"),
                }

            def theirs(database: str) -> dict[str, float]:
                admin.run(f"CREATE DATABASE {database}")
                common = ["--db-url", url("peer", database), "--migrations-dir", str(migrations)]
                return {
                    "deploy": _wall([str(peer)] + common, env),
                    "noop": _wall([str(peer)] + common, env),
                    "status": _wall([str(peer), "status"] + common, env, "applied"),
                }

            times = {"ours": [], "theirs": [], "http": []}
            prints = {"ours": set(), "theirs": set()}
            for i in range(rounds):
                order = ["ours", "theirs"] if i % 2 == 0 else ["theirs", "ours"]
                for side in order:
                    admin.reset_warehouse()
                    got = ours("native", f"b_zs_{i}") if side == "ours" else theirs(f"b_peer_{i}")
                    times[side].append(got)
                    prints[side].add(tuple(sorted(admin.fingerprint().items())))
                # zakaz-schema over HTTP (stdlib HTTP on the fast path): for the note only.
                admin.reset_warehouse()
                times["http"].append(ours("http", f"b_zh_{i}"))
            final = admin.fingerprint()

            from bench.harness import in_fresh_process

            admin.reset_warehouse()
            admin.run("CREATE DATABASE b_profile")
            deploy = in_fresh_process("bench.peer:profile_deploy", url("native", "b_profile"))
            noop = in_fresh_process("bench.peer:profile_noop", url("native", "b_profile"))
            python_start = median(_wall([sys.executable, "-c", "pass"], env) for _ in range(5))
        finally:
            server.stop()

    rows = []
    for key, label in CASES:
        a = [t[key] for t in times["ours"]]
        b = [t[key] for t in times["theirs"]]
        ratios = [x / y for x, y in zip(a, b)]
        ratio, target = median(ratios), TARGETS[key]
        http = median(t[key] for t in times["http"])
        rows.append(row("peer", f"{label}: zakaz-schema", seconds(median(a)), seconds=median(a),
                        note=f"median of {rounds}; native protocol; over HTTP {seconds(http)}"))
        rows.append(row("peer", f"{label}: {PEER} {PEER_VERSION}", seconds(median(b)), seconds=median(b),
                        note=f"median of {rounds}; native protocol (clickhouse-driver)"))
        rows.append(row("peer", f"{label}: ratio zakaz-schema / {PEER}", f"{ratio:.2f}x",
                        target=f"<= {target}", ok=ratio <= target, ratio=ratio,
                        note=f"per-round ratios {min(ratios):.2f}-{max(ratios):.2f}"))
    same = len(prints["ours"]) == 1 and prints["ours"] == prints["theirs"]
    statements = sum(n for _, n in files)
    rows.append(row(
        "peer", "both tools leave the same schema", "yes" if same else "NO", target="identical", ok=same,
        note=(f"{final['objects']} objects, {final['columns']} columns, {final['roles']} roles, "
              f"{final['grants']} grants in zakaz/meta/bi; ClickHouse {server_version} server; "
              f"{len(files)} peer files, {statements} statements"
              + ("" if same else f"; zakaz-schema {sorted(prints['ours'])} vs peer {sorted(prints['theirs'])}")),
    ))
    return rows + breakdown_rows(python_start, deploy, noop)


def main() -> None:
    from bench.__main__ import markdown

    t0 = time.perf_counter()
    print(markdown(run(), time.perf_counter() - t0, ["peer"]))


if __name__ == "__main__":
    main()
