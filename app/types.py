"""What a change of a column's type does to the values stored in it: the one table of safe type changes.

Lint asks it whether a revision's type change may lose values (rule
``destructive-narrowing``); adopt asks it whether a ``MODIFY COLUMN`` keeps
every row's value before it plans one.  Each answer was checked against
ClickHouse's own CAST (tests/test_types.py), where the surprises are:

* ``Date -> DateTime`` is not a widening: dates after 2106-02-07 wrap around
  (DateTime counts seconds in a UInt32), while ``Date -> DateTime64`` keeps them;
* ``DateTime64(9)`` ends in 2262, so a lower precision raised to 9 can overflow;
* ``Int32 -> Float64`` keeps every value (53-bit mantissa), ``Int64 -> Float64``
  and ``Int32 -> Float32`` do not;
* an Enum may gain values, and be renumbered never: ClickHouse refuses a
  conversion that gives a name another number;
* ``LowCardinality`` is storage only; dropping ``Nullable`` turns NULLs into
  the type's default value.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from app.schema import unwrap_type

SAME, WIDENING, LOSSY, IMPOSSIBLE = "same", "widening", "lossy", "impossible"

_INT = re.compile(r"(U?)Int(\d+)")
_FLOAT_MANTISSA = {"Float32": 24, "Float64": 53}  # bits: integers up to 2**bits are exact
_DECIMAL = re.compile(r"Decimal\((\d+),\s*(\d+)\)")
_DECIMAL_SIZED = re.compile(r"Decimal(32|64|128|256)\((\d+)\)")
_DECIMAL_PRECISION = {"32": 9, "64": 18, "128": 38, "256": 76}
_FIXED = re.compile(r"FixedString\((\d+)\)")
_DATETIME64 = re.compile(r"DateTime64\((\d+)(?:,\s*'[^']*')?\)")
_DATETIME = re.compile(r"DateTime(?:\('[^']*'\))?")
_ENUM = re.compile(r"Enum(8|16)\((.*)\)")
_ENUM_ITEM = re.compile(r"'((?:[^'\\]|\\.)*)'\s*=\s*(-?\d+)")
_COMPOSITE = ("Array(", "Map(", "Tuple(", "Nested(")
# Scalars whose every value String keeps as its text.
_TO_STRING = re.compile(r"(U?Int\d+|Float\d+|Decimal.*|Date|Date32|DateTime.*|UUID|IPv4|IPv6|Bool|"
                        r"FixedString\(\d+\)|Enum(8|16)\(.*\))")


@dataclass(frozen=True)
class TypeChange:
    """What ``MODIFY COLUMN`` from ``old`` to ``new`` does to the stored values."""

    old: str
    new: str
    kind: str         # SAME, WIDENING (every value kept), LOSSY (some may change or fail), IMPOSSIBLE
    reason: str = ""  # LOSSY / IMPOSSIBLE: which values, and why
    # LOSSY only because Nullable is dropped (NULLs become the default): every
    # other value is kept, and the rows at risk are the NULL ones.
    only_nulls: bool = False

    @property
    def keeps_every_value(self) -> bool:
        return self.kind in (SAME, WIDENING)


def type_change(old: str, new: str) -> TypeChange:
    """How a column of type ``old`` changed to ``new`` treats its values (types as system.columns prints them)."""
    if old == new:
        return TypeChange(old, new, SAME)
    (o, o_null), (n, n_null) = unwrap_type(old), unwrap_type(new)
    kind, reason = _base_change(o, n)
    if kind in (SAME, WIDENING) and o_null and not n_null:
        return TypeChange(old, new, LOSSY, "NULLs become the type's default value", only_nulls=True)
    if kind == LOSSY and o_null and not n_null:
        reason += "; NULLs become the type's default value"
    if kind == SAME:
        kind = WIDENING  # only a wrapper changed: LowCardinality, or Nullable added
    return TypeChange(old, new, kind, reason)


def keeps_every_value(old: str, new: str) -> bool:
    return type_change(old, new).keeps_every_value


# --- the table -----------------------------------------------------------------------------

def _base_change(o: str, n: str) -> tuple[str, str]:
    """(kind, reason) for two types without LowCardinality / Nullable."""
    if o == n:
        return SAME, ""
    for rule in (_impossible, _integers, _to_float, _decimals, _strings, _dates, _enums):
        answer = rule(o, n)
        if answer is not None:
            return answer
    if n == "String" and _TO_STRING.fullmatch(o):
        return WIDENING, ""
    return LOSSY, f"{o} -> {n} is not a conversion known to keep every value"


def _int(t: str) -> tuple[bool, int] | None:
    """(signed, bits) of an integer type."""
    m = _INT.fullmatch(t)
    return (m.group(1) == "", int(m.group(2))) if m else None


def _int_range(t: str) -> tuple[int, int] | None:
    kind = _int(t)
    if kind is None:
        return None
    signed, bits = kind
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)


def _decimal(t: str) -> tuple[int, int] | None:
    """(precision, scale) of a Decimal type, in either spelling."""
    if m := _DECIMAL.fullmatch(t):
        return int(m.group(1)), int(m.group(2))
    if m := _DECIMAL_SIZED.fullmatch(t):
        return _DECIMAL_PRECISION[m.group(1)], int(m.group(2))
    return None


def _impossible(o: str, n: str) -> tuple[str, str] | None:
    if o.startswith(_COMPOSITE) != n.startswith(_COMPOSITE) and "String" not in (o, n):
        return IMPOSSIBLE, f"ClickHouse has no conversion from {o} to {n}"
    numeric_or_date = (_int(o) or o in _FLOAT_MANTISSA or _decimal(o) or o.startswith("Date"),
                       _int(n) or n in _FLOAT_MANTISSA or _decimal(n) or n.startswith("Date"))
    if (o == "UUID" and numeric_or_date[1]) or (n == "UUID" and numeric_or_date[0]):
        return IMPOSSIBLE, "ClickHouse converts no number or date to or from UUID"
    return None


def _integers(o: str, n: str) -> tuple[str, str] | None:
    a, b = _int_range(o), _int_range(n)
    if b and o in _FLOAT_MANTISSA:
        return LOSSY, f"fractions are cut off, and values outside {b[0]}..{b[1]} do not fit"
    if not (a and b):
        return None
    if b[0] <= a[0] and a[1] <= b[1]:
        return WIDENING, ""
    if a[0] < b[0] == 0:
        return LOSSY, f"negative values wrap around in {n}"
    return LOSSY, f"values outside {b[0]}..{b[1]} wrap around in {n}"


def _to_float(o: str, n: str) -> tuple[str, str] | None:
    if n not in _FLOAT_MANTISSA:
        return None
    if o == "Float32" and n == "Float64":
        return WIDENING, ""
    if o == "Float64":
        return LOSSY, "Float32 rounds a Float64 to 24 bits of mantissa"
    r = _int_range(o)
    if r is not None:
        if max(-r[0], r[1]) <= 2 ** _FLOAT_MANTISSA[n]:
            return WIDENING, ""
        return LOSSY, f"integers beyond 2^{_FLOAT_MANTISSA[n]} are rounded in {n}"
    if _decimal(o):
        return LOSSY, "decimal fractions become binary approximations"
    return None


def _decimals(o: str, n: str) -> tuple[str, str] | None:
    new = _decimal(n)
    if new is None:
        if _decimal(o) and _int(n):
            return LOSSY, f"fractions are cut off in {n}"
        return None
    p, s = new
    old = _decimal(o)
    if old is not None:
        if s >= old[1] and p - s >= old[0] - old[1]:
            return WIDENING, ""
        if s < old[1]:
            return LOSSY, f"digits beyond {s} decimal places are cut off"
        return LOSSY, f"values with more than {p - s} digits before the point do not fit"
    r = _int_range(o)
    if r is not None:
        digits = len(str(max(-r[0], r[1])))
        if p - s >= digits:
            return WIDENING, ""
        return LOSSY, f"{o} values with more than {p - s} digits do not fit in {n}"
    if o in _FLOAT_MANTISSA:
        return LOSSY, f"{o} values are rounded to {s} decimal places, and large ones do not fit"
    return None


def _strings(o: str, n: str) -> tuple[str, str] | None:
    fo, fn = _FIXED.fullmatch(o), _FIXED.fullmatch(n)
    if fo and n == "String":
        return WIDENING, ""
    if fo and fn:
        if int(fn.group(1)) >= int(fo.group(1)):
            return WIDENING, ""  # the same bytes, padded with more zero bytes
        return LOSSY, f"values longer than {fn.group(1)} bytes make the conversion fail"
    if fn and o == "String":
        return LOSSY, f"strings longer than {fn.group(1)} bytes make the conversion fail"
    if o == "String" and n != "String" and not n.startswith(_COMPOSITE):
        return LOSSY, f"text that does not parse as {n} makes the conversion fail"
    return None


# Range of a date type's values, as (first year, last day) comparable strings.
_DATE_RANGES = {
    "Date": ("1970-01-01", "2149-06-06"),
    "Date32": ("1900-01-01", "2299-12-31"),
    "DateTime": ("1970-01-01", "2106-02-07"),
    "DateTime64": ("1900-01-01", "2299-12-31"),
    "DateTime64(9)": ("1900-01-01", "2262-04-11"),
}


def _date_kind(t: str) -> tuple[str, int] | None:
    """(family, sub-second digits): Date 0, DateTime 0, DateTime64 its precision."""
    if t in ("Date", "Date32"):
        return t, -1
    if _DATETIME.fullmatch(t):
        return "DateTime", 0
    if m := _DATETIME64.fullmatch(t):
        return "DateTime64", int(m.group(1))
    return None


def _dates(o: str, n: str) -> tuple[str, str] | None:
    a, b = _date_kind(o), _date_kind(n)
    if not (a and b):
        return None
    (fa, pa), (fb, pb) = a, b
    ra = _DATE_RANGES["DateTime64(9)" if fa == "DateTime64" and pa == 9 else fa]
    rb = _DATE_RANGES["DateTime64(9)" if fb == "DateTime64" and pb == 9 else fb]
    if pb < pa:
        return LOSSY, ("the time of day is cut off" if pb < 0 else
                       f"sub-second digits beyond {pb} are cut off" if pb else "fractions of a second are cut off")
    if rb[0] > ra[0] or rb[1] < ra[1]:
        return LOSSY, f"values outside {rb[0]}..{rb[1]} wrap around or overflow in {n}"
    # The same instants; a different time zone only changes how they print.
    return WIDENING, ""


def _enum_items(t: str) -> dict[str, int] | None:
    m = _ENUM.fullmatch(t)
    return {name: int(value) for name, value in _ENUM_ITEM.findall(m.group(2))} if m else None


def _enums(o: str, n: str) -> tuple[str, str] | None:
    a, b = _enum_items(o), _enum_items(n)
    if a is None or b is None:
        return None
    renumbered = sorted(k for k in a if k in b and a[k] != b[k])
    if renumbered:
        return IMPOSSIBLE, f"ClickHouse refuses to give {', '.join(renumbered)} another number"
    removed = sorted(k for k in a if k not in b)
    if removed:
        # MODIFY COLUMN changes only the metadata, and such a row can no longer be read.
        return LOSSY, f"rows holding {', '.join(removed)} become unreadable"
    return WIDENING, ""


# --- TTL changes ------------------------------------------------------------------

_TTL_PERIOD = re.compile(r"^(.+) \+ toInterval(Second|Minute|Hour|Day|Week|Month|Quarter|Year)\((\d+)\)$")
# Seconds in one unit, shortest and longest (a month has 28 to 31 days).
_SECONDS = {"Second": (1, 1), "Minute": (60, 60), "Hour": (3600, 3600), "Day": (86400, 86400),
            "Week": (604800, 604800), "Month": (28 * 86400, 31 * 86400), "Quarter": (89 * 86400, 92 * 86400),
            "Year": (365 * 86400, 366 * 86400)}


def ttl_keeps_rows(old: str, new: str) -> bool:
    """Whether table TTL ``new`` deletes no row that ``old`` keeps (both normalised, '' for none).

    Only ``expr + toInterval<Unit>(n)`` over the same ``expr`` is compared;
    anything else (a WHERE, a GROUP BY, several rules) may delete rows.
    """
    if not new or new == old:
        return True
    was, now = _TTL_PERIOD.match(old or ""), _TTL_PERIOD.match(new)
    if not (was and now) or was.group(1) != now.group(1):
        return False
    return int(now.group(3)) * _SECONDS[now.group(2)][0] >= int(was.group(3)) * _SECONDS[was.group(2)][1]
