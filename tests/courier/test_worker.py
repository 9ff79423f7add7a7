"""The email worker keeps up (issue 24): no fork per job, one SMTP connection, a fast first
retry, the backlog of an outage sent once the server answers, each email once however many
workers run.

Everything is real: `flask rq worker` processes (or the service's worker in this process
where a travelled clock drives RQ's scheduler), Redis, the aiosmtpd server, which numbers
the connections it is greeted on (tests/support/mail.py), and the database of the run.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import time_machine
from aiosmtpd.smtp import SMTP
from flask import Flask
from rq import Queue, Retry, Worker
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry

from app.core.db import db
from app.core.redis import redis_connection
from app.courier.models import EmailOutbox
from app.courier.outbox import job_id, queue_email, send_outbox_email
from app.courier.queue import JOB_TIMEOUT, PENDING_KEY, RETRY_INTERVALS, get_queue
from app.courier.recovery import OUTAGE_KEY
from tests.support.apps import flask_command, run_worker
from tests.support.mail import Mailbox, SMTPServer
from tests.support.processes import FlaskProcesses, flask_processes
from tests.support.services import free_port, wait_for

# --- workers in processes of their own ----------------------------------------------------


@pytest.fixture
def workers(
    database_url: str, redis_url: str, smtp_server: SMTPServer, tmp_path: Path
) -> Iterator[FlaskProcesses]:
    """`flask rq worker` processes, each in a session of its own, stopped at the end."""
    running = flask_processes(database_url, redis_url, smtp_server.port, tmp_path / "logs")
    yield running
    running.stop_all()


# --- helpers ------------------------------------------------------------------------------


def queue_emails(app: Flask, addresses: list[str], *, dispatch: bool = True) -> list[int]:
    """Record one email per address in one transaction; return the rows' ids. With
    `dispatch=False` no job is queued for them (the test queues its own)."""
    with app.app_context():
        for address in addresses:
            queue_email(address, "Hello", "plain body", "<p>html body</p>")
        ids = list(
            db.session.scalars(
                sa.select(EmailOutbox.id).order_by(EmailOutbox.id.desc()).limit(len(addresses))
            )
        )
        if not dispatch:
            db.session.info.pop(PENDING_KEY, None)
        db.session.commit()
    return sorted(ids)


def outbox_rows(app: Flask) -> list[EmailOutbox]:
    with app.app_context():
        rows = list(db.session.scalars(sa.select(EmailOutbox).order_by(EmailOutbox.id)))
        db.session.expunge_all()
        return rows


def email_job(app: Flask, row_id: int) -> Job:
    return Job.fetch(job_id(row_id), connection=redis_connection(app))


def assert_each_sent_once(app: Flask, mailbox: Mailbox) -> None:
    rows = outbox_rows(app)
    assert rows
    assert all(row.sent_at is not None and row.payload is None for row in rows)
    assert sorted(mailbox.message_ids()) == sorted(row.message_id for row in rows)


# --- one process, one connection ----------------------------------------------------------


def test_the_worker_sends_every_email_over_one_connection_and_quits_it_at_exit(
    redis_app: Flask, database_url: str, redis_url: str, smtp_server: SMTPServer, mailbox: Mailbox
) -> None:
    addresses = [f"reader{n}@example.com" for n in range(6)]
    queue_emails(redis_app, addresses)

    flask_command(
        *("rq", "worker", "--burst"),
        database_url=database_url,
        redis_url=redis_url,
        smtp_port=smtp_server.port,
    )

    assert [mailbox.connections_to(address) for address in addresses] == [[1]] * 6
    assert mailbox.connections_seen == 1
    assert mailbox.quits == 1  # closed, politely, when the worker ended
    assert_each_sent_once(redis_app, mailbox)


def test_after_the_server_dropped_the_connection_the_next_email_goes_once(
    redis_app: Flask, workers: FlaskProcesses, smtp_server: SMTPServer, mailbox: Mailbox
) -> None:
    workers.start("rq", "worker")
    (first,) = queue_emails(redis_app, ["first@example.com"])
    wait_for(lambda: mailbox.to("first@example.com"), "the first email")

    smtp_server.stop()  # a restart: the worker's connection is closed under it
    smtp_server.start()
    (second,) = queue_emails(redis_app, ["second@example.com"])
    wait_for(
        lambda: email_job(redis_app, second).get_status() == JobStatus.FINISHED,
        "the second email's job",
    )

    assert mailbox.connections_to("first@example.com") == [1]
    assert mailbox.connections_to("second@example.com") == [2]
    # Sent again at once on a new connection, not by RQ's retry.
    assert email_job(redis_app, second).retries_left == len(RETRY_INTERVALS)
    assert "smtp_reconnect" in workers.output()
    assert_each_sent_once(redis_app, mailbox)
    assert email_job(redis_app, first).get_status() == JobStatus.FINISHED


class DropsAfterEachEmail(Mailbox):
    """Takes each message, answers 250, and closes the connection: the next email meets a
    connection the server has closed."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        server.loop.call_soon(server.transport.close)  # once the 250 is written
        return reply


