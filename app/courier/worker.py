"""The RQ worker: runs every job in its own process, each inside a fresh application context.

No work horse is forked per job (RQ's SimpleWorker): the worker keeps its database
connections, SQLAlchemy's compiled statements, the derived keys and one SMTP connection
(app/courier/delivery.py) from one job to the next. A fork per job cost an email some 55 ms
of CPU and a new connection to each of them. A job is still stopped at its timeout
(JOB_TIMEOUT): RQ's death penalty is a SIGALRM in the worker's main thread, which raises
JobTimeoutException inside the job.

A fresh context per job, rather than the one the `flask` command pushed, means Flask's
teardown removes the SQLAlchemy session after each job: one job's identity map or
unfinished transaction (and its row locks) never leaks into the next.

More throughput: run more worker processes (`flask rq worker` N times, or `docker compose up
--scale worker=N`); each holds its own SMTP connection, and an email is sent by one of them
only (app/courier/outbox.py claims its row).

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
from rq import Queue, SimpleWorker
from rq.job import Job

from app.core.redis import redis_connection
from app.courier.queue import Backoff, PermanentJobFailure, get_queue
from app.courier.recovery import OutageWatch
from app.courier.smtp_link import hold_smtp_link

log = logging.getLogger(__name__)


class AppSimpleWorker(SimpleWorker):
    """Runs each job in this process, inside a fresh app context."""

    stop_requested = False
    # RQ's line per job saying how long its result is kept (always 500 s here): with the
    # job's start and end lines, a tenth of an email's CPU went on logging.
    log_result_lifespan = False

    def __init__(self, *args: Any, app: Flask, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app = app

    def handle_warm_shutdown_request(self) -> None:
        self.stop_requested = True  # a stop signal, as opposed to a quit on an error
        super().handle_warm_shutdown_request()

    def perform_job(self, job: Job, queue: Queue) -> bool:
        with self.app.app_context():
            return super().perform_job(job, queue)


def _no_retry_after_permanent_failure(
    job: Job, exc_type: type[BaseException], exc: BaseException, traceback: TracebackType
) -> bool:
    """RQ's exception handler: runs before RQ decides on a retry, which it then skips."""
    if isinstance(exc, PermanentJobFailure):
        job.retries_left = 0
    return True  # and on to RQ's own handling: the job goes to the failed-job registry


def make_worker(app: Flask) -> AppSimpleWorker:
    return AppSimpleWorker(
        [get_queue(app)],
        connection=redis_connection(app, "worker"),
        app=app,
        exception_handlers=[_no_retry_after_permanent_failure],
    )


def run_worker(app: Flask, *, burst: bool = False) -> bool:
    """Work the service's queue until a stop signal (or, in burst mode, an empty queue).

    with_scheduler=True matters: RQ schedules a retry with an interval in its
    ScheduledJobRegistry, and only a worker running its scheduler moves it back to the
    queue when it is due (in burst mode: once, at start). The SMTP connection is held
    across restarts and closed when the worker ends."""
    with hold_smtp_link(app, OutageWatch(app)):
        return _work(app, burst)


def _work(app: Flask, burst: bool) -> bool:
    backoff = Backoff()
    while True:
        started = time.monotonic()
        try:
            worker = make_worker(app)  # names itself to Redis already
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
