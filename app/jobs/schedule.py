"""The periodic cleanup, registered with rq-scheduler under a fixed id."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Flask
from rq_scheduler import Scheduler

from app.jobs.cleanup import delete_expired_tokens
from app.jobs.queue import QUEUE_NAME, redis_connection

CLEANUP_JOB_ID = "accounts:cleanup-expired-tokens"


def make_scheduler(app: Flask, interval: int = 60) -> Scheduler:
    return Scheduler(queue_name=QUEUE_NAME, connection=redis_connection(app), interval=interval)


def register_cleanup(scheduler: Scheduler, every_seconds: int) -> None:
    """Schedule the cleanup once: a fixed job id means a second scheduler, or a restart,
    replaces the entry instead of adding another."""
    if CLEANUP_JOB_ID in scheduler:
        scheduler.cancel(CLEANUP_JOB_ID)
    scheduler.schedule(
        scheduled_time=datetime.now(UTC),
        func=delete_expired_tokens,
        interval=every_seconds,
        repeat=None,
        id=CLEANUP_JOB_ID,
        result_ttl=every_seconds * 2,
    )