@pytest.fixture
def dropping_smtp() -> Iterator[SMTPServer]:
    server = SMTPServer(DropsAfterEachEmail(), free_port())
    server.start()
    yield server
    server.stop()


def test_an_email_the_server_took_before_dropping_the_connection_goes_once(
    app_factory: Callable[..., Flask], redis_url: str, dropping_smtp: SMTPServer
) -> None:
    """What the server took is marked sent before anything else is said on the connection;
    the next email sees the connection gone before DATA, and goes on a new one."""
    app = app_factory(REDIS_URL=redis_url, MAIL_PORT=dropping_smtp.port)
    mailbox = dropping_smtp.mailbox
    addresses = [f"dropped{n}@example.com" for n in range(3)]
    ids = queue_emails(app, addresses)

    with time_machine.travel(datetime.now(UTC), tick=True) as clock:
        run_worker(app)
        clock.shift(max(RETRY_INTERVALS) + 1)
        run_worker(app)  # nothing is due again

    assert [mailbox.connections_to(address) for address in addresses] == [[1], [2], [3]]
    for row_id in ids:
        job = email_job(app, row_id)
        assert job.get_status() == JobStatus.FINISHED
        assert job.retries_left == len(RETRY_INTERVALS)
    assert_each_sent_once(app, mailbox)


# --- a refusal leaves the connection clean ------------------------------------------------

REFUSED_AT_DATA = "refused-at-data@example.com"
REFUSED_AT_RCPT = "refused-at-rcpt@example.com"


class RefusesTheDataCommand(SMTP):
    """Answers 554 to the DATA command itself for one recipient: smtplib raises without the
    RSET it sends after other refusals, and the server still holds MAIL FROM and RCPT TO, so
    a client that went on without RSET would meet "503 nested MAIL command"."""

    async def smtp_DATA(self, arg: str) -> None:
        if self.envelope.rcpt_tos == [REFUSED_AT_DATA]:
            await self.push("554 5.7.1 Transaction refused")
            return
        await super().smtp_DATA(arg)


class RefusesOneRecipient(Mailbox):
    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address == REFUSED_AT_RCPT:
            return "550 5.1.1 User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"


@pytest.fixture
def refusing_smtp() -> Iterator[SMTPServer]:
    server = SMTPServer(RefusesOneRecipient(), free_port(), server_class=RefusesTheDataCommand)
    server.start()
    yield server
    server.stop()


def test_a_refused_email_leaves_the_connection_clean_for_the_next_one(
    app_factory: Callable[..., Flask], redis_url: str, refusing_smtp: SMTPServer
) -> None:
    app = app_factory(REDIS_URL=redis_url, MAIL_PORT=refusing_smtp.port)
    mailbox = refusing_smtp.mailbox
    addresses = [REFUSED_AT_DATA, "after-data@example.com", REFUSED_AT_RCPT, "after@example.com"]
    ids = queue_emails(app, addresses)

    run_worker(app)

    assert mailbox.connections_to("after-data@example.com") == [1]
    assert mailbox.connections_to("after@example.com") == [1]
    assert mailbox.connections_seen == 1
    failures = {row.id: row.failure for row in outbox_rows(app)}
    assert (failures[ids[0]] or "").startswith("554 5.7.1")
    assert (failures[ids[2]] or "").startswith("550 5.1.1")
    for row_id in (ids[0], ids[2]):
        assert email_job(app, row_id).get_status() == JobStatus.FAILED


# --- retries and the outage's backlog -----------------------------------------------------


