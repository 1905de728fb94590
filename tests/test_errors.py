"""app.sql.clickhouse_error_code: the ClickHouse code of any driver's exception."""
from __future__ import annotations

import pytest
import requests
import sqlalchemy as sa
from clickhouse_driver import errors as native_errors
from clickhouse_sqlalchemy.drivers.http import transport as http_transport
from clickhouse_sqlalchemy.drivers.http.exceptions import HTTPException
from clickhouse_sqlalchemy.exceptions import DatabaseException

from app import dbapi
from app.cluster import DistributedDDLTimeout
from app.engine import connect
from app.sql import clickhouse_error_code
from app.runtime import StepFailed

# make test-fast: pure and unit tests (pyproject.toml, marker `fast`).
pytestmark = pytest.mark.fast

# A 24.8 server's answer to an ON CLUSTER statement whose hosts did not all finish.
TIMEOUT_TEXT = (
    "Code: 159. DB::Exception: Watching task /clickhouse/task_queue/ddl/query-0000000001 is executing longer "
    "than distributed_ddl_task_timeout (=5) seconds. There are 1 unfinished hosts (0 of them are currently "
    "executing the task), they are going to execute the query in background. (TIMEOUT_EXCEEDED) "
    "(version 24.8.4.1 (official build))\n"
)


def http_error(status: int, text: str) -> DatabaseException:
    """What clickhouse-sqlalchemy's HTTP transport raises for a non-200 answer, built by that transport."""
    response = requests.Response()
    response.status_code = status
    response._content = text.encode()
    response.encoding = "utf-8"

    class Session:
        def post(self, *args, **kwargs):
            return response

    transport = http_transport.RequestsTransport("http://127.0.0.1:1", "default", "default", "",
                                                 http_session=Session())
    with pytest.raises(DatabaseException) as info:
        list(transport.execute("CREATE ROLE r ON CLUSTER 'zakaz'"))
    return info.value


# --- the embedded engine (app.dbapi) ---------------------------------------------

def test_embedded_error_through_sqlalchemy(db_url):
    with connect(db_url) as conn:
        with pytest.raises(sa.exc.DBAPIError) as info:
            conn.exec_driver_sql("SELECT * FROM default.no_such_table")
    assert isinstance(info.value.orig, dbapi.Error)
    assert clickhouse_error_code(info.value) == 60  # UNKNOWN_TABLE
    assert clickhouse_error_code(info.value.orig) == 60
    with connect(db_url) as conn:
        with pytest.raises(sa.exc.DBAPIError) as info:
            conn.exec_driver_sql("SELEC 1")
    assert clickhouse_error_code(info.value) == 62  # SYNTAX_ERROR


def test_embedded_error_raised_again_from_our_own(db_url):
    # What app.runtime raises for a failed step: the driver's error is the __cause__.
    with connect(db_url) as conn:
        try:
            conn.exec_driver_sql("SELECT * FROM default.no_such_table")
        except sa.exc.DBAPIError as exc:
            wrapped = RuntimeError("upgrade 0003 failed at statement 2")
            wrapped.__cause__ = exc
    assert clickhouse_error_code(wrapped) == 60


def test_embedded_error_without_a_code(tmp_path):
    # The directory is a file: no ClickHouse code, and nothing to find in the text.
    path = tmp_path / "file"
    path.write_text("")
    with pytest.raises(Exception) as info:
        with connect(f"clickhouse+chdb:///default?path={path}"):
            pass
    assert clickhouse_error_code(info.value) == 0


# --- clickhouse-sqlalchemy's HTTP driver --------------------------------------------

def test_http_error_gives_the_server_code_not_the_http_status():
    exc = http_error(500, TIMEOUT_TEXT)
    assert isinstance(exc.orig, HTTPException) and exc.orig.code == 500  # what the driver stores
    assert clickhouse_error_code(exc) == 159
    assert clickhouse_error_code(exc.orig) == 159


def test_http_error_wrapped_by_sqlalchemy_and_by_us():
    exc = http_error(500, TIMEOUT_TEXT)
    wrapped = sa.exc.DBAPIError("CREATE ROLE r ON CLUSTER 'zakaz'", {}, exc)
    assert wrapped.orig is exc and isinstance(wrapped.code, str)  # SQLAlchemy's own code is a doc link
    assert clickhouse_error_code(wrapped) == 159
    step = StepFailed("upgrade 0003 failed at statement 2", "0003", 2, clickhouse_error_code(wrapped))
    step.__cause__ = wrapped
    assert step.code == 159 and clickhouse_error_code(step) == 159


def test_http_error_without_a_clickhouse_text_is_unknown():
    # A proxy in front of the server answering 502: the status is no ClickHouse code.
    exc = http_error(502, "<html><body>Bad Gateway</body></html>")
    assert exc.orig.code == 502
    assert clickhouse_error_code(exc) == 0


def test_http_authentication_failure():
    exc = http_error(403, "Code: 516. DB::Exception: default: Authentication failed: "
                     "password is incorrect, or there is no user with such name. (AUTHENTICATION_FAILED) "
                     "(version 24.8.4.1 (official build))\n")
    assert clickhouse_error_code(exc) == 516


# --- clickhouse-driver (native protocol) ---------------------------------------------

def test_native_server_exception():
    orig = native_errors.ServerException("DB::Exception: Table default.no_such_table does not exist. "
                                         "(UNKNOWN_TABLE)", code=60)
    exc = DatabaseException(orig)  # as clickhouse-sqlalchemy's native connector raises it
    assert clickhouse_error_code(exc) == 60
    assert clickhouse_error_code(sa.exc.DBAPIError("SELECT 1", {}, exc)) == 60


def test_native_client_error_has_its_class_code():
    exc = DatabaseException(native_errors.NetworkError("Connection refused (127.0.0.1:1)"))
    assert clickhouse_error_code(exc) == native_errors.ErrorCodes.NETWORK_ERROR == 210


# --- exceptions of no driver -------------------------------------------------------------

def test_our_own_exceptions_and_plain_text():
    assert clickhouse_error_code(DistributedDDLTimeout("did not finish")) == 159
    assert clickhouse_error_code(Exception(TIMEOUT_TEXT)) == 159
    assert clickhouse_error_code(ValueError("no code here")) == 0
    assert clickhouse_error_code(None) == 0


# --- a real server over HTTP ---------------------------------------------------------

@pytest.mark.server
@pytest.mark.parametrize("protocol", ["http", "native"])
def test_real_server_error_code(server, protocol):
    with connect(server.url(protocol)) as conn:
        with pytest.raises(Exception) as info:
            conn.exec_driver_sql("SELECT * FROM default.no_such_table")
    if protocol == "http":
        assert getattr(getattr(info.value, "orig", None), "code", None) == 404  # the HTTP status
    assert clickhouse_error_code(info.value) == 60  # UNKNOWN_TABLE
