"""PEP 249 adapter over chDB, the embedded ClickHouse engine.

chdb ships its own DB-API module, but it drops microseconds of DateTime64,
returns arrays as strings and raises a bare RuntimeError without the
ClickHouse error code.  Migrations and the ledger need all three, so results
are read here as JSONCompact (exact ClickHouse types in ``meta``) and errors are
mapped to PEP 249 classes carrying ``code``.

The engine is chdb-core 26.x (current ClickHouse); production runs
ClickHouse 24.8 servers.  What differs between the two lines and reaches this
module is marked "ClickHouse 24.8" (a DateTime literal); schema printing
differences are app.schema's (normalise_*), nowhere else.
"""
from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import re
import sys
import threading
from decimal import Decimal
from typing import Any

from app.sql import quote_literal

apilevel = "2.0"
threadsafety = 1
paramstyle = "pyformat"


class Error(Exception):
    """Base PEP 249 error; ``code`` is the ClickHouse error code (0 if unknown)."""

    def __init__(self, message: str, code: int = 0):
        super().__init__(message)
        self.code = code
        self.message = message


class Warning(Exception):  # noqa: A001 - PEP 249 name
    pass


class InterfaceError(Error):
    pass


class DatabaseError(Error):
    pass


class DataError(DatabaseError):
    pass


class OperationalError(DatabaseError):
    pass


class IntegrityError(DatabaseError):
    pass


class InternalError(DatabaseError):
    pass


class ProgrammingError(DatabaseError):
    pass


class NotSupportedError(DatabaseError):
    pass


class EmbeddedLockedError(OperationalError):
    """The embedded directory is held by another process."""


# ClickHouse codes that describe the statement, not the engine's state.
_PROGRAMMING_CODES = {
    16, 36, 43, 44, 46, 47, 48, 57, 60, 62, 81, 82, 115, 117, 179, 352, 386, 497,
}
_DATA_CODES = {6, 27, 38, 41, 53, 69, 70, 72, 117, 321}
_CODE_RE = re.compile(r"Code: (\d+)\.\s*(?:DB::Exception: )?(.*)", re.S)


def error_from_chdb(exc: BaseException) -> Error:
    text = str(exc).strip()
    m = _CODE_RE.search(text)
    if not m:
        return OperationalError(text.splitlines()[0] if text else repr(exc))
    code = int(m.group(1))
    message = m.group(2).strip().splitlines()[0]
    message = f"Code: {code}. {message}"
    if code in _PROGRAMMING_CODES:
        return ProgrammingError(message, code)
    if code in _DATA_CODES:
        return DataError(message, code)
    return OperationalError(message, code)


# --- parameters -------------------------------------------------------------

def render(operation: str, parameters: Any) -> str:
    """Apply pyformat parameters the way the ClickHouse compiler expects.

    SQLAlchemy compiles every statement for pyformat, doubling literal ``%``,
    so a mapping (even an empty one) is always applied.  Driver SQL without
    parameters comes with None (app.engine) and is sent as written.
    """
    if isinstance(parameters, dict):
        return operation % {k: quote_literal(v) for k, v in parameters.items()}
    if parameters:
        return operation % tuple(quote_literal(v) for v in parameters)
    return operation


# --- results ----------------------------------------------------------------

def _unwrap(type_name: str) -> str:
    for wrapper in ("Nullable(", "LowCardinality("):
        while type_name.startswith(wrapper):
            type_name = type_name[len(wrapper):-1]
    return type_name


def _converter(type_name: str):
    base = _unwrap(type_name)
    if base == "Date" or base == "Date32":
        return _dt.date.fromisoformat
    if base.startswith("DateTime"):
        return lambda v: _dt.datetime.fromisoformat(v)
    if base.startswith("Decimal"):
        return lambda v: v if isinstance(v, Decimal) else Decimal(str(v))
    if base.startswith("Float"):
        return float
    if base.startswith(("Int", "UInt")):
        return int
    return None


def _convert_rows(meta: list[dict], data: list[list]) -> list[tuple]:
    converters = [_converter(col["type"]) for col in meta]
    if not any(converters):
        return [tuple(row) for row in data]
    out = []
    for row in data:
        out.append(tuple(
            conv(v) if conv is not None and v is not None else v
            for conv, v in zip(converters, row)
        ))
    return out


# --- engine: chdb-core 26.x ---------------------------------------------------

_lock = threading.Lock()


