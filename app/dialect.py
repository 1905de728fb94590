"""``clickhouse+chdb``: clickhouse-sqlalchemy's dialect over the embedded engine.

URL: ``clickhouse+chdb:///<database>?path=<directory>``.  The database part is
the ClickHouse database (reflection reads it, the ledger lives there); the
on-disk directory is the ``path`` query argument (``:memory:`` for a throwaway
engine).  Everything else (compiler, types, reflection) is clickhouse-sqlalchemy's.
"""
from __future__ import annotations

import os

import sqlalchemy as sa
from clickhouse_sqlalchemy.drivers.base import (
    ClickHouseDialect,
    ClickHouseExecutionContextBase,
)
from sqlalchemy.pool import SingletonThreadPool

from app import dbapi


class ChdbExecutionContext(ClickHouseExecutionContextBase):
    def pre_exec(self):
        pass


class ChdbDialect(ClickHouseDialect):
    driver = "chdb"
    execution_ctx_cls = ChdbExecutionContext
    supports_statement_cache = True
    # One embedded engine per process and per directory: a second pool
    # connection would only re-attach to the same engine.
    poolclass = SingletonThreadPool

    @classmethod
    def import_dbapi(cls):
        return dbapi

    @classmethod
    def get_pool_class(cls, url):
        return SingletonThreadPool

    def create_connect_args(self, url):
        self._url_database = url.database or "default"
        path = url.query.get("path", ":memory:")
        if path != ":memory:":
            path = os.path.abspath(os.path.expanduser(path))
        return (path,), {}

    def on_connect(self):
        database = self._database_name

        def use_database(dbapi_conn):
            if database and database != "default":
                # chDB has no server to reject an unknown database, and a
                # fresh embedded directory has only ``default``: create it so
                # the URL means the same thing on first and later runs.
                cur = dbapi_conn.cursor()
                cur.execute(f"CREATE DATABASE IF NOT EXISTS `{database}`")
                cur.execute(f"USE `{database}`")

        return use_database

    @property
    def _database_name(self):
        return getattr(self, "_url_database", None)

    def _execute(self, connection, sql, scalar=False, **kwargs):
        if isinstance(sql, str):
            sql = sa.text(sql)
        f = connection.scalar if scalar else connection.execute
        return f(sql, kwargs)

    def _get_server_version_info(self, connection):
        version = connection.exec_driver_sql("SELECT version()").scalar()
        return tuple(int(p) for p in version.split(".")[:4] if p.isdigit())

    def _get_default_schema_name(self, connection):
        return connection.exec_driver_sql("SELECT currentDatabase()").scalar()
