"""Delivering one message: over SMTP, or printed and kept as an .eml file.

With no MAIL_SERVER the message is printed and kept in MAIL_OUTBOX_DIR, so the embedded
default shows every link without an SMTP server. Which emails to send, and when, is the
outbox's business (app/courier/outbox.py).

The connection itself, kept by the RQ worker for all its emails, is app/courier/smtp_link.py.
"""

from __future__ import annotations

import email.policy
import logging
import re
import secrets
import smtplib
from collections.abc import Callable
from datetime import UTC, datetime
from email.mime.base import MIMEBase
from email.utils import parseaddr
from pathlib import Path

from flask import current_app
from flask_mail import Message

from app.courier.queue import PermanentJobFailure
from app.courier.smtp_link import smtp_link

log = logging.getLogger(__name__)

REASON_LENGTH = 200  # of the server's answer kept (email_outbox.failure holds 255)
# The answers that may be permanent; smtplib raises others (a dropped connection, a timeout,
# a refused login) as other exceptions, all retried.
REFUSALS = (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError)


# Flask-Mail hands the message to the SMTP policy, whose generator parses every header again
# to fold it: 1.7 ms of an email's CPU. The headers Flask-Mail sets are already encoded, and
# compat32 with CRLF writes the same bytes in 0.7 ms.
_WIRE_POLICY = email.policy.compat32.clone(linesep="\r\n")


class OutboxMessage(Message):
    """Flask-Mail's message, written for the wire with `_WIRE_POLICY`."""

    def _message(self) -> MIMEBase:
        message = super()._message()
        message.policy = _WIRE_POLICY
        return message


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


def deliver(message: Message, on_accepted: Callable[[], None]) -> None:
    """Send `message`; call `on_accepted` as soon as the server has taken it.

    `on_accepted` runs before anything else is said to the server (the next message, or
    QUIT): the connection can drop right after the server accepted the message, and what is
    recorded as sent must not go again. An SMTP failure raises, so RQ retries the job; a
    permanent refusal raises EmailRefused, which is not retried.
    """
    if current_app.config["MAIL_SERVER"]:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        try:
            with smtp_link(app) as link:
                link.send(message)
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