def _locked_by_other_process(path: str) -> str | None:
    """Return a description of the process holding ``path``, if any.

    ClickHouse keeps an exclusive flock on ``<path>/status`` while a server
    (or chDB) owns the directory; chDB only reports an opaque Code 36, so we
    probe the lock ourselves to say what is really wrong.
    """
    status = os.path.join(path, "status")
    if not os.path.exists(status):
        return None
    try:
        fd = os.open(status, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            with open(status, encoding="utf-8", errors="replace") as fh:
                text = fh.read()
            m = re.search(r"PID:\s*(\d+)", text)
            if m and int(m.group(1)) == os.getpid():
                return None  # this process: chDB shares its open engine
            return f"pid {m.group(1)}" if m else "another process"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def chdb_engine() -> tuple[Any, bool]:
    """chDB's engine (its ``_chdb`` extension), and whether it was loaded without the chdb package.

    ``import chdb`` costs ~0.3 s: numpy and pyarrow, for result formats this
    project never asks for, and a throwaway in-memory session.  app.fastpath
    needs a connection and JSONCompact bytes only, so when the package is not
    imported yet the extension is loaded the way chdb's __init__ loads it
    (deep binding, from its own folder).  A later ``import chdb`` reuses the
    module, but fails while a session on a path is open (its __init__ opens
    an in-memory one): a standalone engine's sessions must be closed first.
    """
    if "chdb" in sys.modules:
        import chdb

        return chdb._chdb, False
    if "chdb._chdb" in sys.modules:
        return sys.modules["chdb._chdb"], True
    import ctypes
    import importlib.machinery
    import importlib.util

    folder = os.path.dirname(importlib.util.find_spec("chdb").origin)
    library = os.path.join(folder, "_chdb.abi3.so")
    cwd = os.getcwd()
    os.chdir(folder)  # as chdb's __init__: its libraries are found from there
    try:
        ctypes.CDLL(library, mode=sys.getdlopenflags() | os.RTLD_DEEPBIND)
        loader = importlib.machinery.ExtensionFileLoader("chdb._chdb", library)
        module = importlib.util.module_from_spec(importlib.util.spec_from_loader("chdb._chdb", loader))
        loader.exec_module(module)
    finally:
        os.chdir(cwd)
    sys.modules["chdb._chdb"] = module
    return module, True


def _in_use_error(path: str, holder: str) -> "EmbeddedLockedError":
    return EmbeddedLockedError(
        f"embedded database {path} is in use by another process ({holder}); "
        "wait for it to finish or stop it, then retry"
    )


class _ConnectedEngine:
    """chdb-core 26.x: ``chdb.connect(path)`` is one engine that lives until close().

    It keeps ``<path>/status`` flocked while open, so a second process fails
    to connect (with an opaque Code 36: we name the holder instead), and a
    process can have one path open at a time.
    """

    def __init__(self, path: str):
        # Imported here, not at the top: `import chdb` takes ~0.4 s (it loads
        # pyarrow), and app.fastpath imports this module for the lock check alone.
        import chdb

        # chDB writes its own "Code: 76 ... Cannot lock file" line to stderr
        # before failing: ask the lock first, so only our error is shown.
        holder = _locked_by_other_process(path) if path != ":memory:" else None
        if holder:
            raise _in_use_error(path, holder)
        try:
            self._conn = chdb.connect(path)
        except Exception as exc:  # chdb raises RuntimeError for everything
            holder = _locked_by_other_process(path) if path != ":memory:" else None
            if holder:
                raise _in_use_error(path, holder) from None
            text = str(exc)
            if "already initialized with path" in text:
                raise OperationalError(
                    "this process already has another embedded database open; "
                    "dispose that engine before opening " + path
                ) from None
            raise error_from_chdb(exc) from None

    def query(self, sql: str) -> bytes:
        return self._conn.query(sql, "JSONCompact").bytes()

    def close(self) -> None:
        self._conn.close()


# --- connection -------------------------------------------------------------

def connect(path: str = ":memory:", **_: Any) -> "Connection":
    return Connection(path)


class Connection:
    def __init__(self, path: str):
        self.path = path
        if path != ":memory:":
            parent = os.path.dirname(os.path.abspath(path)) or "."
            try:
                os.makedirs(path, exist_ok=True)
            except OSError as exc:
                raise OperationalError(
                    f"embedded database path {path} cannot be created ({exc.strerror}); "
                    "choose a writable directory in the URL"
                ) from None
            if not os.access(path, os.W_OK) or not os.access(parent, os.X_OK):
                raise OperationalError(
                    f"embedded database path {path} is not writable; "
                    "fix its permissions or choose another directory in the URL"
                )
        self._conn = _ConnectedEngine(path)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass

    def cursor(self) -> "Cursor":
        if self._conn is None:
            raise InterfaceError("connection is closed")
        return Cursor(self)

    def query(self, sql: str) -> bytes:
        """The statement's JSONCompact output (empty for statements without rows)."""
        with _lock:
            try:
                return self._conn.query(sql)
            except Exception as exc:
                raise error_from_chdb(exc) from None


class Cursor:
    arraysize = 1

    def __init__(self, connection: Connection):
        self.connection = connection
        self.description = None
        self.rowcount = -1
        self._rows: list[tuple] = []
        self._pos = 0

    def execute(self, operation: str, parameters: Any = None, context: Any = None) -> None:
        # ``context`` is clickhouse-sqlalchemy's extra argument (see its
        # native connector); chDB has no use for it.
        sql = render(operation, parameters)
        payload = self.connection.query(sql)
        self._pos = 0
        if not payload.strip():
            self.description = None
            self._rows = []
            self.rowcount = -1
            return
        doc = json.loads(payload, parse_float=Decimal)
        meta = doc.get("meta", [])
        self.description = [
            (col["name"], col["type"], None, None, None, None, col["type"].startswith("Nullable("))
            for col in meta
        ]
        self._rows = _convert_rows(meta, doc.get("data", []))
        self.rowcount = len(self._rows)

    def executemany(self, operation: str, seq_of_parameters: Any, context: Any = None) -> None:
        for parameters in seq_of_parameters:
            self.execute(operation, parameters, context)

    def fetchone(self):
        if self._pos >= len(self._rows):
            return None
        row = self._rows[self._pos]
        self._pos += 1
        return row

    def fetchmany(self, size: int | None = None):
        size = size or self.arraysize
        rows = self._rows[self._pos:self._pos + size]
        self._pos += len(rows)
        return rows

    def fetchall(self):
        rows = self._rows[self._pos:]
        self._pos = len(self._rows)
        return rows

    def close(self) -> None:
        self._rows = []

    def setinputsizes(self, sizes) -> None:
        pass

    def setoutputsizes(self, size, column=None) -> None:
        pass
