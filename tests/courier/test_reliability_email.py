"""Nothing promised is lost: faults injected into real processes around the email outbox.

A private `redis-server` on a free port is killed, restarted empty and paused (SIGSTOP);
`flask rq worker` and `flask rq scheduler` run as real processes and a worker is killed
with SIGKILL in the middle of an SMTP conversation. The sweep's bound is crossed with a
travelled clock in this process; the real processes are waited on by bounded polling.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import time_machine
from flask import Flask
from redis import Redis
from rq import Worker
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry
from rq_scheduler import Scheduler

from app.core.db import db
from app.core.redis import redis_connection
from app.courier.models import EmailOutbox
from app.courier.outbox import (
    GIVE_UP_AFTER,
    KEEP_FINISHED,
    SWEEP_AFTER,
    SWEEP_AFTER_MAX,
    job_id,
    queue_email,
    sweep_outbox,
)
from app.courier.queue import JOB_TIMEOUT, RETRY_INTERVALS, get_queue
from app.identity.models import GroupName, User, UserProfile
from app.identity.users import get_group
from app.passwords.hashing import hash_password
from app.periodic.scheduler import CLEANUP_JOB_ID, SLOT_KEY, SWEEP_JOB_ID, make_scheduler
from tests.support.apps import flask_command, run_worker
from tests.support.http import PASSWORD
from tests.support.mail import Mailbox, SMTPServer
from tests.support.processes import FlaskProcesses, flask_processes
from tests.support.services import RedisServer, free_port, start_redis_server, wait_for

# --- a private Redis ----------------------------------------------------------------------


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = start_redis_server(tmp_path)
    yield server
    server.kill()


# --- processes ----------------------------------------------------------------------------


@pytest.fixture
def processes(
    database_url: str, private_redis: RedisServer, smtp_server: SMTPServer, tmp_path: Path
) -> Iterator[FlaskProcesses]:
    """`flask …` processes started by a test; all are killed at the end, whatever the test
    did."""
    running = flask_processes(database_url, private_redis.url, smtp_server.port, tmp_path / "logs")
    yield running
    for process in running.started:
        if process.poll() is None:
            running.kill_hard(process)


# --- helpers ------------------------------------------------------------------------------


def burst_worker(database_url: str, redis: RedisServer, smtp_port: int) -> None:
    """`flask rq worker --burst` in a process of its own: runs what is queued, then exits."""
    flask_command(
        "rq",
        "worker",
        "--burst",
        database_url=database_url,
        redis_url=redis.url,
        smtp_port=smtp_port,
    )


def outbox_rows(app: Flask) -> list[EmailOutbox]:
    with app.app_context():
        rows = list(db.session.scalars(sa.select(EmailOutbox).order_by(EmailOutbox.id)))
        db.session.expunge_all()
        return rows


def active_user(app: Flask, address: str) -> None:
    with app.app_context():
        group = get_group(GroupName.USER)
        db.session.add(
            User(
                email=address,
                password_hash=hash_password(PASSWORD),
                group=group,
                is_active=True,
                profile=UserProfile(),
            )
        )
        db.session.commit()


def sweep(app: Flask, after: float = 0) -> int:
    """Run the sweep `after` seconds from now (a travelled clock, in this process only)."""
    later = datetime.now(UTC) + timedelta(seconds=after)
    with time_machine.travel(later, tick=True), app.app_context():
        return sweep_outbox()


def assert_delivered_once_each(app: Flask, mailbox: Mailbox, addresses: list[str]) -> None:
    rows = outbox_rows(app)
    assert all(row.sent_at is not None and row.payload is None for row in rows)
    message_ids = {row.message_id for row in rows}
    for address in addresses:
        (message,) = mailbox.to(address)
        assert message["Message-ID"] in message_ids


def redis_values(conn: Redis) -> Iterator[tuple[bytes, str]]:
    """Every value in Redis as text; RQ's job data decompressed (it is zlib-compressed)."""
    for key in conn.scan_iter():
        kind = conn.type(key)
        if kind == b"hash":
            fields = conn.hgetall(key)
            if key.startswith(b"rq:job:") and b"data" in fields:
                fields[b"data"] = zlib.decompress(fields[b"data"])
            values = list(fields.values())
        elif kind == b"list":
            values = conn.lrange(key, 0, -1)
        elif kind == b"zset":
            values = conn.zrange(key, 0, -1)
        elif kind == b"set":
            values = list(conn.smembers(key))
        elif kind == b"stream":
            values = [repr(entry).encode() for entry in conn.xrange(key)]
        else:
            values = [conn.get(key) or b""]
        yield key, b"".join(values).decode(errors="replace")


