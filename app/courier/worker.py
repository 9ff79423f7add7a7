"""RQ workers that run every job inside a fresh application context.

A fresh context per job, rather than the one the `flask` command pushed, means Flask's
teardown removes the SQLAlchemy session after each job: one job's identity map or
unfinished transaction never leaks into the next.

RQ's worker quits on some Redis errors (a timeout, a refused connection outside its dequeue
loop); `run_worker` starts a new one after a back-off, so no supervisor is needed.
"""

from __future__ import annotations

import logging
import signal
import time
from types import TracebackType
from typing import Any

from flask import Flask
from redis.exceptions import RedisError
from rq import Queue, SimpleWorker, Worker
from rq.job import Job

from app.core.db import db
from app.core.redis import redis_connection
from app.courier.queue import Backoff, PermanentJobFailure, get_queue

log = logging.getLogger(__name__)


class _AppContextWorker:
    app: Flask
    stop_requested = False

    def handle_warm_shutdown_request(self) -> None:
        self.stop_requested = True  # a stop signal, as opposed to a quit on an error
        super().handle_warm_shutdown_request()  # type: ignore[misc]

    def perform_job(self, job: Job, queue: Queue) -> bool:
        with self.app.app_context():
            return super().perform_job(job, queue)  # type: ignore[misc]


class AppWorker(_AppContextWorker, Worker):
    """The production worker: forks a work horse per job, as RQ does by default."""

    def __init__(self, *args: Any, app: Flask, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app = app

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        # The forked horse inherits the parent's connection pool; two processes talking over
        # one PostgreSQL socket corrupt each other's protocol state. close=False leaves the
        # parent's connections open for the parent and gives the horse its own.
        with self.app.app_context():
            db.engine.dispose(close=False)
        super().main_work_horse(job, queue)


class AppSimpleWorker(_AppContextWorker, SimpleWorker):
    """Runs jobs in its own process (tests, debugging); same app context per job."""

    def __init__(self, *args: Any, app: Flask, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app = app


def _no_retry_after_permanent_failure(
    job: Job, exc_type: type[BaseException], exc: BaseException, traceback: TracebackType
) -> bool:
    """RQ's exception handler: runs before RQ decides on a retry, which it then skips."""
    if isinstance(exc, PermanentJobFailure):
        job.retries_left = 0
    return True  # and on to RQ's own handling: the job goes to the failed-job registry


def make_worker(app: Flask, *, fork: bool = True) -> AppWorker | AppSimpleWorker:
    worker_class = AppWorker if fork else AppSimpleWorker
    return worker_class(
        [get_queue(app)],
        connection=redis_connection(app, "worker"),
        app=app,
        exception_handlers=[_no_retry_after_permanent_failure],
    )


def run_worker(app: Flask, *, burst: bool = False, fork: bool = True) -> bool:
    """Work the service's queue until a stop signal (or, in burst mode, an empty queue).

    with_scheduler=True matters: RQ schedules a retry with an interval in its
    ScheduledJobRegistry, and only a worker running its scheduler moves it back to the
    queue when it is due (in burst mode: once, at start)."""
    backoff = Backoff()
    while True:
        started = time.monotonic()
        try:
            worker = make_worker(app, fork=fork)  # names itself to Redis already
            worked = worker.work(burst=burst, with_scheduler=True)
            if burst or worker.stop_requested:
                return worked
            log.warning("worker_quit_restarting", extra={"retry_in": backoff.delay})
        except RedisError as exc:  # at its birth or death, with Redis away
            if burst:
                raise
            log.warning(
                "worker_redis_unavailable", extra={"error": str(exc), "retry_in": backoff.delay}
            )
        if time.monotonic() - started > backoff.most:
            backoff.reset()  # it ran a good while: this is a new outage, not the same one
        # A stop signal while waiting ends the process at once: the handlers RQ installed
        # would ask Redis, which is the thing that is away.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        backoff.wait()
