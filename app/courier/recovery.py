"""Emails that waited out an SMTP outage go as soon as the server answers again.

While the server is away every email job fails and waits in RQ's ScheduledJobRegistry for
its retry (RETRY_INTERVALS, up to ten minutes apart). Once the server answers, waiting for
those retries would leave a backlog for minutes, so the workers put the waiting email jobs
back in the queue at once:

- A send that finds the server away (refused, dropped, silent, 421) marks the outage in
  Redis (`OUTAGE_KEY`, SET NX): the worker that set it starts a probe, a job that asks the
  server for a NOOP every PROBE_EVERY seconds while the mark stands.
- Whichever comes first, an email sent by any worker or a probe that got an answer, ends
  the outage: the one whose DEL removed the mark moves the waiting email jobs to the queue.
  A worker that saw no failure itself looks for the mark at most once a second.
- Each job is taken out of the registry by ZREM before it is queued, and only by the
  worker whose ZREM removed it, so several workers (and RQ's own scheduler) never queue a
  job twice.

The mark expires after OUTAGE_TTL unless a probe renews it, so a probe lost with its worker
leaves the next failure free to start another one. Everything here is best effort: without
it the retries still come, on their schedule.
"""

from __future__ import annotations

import logging
import secrets
import time
from datetime import timedelta

from flask import Flask, current_app
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.job import Job
from rq.registry import ScheduledJobRegistry

from app.core.redis import redis_connection
from app.courier.outbox import JOB_PREFIX
from app.courier.queue import QUEUE_NAME
from app.courier.smtp_link import smtp_link

log = logging.getLogger(__name__)

OUTAGE_KEY = "accounts:smtp-outage"
PROBE_EVERY = 3  # seconds between two looks at a server that is away
OUTAGE_TTL = 10 * PROBE_EVERY
LOOK_EVERY = 1.0  # seconds between two looks at the mark by a worker that saw no failure
REQUEUE_BATCH = 500


class OutageWatch:
    """A worker's part: told of each send's outcome by its SMTP link (DeliveryWatch)."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.saw_failure = False
        self.next_look = 0.0

    def unreachable(self) -> None:
        self.saw_failure = True
        try:
            begin_outage(redis_connection(self.app), self.app)
        except RedisError as exc:
            log.warning("smtp_outage_not_recorded", extra={"error": str(exc)})

    def delivered(self) -> None:
        now = time.monotonic()
        if not self.saw_failure and now < self.next_look:
            return
        self.saw_failure = False
        self.next_look = now + LOOK_EVERY
        try:
            end_outage(redis_connection(self.app), self.app)
        except RedisError as exc:
            log.warning("smtp_outage_requeue_failed", extra={"error": str(exc)})


def begin_outage(conn: Redis, app: Flask) -> None:
    """Mark the outage, and start a probe if this call set the mark."""
    token = secrets.token_hex(8)
    if conn.set(OUTAGE_KEY, token, nx=True, ex=OUTAGE_TTL):
        log.warning("smtp_outage_begins")
        _schedule_probe(app, token)


def end_outage(conn: Redis, app: Flask) -> int:
    """End the outage if it is marked: the caller that removes the mark re-queues the
    waiting emails; returns how many it re-queued."""
    if not conn.delete(OUTAGE_KEY):
        return 0
    moved = requeue_waiting_emails(conn, app)
    log.info("smtp_outage_ends", extra={"requeued": moved})
    return moved


def requeue_waiting_emails(conn: Redis, app: Flask) -> int:
    """Move every email job waiting in the ScheduledJobRegistry for a retry to the queue
    now; each job by the one caller whose ZREM took it out."""
    queue = Queue(QUEUE_NAME, connection=conn)
    registry = ScheduledJobRegistry(queue=queue)
    waiting = [
        job_id.decode()
        for job_id in conn.zrange(registry.key, 0, -1)
        if job_id.startswith(JOB_PREFIX.encode())
    ]
    moved = 0
    for start in range(0, len(waiting), REQUEUE_BATCH):
        batch = waiting[start : start + REQUEUE_BATCH]
        with conn.pipeline(transaction=False) as pipe:
            for job_id in batch:
                pipe.zrem(registry.key, job_id)
            removed = pipe.execute()
        taken = [job_id for job_id, gone in zip(batch, removed, strict=True) if gone]
        jobs = [job for job in Job.fetch_many(taken, connection=conn) if job is not None]
        with conn.pipeline() as pipe:
            for job in jobs:
                queue._enqueue_job(job, pipeline=pipe)  # as RQ's scheduler moves a due job
            pipe.execute()
        moved += len(jobs)
    return moved


def _schedule_probe(app: Flask, token: str) -> None:
    Queue(QUEUE_NAME, connection=redis_connection(app)).enqueue_in(
        timedelta(seconds=PROBE_EVERY),
        probe_smtp,
        token,
        job_timeout=PROBE_EVERY * 10,
        result_ttl=0,
        failure_ttl=3600,
        description="app.courier.recovery.probe_smtp",
    )


def probe_smtp(token: str) -> None:
    """The probe job: while the outage it belongs to is marked, ask the server for a NOOP;
    an answer ends the outage, silence renews the mark and the probe."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    conn = redis_connection(app)
    current = conn.get(OUTAGE_KEY)
    if current is None or current.decode() != token:
        return  # over, or another probe took over after this one's mark expired
    with smtp_link(app) as link:
        answered = link.probe()
    if answered:
        end_outage(conn, app)
        return
    conn.expire(OUTAGE_KEY, OUTAGE_TTL)
    _schedule_probe(app, token)
