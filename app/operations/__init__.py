"""The ClickHouse operations revisions are written with, as Alembic operations.

Importing this package registers them on alembic's ``Operations`` (app.impl
does, so every migration has them): a revision writes ``from alembic import
op`` and ``op.create_view(...)``, ``op.rebuild_table(...)``.

* ``definitions``: the operations as data (fields and ``describe()``), and
  why four of them are named ``..._if_[not_]exists``;
* ``render``: their SQL, with ON CLUSTER and Replicated engines decided from
  what each operation is;
* ``implementations``: how each runs through the ClickHouse implementation
  (guards, announcements, embedded-engine skips);
* ``rebuild``: the two that move rows;
* ``materialized``: a materialized view's SELECT or storage changed, its rows kept.

The plain functions below are what revisions imported before the operations
were alembic's; revisions written that way (tests', bench's) still run.  New
revisions use ``op``.
"""
from __future__ import annotations

from alembic import op

from app.operations import implementations  # noqa: F401 - registers the implementations
from app.operations import materialized  # noqa: F401 - registers the materialized view rebuild and MODIFY QUERY
from app.operations.definitions import ClickHouseOperation  # noqa: F401 - what impl.operations holds


def run(sql: str) -> None:
    op.run(sql)


def access(sql: str) -> None:
    op.access(sql)


def create_database(name: str) -> None:
    op.create_database(name)


def drop_database(name: str) -> None:
    op.drop_database(name)


def create_table(name: str, columns: str, **kw) -> None:
    op.create_table_if_not_exists(name, columns, **kw)


def drop_table(name: str) -> None:
    op.drop_table_if_exists(name)


def add_column(table: str, column: str, **kw) -> None:
    op.add_column_if_not_exists(table, column, **kw)


def drop_column(table: str, column: str) -> None:
    op.drop_column_if_exists(table, column)


def modify_column(table: str, column: str) -> None:
    op.modify_column(table, column)


def create_view(name: str, select: str) -> None:
    op.create_view(name, select)


def drop_view(name: str) -> None:
    op.drop_view(name)


def create_materialized_view(name: str, select: str, **kw) -> None:
    op.create_materialized_view(name, select, **kw)


def set_view_security(name: str, security: str, **kw) -> None:
    op.set_view_security(name, security, **kw)


def exchange_tables(a: str, b: str) -> None:
    op.exchange_tables(a, b)


def copy_rows_once(target: str, columns: str, select: str) -> None:
    op.copy_rows_once(target, columns, select)


def rebuild_table(name: str, columns: str, **kw) -> None:
    op.rebuild_table(name, columns, **kw)
