"""The periodic cleanup, registered with rq-scheduler under a fixed id."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Flask
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq_scheduler import Scheduler

from app.jobs.cleanup import delete_expired_tokens
from app.jobs.queue import QUEUE_NAME, redis_connection

# RQ 2 accepts only letters, digits, "_" and "-" in a job id.
CLEANUP_JOB_ID = "accounts-cleanup-expired-tokens"


def make_scheduler(app: Flask, interval: int = 60) -> Scheduler:
    return Scheduler(queue_name=QUEUE_NAME, connection=redis_connection(app), interval=interval)


def _registered_interval(scheduler: Scheduler) -> int | None:
    if CLEANUP_JOB_ID not in scheduler:
        return None
    try:
        job = Job.fetch(CLEANUP_JOB_ID, connection=scheduler.connection)
    except NoSuchJobError:
        return None
    interval = job.meta.get("interval")
    return int(interval) if interval is not None else None


def register_cleanup(scheduler: Scheduler, every_seconds: int) -> bool:
    """Schedule the cleanup once; return whether this call (re)registered it.

    The fixed job id means two schedulers starting at the same moment both write the same
    entry, never two. An entry with the same interval is left alone, so a restart or a
    second scheduler neither moves the next run nor pushes a due run onto the queue again.
    """
    if _registered_interval(scheduler) == every_seconds:
        return False
    scheduler.cancel(CLEANUP_JOB_ID)
    scheduler.schedule(
        scheduled_time=datetime.now(UTC),
        func=delete_expired_tokens,
        interval=every_seconds,
        repeat=None,
        id=CLEANUP_JOB_ID,
        # Keep the job's hash for good: rq-scheduler drops a schedule entry whose job hash
        # has expired, which would silently end the cleanup after a long worker outage.
        # The fixed id means there is only ever this one hash.
        result_ttl=-1,
    )
    return True
