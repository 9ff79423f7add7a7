"""Enqueue jobs only once the current transaction has committed.

Use cases call `enqueue_after_commit(func, *args)` before they commit. When the session
commits, the pending jobs are handed to RQ (with `REDIS_URL`) or run in-process (without);
when it rolls back, they are dropped, so no email goes out for work that did not happen.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

from flask import Flask, current_app
from redis import Redis
from rq import Queue, Retry
from sqlalchemy import event
from sqlalchemy.orm import Session

from app.db import db

log = logging.getLogger(__name__)

QUEUE_NAME = "accounts"
PENDING_KEY = "pending_jobs"
# Email jobs: five retries spread over about a quarter of an hour, then RQ's failed-job registry.
RETRY_INTERVALS = [30, 60, 120, 240, 450]

Job = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]


def enqueue_after_commit(func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    session = db.session()
    if not session.in_transaction():
        session.begin()  # a commit with no transaction fires no hook, and would lose the job
    session.info.setdefault(PENDING_KEY, []).append((func, args, kwargs))


def redis_connection(
    app: Flask | None = None, purpose: Literal["client", "worker"] = "client"
) -> Redis:
    """The app's Redis client for `purpose`, made once.

    "client" (requests, the scheduler, enqueueing) gives up after about a second
    (`REDIS_CLIENT_OPTIONS`). "worker" is the RQ worker's own: it waits for jobs with a
    blocking BLPOP of several minutes, which a one-second socket timeout would cut, so it
    leaves the socket timeout for RQ to set above that wait; a separate client, because RQ
    sets it on the connection pool it is given.
    """
    app = app or current_app
    key = f"accounts_redis_{purpose}"
    conn = app.extensions.get(key)
    if conn is None:
        options = dict(app.config["REDIS_CLIENT_OPTIONS"])
        if purpose == "worker":
            options["socket_timeout"] = None
        conn = Redis.from_url(app.config["REDIS_URL"], **options)
        app.extensions[key] = conn
    return conn


def get_queue(app: Flask | None = None) -> Queue:
    app = app or current_app
    return Queue(QUEUE_NAME, connection=redis_connection(app))


def dispatch(func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Run or enqueue one job now. An unreachable queue is logged, not raised: the
    request's work is already committed, and every email can be asked for again."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if app.config["REDIS_URL"]:
        try:
            get_queue(app).enqueue(
                func,
                *args,
                **kwargs,
                retry=Retry(max=len(RETRY_INTERVALS), interval=RETRY_INTERVALS),
                # RQ's default description quotes the arguments, and the worker logs it:
                # an email body holds a link secret, so name the job without them.
                description=f"{func.__module__}.{func.__qualname__}",
            )
        except Exception:
            log.exception("job_enqueue_failed", extra={"job": func.__name__})
        return
    try:
        func(*args, **kwargs)
    except Exception:
        log.exception("job_failed", extra={"job": func.__name__})


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
