"""A permanent SMTP refusal ends the email at once (issue 21, item 6).

The test's SMTP server (aiosmtpd) answers 5xx - no such mailbox, sender refused, message
refused - as a real one does: such an email is tried once, neither RQ's retries nor the
outbox sweep send it again, and its outbox row is kept, marked failed with the server's
reason, for the operator. A 4xx (try again later) is retried as before. The service's own
RQ worker runs, as a process of its own and in this one on a travelled clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import parseaddr
from typing import Any

import pytest
import sqlalchemy as sa
import time_machine
from aiosmtpd.smtp import MISSING
from flask import Flask
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, ScheduledJobRegistry

from app.core.db import db
from app.core.redis import redis_connection
from app.courier.models import EmailOutbox
from app.courier.outbox import SWEEP_AFTER_MAX, job_id, sweep_outbox
from app.courier.queue import RETRY_INTERVALS, get_queue
from tests.support.apps import flask_command, run_worker
from tests.support.http import PASSWORD
from tests.support.mail import Mailbox, SMTPServer
from tests.support.services import free_port

NOBODY = "nobody@example.com"
USER_UNKNOWN = f"550 5.1.1 <{NOBODY}>: Recipient address rejected: User unknown"


class Refusing(Mailbox):
    """A mail server that refuses at the step it is told: MAIL FROM by sender, RCPT TO and
    DATA by recipient. `tries` counts the conversations that reached MAIL FROM."""

    def __init__(self) -> None:
        super().__init__()
        self.senders: dict[str, str] = {}
        self.recipients: dict[str, str] = {}
        self.messages_to: dict[str, str] = {}
        self.tries = 0

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> Any:
        self.tries += 1
        return self.senders.get(address, MISSING)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> Any:
        return self.recipients.get(address, MISSING)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        for address in envelope.rcpt_tos:
            if address in self.messages_to:
                return self.messages_to[address]
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def refusing_smtp() -> Iterator[SMTPServer]:
    server = SMTPServer(Refusing(), free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def refusing(refusing_smtp: SMTPServer) -> Refusing:
    mailbox: Refusing = refusing_smtp.mailbox  # type: ignore[assignment]
    return mailbox


def register(app: Flask, address: str) -> None:
    response = app.test_client().post(
        "/auth/register", json={"email": address, "password": PASSWORD}
    )
    assert response.status_code == 201, response.json


def the_row(app: Flask) -> EmailOutbox:
    with app.app_context():
        (row,) = db.session.scalars(sa.select(EmailOutbox)).all()
        db.session.expunge(row)
        return row


def wait_through_every_retry_and_sweep(app: Flask) -> int:
    """RQ's retry intervals, then the sweep's longest wait, pass on a travelled clock, with
    the service's worker running after each; returns how many emails the sweep dispatched."""
    with time_machine.travel(datetime.now(UTC), tick=True) as clock:
        for interval in RETRY_INTERVALS:
            clock.shift(interval + 1)
            run_worker(app)
        clock.shift(SWEEP_AFTER_MAX)
        with app.app_context():
            dispatched = sweep_outbox()
        run_worker(app)
        return dispatched


def test_a_recipient_refused_for_good_is_tried_once_and_kept_as_failed(
    app_factory: Callable[..., Flask],
    redis_url: str,
    database_url: str,
    refusing_smtp: SMTPServer,
    refusing: Refusing,
) -> None:
    refusing.recipients[NOBODY] = USER_UNKNOWN
    app = app_factory(REDIS_URL=redis_url, MAIL_PORT=refusing_smtp.port)
    register(app, NOBODY)
    row = the_row(app)

    # The worker as it runs in production: a process of its own that forks for each job.
    worker = flask_command(
        *("rq", "worker", "--burst"),
        database_url=database_url,
        redis_url=redis_url,
        smtp_port=refusing_smtp.port,
    )
    assert refusing.tries == 1
    assert wait_through_every_retry_and_sweep(app) == 0
    assert refusing.tries == 1

    # RQ records the job as failed at once, saying why (and not to whom).
    job = Job.fetch(job_id(row.id), connection=redis_connection(app))
    assert job.get_status() == JobStatus.FAILED
    queue = get_queue(app)
    assert job.id in FailedJobRegistry(queue=queue)
    assert job.id not in ScheduledJobRegistry(queue=queue)
    result = job.latest_result()
    assert result is not None
    assert "550 5.1.1" in result.exc_string
    assert NOBODY not in result.exc_string

    # The outbox keeps the row, failed with the server's answer; the email itself is gone.
    row = the_row(app)
    assert row.failed_at is not None
    assert row.failure is not None
    assert row.failure.startswith("550 5.1.1")
    assert "User unknown" in row.failure
    assert NOBODY not in row.failure
    assert row.sent_at is None and row.payload is None
    assert '"event": "email_refused"' in worker.stderr
    assert NOBODY not in worker.stdout + worker.stderr  # the log says why, never to whom

    listed = app.test_cli_runner().invoke(args=["outbox", "list", "--failed"])
    assert listed.exit_code == 0, listed.output
    (line,) = listed.output.splitlines()
    assert line.startswith(f"{row.id}  ")
    assert "failed" in line and "550 5.1.1" in line


