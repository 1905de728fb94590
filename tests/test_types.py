"""The table of type changes (app/types.py), each answer checked against ClickHouse's own CAST.

A widening must round-trip every extreme value of the old type through the
new one unchanged; a narrowing is shown by one value that ClickHouse changes
or refuses; an impossible change is refused by ClickHouse for any value.
The values are written here by hand, not derived from the code under test.
"""
from __future__ import annotations

import pytest

from app.engine import connect
from app.types import IMPOSSIBLE, LOSSY, SAME, WIDENING, keeps_every_value, type_change

pytestmark = pytest.mark.fast

E_AB = "Enum8('a' = 1, 'b' = 2)"

# (old, new, values of the old type as SQL literals: its extremes)
WIDENINGS = [
    # the ten the two old implementations disagreed on, or agreed on
    ("Decimal(12, 2)", "Decimal(18, 4)", ["'9999999999.99'", "'-9999999999.99'", "'0.01'"]),
    ("DateTime", "DateTime64(3)", ["'1970-01-01 00:00:00'", "'2106-02-07 06:28:15'"]),
    ("Enum8('a' = 1)", E_AB, ["'a'"]),
    ("Int32", "Float64", ["'-2147483648'", "'2147483647'", "'16777217'"]),
    ("UInt32", "Float64", ["'4294967295'"]),
    ("UInt16", "UInt64", ["'65535'", "'0'"]),
    ("UInt32", "Int64", ["'4294967295'"]),
    ("Date", "Date32", ["'1970-01-01'", "'2149-06-06'"]),
    ("Float32", "Float64", ["'3.4028235e38'", "'-1.1754944e-38'", "'0.1'", "'inf'"]),
    ("UUID", "String", ["'61f0c404-5cb3-11e7-907b-a6006ad3dba0'"]),
    # more of each family
    ("Int8", "Float32", ["'-128'", "'127'"]),
    ("UInt64", "Int128", ["'18446744073709551615'"]),
    ("Int64", "Decimal(19, 0)", ["'-9223372036854775808'", "'9223372036854775807'"]),
    ("UInt64", "Decimal(20, 0)", ["'18446744073709551615'"]),
    ("Decimal(9, 2)", "Decimal(18, 2)", ["'9999999.99'"]),
    ("Date", "DateTime64(0)", ["'2149-06-06'", "'1970-01-01'"]),
    ("Date32", "DateTime64(3)", ["'1900-01-01'", "'2299-12-31'"]),
    ("DateTime64(3)", "DateTime64(6)", ["'2299-12-31 23:59:59.999'", "'1900-01-01 00:00:00.001'"]),
    ("DateTime('UTC')", "DateTime('Asia/Tokyo')", ["'2106-02-07 06:28:15'"]),
    ("DateTime", "DateTime64(9)", ["'2106-02-07 06:28:15'"]),
    (E_AB, "Enum16('a' = 1, 'b' = 2, 'c' = 300)", ["'a'", "'b'"]),
    (E_AB, "String", ["'b'"]),
    ("FixedString(3)", "String", ["'abc'", "'a'"]),
    ("FixedString(3)", "FixedString(5)", ["'abc'", "'a'"]),
    ("UInt32", "String", ["'4294967295'"]),
    ("UInt32", "Nullable(UInt32)", ["'4294967295'"]),
    ("Nullable(UInt32)", "Nullable(UInt64)", ["NULL", "'4294967295'"]),
    ("String", "LowCardinality(String)", ["'x'", "''"]),
    ("LowCardinality(Nullable(String))", "Nullable(String)", ["NULL", "'x'"]),
]

# (old, new, one value of the old type that ClickHouse changes or refuses)
NARROWINGS = [
    ("UInt64", "UInt32", "'4294967296'"),
    ("UInt64", "Int64", "'18446744073709551615'"),
    ("Int8", "UInt64", "'-1'"),
    ("Int64", "Float64", "'9223372036854775807'"),
    ("Int32", "Float32", "'16777217'"),
    ("Float64", "Float32", "'0.1'"),
    ("Float64", "Int64", "'1.5'"),
    # CAST checks a Decimal's storage (Decimal64 up to 18 digits), not its declared precision.
    ("Decimal(18, 2)", "Decimal(18, 4)", "'9999999999999999.99'"),
    ("Decimal(12, 4)", "Decimal(18, 2)", "'1.2345'"),
    ("Decimal(12, 2)", "Int64", "'1.5'"),
    ("Date", "DateTime", "'2149-06-06'"),
    ("Date32", "Date", "'1900-01-01'"),
    ("DateTime", "Date", "'2020-01-01 10:00:00'"),
    ("DateTime64(3)", "DateTime", "'2020-01-01 10:00:00.123'"),
    ("DateTime64(3)", "DateTime64(9)", "'2299-12-31 00:00:00'"),
    (E_AB, "Enum8('a' = 1)", "'b'"),
    ("String", "FixedString(3)", "'abcd'"),
    ("FixedString(3)", "FixedString(2)", "'abc'"),
    ("String", "UUID", "'not a uuid'"),
    ("String", "UInt32", "'x'"),
    ("Nullable(UInt32)", "UInt32", "NULL"),
    ("Nullable(UInt64)", "UInt32", "'4294967296'"),
]

