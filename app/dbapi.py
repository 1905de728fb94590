"""PEP 249 adapter over chDB, the embedded ClickHouse engine.

chdb ships its own DB-API module, but it drops microseconds of DateTime64,
returns arrays as strings and raises a bare RuntimeError without the
ClickHouse error code.  Migrations and the ledger need all three, so results
are read here as JSONCompact (exact ClickHouse types in ``meta``) and errors are
mapped to PEP 249 classes carrying ``code``.

Two chDB lines are supported: chdb-core 26.x (current ClickHouse, the
default) and PyPI ``chdb`` 2.1.x (ClickHouse 24.8, the production line;
``make test-compat``).  What differs in how they run is handled in the
"engines" section below; what differs in ClickHouse itself and reaches this
module is marked "ClickHouse 24.8" (a DateTime literal, error text).  Schema
printing differences are app.schema's (normalise_*), nowhere else.
"""
from __future__ import annotations

import atexit
import datetime as _dt
import fcntl
import json
import os
import re
import shutil
import tempfile
import threading
from decimal import Decimal
from typing import Any

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
# ClickHouse 24.8 (chdb 2.1) repeats the prefix for a nested exception:
# "Code: 6. DB::Exception: Code: 6. DB::Exception: Cannot parse ...".
_CODE_RE = re.compile(r"Code: (\d+)\.\s*(?:DB::Exception: )?(?:Code: \1\.\s*(?:DB::Exception: )?)*(.*)", re.S)


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


def render(operation: str, parameters: Any) -> str:
    """Apply pyformat parameters the way the ClickHouse compiler expects.

    SQLAlchemy compiles every statement for pyformat, doubling literal ``%``,
    so a mapping (even an empty one) is always applied.  Raw driver SQL comes
    with an empty tuple and is sent as written.
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


# --- engines: chdb-core 26.x and chdb 2.1.x -------------------------------------

_lock = threading.Lock()

# Where each line keeps the directory lock (a ClickHouse status file: an
# exclusive flock, and "PID: n" inside).
STATUS_FILE = "status"  # chdb-core 26.x: ClickHouse's own, held while connected
COMPAT_LOCK_FILE = "chdb2.lock"  # chdb 2.1.x: ours, see _PerStatementEngine


def _locked_by_other_process(path: str, name: str = STATUS_FILE) -> str | None:
    """Return a description of the process holding ``path``, if any.

    ClickHouse keeps an exclusive flock on ``<path>/status`` while a server
    (or chDB) owns the directory; chDB only reports an opaque Code 36, so we
    probe the lock ourselves to say what is really wrong.
    """
    status = os.path.join(path, name)
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
            return f"pid {m.group(1)}" if m else "another process"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _in_use_error(path: str, holder: str) -> "EmbeddedLockedError":
    return EmbeddedLockedError(
        f"embedded database {path} is in use by another process ({holder}); "
        "wait for it to finish or stop it, then retry"
    )


def engine_line() -> str:
    """``"chdb-core"`` (chdb.connect exists: chdb-core 26.x, chdb >= 3) or ``"chdb2"`` (chdb 2.1.x)."""
    import chdb  # deferred: importing chdb costs ~0.2 s

    return "chdb-core" if hasattr(chdb, "connect") else "chdb2"


class _ConnectedEngine:
    """chdb-core 26.x: ``chdb.connect(path)`` is one engine that lives until close().

    It keeps ``<path>/status`` flocked while open, so a second process fails
    to connect (with an opaque Code 36: we name the holder instead), and a
    process can have one path open at a time.
    """

    def __init__(self, path: str):
        import chdb

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


_DROP = re.compile(r"^\s*DROP\s+(TABLE|VIEW|DICTIONARY|DATABASE)\b", re.I)
_ENDS_WITH_SYNC = re.compile(r"\bSYNC\s*;?\s*$", re.I)
_UNFINISHED = 341
_GONE_CODES = {60, 81}  # UNKNOWN_TABLE, UNKNOWN_DATABASE


def _code_of(exc: BaseException) -> int:
    m = _CODE_RE.search(str(exc))
    return int(m.group(1)) if m else 0


# chdb 2.1.x: path -> [fd, count] of our flock, shared by this process's
# connections (a second flock on a new descriptor would conflict with the first).
_compat_locks: dict[str, list[int]] = {}


def _escape_for_file_name(name: str) -> str:
    # ClickHouse's escapeForFileName: anything but [A-Za-z0-9_] as %XX.
    return "".join(
        ch if ch.isascii() and (ch.isalnum() or ch == "_") else "".join(f"%{b:02X}" for b in ch.encode())
        for ch in name
    )


_CONFIG_XML = """<clickhouse>
    <!-- app.dbapi._PerStatementEngine: the in-memory Overlay database takes
         this name, so that `default` is a real Atomic database. -->
    <default_database>_local</default_database>
