"""Delivering one message: over SMTP, or printed and kept as an .eml file.

With no MAIL_SERVER the message is printed and kept in MAIL_OUTBOX_DIR, so the embedded
default shows every link without an SMTP server. Which emails to send, and when, is the
outbox's business (app/courier/outbox.py).
"""

from __future__ import annotations

import logging
import secrets
import smtplib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from flask import current_app
from flask_mail import Connection, Message

log = logging.getLogger(__name__)


class BoundedConnection(Connection):
    """Flask-Mail's SMTP connection with a timeout on every socket operation.

    Flask-Mail 0.10 opens `smtplib.SMTP(server, port)` with no timeout, so a server that stops
    answering held the job until RQ killed it. This is its `configure_host` with the timeout
    given to smtplib, whose socket (the TLS one after STARTTLS too) keeps it; the process's
    default timeout, which other threads' sockets would take, is left alone.
    """

    def configure_host(self) -> smtplib.SMTP | smtplib.SMTP_SSL:
        mail = self.mail
        smtp = smtplib.SMTP_SSL if mail.use_ssl else smtplib.SMTP
        host = smtp(mail.server, mail.port, timeout=current_app.config["MAIL_TIMEOUT"])
        host.set_debuglevel(int(mail.debug))
        if mail.use_tls:
            host.starttls()
        if mail.username and mail.password:
            host.login(mail.username, mail.password)
        return host


def deliver(message: Message, on_accepted: Callable[[], None]) -> None:
    """Send `message`; call `on_accepted` as soon as the server has taken it.

    `on_accepted` runs before QUIT: the server can accept the message and the connection
    still drop before QUIT is answered, and what is recorded as sent must not go again.
    An SMTP failure raises, so RQ retries the job.
    """
    if current_app.config["MAIL_SERVER"]:
        with BoundedConnection(current_app.extensions["mail"]) as connection:
            connection.send(message)
            on_accepted()
        log.info("email_sent", extra={"subject": message.subject})
        return
    outbox = Path(current_app.config["MAIL_OUTBOX_DIR"])
    outbox.mkdir(parents=True, exist_ok=True)
    name = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(4)}.eml"
    (outbox / name).write_bytes(message.as_bytes())
    to = ", ".join(str(recipient) for recipient in message.recipients)
    print(
        f"--- email to {to}: {message.subject} (saved as {outbox / name})\n{message.body}\n---",
        flush=True,
    )
    on_accepted()
