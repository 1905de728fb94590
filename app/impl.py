"""Alembic's DDL implementation for ClickHouse (every ``clickhouse+*`` URL).

We do not use ``clickhouse_sqlalchemy.alembic``: it imports only with
alembic <= 1.14.  What differs from alembic's default implementation:

* DDL is not transactional;
* ``op.rename_table`` emits ``RENAME TABLE`` (``ALTER TABLE .. RENAME TO`` is
  not ClickHouse);
* ``op.create_table`` accepts a clickhouse-sqlalchemy engine as
  ``info={"clickhouse_engine": engines.MergeTree(...)}`` (alembic drops
  non-column positional arguments before the table reaches us);
* alembic's own writes to ``alembic_version`` are dropped: the version lives
  in the insert-only ledger (``app.ledger``), written per step by
  ``app.runtime``;
* access statements (users, roles, grants) cannot run on chDB, which has no
  access storage: there they are checked with ``formatQuery`` and recorded as
  skipped instead of executed;
* every statement is counted per step, so a failure names its index, and a
  test can make the k-th statement of a revision fail;
* the ClickHouse operations (app.operations, registered on import here) are
  rendered for this run's placement (``self.placement``: the cluster, if
  any, and the URL's database) and run through ``run_rendered``; the
  operations a step ran are kept, in order, in ``self.operations`` (online
  and offline, reset per step by app.runtime): what lint and cluster code
  read instead of the SQL text;
* in cluster mode (``self.cluster``, set by app.runtime) raw SQL (``op.run``,
  ``op.access``, ``op.execute``) and alembic's own operations are placed on
  the cluster by ``app.cluster_rewrite``, which refuses DDL it does not
  know; a distributed DDL timeout (code 159) is re-raised naming the hosts
  that did not finish.
"""
from __future__ import annotations

import re
from typing import Any

from alembic.ddl.impl import DefaultImpl
from sqlalchemy import text
from sqlalchemy.sql import dml
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.schema import CreateTable, DropTable, ExecutableDDLElement

from app import cluster as cluster_mode
from app import waiting
from app.cluster_rewrite import rewrite
from app import operations  # noqa: F401 - registers the ClickHouse operations on alembic's Operations
from app.operations.render import Placement
from app.sql import clickhouse_error_code

ACCESS_STATEMENT = re.compile(
    r"^\s*(CREATE\s+(ROLE|USER)|ALTER\s+(ROLE|USER)|DROP\s+(ROLE|USER)|GRANT|REVOKE|SET\s+DEFAULT\s+ROLE)\b",
    re.I,
)

DATABASE_STATEMENT = re.compile(r"^\s*(CREATE|DROP|ATTACH|DETACH)\s+DATABASE\b", re.I)


class InjectedFailure(Exception):
    """Raised instead of a statement chosen by a failure-injection test."""


class _Rendered(TextClause):
    """A statement an operation rendered for this run's placement: run as it is, never rewritten."""

    inherit_cache = True


def _escaped(sql: str) -> str:
    # alembic wraps strings in text(), which reads ":name" as a bind
    # parameter; ClickHouse SQL has none, so every colon is literal.
    return sql.strip().replace(":", "\\:")


class _PercentByParamstyle:
    """SQLAlchemy's rule for ``%`` in SQL text: doubled only for a paramstyle that interpolates.

    clickhouse-sqlalchemy's compiler doubles it always, which the DB-API's
    pyformat step undoes online; offline nothing undoes it, and
    ``formatDateTime(ts, '%Y-%m')`` would reach clickhouse-client as
    ``'%%Y-%%m'`` and return that text.
    """

    def post_process_text(self, text: str) -> str:
        return SQLCompiler.post_process_text(self, text)