</clickhouse>
"""
_config_dir: str | None = None


def _compat_config_dir() -> str:
    """A directory holding the config.xml above, made once per process."""
    global _config_dir
    if _config_dir is None:
        directory = tempfile.mkdtemp(prefix="chdb2-config-")
        with open(os.path.join(directory, "config.xml"), "w", encoding="utf-8") as fh:
            fh.write(_CONFIG_XML)
        atexit.register(shutil.rmtree, directory, True)
        _config_dir = directory
    return _config_dir


_USE = re.compile(r"^\s*USE\s+[`\"]?([^`\"\s;]+)[`\"]?\s*;?\s*$", re.I)


class _PerStatementEngine:
    """chdb 2.1.x (ClickHouse 24.8.4): no ``connect()``; every statement is a run.

    ``chdb.query(sql, fmt, path=...)`` starts clickhouse-local on ``path``,
    runs the statement and shuts it down again.  What differs from a 24.8
    server (and from chdb-core) because of that, and is handled here:

    * ``default`` is clickhouse-local's in-memory Overlay database, made anew
      for every run: a table created there is gone by the next statement.
      clickhouse-local reads ``config.xml`` from the working directory, and
      its ``default_database`` names that Overlay: each run starts in a
      directory whose config.xml calls it ``_local``, so ``default`` is an
      ordinary Atomic database in ``<path>``, created on connect, as on a
      server.  (The directory is then for chdb 2.x with this config only.)
    * The current database: chdb 2.1 keeps the last ``USE`` in
      ``<path>/default_database`` and starts every run there, for every
      connection to the path.  Each connection keeps its own (``default``
      first, then its last ``USE``) and writes it there before its runs.
      If that database no longer exists the run would fail at start-up, and
      a failed start-up leaves the process unusable (it crashes at exit):
      ``default`` stands in for it then.
    * ``<path>/status`` is flocked only during a run, so nothing keeps a
      second process out between statements: we hold our own flock on
      ``<path>/chdb2.lock`` from connect to close, with the same message.
    * ``:memory:`` (an empty path) would be a fresh engine per statement: a
      temporary directory, removed on close, stands in for it.
    * Dropping an Atomic table: a plain ``DROP`` queues the table for a
      background cleanup that lives in the process, not in the run; after a
      materialized view was dropped that way, the next ``DROP`` in the
      process crashes inside the engine, which then sleeps forever: a hang.
      ``DROP … SYNC`` never queues, but always ends in Code 341 ("Did not
      finish dropping … server is shutting down"), the object gone from the
      catalog (its files stay in ``<path>/store``) -- except a materialized
      view, of which one attempt drops only the inner table.  So every DROP
      is sent with SYNC, and repeated while it answers 341 (a repeat that
      finds the object gone is the success it means).
    """

    def __init__(self, path: str):
        import chdb

        self._chdb = chdb
        self._temporary = path == ":memory:"
        self.path = tempfile.mkdtemp(prefix="chdb2-memory-") if self._temporary else path
        holder = _locked_by_other_process(self.path, STATUS_FILE)
        if holder:
            # A chdb-core process (or a server) has it: our run would fail at
            # start-up, and a failed start-up breaks this process for good.
            raise _in_use_error(path, holder)
        self._acquire()
        self.database = "default"
        try:
            with _lock:
                self._run("CREATE DATABASE IF NOT EXISTS default")
        except Exception:
            self.close()
            raise

    def _acquire(self) -> None:
        entry = _compat_locks.get(self.path)
        if entry:
            entry[1] += 1
            return
        lock_path = os.path.join(self.path, COMPAT_LOCK_FILE)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            holder = _locked_by_other_process(self.path, COMPAT_LOCK_FILE) or "another process"
            raise _in_use_error(self.path, holder) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"PID: {os.getpid()}\n".encode())
        _compat_locks[self.path] = [fd, 1]

    def _exists(self, database: str) -> bool:
        return os.path.exists(os.path.join(self.path, "metadata", _escape_for_file_name(database) + ".sql"))

    def _set_current_database(self) -> None:
        marker = os.path.join(self.path, "default_database")
        wanted = next((d for d in (self.database, "default") if self._exists(d)), None)
        try:
            with open(marker, encoding="utf-8") as fh:
                current = fh.read().strip()
        except FileNotFoundError:
            current = None
        if current == wanted:
            return
        if wanted is None:
            os.remove(marker)
        else:
            with open(marker, "w", encoding="utf-8") as fh:
                fh.write(wanted)

    def _run(self, sql: str) -> bytes:
        self._set_current_database()
        cwd = os.open(".", os.O_RDONLY)
        try:
            os.chdir(_compat_config_dir())
            return self._chdb.query(sql, "JSONCompact", path=self.path).bytes()
        finally:
            os.fchdir(cwd)
            os.close(cwd)

    def query(self, sql: str) -> bytes:
        if _DROP.match(sql):
            return self._drop(sql)
        payload = self._run(sql)
        use = _USE.match(sql)
        if use:
            self.database = use.group(1)
        return payload

    def _drop(self, sql: str) -> bytes:
        if not _ENDS_WITH_SYNC.search(sql):
            sql = sql.rstrip().rstrip(";") + " SYNC"
        for attempt in range(4):
            try:
                return self._run(sql)
            except Exception as exc:
                code = _code_of(exc)
                if attempt and code in _GONE_CODES:
                    return b""
                if code != _UNFINISHED:
                    raise
        return b""

    def close(self) -> None:
        entry = _compat_locks.get(self.path)
        if entry:
            entry[1] -= 1
            if entry[1] == 0:
                del _compat_locks[self.path]
                fcntl.flock(entry[0], fcntl.LOCK_UN)
                os.close(entry[0])
        if self._temporary:
            shutil.rmtree(self.path, ignore_errors=True)


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
        engine_cls = _ConnectedEngine if engine_line() == "chdb-core" else _PerStatementEngine
        self._conn = engine_cls(path)

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
