"""Application users on a ClickHouse server: ``zakaz-schema users apply``.

Revision 0010 creates the roles and their grants; users are kept out of the
revisions because their passwords must never be written down: not in a
revision, the ledger, offline SQL or a log.  ``apply`` takes each password
from the environment at deploy time, creates the user if it is missing, sets
the password (so a re-run rotates it), grants the user its role and makes
that role the default.

The password travels only as a bound parameter of the statement (the driver
quotes it); the SQL text we keep, show and raise in errors has a placeholder,
and what is shown has ``'***'`` in its place.  The server itself hides
``IDENTIFIED ... BY`` secrets in its query log.

The embedded engine has no access storage, so there ``apply`` refuses.

In cluster mode (``cluster``, ``--cluster`` or ZAKAZ_CLUSTER, as for
``upgrade``) every statement runs ON CLUSTER, so a user can log in on any
replica.  An ON CLUSTER statement is stored as text in Keeper's DDL queue
(readable in ``system.distributed_ddl_queue`` for as long as the queue keeps
it), so there the password itself is not sent: the statement carries its
salted SHA-256 (``IDENTIFIED WITH sha256_hash BY ... SALT ...``), which is
what the server stores for ``sha256_password`` anyway.  ``SET DEFAULT ROLE``
has no ON CLUSTER form: ``ALTER USER ... DEFAULT ROLE`` does the same.
"""
from __future__ import annotations

import hashlib
import os
import secrets as _secrets
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from app import cluster as cluster_mode
from app.config import is_embedded, mask_text, parse_url, resolve_url
from app.engine import connect
from app.errors import CheckFailed, UsageError
from app.settings import Settings
from app.sql import clickhouse_error_code, clickhouse_error_message
from app.verify import ROLE_MISSING, ROLE_NOT_DEFAULT, ROLE_NOT_HELD, USER_RIGHTS, USER_ROLE, Finding

MASK = "'***'"


@dataclass(frozen=True)
class AppUser:
    name: str
    role: str
    password_env: str


# Roles as revision 0010 creates them (warehouse.md, Access).
APP_USERS = (
    AppUser("etl_writer", "zakaz_etl", "ZAKAZ_ETL_WRITER_PASSWORD"),
    AppUser("datalens_reader", "zakaz_reader", "ZAKAZ_DATALENS_READER_PASSWORD"),
    AppUser("backup_user", "zakaz_backup", "ZAKAZ_BACKUP_USER_PASSWORD"),
)
USER_NAMES = tuple(u.name for u in APP_USERS)


class UsersRefused(UsageError):
    """Nothing was changed: bad input or a database that cannot hold users (one line)."""


class MissingPassword(UsersRefused):
    """A password variable is unset or empty; the message names it."""


class NoAccessStorage(UsersRefused):
    """The embedded engine cannot create users."""


class MissingRoles(UsersRefused):
    """Revision 0010 has not been applied on this server."""


class ApplyFailed(CheckFailed):
    """The server rejected a statement; the message is one line, without passwords."""


@dataclass(frozen=True)
class Statement:
    """One statement of ``apply``: SQL with a ``%(password)s`` placeholder.

    ``str()`` and ``repr()`` show the password as ``'***'``, so a statement
    printed, logged or put in an exception never carries it.
    """

    user: str
    template: str
    params: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def shown(self) -> str:
        return self.template % {name: MASK for name in self.params} if self.params else self.template

    def __str__(self) -> str:
        return self.shown

    def __repr__(self) -> str:
        return f"Statement({self.shown!r})"


def select_users(names: Iterable[str] | None = None) -> list[AppUser]:
    """The users to apply: all of them, or those named (in the canonical order)."""
    if not names:
        return list(APP_USERS)
    wanted = set(names)
    unknown = sorted(wanted - set(USER_NAMES))
    if unknown:
        raise UsersRefused(f"unknown user {', '.join(unknown)}; the users are {', '.join(USER_NAMES)}")
    return [u for u in APP_USERS if u.name in wanted]


