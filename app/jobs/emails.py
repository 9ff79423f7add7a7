"""The email job: renders nothing, sends what the use case rendered.

Runs in an RQ worker (in a fresh app context per job, see worker.py) or in-process.
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
from rq import get_current_job

from app.extensions import mail

log = logging.getLogger(__name__)

# Longer than the whole retry schedule (about 15 minutes), so no retry outlives its marker.
DELIVERED_MARKER_TTL = 24 * 3600


def send_email(to: str, subject: str, text_body: str, html_body: str) -> None:
    message = Message(subject=subject, recipients=[to], body=text_body, html=html_body)
    if current_app.config["MAIL_SERVER"]:
        _send_once(message)
        return
    outbox = Path(current_app.config["MAIL_OUTBOX_DIR"])
    outbox.mkdir(parents=True, exist_ok=True)
    name = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(4)}.eml"
    (outbox / name).write_bytes(message.as_bytes())
    print(f"--- email to {to}: {subject} (saved as {outbox / name})\n{text_body}\n---", flush=True)


def _send_once(message: Message) -> None:
    """Send over SMTP; an SMTP failure raises, so RQ retries the job and finally keeps it
    as failed. The server can accept the message and the job still fail afterwards (the
    connection drops before QUIT is answered); a marker set as soon as the message is
    accepted stops the retry from sending it a second time."""
    job = get_current_job()
    if job is None:  # run in-process, without RQ: nothing retries it
        mail.send(message)
    else:
        marker = f"accounts:email-delivered:{job.id}"
        if job.connection.exists(marker):
            log.info("email_already_sent", extra={"job_id": job.id})
            return
        with mail.connect() as connection:
            connection.send(message)
            job.connection.set(marker, 1, ex=DELIVERED_MARKER_TTL)
    log.info("email_sent", extra={"subject": message.subject})
