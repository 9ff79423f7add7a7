"""What PostgreSQL needs of the connection pool: a deadline on every wait for the server, and
pooled connections the server closed dropped without a round trip. `install` hooks them on
the engine; SQLite needs none of it. (The hottest statements are prepared:
app/core/prepared.py.)"""

from __future__ import annotations

import select
import time
from typing import Any

import psycopg2
from flask import current_app, has_app_context
from psycopg2.extensions import (
    POLL_OK,
    POLL_READ,
    STATUS_BEGIN,
    STATUS_PREPARED,
    STATUS_READY,
)
from sqlalchemy import Engine, event
from sqlalchemy.exc import DBAPIError, InvalidatePoolError


def install(engine: Engine) -> None:
    event.listen(engine, "checkout", _drop_closed_connection)
    event.listen(engine, "checkin", _back_to_transactions)
    # Process-wide, as psycopg2 allows only one; it bounds waits only inside an app
    # context, where the deadlines are configured.
    psycopg2.extensions.set_wait_callback(_wait_with_deadline)


class DatabaseNotAnswering(psycopg2.OperationalError):
    """No answer from PostgreSQL within the deadline; the connection has been closed."""


# Seconds the client waits beyond the server's statement_timeout before it gives up: a
# server that is alive cancels the statement itself, and says so, before then.
ANSWER_GRACE = 1.0
_CONNECTED = {STATUS_READY, STATUS_BEGIN, STATUS_PREPARED}


def _deadline_seconds(connection: Any) -> float | None:
    if not has_app_context():
        return None
    config = current_app.config
    if connection.status not in _CONNECTED:  # still connecting
        return float(config["DATABASE_CONNECT_TIMEOUT"]) or None
    statement_timeout = float(config["DATABASE_STATEMENT_TIMEOUT"])
    return statement_timeout + ANSWER_GRACE if statement_timeout else None


def _wait_with_deadline(connection: Any) -> None:
    """psycopg2's wait callback: the loop its own blocking calls would run, with a deadline.

    statement_timeout is enforced by the server, and connect_timeout by libpq only in its
    blocking mode, which a wait callback replaces. A server that has hung (stopped, or
    behind a stalled network) enforces nothing, and the socket stays open, so without this
    a request would wait for ever. psycopg2 closes the connection when this raises, and
    SQLAlchemy then treats it as a disconnect.
    """
    seconds = _deadline_seconds(connection)
    deadline = None if seconds is None else time.monotonic() + seconds
    while (state := connection.poll()) != POLL_OK:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise DatabaseNotAnswering(f"no answer from the database within {seconds:g} s")
        # A new poll object each turn: libpq may reconnect on another socket while connecting.
        poller = select.poll()
        poller.register(
            connection.fileno(), select.POLLIN if state == POLL_READ else select.POLLOUT
        )
        poller.poll(None if left is None else left * 1000)


def lost_connection(error: DBAPIError) -> bool:
    """The connection died under a statement (a restart, a link a load balancer dropped), so
    the statement can run again on a fresh one; a server that did not answer is not retried,
    as that would only double the wait."""
    return error.connection_invalidated and not isinstance(error.orig, DatabaseNotAnswering)


def _drop_closed_connection(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Refuse a pooled connection the server has closed, without a round trip.

    Between two transactions the server has nothing to say, except when it ends the session
    (a restart, an administrator, an idle timeout): then its socket is readable (the error
    message, or the end of the stream). The pool replaces such a connection, and every
    other connection opened before it, as they were most likely closed by the same restart.
    """
    if dbapi_connection.closed:
        raise InvalidatePoolError("the connection is closed")
    poller = select.poll()
    poller.register(dbapi_connection.fileno(), select.POLLIN)
    if poller.poll(0):
        raise InvalidatePoolError("the server closed the connection")


def _back_to_transactions(dbapi_connection: Any, _record: Any) -> None:
    """A connection returns to the pool in psycopg2's default mode: transactions."""
    if dbapi_connection is not None and not dbapi_connection.closed:
        dbapi_connection.autocommit = False
