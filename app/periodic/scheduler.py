"""The periodic jobs (token cleanup, outbox sweep) and the rq-scheduler that keeps them.

rq-scheduler stays the process and its Redis entries stay the schedule (what the dashboard
and `Scheduler.get_jobs()` show), but its run loop and its repeat rule are replaced:

- every pass registers any periodic job that is missing, so a Redis that restarted empty
  gets its schedule back at the next poll;
- a Redis error is waited out with back-off instead of ending the process;
- the poll is as frequent as the shortest interval needs (rq-scheduler polls every 60 s);
- the next run is the scheduled time plus the interval, not "now" plus the interval, so the
  cadence does not drift by the poll's lateness; runs missed while nobody polled are
  skipped, not caught up;
- a slot is claimed in Redis (SET NX keyed by the job and the slot) before the job is
  queued, so however many schedulers run, each slot runs once;
- a job still queued or running from an earlier slot (or a job that carries on its work, as
  the cleanup's continuation does) is not queued again, so no copies pile up while the
  worker is away;
- a job that declares its timeout is registered with it (the cleanup keeps within its
  own), and registered again when the setting changes.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from flask import Flask
from redis.exceptions import RedisError
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq_scheduler import Scheduler

from app.core.redis import redis_connection
from app.courier.outbox import sweep_outbox
from app.courier.queue import QUEUE_NAME, Backoff, any_pending
from app.periodic.cleanup import CONTINUATION_JOB_IDS, delete_expired_tokens

log = logging.getLogger(__name__)

# RQ 2 accepts only letters, digits, "_" and "-" in a job id.
CLEANUP_JOB_ID = "accounts-cleanup-expired-tokens"
SWEEP_JOB_ID = "accounts-sweep-email-outbox"
SWEEP_INTERVAL = 60
# The longest poll, and how long the scheduler sleeps at most between registration checks.
MAX_POLL = 15.0
SLOT_KEY = "accounts:periodic-slot:{job_id}:{slot}"
REGISTER_LOCK = "accounts:periodic-register:{job_id}"


@dataclass(frozen=True)
class Periodic:
    job_id: str
    func: Callable[[], Any]
    every: int  # seconds
    what: str  # for people: "token cleanup"
    # Seconds RQ gives a run before it kills it; None: RQ's default (180 s).
    timeout: int | None = None
    # The ids of the jobs that carry on a run's work: while one is queued or running, the
    # next slot is skipped as it is while the job itself is.
    companions: tuple[str, ...] = ()


def periodic_jobs(app: Flask) -> list[Periodic]:
    return [
        Periodic(
            CLEANUP_JOB_ID,
            delete_expired_tokens,
            app.config["TOKEN_CLEANUP_INTERVAL"],
            "token cleanup",
            timeout=app.config["TOKEN_CLEANUP_TIMEOUT"],
            companions=CONTINUATION_JOB_IDS,
        ),
        Periodic(SWEEP_JOB_ID, sweep_outbox, SWEEP_INTERVAL, "email outbox sweep"),
    ]


class PeriodicScheduler(Scheduler):  # type: ignore[misc]
    """rq-scheduler that keeps `periodic` registered, on time and run once per slot.
    `run()` registers them; `enqueue_job` is rq-scheduler's hook for a due job."""

    def __init__(self, periodic: list[Periodic], **kwargs: Any) -> None:
        # Polling at half the shortest interval keeps every run within half an interval of
        # its slot (and within MAX_POLL of it for long intervals).
        poll = max(1.0, min(MAX_POLL, min(p.every for p in periodic) / 2))
        super().__init__(interval=poll, **kwargs)
        self.periodic = periodic
        self.by_id = {p.job_id: p for p in periodic}

    def register(self, periodic: Periodic) -> bool:
        """Schedule `periodic` unless it is scheduled as it is now (its function, its
        interval and its timeout); return whether this call (re)registered it. The fixed job
        id means two schedulers registering at once write the same entry, never two; a
        registered entry is left alone, so a restart or a second scheduler neither moves the
        next run nor runs it again. An entry an older release wrote, naming a function that
        has moved since, is replaced: a worker could no longer import it."""
        if self._registered_as(periodic):
            return False
        # Schedulers starting together (or finding Redis empty together) take turns, and
        # the later one finds the entry made: two entries would start two cadences.
        with self.connection.lock(REGISTER_LOCK.format(job_id=periodic.job_id), timeout=10):
            if self._registered_as(periodic):
                return False
            self.cancel(periodic.job_id)
            self.schedule(
                scheduled_time=datetime.now(UTC),
                func=periodic.func,
                interval=periodic.every,
                repeat=None,
                id=periodic.job_id,
                timeout=periodic.timeout,
                # Keep the job's hash for good: rq-scheduler drops a schedule entry whose
                # job hash has expired. The fixed id means there is only ever this one hash.
                result_ttl=-1,
            )
        return True

    def _registered_as(self, periodic: Periodic) -> bool:
        if periodic.job_id not in self:
            return False
        try:
            job = Job.fetch(periodic.job_id, connection=self.connection)
        except NoSuchJobError:
            return False
        interval = job.meta.get("interval")
        function = f"{periodic.func.__module__}.{periodic.func.__qualname__}"
        return (
            interval is not None
            and int(interval) == periodic.every
            and job.func_name == function
            and (periodic.timeout is None or job.timeout == periodic.timeout)
        )

    def register_all(self) -> list[Periodic]:
        """Register whatever is missing; return what was."""
        return [periodic for periodic in self.periodic if self.register(periodic)]

    def enqueue_job(self, job: Job) -> None:
        interval = int(job.meta["interval"])  # every job of this scheduler is periodic
        score = self.connection.zscore(self.scheduled_jobs_key, job.id)
        now = time.time()
        if score is None or score > now:  # another scheduler moved it since this one read it
            return
        slot = int(score)
        next_slot = slot + interval * (math.floor((now - slot) / interval) + 1)
        claimed = self.connection.set(
            SLOT_KEY.format(job_id=job.id, slot=slot), 1, nx=True, ex=int(interval) + 60
        )
        if claimed:
            if self._still_pending(job):
                log.info("periodic_job_still_pending", extra={"job_id": job.id})
            else:
                self.get_queue_for_job(job).enqueue_job(job)
        # gt: never move the schedule back if another scheduler moved it further already.
        self.connection.zadd(self.scheduled_jobs_key, {job.id: next_slot}, gt=True)

    def _still_pending(self, job: Job) -> bool:
        """Whether the job, or one that carries on its work, is queued or running."""
        periodic = self.by_id.get(job.id)
        companions = list(periodic.companions) if periodic else []
        return any_pending([job.id, *companions], self.connection)

    def _install_signal_handlers(self) -> None:
        # rq-scheduler's handlers write to Redis, which may be the thing that is away; the
        # `finally` of run() does that, as far as Redis answers.
        def stop(signum: int, frame: FrameType | None) -> None:
            raise SystemExit()

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)

    def run(self, burst: bool = False) -> None:
        self._install_signal_handlers()
        backoff = Backoff()
        born = False
        try:
            while True:
                try:
                    if not born:
                        self.register_birth()
                        born = True
                    self.heartbeat()
                    for periodic in self.register_all():
                        log.info(
                            "periodic_job_registered",
                            extra={"job_id": periodic.job_id, "every": periodic.every},
                        )
                    if self.acquire_lock():
                        try:
                            self.enqueue_jobs()
                        finally:
                            self.remove_lock()
                except RedisError as exc:
                    if burst:
                        raise
                    log.warning(
                        "scheduler_redis_unavailable",
                        extra={"error": str(exc), "retry_in": backoff.delay},
                    )
                    backoff.wait()
                    continue
                backoff.reset()
                if burst:
                    return
                time.sleep(self._interval)
        finally:
            try:
                self.remove_lock()
                self.register_death()
            except RedisError:
                pass


def make_scheduler(app: Flask) -> PeriodicScheduler:
    return PeriodicScheduler(
        periodic_jobs(app), queue_name=QUEUE_NAME, connection=redis_connection(app)
    )
