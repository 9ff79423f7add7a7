"""Enqueue jobs only once the current transaction has committed.

Use cases call `enqueue_after_commit(func, *args)` before they commit. When the session
commits, the pending jobs are handed to RQ (with `REDIS_URL`) or run in-process (without);
when it rolls back, they are dropped, so no email goes out for work that did not happen.
Emails go through the outbox (app/courier/outbox.py), whose sweep hands a job to RQ again when this
hand-over was lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask, current_app
from redis.exceptions import RedisError
from rq import Queue, Retry
from rq.job import Job as RQJob
from rq.job import JobStatus
from sqlalchemy import event
from sqlalchemy.orm import Session

from app.core.db import db
from app.core.redis import redis_connection

log = logging.getLogger(__name__)

QUEUE_NAME = "accounts"
PENDING_KEY = "pending_jobs"
# Email jobs: six retries, the first after seconds (a server restarting, a connection lost),
# spread over a little more than a quarter of an hour (922 s); after that the outbox sweep
# (app/courier/outbox.py) dispatches the email again on its own schedule. Emails waiting for
# a retry while the server was away go as soon as it answers (app/courier/recovery.py).
RETRY_INTERVALS = [2, 5, 15, 60, 240, 600]
# A job still running after this long is stopped: the worker runs jobs in its own process,
# and RQ's SIGALRM "death penalty" raises JobTimeoutException in it at the timeout (RQ kills
# a forked work horse instead). An SMTP conversation is bounded well within it (MAIL_TIMEOUT
# per step).
JOB_TIMEOUT = 60

Job = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class PermanentJobFailure(Exception):
    """A failure that trying again cannot mend: the worker (worker.py) has RQ record the job
    as failed at once, without its retries."""


def enqueue_after_commit(func: Callable[..., Any], *args: Any, job_id: str | None = None) -> None:
    """`job_id` names the RQ job, so whoever looks for it later (the outbox sweep) finds it."""
    session = db.session()
    if not session.in_transaction():
        session.begin()  # a commit with no transaction fires no hook, and would lose the job
    session.info.setdefault(PENDING_KEY, []).append((func, args, {"job_id": job_id}))


def get_queue(app: Flask | None = None) -> Queue:
    app = app or current_app
    return Queue(QUEUE_NAME, connection=redis_connection(app))


def dispatch(func: Callable[..., Any], *args: Any, job_id: str | None = None) -> None:
    """Run or enqueue one job now. An unreachable queue is logged, not raised: the
    request's work is already committed, and the outbox sweep dispatches the email again
    (a forgot or resend request committed nothing: its answer promised nothing either)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if app.config["REDIS_URL"]:
        try:
            get_queue(app).enqueue(
                func,
                args=args,
                job_id=job_id,
                job_timeout=JOB_TIMEOUT,
                retry=Retry(max=len(RETRY_INTERVALS), interval=RETRY_INTERVALS),
                description=f"{func.__module__}.{func.__qualname__}",
            )
        except RedisError as exc:
            log.warning(
                "job_enqueue_failed",
                extra={"job": func.__name__, "job_id": job_id, "error": str(exc)},
            )
        return
    try:
        # A fresh app context is a fresh session, as in the worker: the session that just
        # committed can emit no more SQL from inside its after-commit hook.
        with app.app_context():
            func(*args)
    except Exception:
        log.exception("job_failed", extra={"job": func.__name__, "job_id": job_id})


def job_timeout(job: RQJob) -> float:
    """The seconds RQ gives `job` before it stops it: its own timeout, or the queue's."""
    return job.timeout if job.timeout and job.timeout > 0 else Queue.DEFAULT_TIMEOUT


def is_running(job: RQJob, now: datetime) -> bool:
    """Started and still inside its timeout. A started job older than that lost its worker
    (killed hard: nothing marked it failed), since RQ stops a job at its timeout."""
    if job.get_status(refresh=False) != JobStatus.STARTED or job.started_at is None:
        return False
    return job.started_at + timedelta(seconds=job_timeout(job) + 30) > now


def any_pending(job_ids: list[str], connection: Any) -> bool:
    """Whether one of these jobs is queued, or running and inside its timeout. They are
    read at once (MULTI/EXEC), so a job handing over to another is seen either way."""
    now = datetime.now(UTC)
    return any(
        job is not None
        and (job.get_status(refresh=False) == JobStatus.QUEUED or is_running(job, now))
        for job in RQJob.fetch_many(job_ids, connection=connection)
    )


class Backoff:
    """Waits that double from `first` to `most` seconds between attempts to reach Redis."""

    def __init__(self, first: float = 1.0, most: float = 30.0) -> None:
        self.first, self.most, self.delay = first, most, first

    def reset(self) -> None:
        self.delay = self.first

    def wait(self) -> None:
        time.sleep(self.delay)
        self.delay = min(self.delay * 2, self.most)


def _after_commit(session: Session) -> None:
    pending: list[Job] = session.info.pop(PENDING_KEY, [])
    for func, args, kwargs in pending:
        dispatch(func, *args, **kwargs)


def _after_rollback(session: Session, previous_transaction: Any) -> None:
    session.info.pop(PENDING_KEY, None)


def install_hooks() -> None:
    """Listen on every SQLAlchemy session; idempotent, as create_app runs many times in tests."""
    if not event.contains(Session, "after_commit", _after_commit):
        event.listen(Session, "after_commit", _after_commit)
        event.listen(Session, "after_soft_rollback", _after_rollback)
