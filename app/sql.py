"""SQL text for every driver: literals, identifiers, IN-lists, and the ClickHouse error of any driver's exception.

One place, so that quoting and error reading cannot drift apart between
modules (they did: an IN-list without escaping, five error-code readers).

Each driver carries an error carries it differently:

* chDB (app.dbapi): ``Error.code``, and the text starts with ``Code: N.``;
* clickhouse-driver (``clickhouse+native``): ``.code`` on its ``Error``
  classes, wrapped by clickhouse-sqlalchemy in a ``DatabaseException`` whose
  ``.orig`` is the driver's error;
* clickhouse-sqlalchemy's HTTP driver (``clickhouse+http``): a
  ``DatabaseException`` whose ``.orig`` is an ``HTTPException`` with the HTTP
  status (500, 404, ...) as ``code`` and the ClickHouse code only in the
  server's text (``Code: 159. DB::Exception: ...``);
* SQLAlchemy wraps a DB-API error in a ``DBAPIError`` (``.orig``; its own
  ``.code`` is a string: a link to its docs), and our own errors chain the
  driver's as ``__cause__``.
"""
from __future__ import annotations

import datetime as _dt
import re
import sys
from decimal import Decimal
from typing import Any, Iterable

from app.config import mask_text

_CODE_IN_TEXT = re.compile(r"Code: (\d+)\.")


def code_in_text(text: str) -> int:
    """The first ``Code: N.`` in ``text``, 0 if none."""
    m = _CODE_IN_TEXT.search(text)
    return int(m.group(1)) if m else 0


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps (``.orig``, ``__cause__``, exceptions in args), outermost first."""
    seen: set[int] = set()
    out: list[BaseException] = []
    queue: list[BaseException | None] = [exc]
    while queue:
        e = queue.pop(0)
        if not isinstance(e, BaseException) or id(e) in seen:
            continue
        seen.add(id(e))
        out.append(e)
        queue.append(getattr(e, "orig", None))
        queue.append(e.__cause__)
        queue.extend(a for a in getattr(e, "args", ()) if isinstance(a, BaseException))
    return out


def _is_http_status(exc: BaseException) -> bool:
    """Whether ``exc.code`` is an HTTP status rather than a ClickHouse code."""
    # Not imported here: if the HTTP driver was never loaded, no such error exists.
    module = sys.modules.get("clickhouse_sqlalchemy.drivers.http.exceptions")
    return module is not None and isinstance(exc, module.HTTPException)


def _own_code(exc: BaseException) -> int:
    code = getattr(exc, "code", None)
    return code if isinstance(code, int) and not isinstance(code, bool) else 0


def clickhouse_error_code(exc: BaseException | None) -> int:
    """The ClickHouse error code of ``exc`` (any driver, wrapped or not), 0 if unknown.

    A ``.code`` found along the chain is the answer, except an HTTP status:
    there the ``Code: N`` of the server's text is.  Without either, the first
    ``Code: N`` in a text of the chain (a plain exception re-raised with the
    server's message keeps it only there).
    """
    if exc is None:
        return 0
    chain = _chain(exc)
    for e in chain:
        if _is_http_status(e):
            code = code_in_text(str(e))
            if code:
                return code
            continue
        code = _own_code(e)
        if code:
            return code
    for e in reversed(chain):  # innermost first: the driver's text, not SQL quoted around it
        code = code_in_text(str(e))
        if code:
            return code
    return 0


_STACK_TRACE = re.compile(r"\s*(?:Stack trace|Stack trace \(when copying this message)[^:]*:.*", re.S)


def clickhouse_error_message(exc: BaseException | None) -> str:
    """What went wrong, in one line: ``Code: 497. DB::Exception: ... (ACCESS_DENIED)``.

    The driver's error, unwrapped from SQLAlchemy's, without the server's
    stack trace: clickhouse-driver puts ``Code: N.`` on a line of its own and
    the message on the next, so a plain first line says nothing.
    """
    if exc is None:
        return ""
    orig = getattr(exc, "orig", None) or exc
    text = _STACK_TRACE.sub("", str(orig)).strip()
    text = " ".join(text.split())
    return text or type(orig).__name__


# --- literals and names -----------------------------------------------------

def quote_literal(value: Any) -> str:
    """A Python value as a ClickHouse literal."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, Decimal)):
        return str(value)
    if isinstance(value, _dt.datetime):
        # ClickHouse 24.8 rejects a fraction for a DateTime column (26.x
        # drops it): write one only when there is one (DateTime64).
        fmt = "%Y-%m-%d %H:%M:%S.%f" if value.microsecond else "%Y-%m-%d %H:%M:%S"
        return "'" + value.strftime(fmt) + "'"
    if isinstance(value, _dt.date):
        return "'" + value.isoformat() + "'"
    if isinstance(value, (list, tuple, set)):
        return "[" + ", ".join(quote_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{quote_literal(k)}: {quote_literal(v)}" for k, v in value.items()) + "}"
    text = str(value)
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_identifier(name: str) -> str:
    """One identifier in backquotes: unmanaged objects may have any name."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def quote_name(name: str) -> str:
    """``db.object`` with both parts quoted."""
    return ".".join(quote_identifier(part) for part in name.split(".", 1))


def in_list(values: Iterable[Any]) -> str:
    """The inside of ``IN (...)``, sorted so the SQL is stable; ``NULL`` when empty (24.8 cannot parse ``IN ()``)."""
    items = sorted(values)
    return ", ".join(quote_literal(v) for v in items) if items else "NULL"


def one_line(exc: BaseException) -> str:
    """An exception as one line of output, passwords masked."""
    text = str(exc).strip() or type(exc).__name__
    return mask_text(" ".join(text.split()))
