"""Background work: the RQ worker, email retries, the scheduled cleanup, the dashboard.

Everything is real: Redis, the aiosmtpd server, RQ workers (in this process, and the
`flask rq …` commands as subprocesses). Retry back-off is driven by a travelled clock:
RQ's scheduler compares `datetime.now()` with the scores of its ScheduledJobRegistry, so
a worker running in this process sees the retry fall due without anyone sleeping.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import time_machine
from flask import Flask
from redis import Redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, ScheduledJobRegistry

from app.core.db import db
from app.core.redis import redis_connection
from app.courier.outbox import queue_email, send_outbox_email
from app.courier.queue import QUEUE_NAME, RETRY_INTERVALS, get_queue
from app.identity.models import GroupName, User, UserProfile
from app.identity.users import get_group
from app.links.models import ActivationToken, EmailChangeToken, PasswordResetToken
from app.periodic.cleanup import delete_expired_tokens
from app.periodic.scheduler import (
    CLEANUP_JOB_ID,
    SWEEP_INTERVAL,
    SWEEP_JOB_ID,
    Periodic,
    make_scheduler,
)
from app.sessions.models import LoginSession
from tests.support.apps import BIN, ROOT, flask_command, run_worker, twice_at_once
from tests.support.mail import Mailbox, SMTPServer
from tests.support.services import PROCESS_TIMEOUT, free_port


def enqueue_email(app: Flask, to: str) -> str:
    """Enqueue an email the way the use cases do (after a commit); return the job id."""
    queue = get_queue(app)
    before = set(queue.job_ids)
    with app.app_context():
        queue_email(to, "Hello", "plain body", "<p>html body</p>")
        db.session.commit()
    (job_id,) = set(queue.job_ids) - before
    return job_id


def fetch(app: Flask, job_id: str) -> Job:
    return Job.fetch(job_id, connection=redis_connection(app))


# --- tokens -------------------------------------------------------------------------------


def make_tokens(app: Flask, *, expired: int, valid: int) -> None:
    """`expired` + `valid` users, each with one activation, one reset, one email-change and
    one login (its refresh token)."""
    now = datetime.now(UTC)
    with app.app_context():
        group = get_group(GroupName.USER)
        for n in range(expired + valid):
            expires_at = now - timedelta(minutes=1) if n < expired else now + timedelta(hours=1)
            user = User(
                email=f"user{n}@example.com",
                password_hash="not-a-hash",
                group=group,
                profile=UserProfile(),
            )
            db.session.add(user)
            db.session.flush()  # the ids the tokens point at
            db.session.add_all(
                [
                    ActivationToken(
                        user_id=user.id, token_hash=secrets.token_hex(32), expires_at=expires_at
                    ),
                    PasswordResetToken(
                        user_id=user.id, token_hash=secrets.token_hex(32), expires_at=expires_at
                    ),
                    EmailChangeToken(
                        user_id=user.id,
                        token_hash=secrets.token_hex(32),
                        expires_at=expires_at,
                        new_email=f"new{n}@example.com",
                    ),
                    LoginSession(  # a login, which holds its refresh token
                        user_id=user.id,
                        family_id=secrets.token_hex(16),
                        refresh_hash=secrets.token_hex(32),
                        expires_at=expires_at,
                    ),
                ]
            )
        db.session.commit()


def token_counts(app: Flask) -> dict[str, tuple[int, int]]:
    """(expired, valid) rows of each token table."""
    now = datetime.now(UTC)
    counts = {}
    with app.app_context():
        for name, model in (
            ("activation", ActivationToken),
            ("password_reset", PasswordResetToken),
            ("email_change", EmailChangeToken),
            ("sessions", LoginSession),
        ):
            expired = db.session.scalar(
                sa.select(sa.func.count()).select_from(model).where(model.expires_at <= now)
            )
            total = db.session.scalar(sa.select(sa.func.count()).select_from(model))
            counts[name] = (expired, total - expired)
    return counts


# --- the worker ---------------------------------------------------------------------------


def test_worker_command_runs_jobs_in_its_own_process_with_the_app_context(
    redis_app: Flask, database_url: str, redis_url: str, smtp_server: SMTPServer, mailbox: Mailbox
) -> None:
    make_tokens(redis_app, expired=2, valid=1)
    email_job = enqueue_email(redis_app, "forked@example.com")
    # A job that needs the database as well as the config, on the connections the worker
    # keeps from one job to the next.
    cleanup_job = get_queue(redis_app).enqueue(delete_expired_tokens).id
    # No work horse: each job runs in the worker's own process (issue 24).
    pid_jobs = [get_queue(redis_app).enqueue(os.getpid).id for _ in range(2)]

    result = flask_command(
        "rq",
        "worker",
        "--burst",
        database_url=database_url,
        redis_url=redis_url,
        smtp_port=smtp_server.port,
    )

    (worker_pid,) = {int(pid) for pid in re.findall(r"started with PID (\d+)", result.stdout)}
    assert [fetch(redis_app, job).return_value() for job in pid_jobs] == [worker_pid] * 2
    (message,) = mailbox.to("forked@example.com")
    assert message["Subject"] == "Hello"
    assert Mailbox.text(message).strip() == "plain body"
    assert fetch(redis_app, email_job).get_status() == JobStatus.FINISHED
    cleanup = fetch(redis_app, cleanup_job)
    assert cleanup.get_status() == JobStatus.FINISHED
    assert cleanup.return_value() == {
        "activation": 2,
        "password_reset": 2,
        "email_change": 2,
        "sessions": 2,
        "mfa_challenges": 0,
        "webauthn_challenges": 0,
        "oidc_sign_ins": 0,
        "oidc_codes": 0,
        "security_events": 0,
        "email_outbox": 0,
    }
    assert token_counts(redis_app) == {name: (0, 1) for name in token_counts(redis_app)}


def test_worker_command_refuses_to_start_without_redis(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", "rq", "worker", "--burst"],
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'unused.sqlite3'}",
            "REDIS_URL": "",
            "FLASK_SKIP_DOTENV": "1",
        },
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
    )
    assert result.returncode == 2
    assert "REDIS_URL is not set" in result.stderr


def test_email_is_retried_with_back_off_and_delivered_once_smtp_returns(
    redis_app: Flask, smtp_server: SMTPServer, mailbox: Mailbox
) -> None:
    queue = get_queue(redis_app)
    scheduled = ScheduledJobRegistry(queue=queue)
    failed = FailedJobRegistry(queue=queue)
    smtp_server.stop()
    # A stopped clock: however long a worker run takes on a loaded machine, the retry
    # falls due only when the test moves the clock.
    with time_machine.travel(datetime.now(UTC), tick=False) as clock:
        job_id = enqueue_email(redis_app, "patient@example.com")
        before = datetime.now(UTC)
        run_worker(redis_app)
        after = datetime.now(UTC)

        job = fetch(redis_app, job_id)
        assert job.get_status() == JobStatus.SCHEDULED
        assert job.retries_left == len(RETRY_INTERVALS) - 1
        assert job_id in scheduled
        assert job_id not in failed
        # The first retry is due RETRY_INTERVALS[0] after the failed attempt, whenever in
        # that worker run it failed (RQ keeps the due time to the whole second).
        first_retry = timedelta(seconds=RETRY_INTERVALS[0])
        due = scheduled.get_scheduled_time(job_id)
        assert before + first_retry - timedelta(seconds=1) < due <= after + first_retry

        smtp_server.start()
        run_worker(redis_app)  # the retry is not due yet: back-off, not an immediate retry
        assert mailbox.to("patient@example.com") == []
        assert job_id in scheduled

        clock.shift(RETRY_INTERVALS[0] + 1)
        run_worker(redis_app)
        assert len(mailbox.to("patient@example.com")) == 1
        assert fetch(redis_app, job_id).get_status() == JobStatus.FINISHED
        assert job_id not in scheduled
        assert job_id not in failed

        clock.shift(max(RETRY_INTERVALS) + 1)
        run_worker(redis_app)  # nothing left to run: still exactly one email
        assert len(mailbox.to("patient@example.com")) == 1


def test_email_ends_in_the_failed_registry_when_retries_run_out(
    redis_app: Flask, smtp_server: SMTPServer, mailbox: Mailbox
) -> None:
    queue = get_queue(redis_app)
    scheduled = ScheduledJobRegistry(queue=queue)
    failed = FailedJobRegistry(queue=queue)
    smtp_server.stop()
    retries = []  # (the failed attempt's run began, the retry's time, the run ended)
    with time_machine.travel(datetime.now(UTC), tick=True) as clock:
        job_id = enqueue_email(redis_app, "unlucky@example.com")
        for interval in RETRY_INTERVALS:
            began = datetime.now(UTC)
            run_worker(redis_app)  # the attempt fails, and its retry is scheduled
            retries.append((began, scheduled.get_scheduled_time(job_id), datetime.now(UTC)))
            assert job_id not in failed
            clock.shift(interval + 1)
        run_worker(redis_app)  # the last attempt fails, with no retry left

    # The back-off grows as configured: each retry `interval` seconds after its failure,
    # which happened while its run lasted (the registry keeps whole seconds, rounded down).
    for (began, at, ended), interval in zip(retries, RETRY_INTERVALS, strict=True):
        assert began + timedelta(seconds=interval - 1) <= at <= ended + timedelta(seconds=interval)
    job = fetch(redis_app, job_id)
    assert job.get_status() == JobStatus.FAILED
    assert job.retries_left == 0
    assert job_id in failed
    assert job_id not in scheduled
    result = job.latest_result()
    assert result is not None
    assert "ConnectionRefusedError" in (result.exc_string or "")
    assert mailbox.to("unlucky@example.com") == []


class DropsOnQuit(Mailbox):
    """Accepts every message, then drops the connection instead of answering QUIT."""

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        server.transport.close()
        return "221 Bye"  # never reaches the client: the connection is already closed


@pytest.fixture
def flaky_smtp() -> Iterator[SMTPServer]:
    server = SMTPServer(DropsOnQuit(), free_port())
    server.start()
    yield server
    server.stop()


def test_a_quit_that_fails_after_delivery_does_not_send_the_email_twice(
    app_factory: Callable[..., Flask], redis_url: str, flaky_smtp: SMTPServer
) -> None:
    """The email is marked sent as soon as the server took it. The worker QUITs its
    connection only when it ends (before issue 24, after each email: the failed QUIT failed
    the job, and its retry found the email sent); a QUIT that fails changes nothing."""
    app = app_factory(REDIS_URL=redis_url, MAIL_PORT=flaky_smtp.port)
    scheduled = ScheduledJobRegistry(queue=get_queue(app))
    with time_machine.travel(datetime.now(UTC), tick=True) as clock:
        job_id = enqueue_email(app, "once@example.com")
        run_worker(app)
        assert len(flaky_smtp.mailbox.to("once@example.com")) == 1
        assert fetch(app, job_id).get_status() == JobStatus.FINISHED
        assert job_id not in scheduled

        clock.shift(max(RETRY_INTERVALS) + 1)
        run_worker(app)

    assert len(flaky_smtp.mailbox.to("once@example.com")) == 1
    assert fetch(app, job_id).get_status() == JobStatus.FINISHED


# --- the scheduler and the cleanup --------------------------------------------------------


def test_two_schedulers_register_the_cleanup_once(redis_app: Flask) -> None:
    first, second = make_scheduler(redis_app), make_scheduler(redis_app)

    def cleanup(every: int) -> Periodic:
        return Periodic(CLEANUP_JOB_ID, delete_expired_tokens, every, "token cleanup")

    assert first.register(cleanup(3600)) is True
    assert second.register(cleanup(3600)) is False
    (job,) = list(first.get_jobs())
    assert job.id == CLEANUP_JOB_ID
    assert job.meta["interval"] == 3600

    # A new interval replaces the entry; still one.
    assert second.register(cleanup(600)) is True
    (job,) = list(first.get_jobs())
    assert (job.id, job.meta["interval"]) == (CLEANUP_JOB_ID, 600)


def test_scheduler_command_started_twice_queues_one_cleanup_that_the_worker_runs(
    redis_app: Flask, database_url: str, redis_url: str, smtp_server: SMTPServer
) -> None:
    make_tokens(redis_app, expired=3, valid=2)
    services = {
        "database_url": database_url,
        "redis_url": redis_url,
        "smtp_port": smtp_server.port,
        "TOKEN_CLEANUP_INTERVAL": "3600",
    }
    first = flask_command("rq", "scheduler", "--burst", **services)  # type: ignore[arg-type]
    second = flask_command("rq", "scheduler", "--burst", **services)  # type: ignore[arg-type]
    assert "token cleanup scheduled every 3600 s" in first.stdout
    assert "token cleanup already scheduled every 3600 s" in second.stdout
    assert f"email outbox sweep scheduled every {SWEEP_INTERVAL} s" in first.stdout

    scheduler = make_scheduler(redis_app)
    next_runs = {job.id: at for job, at in scheduler.get_jobs(with_times=True)}
    assert set(next_runs) == {CLEANUP_JOB_ID, SWEEP_JOB_ID}
    # The first start ran each at once and scheduled the next run one interval later; the
    # second start moved neither.
    now = datetime.now(UTC).replace(tzinfo=None)
    assert abs((next_runs[CLEANUP_JOB_ID] - now).total_seconds() - 3600) < 60
    assert abs((next_runs[SWEEP_JOB_ID] - now).total_seconds() - SWEEP_INTERVAL) < 30
    assert sorted(get_queue(redis_app).job_ids) == sorted([CLEANUP_JOB_ID, SWEEP_JOB_ID])

    run_worker(redis_app)
    job = fetch(redis_app, CLEANUP_JOB_ID)
    assert job.get_status() == JobStatus.FINISHED
    assert job.return_value() == {
        "activation": 3,
        "password_reset": 3,
        "email_change": 3,
        "sessions": 3,
        "mfa_challenges": 0,
        "webauthn_challenges": 0,
        "oidc_sign_ins": 0,
        "oidc_codes": 0,
        "security_events": 0,
        "email_outbox": 0,
    }
    assert token_counts(redis_app) == {name: (0, 2) for name in token_counts(redis_app)}
    # The job's hash must outlive any worker outage, or rq-scheduler forgets the schedule.
    assert redis_connection(redis_app).ttl(job.key) == -1
    assert CLEANUP_JOB_ID in scheduler


def test_cleanup_deletes_only_expired_tokens_in_batches(redis_app: Flask) -> None:
    make_tokens(redis_app, expired=7, valid=3)
    deletes: list[int] = []

    def count_deletes(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE"):
            deletes.append(statement.split()[2])  # DELETE FROM <table> …

    with redis_app.app_context():
        sa.event.listen(db.engine, "after_cursor_execute", count_deletes)
        try:
            counts = delete_expired_tokens(batch_size=2, pause_seconds=0)
        finally:
            sa.event.remove(db.engine, "after_cursor_execute", count_deletes)

    assert counts == {
        "activation": 7,
        "password_reset": 7,
        "email_change": 7,
        "sessions": 7,
        "mfa_challenges": 0,
        "webauthn_challenges": 0,
        "oidc_sign_ins": 0,
        "oidc_codes": 0,
        "security_events": 0,
        "email_outbox": 0,
    }
    # Seven rows, two a batch: four DELETEs a table (2 + 2 + 2 + 1; a short batch is the last);
    # no two-factor step, passkey challenge, social sign-in, one-time code, security event
    # or outbox email is old enough: one short batch each.
    # (SQLite's cursor reports no row count at this hook, so the sizes are read from `counts`.)
    assert deletes == [
        *["activation_tokens"] * 4,
        *["password_reset_tokens"] * 4,
        *["email_change_tokens"] * 4,
        *["sessions"] * 4,
        "mfa_challenges",
        "webauthn_challenges",
        "oidc_pending_sign_ins",
        "oidc_sign_in_codes",
        "security_events",
        "email_outbox",
    ]
    assert token_counts(redis_app) == {name: (0, 3) for name in token_counts(redis_app)}


def test_cleanup_run_twice_at_once_deletes_each_token_once(redis_app: Flask) -> None:
    make_tokens(redis_app, expired=20, valid=2)
    results, errors = twice_at_once(redis_app, lambda: delete_expired_tokens(batch_size=3))

    assert errors == []
    assert len(results) == 2
    for kind in ("activation", "password_reset", "email_change", "sessions"):
        assert results[0][kind] + results[1][kind] == 20
    assert token_counts(redis_app) == {name: (0, 2) for name in token_counts(redis_app)}


# --- the dashboard ------------------------------------------------------------------------


def get_page(url: str, *, until: float) -> str:
    """Poll a process that is still starting; give up at `until` (time.monotonic())."""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - http only
                assert response.status == 200
                return str(response.read().decode())
        except OSError:
            if time.monotonic() > until:
                raise
            time.sleep(0.2)


def test_make_dashboard_serves_the_rq_dashboard_on_localhost(redis_url: str) -> None:
    queue = Queue(QUEUE_NAME, connection=Redis.from_url(redis_url))
    queue.enqueue(send_outbox_email, 1)
    port = free_port()
    process = subprocess.Popen(
        ["make", "--no-print-directory", "dashboard", f"DASHBOARD_PORT={port}"],
        cwd=ROOT,
        env={**os.environ, "REDIS_URL": redis_url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: make and the dashboard stop together
    )
    try:
        deadline = time.monotonic() + 20
        assert "<title>RQ dashboard</title>" in get_page(
            f"http://127.0.0.1:{port}/", until=deadline
        )
        queues = json.loads(get_page(f"http://127.0.0.1:{port}/0/data/queues.json", until=deadline))
        assert {"name": QUEUE_NAME, "count": 1} in [
            {"name": q["name"], "count": q["count"]} for q in queues["queues"]
        ]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