def refuse_the_sender(app: Flask, refusing: Refusing) -> None:
    sender = parseaddr(app.config["MAIL_DEFAULT_SENDER"])[1]
    refusing.senders[sender] = f"553 5.7.1 <{sender}>: Sender address rejected: not owned"


def refuse_the_message(app: Flask, refusing: Refusing) -> None:
    refusing.messages_to[NOBODY] = "554 5.7.1 Message rejected: looks like spam"


@pytest.mark.parametrize(
    ("refuse", "answer"),
    [(refuse_the_sender, "553 5.7.1"), (refuse_the_message, "554 5.7.1")],
    ids=["sender", "message"],
)
def test_a_sender_or_message_refused_for_good_is_tried_once(
    app_factory: Callable[..., Flask],
    redis_url: str,
    refusing_smtp: SMTPServer,
    refusing: Refusing,
    refuse: Callable[[Flask, Refusing], None],
    answer: str,
) -> None:
    app = app_factory(REDIS_URL=redis_url, MAIL_PORT=refusing_smtp.port)
    refuse(app, refusing)
    register(app, NOBODY)
    run_worker(app)
    assert wait_through_every_retry_and_sweep(app) == 0
    assert refusing.tries == 1
    row = the_row(app)
    assert row.failure is not None and row.failure.startswith(answer)
    assert row.payload is None
    assert Job.fetch(job_id(row.id), connection=redis_connection(app)).get_status() == (
        JobStatus.FAILED
    )


def test_without_redis_a_refused_email_is_not_sent_again_by_the_sweep(
    app_factory: Callable[..., Flask],
    refusing_smtp: SMTPServer,
    refusing: Refusing,
    caplog: pytest.LogCaptureFixture,
) -> None:
    refusing.recipients[NOBODY] = USER_UNKNOWN
    app = app_factory(MAIL_PORT=refusing_smtp.port)  # the embedded default: no queue
    with caplog.at_level(logging.WARNING, logger="app.courier.outbox"):
        register(app, NOBODY)  # sent in-process after the commit
    assert refusing.tries == 1
    assert [r.outbox_id for r in caplog.records if r.getMessage() == "email_refused"] == [
        the_row(app).id
    ]
    with time_machine.travel(datetime.now(UTC), tick=True) as clock:
        clock.shift(SWEEP_AFTER_MAX)
        with app.app_context():
            assert sweep_outbox() == 0
    assert refusing.tries == 1
    assert the_row(app).failure == USER_UNKNOWN.replace(NOBODY, "recipient")


def test_a_temporary_refusal_is_retried(
    app_factory: Callable[..., Flask],
    redis_url: str,
    refusing_smtp: SMTPServer,
    refusing: Refusing,
) -> None:
    refusing.recipients[NOBODY] = "451 4.3.0 Mailbox temporarily unavailable, try again later"
    app = app_factory(REDIS_URL=redis_url, MAIL_PORT=refusing_smtp.port)
    register(app, NOBODY)
    row = the_row(app)
    with time_machine.travel(datetime.now(UTC), tick=True) as clock:
        run_worker(app)
        assert refusing.tries == 1
        job = Job.fetch(job_id(row.id), connection=redis_connection(app))
        assert job.get_status() == JobStatus.SCHEDULED  # RQ's first retry
        row = the_row(app)
        assert row.failed_at is None and row.payload is not None

        del refusing.recipients[NOBODY]  # the mailbox is back
        clock.shift(RETRY_INTERVALS[0] + 1)
        run_worker(app)
    assert refusing.tries == 2
    (message,) = refusing.to(NOBODY)
    assert message["Message-ID"] == row.message_id
    row = the_row(app)
    assert row.sent_at is not None and row.failed_at is None