def test_the_first_retry_comes_after_seconds(
    redis_app: Flask, workers: FlaskProcesses, smtp_server: SMTPServer, mailbox: Mailbox
) -> None:
    """In real time, with the worker's own scheduler process (a travelled clock reaches
    neither): the email goes within the first retry's 2 s, the scheduler's 1 s poll and the
    registry's whole seconds."""
    smtp_server.stop()
    workers.start("rq", "worker")
    (row_id,) = queue_emails(redis_app, ["soon@example.com"])
    scheduled = ScheduledJobRegistry(queue=get_queue(redis_app))
    wait_for(lambda: job_id(row_id) in scheduled, "the first attempt to fail")
    failed_at = time.monotonic()
    smtp_server.start()

    wait_for(lambda: mailbox.to("soon@example.com"), "the retry", timeout=15)
    # 2 s, less than a second of rounding, the scheduler's 1 s poll, and room for a busy
    # machine: well short of the 30 s the first retry used to wait.
    assert time.monotonic() - failed_at < RETRY_INTERVALS[0] + 4
    job = wait_for(
        lambda: (j := email_job(redis_app, row_id)).get_status() == JobStatus.FINISHED and j,
        "the job to finish",
    )
    assert job.retries_left == len(RETRY_INTERVALS) - 1  # its first retry sent it


def test_emails_that_waited_out_an_outage_go_as_soon_as_the_server_answers(
    redis_app: Flask, workers: FlaskProcesses, smtp_server: SMTPServer, mailbox: Mailbox
) -> None:
    smtp_server.stop()
    workers.start("rq", "worker")
    ids = queue_emails(redis_app, [f"backlog{n}@example.com" for n in range(20)])
    conn = redis_connection(redis_app)

    def failed_three_times() -> bool:
        jobs = Job.fetch_many([job_id(i) for i in ids], connection=conn)
        return all(
            job is not None
            and job.retries_left == len(RETRY_INTERVALS) - 3
            and job.get_status() == JobStatus.SCHEDULED
            for job in jobs
        )

    # At 0, 2 and 7 s: each email's next retry is 15 s away.
    wait_for(failed_three_times, "every email to fail three times", timeout=30)
    assert conn.exists(OUTAGE_KEY)
    back = time.monotonic()
    smtp_server.start()

    wait_for(lambda: len(mailbox.messages) == len(ids), "the backlog", timeout=20)
    waited = time.monotonic() - back
    # The probe asks every 3 s and the scheduler moves it within 1 s; the emails' own next
    # retries are 14 s or more away.
    assert waited < 10, waited
    assert_each_sent_once(redis_app, mailbox)
    assert not conn.exists(OUTAGE_KEY)
    assert "smtp_outage_ends" in wait_for(
        lambda: "smtp_outage_ends" in workers.output() and workers.output(), "the log"
    )


def test_an_email_sent_after_an_outage_sends_the_waiting_ones_at_once(
    redis_app: Flask, smtp_server: SMTPServer, mailbox: Mailbox
) -> None:
    """The other way the outage ends: a new email goes, and the worker that sent it moves
    the waiting ones to the queue (on a travelled clock their retries never come due)."""
    smtp_server.stop()
    scheduled = ScheduledJobRegistry(queue=get_queue(redis_app))
    with time_machine.travel(datetime.now(UTC), tick=True) as clock:
        waiting = queue_emails(redis_app, ["waited0@example.com", "waited1@example.com"])
        run_worker(redis_app)
        clock.shift(RETRY_INTERVALS[0] + 1)
        run_worker(redis_app)  # the first retries fail too: the next are 5 s away
        assert all(job_id(row_id) in scheduled for row_id in waiting)

        smtp_server.start()
        queue_emails(redis_app, ["fresh@example.com"])
        run_worker(redis_app)  # no clock moved: only the new email is due

    assert [m["To"] for m in mailbox.messages] == [
        "fresh@example.com",
        "waited0@example.com",
        "waited1@example.com",
    ]
    assert mailbox.connections_seen == 1
    for row_id in waiting:
        assert job_id(row_id) not in scheduled
        assert email_job(redis_app, row_id).retries_left == len(RETRY_INTERVALS) - 2
    assert_each_sent_once(redis_app, mailbox)