def passwords_from_env(users: Iterable[AppUser], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Each user's password from its environment variable; all missing ones named at once."""
    environ = os.environ if environ is None else environ
    users = list(users)
    missing = [u for u in users if not environ.get(u.password_env)]
    if missing:
        names = ", ".join(u.password_env for u in missing)
        verb = "is" if len(missing) == 1 else "are"
        whose = ", ".join(u.name for u in missing)
        raise MissingPassword(
            f"{names} {verb} not set or empty (the password of {whose}); "
            "export it (see .env.example) and run `zakaz-schema users apply` again"
        )
    return {u.name: environ[u.password_env] for u in users}


def user_statements(user: AppUser, password: str, cluster=None) -> list[Statement]:
    """What makes ``user`` exist with ``password`` and its role, on any starting state.

    ``cluster`` (app.cluster.Cluster): the same, ON CLUSTER, with the password's salted hash.
    """
    if cluster is not None:
        return _cluster_statements(user, password, cluster)
    secret = {"password": password}
    return [
        Statement(user.name, f"CREATE USER IF NOT EXISTS {user.name} IDENTIFIED WITH sha256_password BY %(password)s", secret),
        # The user may already exist with another password: set it every time.
        Statement(user.name, f"ALTER USER {user.name} IDENTIFIED WITH sha256_password BY %(password)s", secret),
        Statement(user.name, f"GRANT {user.role} TO {user.name}"),
        Statement(user.name, f"SET DEFAULT ROLE {user.role} TO {user.name}"),
    ]


def _cluster_statements(user: AppUser, password: str, cluster) -> list[Statement]:
    salt = _secrets.token_hex(16)
    # What ClickHouse checks for sha256_password: SHA-256 of the password followed by the salt.
    secret = {"hash": hashlib.sha256((password + salt).encode()).hexdigest(), "salt": salt}
    identified = "IDENTIFIED WITH sha256_hash BY %(hash)s SALT %(salt)s"

    def on_cluster(sql: str) -> str:
        return cluster_mode.rewrite(sql, cluster)

    return [
        Statement(user.name, on_cluster(f"CREATE USER IF NOT EXISTS {user.name} {identified}"), secret),
        Statement(user.name, on_cluster(f"ALTER USER {user.name} {identified}"), secret),
        Statement(user.name, on_cluster(f"GRANT {user.role} TO {user.name}")),
        Statement(user.name, on_cluster(f"ALTER USER {user.name} DEFAULT ROLE {user.role}")),
    ]


def plan_statements(passwords: Mapping[str, str], users: Iterable[AppUser] = APP_USERS,
                    cluster=None) -> list[Statement]:
    """Every statement ``apply`` runs, in order (pure: no database, no environment)."""
    out: list[Statement] = []
    for user in users:
        out.extend(user_statements(user, passwords[user.name], cluster))
    return out


def _cluster_from(cluster: str | None, environ: Mapping[str, str] | None):
    """Cluster mode as for ``upgrade``: ``cluster``, else ZAKAZ_CLUSTER (and its settings) in ``environ``."""
    return Settings.from_sources({"cluster": cluster} if cluster else {}, environ=environ).cluster


def _refuse_embedded(url: str) -> None:
    parse_url(url)
    if is_embedded(url):
        raise NoAccessStorage(
            "users apply needs a ClickHouse server: the embedded engine (clickhouse+chdb) "
            "has no access storage for users; pass --url clickhouse+native://... or clickhouse+http://..."
        )


def plan(url: str | None = None, names: Iterable[str] | None = None,
         environ: Mapping[str, str] | None = None, *, cluster: str | None = None) -> list[Statement]:
    """Check the target and the passwords, and return the statements ``apply`` would run."""
    url = resolve_url(url)
    _refuse_embedded(url)
    users = select_users(names)
    return plan_statements(passwords_from_env(users, environ), users, _cluster_from(cluster, environ))


def apply(url: str | None = None, names: Iterable[str] | None = None,
          environ: Mapping[str, str] | None = None, *, cluster: str | None = None) -> list[dict]:
    """Create or update the users on the server at ``url``; one dict per user.

    ``cluster``: ON CLUSTER that cluster (None: ZAKAZ_CLUSTER of ``environ``,
    else the process environment; unset: this server only).
    Refuses (``UsersRefused``, nothing changed) on the embedded engine, on a
    missing password, or when revision 0010's roles are not on the server.
    """
    url = resolve_url(url)
    on_cluster = _cluster_from(cluster, environ)
    statements = plan(url, names, environ, cluster=cluster)
    users = select_users(names)
    secrets = [v for s in statements for v in s.params.values()]
    with connect(url) as conn:
        # SQLAlchemy puts bound parameters into its log lines and error
        # messages unless told not to: the password is one of them.
        conn.engine.hide_parameters = True
        if on_cluster is not None:
            cluster_mode.check_cluster_exists(conn, on_cluster)
            cluster_mode.apply_ddl_settings(conn, on_cluster)
        roles = {r for (r,) in conn.exec_driver_sql("SELECT name FROM system.roles").all()}
        missing = [u.role for u in users if u.role not in roles]
        if missing:
            raise MissingRoles(
                f"{'role' if len(missing) == 1 else 'roles'} {', '.join(missing)} "
                f"{'does' if len(missing) == 1 else 'do'} not exist on the server; "
                "run `zakaz-schema upgrade` first (revision 0010 creates the roles)"
            )
        existing = {n for (n,) in conn.exec_driver_sql("SELECT name FROM system.users").all()}
        for stmt in statements:
            try:
                conn.exec_driver_sql(stmt.template, dict(stmt.params))
            except Exception as exc:
                text = clickhouse_error_message(exc)
                if on_cluster is not None and clickhouse_error_code(exc) == cluster_mode.DISTRIBUTED_DDL_TIMEOUT:
                    text = str(cluster_mode.explain_ddl_timeout(conn, on_cluster, exc, stmt.shown,
                                                                then="`zakaz-schema users apply` again"))
                raise ApplyFailed(mask_text(
                    f"users apply failed for {stmt.user} at `{stmt.shown}`: {text}", *secrets
                )) from None
    return [
        {"user": u.name, "role": u.role, "action": "updated" if u.name in existing else "created"}
        for u in users
    ]


# --- users who lost their role --------------------------------------------------------

# Dropping a role (revision 0010's downgrade) removes its grants to users, and
# creating it again does not give them back: the users still log in, with no
# rights (Code 497 on every view) until `users apply` grants the role again.

def users_without_role(conn) -> list[tuple[AppUser, str]]:
    """Each application user that exists but does not hold its role as a default role, and why.

    One query.  A user that does not exist is not listed: a database may not
    have had `users apply` yet.  Server only (the embedded engine has no users).
    """
    return _rights(conn)[0]


def _rights(conn) -> tuple[list[tuple[AppUser, str]], list[tuple[AppUser, list[str]]]]:
    """``users_without_role``, and each existing application user's rights beyond its role.

    One query.  A user's rights are its role's (warehouse.md, Access): another
    role, or a privilege granted to the user itself, is more than the spec
    gives it (a tryout's DataLens user could write into a fact table, and
    verify said OK).  ``users apply`` grants and never revokes, so they stay.
    """
    names = ", ".join(f"'{u.name}'" for u in APP_USERS)
    roles = ", ".join(f"'{u.role}'" for u in APP_USERS)
    rows = conn.exec_driver_sql(
        f"SELECT 'user', name, '', 0 FROM system.users WHERE name IN ({names}) "
        f"UNION ALL SELECT 'role', name, '', 0 FROM system.roles WHERE name IN ({roles}) "
        "UNION ALL SELECT 'grant', user_name, granted_role_name, toUInt8(granted_role_is_default) "
        f"FROM system.role_grants WHERE user_name IN ({names}) "
        "UNION ALL SELECT 'direct', user_name, concat(toString(access_type), ' ON ', ifNull(database, '*'), '.', "
        "ifNull(table, '*')), 0 "
        f"FROM system.grants WHERE user_name IN ({names}) AND NOT is_partial_revoke"
    ).all()
    existing = {name for kind, name, _, _ in rows if kind == "user"}
    existing_roles = {name for kind, name, _, _ in rows if kind == "role"}
    grants = {(name, role): bool(default) for kind, name, role, default in rows if kind == "grant"}
    missing, extra = [], []
    for user in APP_USERS:
        if user.name not in existing:
            continue
        if user.role not in existing_roles:
            missing.append((user, ROLE_MISSING))
        elif (user.name, user.role) not in grants:
            missing.append((user, ROLE_NOT_HELD))
        elif not grants[(user.name, user.role)]:
            missing.append((user, ROLE_NOT_DEFAULT))
        more = sorted(f"ROLE {role}" for name, role in grants if name == user.name and role != user.role)
        more += sorted(what for kind, name, what, _ in rows if kind == "direct" and name == user.name)
        if more:
            extra.append((user, more))
    return missing, extra


def role_findings(conn) -> list[Finding]:
    """The application users' rights as verify reports them: fatal, each saying what to do."""
    missing, extra = _rights(conn)
    return ([Finding(USER_ROLE, user.name, "", user.role, state) for user, state in missing]
            + [Finding(USER_RIGHTS, user.name, "", user.role, ", ".join(more)) for user, more in extra])


def warn_users_without_role(url: str, steps: list, warn) -> None:
    """After ``steps`` ran on a server: ``warn`` each application user left without its role.

    A step that drops a role (0010's downgrade) drops its grants to users too,
    and one that creates it again does not restore them: nothing else says so.
    """
    if not steps or is_embedded(url):
        return
    try:
        with connect(url) as conn:
            findings = role_findings(conn)
    except Exception:  # noqa: BLE001 - the steps are done: a deploy user who may not read
        return  # system.users gets no advice here, and the summary is not worth failing for
    for f in findings:
        warn(str(f))