# (old, new, a value): ClickHouse refuses the conversion itself
IMPOSSIBLE_CHANGES = [
    ("Enum8('a' = 1)", "Enum8('a' = 2)", "'a'"),
    ("Date", "UUID", "'2020-01-01'"),
    ("UUID", "UInt64", "'61f0c404-5cb3-11e7-907b-a6006ad3dba0'"),
    ("UInt32", "Array(UInt32)", "'1'"),
    ("Array(UInt32)", "UInt32", "[1]"),
]


@pytest.fixture(scope="module")
def conn(tmp_path_factory):
    url = f"clickhouse+chdb:///default?path={tmp_path_factory.mktemp('types') / 'db'}"
    with connect(url) as c:
        yield c


def _is(conn, condition: str) -> bool:
    return bool(conn.exec_driver_sql(f"SELECT {condition}").scalar())


def _kept(conn, value: str, old: str, new: str) -> bool:
    """Whether ``value`` as ``old`` is, converted to ``new``, still that value.

    It must compare equal to what it was (where ClickHouse compares the two
    types) and come back unchanged when converted back: a UInt64 that wraps
    to -1 in Int64 round-trips, and a Date that wraps in DateTime compares
    equal to nothing.
    """
    original = f"CAST({value} AS {old})"
    converted = f"CAST({original} AS {new})"
    back = f"CAST({converted} AS {old})"
    if old.startswith("FixedString"):
        # A longer FixedString pads the bytes with zeros, which read back as the same text.
        original, back = (f"trimRight(toString({x}), char(0))" for x in (original, converted))
    conn.exec_driver_sql(f"SELECT toString({converted})").all()  # raises if the new type cannot read it
    if not _is(conn, f"({original}) IS NULL AND ({back}) IS NULL OR ({original}) = ({back})"):
        return False
    try:
        return _is(conn, f"({original}) IS NULL AND ({converted}) IS NULL OR ({original}) = ({converted})")
    except Exception:
        return True  # the two types do not compare (Enum and String, UUID and String): the round trip decides


@pytest.mark.parametrize("old, new, values", WIDENINGS, ids=[f"{o}->{n}" for o, n, _ in WIDENINGS])
def test_widenings_keep_every_value_in_clickhouse(conn, old, new, values):
    change = type_change(old, new)
    assert change.kind == WIDENING and change.keeps_every_value, change
    for value in values:
        assert _kept(conn, value, old, new), f"{value}: {old} -> {new} changed it"


@pytest.mark.parametrize("old, new, value", NARROWINGS, ids=[f"{o}->{n}" for o, n, _ in NARROWINGS])
def test_narrowings_lose_a_value_in_clickhouse(conn, old, new, value):
    change = type_change(old, new)
    assert change.kind == LOSSY and not change.keeps_every_value and change.reason, change
    try:
        kept = _kept(conn, value, old, new)
    except Exception:
        kept = False  # ClickHouse refuses the value: the conversion (a mutation) fails on that row
    assert not kept, f"{value} survives {old} -> {new}: the table calls it lossy ({change.reason})"


@pytest.mark.parametrize("old, new, value", IMPOSSIBLE_CHANGES, ids=[f"{o}->{n}" for o, n, _ in IMPOSSIBLE_CHANGES])
def test_impossible_changes_are_refused_by_clickhouse(conn, old, new, value):
    change = type_change(old, new)
    assert change.kind == IMPOSSIBLE and change.reason, change
    with pytest.raises(Exception):
        conn.exec_driver_sql(f"SELECT CAST(CAST({value} AS {old}) AS {new})").all()


def test_same_type_and_wrappers():
    assert type_change("UInt32", "UInt32").kind == SAME
    assert type_change("String", "LowCardinality(String)").kind == WIDENING
    assert type_change("Nullable(UInt32)", "UInt32").only_nulls  # adopt repairs it, counting the NULL rows
    nulls = type_change("Nullable(UInt32)", "UInt64")
    assert nulls.kind == LOSSY and nulls.only_nulls and "NULL" in nulls.reason
    both = type_change("Nullable(UInt64)", "UInt32")
    assert both.kind == LOSSY and not both.only_nulls and "NULL" in both.reason
    assert keeps_every_value("Decimal32(2)", "Decimal(18, 2)")
    assert not keeps_every_value("Float64", "Decimal(12, 2)")


# What lint's is_narrowing and adopt's conversion answered before they became this table, with
# the answers where they were wrong corrected (Date -> DateTime wraps after 2106; see above).
@pytest.mark.parametrize("old, new, keeps", [
    ("UInt64", "UInt32", False), ("UInt32", "UInt64", True), ("UInt32", "Int64", True),
    ("UInt64", "Int64", False), ("String", "FixedString(3)", False), ("FixedString(3)", "String", True),
    ("UUID", "String", True), ("String", "UUID", False), ("UInt32", "Nullable(UInt32)", True),
    ("Nullable(UInt32)", "UInt32", False), ("String", "LowCardinality(String)", True),
    ("Decimal(12, 2)", "Decimal(18, 2)", True), ("Decimal(12, 2)", "Decimal(12, 4)", False),
    ("Enum8('a' = 1)", "Enum8('a' = 1, 'b' = 2)", True), ("Enum8('a' = 1, 'b' = 2)", "Enum8('a' = 1)", False),
    ("DateTime", "Date", False), ("Date", "DateTime", False), ("Float64", "Float32", False),
    ("UInt16", "UInt64", True), ("UInt64", "Int64", False), ("Float64", "Decimal(12, 2)", False),
])
def test_former_lint_and_adopt_answers(old, new, keeps):
    assert keeps_every_value(old, new) is keeps
