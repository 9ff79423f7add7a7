"""The email job: renders nothing, sends what the use case rendered.

Runs in an RQ worker (inside the app context the worker command pushes) or in-process.
With no MAIL_SERVER the message is printed and kept as an .eml file in the outbox, so the
embedded default shows every link without an SMTP server.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime
from pathlib import Path

from flask import current_app
from flask_mail import Message

from app.extensions import mail

log = logging.getLogger(__name__)


def send_email(to: str, subject: str, text_body: str, html_body: str) -> None:
    message = Message(subject=subject, recipients=[to], body=text_body, html=html_body)
    if current_app.config["MAIL_SERVER"]:
        # An SMTP failure raises, so RQ retries the job and finally keeps it as failed.
        mail.send(message)
        log.info("email_sent", extra={"subject": subject})
        return
    outbox = Path(current_app.config["MAIL_OUTBOX_DIR"])
    outbox.mkdir(parents=True, exist_ok=True)
    name = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(4)}.eml"
    (outbox / name).write_bytes(message.as_bytes())
    print(f"--- email to {to}: {subject} (saved as {outbox / name})\n{text_body}\n---", flush=True)
