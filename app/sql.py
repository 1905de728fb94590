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


# The server refused the user a privilege (its message names the grant):
# configuration to fix, not a defect.
ACCESS_DENIED = 497

_NAME_IN_TEXT = re.compile(r"\(([A-Z][A-Z0-9_]+)\)")
_MESSAGE_PREFIX = re.compile(r"^(?:Orig exception:\s*)?(?:HTTPException:\s*)?(?:Code: \d+\.\s*)*(?:DB::Exception:\s*)?")
_VERSION_IN_TEXT = re.compile(r"\s*\(version [^)]*\)")


def clickhouse_error_parts(exc: BaseException | None) -> tuple[int, str, str]:
    """``(code, name, message)`` of a server's error, e.g. ``(497, "ACCESS_DENIED", "u: Not enough ...")``.

    The message is the server's first line without ``Code: N. DB::Exception:``,
    the name and the version the server appends; ``(0, "", "")`` if ``exc``
    carries no ClickHouse code.
    """
    code = clickhouse_error_code(exc)
    if not code:
        return 0, "", ""
    text = clickhouse_error_message(exc)
    found = _NAME_IN_TEXT.search(text)
    message = _VERSION_IN_TEXT.sub("", _MESSAGE_PREFIX.sub("", text))
    if found:
        message = message.replace(found.group(0), "")
    message = " ".join(message.split()).rstrip(".")
    return code, found.group(1) if found else _error_name(code), mask_text(message)


# Over native the server's text has no "(NAME)": the names of the codes a
# deploy meets, then clickhouse-driver's own table (older than 497).
_NAMES = {159: "TIMEOUT_EXCEEDED", 210: "NETWORK_ERROR", 225: "NO_ZOOKEEPER", 242: "TABLE_IS_READ_ONLY",
          ACCESS_DENIED: "ACCESS_DENIED", 516: "AUTHENTICATION_FAILED", 999: "KEEPER_EXCEPTION"}


def _error_name(code: int) -> str:
    if code in _NAMES:
        return _NAMES[code]
    table = getattr(sys.modules.get("clickhouse_driver.errors"), "ErrorCodes", None)
    return next((n for n in dir(table) if n.isupper() and getattr(table, n) == code), "") if table else ""


def describe_clickhouse_error(exc: BaseException | None) -> str:
    """``ClickHouse error 497 (ACCESS_DENIED): <the server's message>``; "" if ``exc`` carries no code."""
    code, name, message = clickhouse_error_parts(exc)
    if not code:
        return ""
    return f"ClickHouse error {code}" + (f" ({name})" if name else "") + (f": {message}" if message else "")


def _client_class(exc: BaseException, module: str, *names: str) -> bool:
    # Looked up, not imported: a driver that was never loaded raised nothing.
    found = sys.modules.get(module)
    return found is not None and any(isinstance(exc, getattr(found, n, ())) for n in names)


def connection_lost(exc: BaseException | None) -> bool:
    """Whether ``exc`` is the client losing its server (refused, reset, end of stream, timed out).

    Told by the client's own classes, not by code 210: a server answers 210
    for a connection of its own (to another shard) that failed.
    """
    if exc is None:
        return False
    for e in _chain(exc):
        if getattr(e, "connection_invalidated", False) is True:
            return True
        if isinstance(e, (EOFError, ConnectionError, TimeoutError)):
            return True
        if _client_class(e, "clickhouse_driver.errors", "NetworkError", "SocketTimeoutError"):
            return True
        if _client_class(e, "requests.exceptions", "ConnectionError", "Timeout"):
            return True
        if _client_class(e, "urllib3.exceptions", "ProtocolError", "NewConnectionError", "MaxRetryError"):
            return True
    return False


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