class ClickHouseImpl(DefaultImpl):
    __dialect__ = "clickhouse"
    transactional_ddl = False

    def __init__(self, *args: Any, **kw: Any):
        super().__init__(*args, **kw)
        if self.as_sql:
            # The offline dialect is this run's own (paramstyle "named", see
            # app.runtime): its SQL is read by clickhouse-client as written.
            compiler = self.dialect.statement_compiler
            self.dialect.statement_compiler = type(compiler.__name__, (_PercentByParamstyle, compiler), {})
        self.version_table_name = "alembic_version"
        self.reset_step()
        # (revision, statement index) -> raise before running it; set by tests.
        self.fail_at: tuple[str, int] | None = None
        self.current_revision: str | None = None
        # Cluster mode (app.cluster.Cluster) and the database unqualified
        # names belong to; both set by app.runtime before the first step.
        self.cluster: cluster_mode.Cluster | None = None
        self.default_database = "default"

    # -- per-step bookkeeping read by app.runtime --------------------------
    def reset_step(self, revision: str | None = None) -> None:
        self.statements = 0
        self.skipped: list[str] = []
        # The ClickHouse operations (app.operations.definitions) this step
        # ran, in order: what it does as data, online and offline.
        self.operations: list = []
        self.current_revision = revision

    def record(self, operation) -> None:
        self.operations.append(operation)

    @property
    def placement(self) -> Placement:
        return Placement(self.cluster, self.default_database)

    @property
    def is_embedded(self) -> bool:
        return getattr(self.dialect, "driver", "") == "chdb"

    # -- execution ----------------------------------------------------------
    def _is_version_table_write(self, construct: Any) -> bool:
        if isinstance(construct, (dml.Insert, dml.Update, dml.Delete)):
            return construct.table.name == self.version_table_name
        if isinstance(construct, (CreateTable, DropTable)):
            return construct.element.name == self.version_table_name
        return False

    def _exec(self, construct: Any, execution_options: Any = None, multiparams=None, params=None):
        if self._is_version_table_write(construct):
            # The ledger replaces alembic's mutable version table; its DDL is
            # written by app.ledger (also in offline mode, see app.runtime).
            return None
        self.statements += 1
        if self.fail_at and self.fail_at == (self.current_revision, self.statements):
            raise InjectedFailure(
                f"injected failure at statement {self.statements} of {self.current_revision}"
            )
        if self.cluster is not None and not isinstance(construct, _Rendered):
            construct = self._for_cluster(construct)
        sql = construct.text if isinstance(construct, TextClause) else (
            construct if isinstance(construct, str) else None
        )
        if sql is not None and ACCESS_STATEMENT.match(sql) and self.is_embedded and not self.as_sql:
            return self.skip_statement(sql)
        try:
            with waiting.statement(self, construct, sql) as construct:  # says what a slow one waits for
                result = super()._exec(construct, execution_options, multiparams, params)
        except Exception as exc:
            if (self.cluster is not None and not self.as_sql and sql is not None
                    and cluster_mode.is_distributed_ddl(sql, self.cluster)
                    and clickhouse_error_code(exc) == cluster_mode.DISTRIBUTED_DDL_TIMEOUT):
                raise cluster_mode.explain_ddl_timeout(self.connection, self.cluster, exc, sql) from exc
            raise
        if sql is not None and not isinstance(construct, _Rendered) and DATABASE_STATEMENT.match(sql):
            self.refresh_replicated_databases()
        return result

    def run_rendered(self, sql: str) -> None:
        """Run a statement an operation rendered (counted, injectable, skipped if access on chDB)."""
        self._exec(_Rendered(_escaped(sql)))

    def run_raw(self, sql: str) -> None:
        """Run SQL as written in a revision; in cluster mode app.cluster_rewrite places it."""
        self._exec(text(_escaped(sql)))

    def refresh_replicated_databases(self) -> None:
        """After a database is created or dropped: it may use ENGINE = Replicated, and the
        statements after it must know (they take no ON CLUSTER)."""
        if self.cluster is not None and not self.as_sql:
            self.cluster = self.cluster.with_replicated_databases(
                cluster_mode.replicated_databases(self.connection))

    def _for_cluster(self, construct: Any) -> Any:
        """Raw SQL or an alembic construct as it must run on the cluster (see app.cluster_rewrite)."""
        if isinstance(construct, TextClause):
            # run_raw escapes ":" (alembic's text() reads ":name" as a
            # bind parameter); rewrite the plain SQL, then escape again.
            sql = construct.text.replace("\\:", ":")
        elif isinstance(construct, str):
            sql = construct
        elif isinstance(construct, ExecutableDDLElement):
            # alembic's own op.create_table & co.: compile, then rewrite as text.
            sql = str(construct.compile(dialect=self.dialect))
        else:
            return construct  # INSERT / SELECT constructs run on this node and replicate
        rewritten = rewrite(sql, self.cluster, default_database=self.default_database)
        if rewritten == sql and not isinstance(construct, ExecutableDDLElement):
            return construct
        return text(rewritten.replace(":", "\\:"))

    def skip_statement(self, sql: str) -> None:
        """Check a statement with formatQuery and record it as skipped instead of running it.

        For what chDB, with no access storage, cannot or need not run: the
        statement must still be valid ClickHouse, and it must be visible
        that it did not run."""
        checked = self.connection.exec_driver_sql(
            "SELECT formatQuery(%(q)s)", {"q": sql}
        ).scalar()
        self.skipped.append(" ".join(checked.split()))
        return None

    # -- operations that differ from alembic's defaults ----------------------
    def rename_table(self, old_table_name: str, new_table_name: str, schema: str | None = None) -> None:
        def q(name: str) -> str:
            return self.dialect.identifier_preparer.quote(name)

        old = f"{q(schema)}.{q(old_table_name)}" if schema else q(old_table_name)
        new_schema = schema
        if "." in new_table_name:
            new_schema, new_table_name = new_table_name.split(".", 1)
        new = f"{q(new_schema)}.{q(new_table_name)}" if new_schema else q(new_table_name)
        self._exec(text(f"RENAME TABLE {old} TO {new}"))

    def create_table(self, table: Any, **kw: Any) -> None:
        engine = table.info.get("clickhouse_engine")
        if engine is not None and getattr(table, "engine", None) is None:
            from clickhouse_sqlalchemy import Table as CHTable

            table.metadata.remove(table)
            table = CHTable._make_from_standard(table)
            engine._set_parent(table)
        super().create_table(table, **kw)
