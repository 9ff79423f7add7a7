"""The SMTP connection an email goes over (`smtp_link`).

The RQ worker keeps one for all its emails (`hold_smtp_link`, around its work loop): a
conversation per email instead of a TCP connection, a greeting, an EHLO (and STARTTLS and a
login) per email. Elsewhere (in-process sends without Redis, the sweep command) each email
opens a connection of its own and QUITs it. What to do with the server's answer (a
permanent refusal, the .eml file without a server) is app/courier/delivery.py's.
"""

from __future__ import annotations

import logging
import smtplib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from flask import Flask, current_app
from flask_mail import Connection, Message

log = logging.getLogger(__name__)

# A server's answer to one message: the connection is still in step with the server.
ANSWERS = (smtplib.SMTPResponseException, smtplib.SMTPRecipientsRefused)
SERVICE_UNAVAILABLE = 421  # the server is closing the connection


def server_unreachable(error: BaseException) -> bool:
    """Whether a failed send says the server is away (refused, dropped, silent, or closing
    with 421), as opposed to an answer about this one message (a 4xx or 5xx to it)."""
    if isinstance(error, smtplib.SMTPResponseException):
        return error.smtp_code == SERVICE_UNAVAILABLE
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return any(code == SERVICE_UNAVAILABLE for code, _ in error.recipients.values())
    return isinstance(error, OSError)  # smtplib's other errors are OSErrors too


class _MarksData:
    """smtplib's client, noting when DATA was sent: up to then the server cannot have taken
    the message, so after a dropped connection it may be sent again on a new one."""

    data_sent = False

    def data(self, msg: Any) -> tuple[int, bytes]:
        self.data_sent = True
        return super().data(msg)  # type: ignore[misc]


class _SMTP(_MarksData, smtplib.SMTP):
    pass


class _SMTPSSL(_MarksData, smtplib.SMTP_SSL):
    pass


class BoundedConnection(Connection):
    """Flask-Mail's SMTP connection with a timeout on every socket operation.

    Flask-Mail 0.10 opens `smtplib.SMTP(server, port)` with no timeout, so a server that stops
    answering held the job until RQ killed it. This is its `configure_host` with the timeout
    given to smtplib, whose socket (the TLS one after STARTTLS too) keeps it; the process's
    default timeout, which other threads' sockets would take, is left alone.
    """

    host: _SMTP | _SMTPSSL | None  # type: ignore[assignment]

    def configure_host(self) -> _SMTP | _SMTPSSL:
        mail = self.mail
        smtp = _SMTPSSL if mail.use_ssl else _SMTP
        host = smtp(mail.server, mail.port, timeout=current_app.config["MAIL_TIMEOUT"])
        host.set_debuglevel(int(mail.debug))
        if mail.use_tls:
            host.starttls()
        if mail.username and mail.password:
            host.login(mail.username, mail.password)
        return host


class DeliveryWatch(Protocol):
    """Told of each send's outcome by the worker's link (app/courier/recovery.py)."""

    def delivered(self) -> None: ...

    def unreachable(self) -> None: ...


