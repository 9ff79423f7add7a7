"""Delivering one message: over SMTP, or printed and kept as an .eml file.

With no MAIL_SERVER the message is printed and kept in MAIL_OUTBOX_DIR, so the embedded
default shows every link without an SMTP server. Which emails to send, and when, is the
outbox's business (app/courier/outbox.py).
"""

from __future__ import annotations

import logging
import re
import secrets
import smtplib
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parseaddr
from pathlib import Path

from flask import current_app
from flask_mail import Connection, Message

from app.courier.queue import PermanentJobFailure

log = logging.getLogger(__name__)

REASON_LENGTH = 200  # of the server's answer kept (email_outbox.failure holds 255)
# The answers that may be permanent; smtplib raises others (a dropped connection, a timeout,
# a refused login) as other exceptions, all retried.
REFUSALS = (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError)


class EmailRefused(PermanentJobFailure):
    """The SMTP server refused the email for good (a 5xx answer: no such mailbox, sender or
    message refused); sent again, it would be refused again. `reason` is the server's answer,
    code and text, with the recipient's address replaced by "recipient", cut short."""

    def __init__(self, code: int, text: str, recipients: list[str]) -> None:
        for address in recipients:
            text = re.sub(re.escape(address), "recipient", text, flags=re.IGNORECASE)
        self.reason = f"{code} {' '.join(text.split())}"[:REASON_LENGTH]
        super().__init__(self.reason)


def _permanent_answer(
    error: smtplib.SMTPRecipientsRefused | smtplib.SMTPResponseException,
) -> tuple[int, str] | None:
    """The 5xx answer (code, text) behind a refusal, or None when it may be temporary."""
    answers: list[tuple[int, bytes | str]]
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        answers = list(error.recipients.values())  # each refused recipient's answer
    else:
        answers = [(error.smtp_code, error.smtp_error)]
    if not answers or not all(500 <= code < 600 for code, _text in answers):
        return None
    code, text = answers[0]
    return code, text.decode(errors="replace") if isinstance(text, bytes) else str(text)


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
    An SMTP failure raises, so RQ retries the job; a permanent refusal raises EmailRefused,
    which is not retried.
    """
    if current_app.config["MAIL_SERVER"]:
        try:
            with BoundedConnection(current_app.extensions["mail"]) as connection:
                connection.send(message)
                on_accepted()
        except REFUSALS as exc:
            answer = _permanent_answer(exc)
            if answer is None:
                raise
            recipients = [parseaddr(str(to))[1] for to in message.recipients]
            # from None: smtplib's exception names the recipient, and RQ keeps what it is given.
            raise EmailRefused(*answer, recipients=recipients) from None
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