# --- the outbox ---------------------------------------------------------------------------


def test_the_outbox_keeps_the_email_encrypted_and_rq_only_its_id(
    redis_app: Flask, mailbox: Mailbox
) -> None:
    client = redis_app.test_client()
    response = client.post(
        "/auth/register", json={"email": "sealed@example.com", "password": PASSWORD}
    )
    assert response.status_code == 201
    (row,) = outbox_rows(redis_app)
    stored = row.payload
    assert stored is not None

    job = Job.fetch(job_id(row.id), connection=redis_connection(redis_app))
    assert (job.args, job.kwargs) == ((row.id,), {})
    assert job.timeout == JOB_TIMEOUT
    run_worker(redis_app)

    token = mailbox.last_token("sealed@example.com")
    (message,) = mailbox.to("sealed@example.com")
    assert message["Message-ID"] == row.message_id
    # The stored payload held neither the link nor the address in clear, and is gone now.
    assert token not in stored
    assert "sealed@example.com" not in stored
    (row,) = outbox_rows(redis_app)
    assert row.sent_at is not None
    assert row.payload is None
    # Nothing in Redis holds the link either.
    assert not [key for key, value in redis_values(redis_connection(redis_app)) if token in value]


def test_a_rolled_back_change_leaves_no_outbox_row(app: Flask, mailbox: Mailbox) -> None:
    with app.app_context():
        queue_email("never@example.com", "Hello", "text", "<p>html</p>")
        db.session.rollback()
    assert outbox_rows(app) == []
    assert mailbox.to("never@example.com") == []


def test_without_redis_the_sweep_sends_what_smtp_refused(
    app: Flask, smtp_server: SMTPServer, mailbox: Mailbox
) -> None:
    smtp_server.stop()
    response = app.test_client().post(
        "/auth/register", json={"email": "later@example.com", "password": PASSWORD}
    )
    assert response.status_code == 201
    smtp_server.start()
    assert sweep(app) == 0  # not due yet: it was dispatched a moment ago
    assert mailbox.to("later@example.com") == []

    assert sweep(app, after=SWEEP_AFTER + 1) == 1  # sent in-process, once committed
    assert_delivered_once_each(app, mailbox, ["later@example.com"])
    (row,) = outbox_rows(app)
    assert row.attempts == 1
    assert sweep(app, after=10 * SWEEP_AFTER) == 0


def test_the_sweep_leaves_a_queued_email_alone_and_takes_over_when_retries_run_out(
    redis_app: Flask, smtp_server: SMTPServer, mailbox: Mailbox
) -> None:
    with redis_app.app_context():
        queue_email("patient@example.com", "Hello", "text", "<p>html</p>")
        db.session.commit()
    (row,) = outbox_rows(redis_app)
    queue = get_queue(redis_app)
    # The worker is away: the job waits in the queue, and the sweep adds no copy of it.
    assert sweep(redis_app, after=SWEEP_AFTER + 1) == 0
    assert queue.job_ids == [job_id(row.id)]

    smtp_server.stop()
    with time_machine.travel(datetime.now(UTC), tick=True) as clock:
        run_worker(redis_app)
        for interval in RETRY_INTERVALS:
            assert sweep_outbox_now(redis_app) == 0  # RQ's retry is still to come
            clock.shift(interval + 1)
            run_worker(redis_app)
        job = Job.fetch(job_id(row.id), connection=redis_connection(redis_app))
        assert job.get_status() == JobStatus.FAILED

        smtp_server.start()
        clock.shift(SWEEP_AFTER_MAX)
        assert sweep_outbox_now(redis_app) == 1
        run_worker(redis_app)
    assert_delivered_once_each(redis_app, mailbox, ["patient@example.com"])
    assert job_id(row.id) not in FailedJobRegistry(queue=queue)


def sweep_outbox_now(app: Flask) -> int:
    with app.app_context():
        return sweep_outbox()


def test_the_sweep_command_sends_what_is_due(
    app: Flask, database_url: str, smtp_server: SMTPServer, mailbox: Mailbox
) -> None:
    smtp_server.stop()
    with app.app_context():
        queue_email("commanded@example.com", "Hello", "text", "<p>html</p>")
        db.session.commit()
        # Due now, as if two minutes had passed (the command runs in a process of its own,
        # which this test's travelled clock would not reach).
        db.session.execute(sa.update(EmailOutbox).values(next_attempt_at=datetime.now(UTC)))
        db.session.commit()
    smtp_server.start()
    result = flask_command(
        "outbox",
        "sweep",
        database_url=database_url,
        redis_url="",
        smtp_port=smtp_server.port,
    )
    assert "1 email(s) dispatched again" in result.stdout
    assert_delivered_once_each(app, mailbox, ["commanded@example.com"])