def test_a_probe_ends_an_outage_when_no_new_email_comes(
    redis_app: Flask, smtp_server: SMTPServer, mailbox: Mailbox
) -> None:
    smtp_server.stop()
    with time_machine.travel(datetime.now(UTC), tick=True) as clock:
        (row_id,) = queue_emails(redis_app, ["quiet@example.com"])
        run_worker(redis_app)  # fails: the email waits 2 s, the probe 3 s
        clock.shift(2)
        run_worker(redis_app)  # the retry fails: 5 s more
        clock.shift(5)
        run_worker(redis_app)  # the retry and the probe fail: 15 s and 3 s more
        smtp_server.start()
        clock.shift(4)
        run_worker(redis_app)  # only the probe is due, and the server answers it

    assert len(mailbox.to("quiet@example.com")) == 1
    job = email_job(redis_app, row_id)
    assert job.get_status() == JobStatus.FINISHED
    assert job.retries_left == len(RETRY_INTERVALS) - 3
    assert not redis_connection(redis_app).exists(OUTAGE_KEY)


# --- several workers ----------------------------------------------------------------------


def test_three_workers_send_each_email_once_though_each_is_queued_twice(
    redis_app: Flask, workers: FlaskProcesses, mailbox: Mailbox
) -> None:
    """Every email has two jobs side by side in the queue (a sweep's dispatch beside a late
    original, a job queued twice): the workers take them at the same time, and the row's
    claim lets one of them send it."""
    conn = redis_connection(redis_app)
    for _ in range(3):
        workers.start("rq", "worker")
    wait_for(lambda: len(Worker.all(connection=conn)) == 3, "three workers")
    ids = queue_emails(redis_app, [f"twice{n}@example.com" for n in range(80)], dispatch=False)
    queue = get_queue(redis_app)
    retry = Retry(max=len(RETRY_INTERVALS), interval=RETRY_INTERVALS)
    queue.enqueue_many(
        [
            Queue.prepare_data(
                send_outbox_email, (row_id,), job_id=name, timeout=JOB_TIMEOUT, retry=retry
            )
            for row_id in ids
            for name in (job_id(row_id), f"{job_id(row_id)}-copy")
        ]
    )

    wait_for(lambda: len(mailbox.messages) >= len(ids), "every email")
    wait_for(lambda: queue.count == 0 and _jobs_running(queue) == 0, "every job")
    time.sleep(0.5)  # a second copy would be sent by now
    assert_each_sent_once(redis_app, mailbox)
    output = workers.output()
    assert output.count('"event": "email_already_sent"') == len(ids)
    # The work was shared.
    assert len(set(re.findall(r"Worker (\w+): accounts: app.courier", output))) == 3


def _jobs_running(queue: Queue) -> int:
    return len(queue.started_job_registry)


# --- the job timeout without a work horse -------------------------------------------------


class Silent(Mailbox):
    """Takes DATA and never answers (until released)."""

    def __init__(self) -> None:
        super().__init__()
        self.released = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        while not self.released.is_set():
            await asyncio.sleep(0.05)
        return "250 OK"


@pytest.fixture
def silent_smtp() -> Iterator[SMTPServer]:
    server = SMTPServer(Silent(), free_port())
    server.start()
    yield server
    server.mailbox.released.set()  # type: ignore[attr-defined]
    server.stop()


def test_a_job_is_stopped_at_its_timeout_in_the_worker_s_own_process(
    app_factory: Callable[..., Flask],
    database_url: str,
    redis_url: str,
    silent_smtp: SMTPServer,
) -> None:
    app = app_factory(REDIS_URL=redis_url, MAIL_PORT=silent_smtp.port)
    (row_id,) = queue_emails(app, ["hung@example.com"], dispatch=False)
    get_queue(app).enqueue(send_outbox_email, row_id, job_id=job_id(row_id), job_timeout=2)

    started = time.monotonic()
    flask_command(
        *("rq", "worker", "--burst"),
        database_url=database_url,
        redis_url=redis_url,
        smtp_port=silent_smtp.port,
        MAIL_TIMEOUT="40",  # the server would hold the send this long; the job timeout wins
    )

    assert time.monotonic() - started < 20
    job = email_job(app, row_id)
    assert job.get_status() == JobStatus.FAILED
    result = job.latest_result()
    assert result is not None
    assert "JobTimeoutException" in (result.exc_string or "")
    (row,) = outbox_rows(app)
    assert row.sent_at is None and row.payload is not None  # the sweep will send it again
