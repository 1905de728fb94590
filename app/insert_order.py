"""The order of insert-only tables (the ledger, the deploy lock): a seq the server takes.

Rows are ordered by ``seq``, the table's previous maximum plus one, taken
by the server as the row is inserted.  A clock would not do: deploy hosts'
clocks differ, and a row stamped by a clock running ahead outranked every
later row, pinning the version.  Writers are serialised (the deploy lock on
a server, chDB's directory lock embedded), so max + 1 cannot be taken twice.
"""
from __future__ import annotations


def next_seq_sql(schema: str, table: str, offset: int = 1) -> str:
    """The expression giving the ``offset``-th row of an INSERT into ``schema.table`` its seq."""
    return f"(SELECT max(seq) FROM {schema}.{table}) + {offset}"