def test_an_email_not_sent_within_a_day_is_given_up(
    app: Flask, smtp_server: SMTPServer, mailbox: Mailbox, caplog: pytest.LogCaptureFixture
) -> None:
    smtp_server.stop()
    with app.app_context():
        queue_email("hopeless@example.com", "Hello", "text", "<p>html</p>")
        db.session.commit()
    smtp_server.start()
    with caplog.at_level(logging.WARNING, logger="app.courier.outbox"):
        assert sweep(app, after=GIVE_UP_AFTER.total_seconds() + 1) == 0
    assert "email_given_up" in caplog.text
    (row,) = outbox_rows(app)
    assert row.payload is None and row.sent_at is None
    assert mailbox.to("hopeless@example.com") == []

    # The sweep deletes nothing: old rows go with the scheduled cleanup
    # (tests/periodic/test_cleanup_keeps_time.py).
    sweep(app, after=(KEEP_FINISHED + timedelta(days=1)).total_seconds())
    assert [kept.id for kept in outbox_rows(app)] == [row.id]


class Unanswered(Mailbox):
    """Takes the DATA of the first message and then never answers it (until released):
    a server that hangs, or whose "250" is lost."""

    def __init__(self) -> None:
        super().__init__()
        self.hanging = threading.Event()
        self.released = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        if not self.hanging.is_set():
            self.hanging.set()
            while not self.released.is_set():
                await asyncio.sleep(0.05)
        return reply


@pytest.fixture
def unanswered_smtp() -> Iterator[SMTPServer]:
    server = SMTPServer(Unanswered(), free_port())
    server.start()
    yield server
    server.mailbox.released.set()  # type: ignore[attr-defined]
    server.stop()