class SMTPLink:
    """An SMTP connection opened at the first message and kept for the next ones.

    - A connection idle for MAIL_IDLE_TIMEOUT seconds is QUIT and a new one opened for the
      next message: servers and NAT boxes drop idle connections, a dropped one may answer
      only with a timeout, and a few seconds of quiet cost one new connection. 0 opens a
      connection for every message.
    - One the server closed in the meantime fails at the first command of the next message
      (SMTPServerDisconnected): the message is sent once more on a new connection, but only
      when DATA had not been sent (the server cannot have taken it) and the failure was not
      a timeout (a silent server is not asked twice).
    - After the server refused a message (4xx or 5xx) the connection is RSET, so the next
      message starts clean; smtplib does not after a refused DATA command. Any other failure
      (a timeout, the job's own timeout firing mid-conversation) leaves the conversation in
      an unknown state: the connection is dropped, not reused.
    - `close()` QUITs; a QUIT that fails changes nothing, as what the server took is taken.
    """

    def __init__(self, app: Flask, watch: DeliveryWatch | None = None) -> None:
        self.app = app
        self.watch = watch
        self.connection: BoundedConnection | None = None
        self.idle_limit = float(app.config["MAIL_IDLE_TIMEOUT"])
        self.last_used = 0.0

    def send(self, message: Message) -> None:
        """Send `message` or raise; the connection stays open for the next one."""
        try:
            reused = self._ready()
            try:
                self._send(message)
            except smtplib.SMTPServerDisconnected as dropped:
                if not reused or self._data_sent or _timed_out(dropped):
                    raise
                log.info("smtp_reconnect", extra={"error": str(dropped)})
                self._drop()
                self._ready()
                self._send(message)
        except BaseException as error:
            self._failed(error)
            raise
        if self.watch is not None:
            self.watch.delivered()

    def probe(self) -> bool:
        """Whether the server answers: a NOOP on the kept connection, else on a new one."""
        for _attempt in range(2):
            reused = False
            try:
                reused = self._ready()
                host = self.connection.host if self.connection is not None else None
                if host is None or host.noop()[0] == 250:
                    self.last_used = time.monotonic()
                    return True
            except Exception as error:
                log.info("smtp_probe_failed", extra={"error": str(error)})
            self._drop()
            if not reused:
                return False
        return False

    def close(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None and connection.host is not None:
            try:
                connection.host.quit()
            except Exception as error:  # the server went first; nothing is lost
                log.info("smtp_quit_failed", extra={"error": str(error)})
                connection.host.close()

    # --- inside ----------------------------------------------------------------------

    def _ready(self) -> bool:
        """Open a connection unless a usable one is kept; whether it is a kept one."""
        if self.connection is not None:
            if time.monotonic() - self.last_used < self.idle_limit:
                return True
            self.close()  # idle too long: a new one rather than one the server may drop
        connection = BoundedConnection(self.app.extensions["mail"])
        connection.__enter__()  # opens it (or, with MAIL_SUPPRESS_SEND, nothing)
        self.connection = connection
        return False

    def _send(self, message: Message) -> None:
        assert self.connection is not None
        host = self.connection.host
        if host is not None:
            host.data_sent = False
        try:
            self.connection.send(message)
        except ANSWERS:
            self._reset()
            raise
        finally:
            self.last_used = time.monotonic()

    @property
    def _data_sent(self) -> bool:
        host = self.connection.host if self.connection is not None else None
        return host is None or host.data_sent

    def _reset(self) -> None:
        """After a refusal: RSET, or drop a connection that cannot start a new message."""
        host = self.connection.host if self.connection is not None else None
        if host is None or host.sock is None:  # smtplib closed it (a 421)
            self.connection = None
            return
        try:
            code = host.rset()[0]
        except (OSError, smtplib.SMTPException):
            code = 0
        if code != 250:
            self._drop()

    def _failed(self, error: BaseException) -> None:
        if not isinstance(error, ANSWERS):
            self._drop()
        if self.watch is not None and server_unreachable(error):
            self.watch.unreachable()

    def _drop(self) -> None:
        """Close without QUIT: the conversation is in no state for one."""
        connection, self.connection = self.connection, None
        if connection is not None and connection.host is not None:
            connection.host.close()


def _timed_out(error: BaseException) -> bool:
    """smtplib reports a read that timed out as a disconnection, the timeout its context."""
    return isinstance(error.__context__, TimeoutError)


# The link a worker holds for its whole life; None elsewhere.
_held: SMTPLink | None = None


@contextmanager
def hold_smtp_link(app: Flask, watch: DeliveryWatch | None = None) -> Iterator[SMTPLink]:
    """Within this block every email of this process goes over one kept connection (see
    SMTPLink), closed when the block ends. For the worker, which sends from one thread."""
    global _held
    link = SMTPLink(app, watch)
    previous, _held = _held, link
    try:
        yield link
    finally:
        _held = previous
        link.close()


@contextmanager
def smtp_link(app: Flask) -> Iterator[SMTPLink]:
    """The link held by `hold_smtp_link` (the worker's); elsewhere one for this block only."""
    if _held is not None:
        yield _held
        return
    link = SMTPLink(app)
    try:
        yield link
    finally:
        link.close()
