"""SQLAlchemy engines for a URL, with connection errors as one clean line.

SQLAlchemy (and through it clickhouse-sqlalchemy) is imported inside the
functions that need it: the CLI and app.fastpath import this module, and
``--help`` and the fast ``status`` must not pay the ~0.3 s it costs.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager

from app.config import DEFAULT_EMBEDDED_PATH, ConfigError, is_embedded, mask_text, mask_url, parse_url
from app.errors import CheckFailed, UsageError
from app.sql import clickhouse_error_code, clickhouse_error_message, one_line


class ConnectionFailed(UsageError):
    """The database cannot be reached or used; the message is one line, no password."""


class ConnectionLost(CheckFailed):
    """The connection broke during a run (the server stopped, the network went): exit 1."""


def _register_chdb() -> None:
    # The entry point in pyproject registers the dialect once installed; this
    # keeps plain `alembic` working from a source checkout that is not.
    from sqlalchemy.dialects import registry  # start-up time: see the module docstring

    registry.register("clickhouse.chdb", "app.dialect", "ChdbDialect")


def check_url(url: str):
    """``url`` parsed, or a ConfigError saying why no database can be opened from it."""
    parsed = parse_url(url)
    if is_embedded(url) and not parsed.query.get("path"):
        # chDB would run in memory: an upgrade would report head and the next
        # command find an empty database.  ?path=:memory: is still allowed.
        raise ConfigError(
            f"the embedded URL {mask_url(url)} names no directory (the database would be in memory "
            f"and lost on exit); add ?path=DIR, or omit --url for the default {DEFAULT_EMBEDDED_PATH}"
        )
    return parsed


def create_engine(url: str):
    import sqlalchemy as sa  # start-up time: see the module docstring

    parsed = check_url(url)
    _register_chdb()
    kwargs = {}
    if not is_embedded(url):
        # Fail fast on an unreachable server instead of the driver's minutes.
        if parsed.drivername == "clickhouse+http":
            # wait_end_of_query: otherwise the server sends 200 and streams the
            # result, and an error that comes late (an ON CLUSTER statement's
            # 159 once a replica did not answer) is only text at the end of a
            # "successful" body, which the driver takes as success.
            kwargs["connect_args"] = {"timeout": 10, "ch_settings": {"wait_end_of_query": 1}}
        else:
            parsed = parsed.update_query_dict(
                {"connect_timeout": parsed.query.get("connect_timeout", "5")}
            )
    if parsed.drivername in ("clickhouse+native", "clickhouse"):
        lazy_date_lut()
    engine = sa.create_engine(parsed, **kwargs)
    sa.event.listen(engine, "before_cursor_execute", _driver_sql_as_written, retval=True)
    if parsed.drivername == "clickhouse+http":
        # first_connect too, ahead of the dialect's own first queries there.
        sa.event.listen(engine, "first_connect", _http_transport, insert=True)
        sa.event.listen(engine, "connect", _http_transport)
    return engine


def _http_transport(dbapi_connection, _record) -> None:
    """Two things clickhouse-sqlalchemy's HTTP transport hands requests as they come.

    Its one ``timeout`` is requests' connect and read timeout at once: with
    wait_end_of_query the server answers a statement only at its end, so
    every statement over 10 s (a rebuild's copy) failed with ReadTimeout.
    Connecting still gives up after 10 s; reading waits for the statement.
    And requests encodes a str user and password as Latin-1 for Basic auth:
    a password with Cyrillic letters failed with "'latin-1' codec can't
    encode"; ClickHouse compares the bytes, so UTF-8 bytes log in.
    """
    transport = getattr(dbapi_connection, "transport", None)
    if transport is None:
        return
    if not isinstance(transport.timeout, tuple):  # both events see the first connection
        transport.timeout = (transport.timeout, None)
    transport.auth = tuple(part.encode("utf-8") if isinstance(part, str) else part for part in transport.auth)


# Start-up time (issue #19).

def lazy_date_lut() -> None:
    """clickhouse-driver fills a 146,000-entry date table when imported (~70 ms);
    its own CLICKHOUSE_DRIVER_LASY_DATE_LUT setting fills it on demand instead."""
    if "clickhouse_driver.columns.datecolumn" in sys.modules:
        return
    name = "CLICKHOUSE_DRIVER_LASY_DATE_LUT"  # sic: the driver's spelling
    before = os.environ.get(name)
    os.environ[name] = before or "1970-01-01:1970-01-02"
    try:
        import clickhouse_driver.columns.datecolumn  # noqa: F401
    except ImportError:
        pass
    finally:
        if before is None:
            os.environ.pop(name, None)


def _driver_sql_as_written(conn, cursor, statement, parameters, context, executemany):
    # SQLAlchemy hands exec_driver_sql() without parameters an empty dict, and
    # every ClickHouse DB-API (clickhouse-driver, the HTTP connector,
    # app.dbapi) applies pyformat to a dict, empty or not: LIKE 'x%' would
    # have to be written 'x%%'.  No parameters means nothing to interpolate.
    # A compiled statement keeps its dict: its compiler doubled the "%".
    if not parameters and not executemany and context is not None and context.compiled is None:
        return statement, None
    return statement, parameters


_UNREACHABLE = ("Connection refused", "timed out", "Name or service not known",
                "Temporary failure in name resolution", "No route to host", "Network is unreachable")


_LOST = _UNREACHABLE + ("Connection reset", "Broken pipe", "Remote end closed", "Unexpected EOF",
                       "Connection aborted")


def lost_reason(exc: BaseException) -> str:
    """Why a connection broke, short: the HTTP driver's text is urllib3's whole retry story."""
    text = clickhouse_error_message(exc) if clickhouse_error_code(exc) else one_line(getattr(exc, "orig", None) or exc)
    lowered = text.lower()
    reason = next((r for r in _LOST if r.lower() in lowered), None)
    return mask_text(reason or text[:120])


def describe_error(exc: BaseException, url: str) -> str:
    """One line saying what went wrong connecting to ``url`` and what to do."""
    text = clickhouse_error_message(exc)
    code = clickhouse_error_code(exc)
    password = None
    try:
        password = parse_url(url).password
    except ConfigError:
        pass
    where = mask_url(url)
    if code == 516 or "Authentication failed" in text:
        return f"authentication failed for {where}: check the user and password"
    if code == 81 or "UNKNOWN_DATABASE" in text:
        try:
            name = parse_url(url).database or "default"
        except ConfigError:
            name = "?"
        return f"database {name!r} of {where} does not exist: create it (CREATE DATABASE {name}) or fix the URL"
    lowered = text.lower()
    if any(s in lowered for s in ("connection refused", "timed out", "name or service", "network", "connect")) and not is_embedded(url):
        # The HTTP driver's text is urllib3's whole retry story: keep the cause.
        reason = next((r for r in _UNREACHABLE if r.lower() in lowered), text[:120])
        return f"cannot reach the ClickHouse server at {where} ({mask_text(reason, password)}): is it running?"
    return mask_text(f"cannot use {where}: {text}", password)


@contextmanager
def connect(url: str):
    """An open connection to ``url``; any failure to connect is ConnectionFailed."""
    try:
        engine = create_engine(url)
    except ConfigError:
        raise
    try:
        try:
            conn = engine.connect()
        except Exception as exc:
            raise ConnectionFailed(describe_error(exc, url)) from None
        try:
            yield conn
        finally:
            conn.close()
    finally:
        engine.dispose()