def test_a_hung_smtp_server_costs_a_send_at_most_the_mail_timeout(
    app_factory: Callable[..., Flask], unanswered_smtp: SMTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    app = app_factory(MAIL_PORT=unanswered_smtp.port, MAIL_TIMEOUT=1)
    with caplog.at_level(logging.ERROR, logger="app.courier.queue"), app.app_context():
        queue_email("stuck@example.com", "Hello", "text", "<p>html</p>")
        db.session.commit()  # sends in-process: the send gives up, the commit stands
    assert unanswered_smtp.mailbox.hanging.is_set()  # type: ignore[attr-defined]
    (record,) = [r for r in caplog.records if r.getMessage() == "job_failed"]
    assert record.exc_info is not None
    # smtplib reports the timeout as a disconnection (and Flask-Mail's QUIT on the way out
    # as another one, whose context it is).
    causes, error = [], record.exc_info[1]
    while error is not None:
        causes.append(str(error))
        error = error.__context__
    assert any("timed out" in cause for cause in causes), causes
    (row,) = outbox_rows(app)
    assert row.sent_at is None and row.payload is not None  # the sweep will try again


# --- faults in real processes -------------------------------------------------------------


def test_no_email_is_lost_when_redis_is_down_at_commit(
    app_factory: Callable[..., Flask],
    private_redis: RedisServer,
    database_url: str,
    smtp_server: SMTPServer,
    mailbox: Mailbox,
) -> None:
    app = app_factory(REDIS_URL=private_redis.url)
    client = app.test_client()
    active_user(app, "forgetful@example.com")
    newcomers = [f"newcomer{n}@example.com" for n in range(3)]

    private_redis.kill()
    for address in newcomers:
        response = client.post("/auth/register", json={"email": address, "password": PASSWORD})
        assert response.status_code == 201, response.json
    response = client.post("/auth/password/forgot", json={"email": "forgetful@example.com"})
    assert response.status_code == 202
    # forgot commits nothing: its job, which would look the account up, never got queued,
    # so nothing was promised (the same answer and work for every address, issue 21 item 2).
    assert len(outbox_rows(app)) == 3

    private_redis.start()  # back, and empty: the after-commit hand-over never happened
    assert get_queue(app).count == 0
    assert sweep(app) == 0  # within the bound the first dispatch may still be on its way
    assert sweep(app, after=SWEEP_AFTER + 1) == 3
    # The person asks again, as the unanswered request leaves them to.
    response = client.post("/auth/password/forgot", json={"email": "forgetful@example.com"})
    assert response.status_code == 202
    burst_worker(database_url, private_redis, smtp_server.port)

    assert_delivered_once_each(app, mailbox, [*newcomers, "forgetful@example.com"])
    # The links work: the emails carry what the requests promised.
    response = client.post("/auth/activate", json={"token": mailbox.last_token(newcomers[0])})
    assert response.status_code == 200
    response = client.post(
        "/auth/password/reset",
        json={
            "token": mailbox.last_token("forgetful@example.com"),
            "new_password": "granite pelican lantern mosaic",
        },
    )
    assert response.status_code == 204
    assert sweep(app, after=10 * SWEEP_AFTER) == 0  # nothing left to send


def test_a_worker_killed_mid_send_is_replaced_by_the_sweep_with_the_same_message(
    app_factory: Callable[..., Flask],
    private_redis: RedisServer,
    processes: FlaskProcesses,
    database_url: str,
    unanswered_smtp: SMTPServer,
) -> None:
    mailbox: Unanswered = unanswered_smtp.mailbox  # type: ignore[assignment]
    app = app_factory(REDIS_URL=private_redis.url, MAIL_PORT=unanswered_smtp.port)
    response = app.test_client().post(
        "/auth/register", json={"email": "interrupted@example.com", "password": PASSWORD}
    )
    assert response.status_code == 201
    (row,) = outbox_rows(app)

    worker = processes.start("rq", "worker", MAIL_PORT=str(unanswered_smtp.port))
    wait_for(mailbox.hanging.is_set, "the worker to reach DATA")
    processes.kill_hard(worker)
    mailbox.released.set()
    # RQ still believes the job runs: only its maintenance, minutes later, would notice.
    job = Job.fetch(job_id(row.id), connection=redis_connection(app))
    assert job.get_status() == JobStatus.STARTED
    (row,) = outbox_rows(app)
    assert row.sent_at is None

    assert sweep(app) == 0  # not yet: a live send could still be running
    assert sweep(app, after=SWEEP_AFTER + 1) == 1
    burst_worker(database_url, private_redis, unanswered_smtp.port)

    # The server kept the first copy, whose answer never came; the re-send is the same
    # message: at most one duplicate, with the same Message-ID.
    copies = mailbox.to("interrupted@example.com")
    assert 1 <= len(copies) <= 2
    assert {message["Message-ID"] for message in copies} == {row.message_id}
    (row,) = outbox_rows(app)
    assert row.sent_at is not None and row.payload is None
    assert sweep(app, after=10 * SWEEP_AFTER) == 0


def cleanup_runs(conn: Redis) -> int:
    try:
        return len(Job.fetch(CLEANUP_JOB_ID, connection=conn).results())
    except Exception:
        return 0  # not registered (yet, or again)


def slot(conn: Redis, job: str) -> int | None:
    """The time of the job's next run, as rq-scheduler keeps it."""
    score = conn.zscore(Scheduler.scheduled_jobs_key, job)
    return None if score is None else int(score)


def test_the_scheduler_and_worker_outlive_redis_restarts_and_keep_the_cadence(
    private_redis: RedisServer, processes: FlaskProcesses
) -> None:
    every = 2
    conn = Redis.from_url(private_redis.url, socket_connect_timeout=1, socket_timeout=5)
    schedulers = [
        processes.start("rq", "scheduler", TOKEN_CLEANUP_INTERVAL=str(every)) for _ in range(2)
    ]
    worker = processes.start("rq", "worker", TOKEN_CLEANUP_INTERVAL=str(every))

    def runs_on_cadence(runs_wanted: int) -> None:
        first = wait_for(lambda: slot(conn, CLEANUP_JOB_ID), "the cleanup to be registered")
        wait_for(lambda: cleanup_runs(conn) >= runs_wanted, f"{runs_wanted} cleanup runs")
        runs, last = cleanup_runs(conn), slot(conn, CLEANUP_JOB_ID)
        assert last is not None
        # Each next run is the previous slot plus the interval, never "now" plus it…
        assert (last - first) % every == 0
        # …and two schedulers run each slot once: no more runs than slots.
        assert runs <= (last - first) // every + 1
        assert slot(conn, SWEEP_JOB_ID) is not None

    runs_on_cadence(3)

    private_redis.kill()
    # Down across polls: the schedulers back off; a worker started now waits for Redis.
    wait_for(
        lambda: processes.output().count("scheduler_redis_unavailable") >= 2,
        "the schedulers to notice",
    )
    late_worker = processes.start("rq", "worker", TOKEN_CLEANUP_INTERVAL=str(every))
    wait_for(lambda: "worker_redis_unavailable" in processes.output(), "the worker to wait")
    private_redis.start()  # empty: the schedule, the jobs and their results are gone
    runs_on_cadence(3)
    wait_for(
        lambda: late_worker.pid in {w.pid for w in Worker.all(connection=conn)},
        "the late worker to be up",
    )

    # Hung across a slot: the processes wait (or time out and back off), then carry on.
    due = slot(conn, CLEANUP_JOB_ID)
    assert due is not None
    conn.close()
    private_redis.pause()
    wait_for(lambda: time.time() > due + every, "a slot to pass while Redis hangs")
    private_redis.resume()
    conn = Redis.from_url(private_redis.url, socket_connect_timeout=1, socket_timeout=5)
    before = cleanup_runs(conn)
    wait_for(lambda: cleanup_runs(conn) >= before + 2, "the cleanup to run again")

    alive = [*schedulers, worker, late_worker]
    assert all(process.poll() is None for process in alive), processes.output()
    conn.close()


def test_no_cleanup_piles_up_while_the_worker_is_away(
    private_redis: RedisServer,
    processes: FlaskProcesses,
    database_url: str,
    smtp_server: SMTPServer,
) -> None:
    every = 2
    conn = Redis.from_url(private_redis.url, socket_connect_timeout=1, socket_timeout=5)
    scheduler = processes.start("rq", "scheduler", TOKEN_CLEANUP_INTERVAL=str(every))
    first = wait_for(lambda: slot(conn, CLEANUP_JOB_ID), "the cleanup to be registered")
    wait_for(lambda: (slot(conn, CLEANUP_JOB_ID) or 0) >= first + 3 * every, "three slots to pass")
    # Stopped before the worker comes back: on a busy machine the worker may take longer to
    # start than a slot lasts, and the slot after its return is a new run, not a pile-up.
    processes.kill_hard(scheduler)
    queued = [job.decode() for job in conn.lrange("rq:queue:accounts", 0, -1)]
    assert queued.count(CLEANUP_JOB_ID) == 1
    assert queued.count(SWEEP_JOB_ID) == 1

    burst_worker(database_url, private_redis, smtp_server.port)
    assert cleanup_runs(conn) == 1
    conn.close()


# --- the cadence, on a travelled clock ----------------------------------------------------


def test_next_run_follows_the_slot_skips_missed_ones_and_never_doubles(redis_app: Flask) -> None:
    every = redis_app.config["TOKEN_CLEANUP_INTERVAL"]
    first, second = make_scheduler(redis_app), make_scheduler(redis_app)
    conn = redis_connection(redis_app)
    queue = get_queue(redis_app)
    start = datetime.now(UTC).replace(microsecond=0)
    with time_machine.travel(start, tick=False) as clock:
        first.register_all()
        anchor = slot(conn, CLEANUP_JOB_ID)
        assert anchor == int(start.timestamp())

        # Both schedulers see the same due slot; one queues it.
        due_first, due_second = list(first.get_jobs_to_queue()), list(second.get_jobs_to_queue())
        for job in due_first:
            first.enqueue_job(job)
        for job in due_second:
            second.enqueue_job(job)
        assert queue.job_ids.count(CLEANUP_JOB_ID) == 1
        assert conn.exists(SLOT_KEY.format(job_id=CLEANUP_JOB_ID, slot=anchor))
        assert slot(conn, CLEANUP_JOB_ID) == anchor + every

        # A late poll: the next run still counts from the slot, not from the poll.
        clock.shift(every + 17)
        first.enqueue_jobs()
        assert slot(conn, CLEANUP_JOB_ID) == anchor + 2 * every
        # The first run has not been worked yet: the second is not queued behind it.
        assert queue.job_ids.count(CLEANUP_JOB_ID) == 1

        run_worker(redis_app)
        # Nobody polled for five intervals: one run now, then the schedule resumes on slot.
        clock.shift(5 * every)
        second.enqueue_jobs()
        assert queue.job_ids.count(CLEANUP_JOB_ID) == 1
        assert slot(conn, CLEANUP_JOB_ID) == anchor + 7 * every

        # A restart with an empty Redis: the next pass registers it again.
        conn.flushdb()
        assert [p.job_id for p in first.register_all()] == [CLEANUP_JOB_ID, SWEEP_JOB_ID]
