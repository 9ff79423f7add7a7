"""The scheduled clean-up: every package's expired tokens, old security events and finished
outbox emails, in small batches (app/core/batches.py), within the job's time limit.

The scheduler enqueues the job with an explicit timeout (TOKEN_CLEANUP_TIMEOUT). The job
stops STOP_BEFORE_TIMEOUT seconds before it, between two batches, with what it deleted
committed; it logs what is left and enqueues its continuation at once, at the back of the
queue (so the emails queued meanwhile go first), which resumes each unfinished table where
this run stopped. A continuation's id is one of two, taken in turn, and the scheduler queues
no new run while one is queued or running: runs do not pile up. Two runs at once (two
schedulers, `flask cleanup-tokens` during a scheduled run) are safe all the same: each row
is deleted, and counted, once.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from datetime import datetime

from redis.exceptions import RedisError
from rq import Queue, get_current_job
from rq.exceptions import NoSuchJobError
from rq.job import Job

from app.core.batches import Batches, ResumePoint
from app.core.db import utcnow
from app.courier.queue import any_pending, job_timeout
from app.courier.retention import delete_finished_emails
from app.events.service import delete_old_events
from app.links.tokens import delete_expired_link_tokens
from app.mfa import second_step
from app.oidc.flow import delete_expired_sign_ins
from app.passkeys import challenges as passkey_challenges
from app.sessions.refresh_tokens import delete_expired_logins

log = logging.getLogger(__name__)

# A run stops this long before its job's timeout (half the timeout for a shorter one): the
# batch under way when the time is up, the count of what is left and the hand-over to the
# continuation all fit in it, each statement being bounded by DATABASE_STATEMENT_TIMEOUT.
STOP_BEFORE_TIMEOUT = 30
# The continuations' job ids, taken in turn: a job never enqueues its successor under its own
# id (RQ would write the finishing job's state over the queued one).
CONTINUATION_JOB_IDS = (
    "accounts-cleanup-expired-tokens-continued-1",
    "accounts-cleanup-expired-tokens-continued-2",
)


def clean_up(now: datetime, batches: Batches) -> dict[str, int]:
    """Delete what aged out by `now`, table by table; return how many rows of each kind."""
    return {
        **delete_expired_link_tokens(now, batches),
        "sessions": delete_expired_logins(now, batches),
        "mfa_challenges": second_step.delete_expired_challenges(now, batches),
        "webauthn_challenges": passkey_challenges.delete_expired_challenges(now, batches),
        **delete_expired_sign_ins(now, batches),
        "security_events": delete_old_events(now, batches),
        "email_outbox": delete_finished_emails(now, batches),
    }


def delete_expired_tokens(
    batch_size: int | None = None,
    pause_seconds: float | None = None,
    *,
    time_limit: float | None = None,
    resume: ResumePoint | None = None,
) -> dict[str, int]:
    """Delete expired activation, reset, email-change and refresh tokens, the records of
    expired logins, two-factor steps, passkey challenges, social sign-ins under way and their
    one-time codes, security events past their retention and finished outbox emails past
    theirs; return how many of each this run deleted. Batches of `batch_size` rows with a
    pause of `pause_seconds` between them (DELETE_BATCH and DELETE_PAUSE by default).

    Run as an RQ job, it stops before the job's timeout (`time_limit`, when given, instead)
    and hands what is left to a continuation; `resume` is the point a continuation starts
    from. Run otherwise (`flask cleanup-tokens`), it goes on until nothing is left."""
    job = get_current_job()
    if time_limit is None and job is not None:
        time_limit = _time_limit(job)
    batches = Batches(batch_size, pause_seconds, time_limit=time_limit, resume=resume)
    counts = clean_up(utcnow(), batches)
    log.info("expired_tokens_deleted", extra=counts)
    if batches.left:
        resume_point = batches.resume_point()
        log.warning(
            "cleanup_stopped_at_time_limit",
            extra={
                "time_limit": time_limit,
                "left": batches.count_left(),  # per table, counted up to COUNT_LEFT_UP_TO
                "resume": resume_point,
                "continued_by": _continue(job, resume_point) if job is not None else None,
            },
        )
    return counts


def _time_limit(job: Job) -> float:
    timeout = job_timeout(job)
    return float(timeout - min(STOP_BEFORE_TIMEOUT, timeout / 2))


def _continue(job: Job, resume: ResumePoint) -> str | None:
    """Enqueue the run that carries on from `resume`; return its job id, or None when a
    continuation is queued or running already (another run's: it goes on, and the next
    scheduled run starts what this one left) or Redis did not answer."""
    successor = next(i for i in CONTINUATION_JOB_IDS if i != job.id)
    try:
        if any_pending([i for i in CONTINUATION_JOB_IDS if i != job.id], job.connection):
            return None
        # The successor's id was last used two runs ago: that job is long finished.
        with suppress(NoSuchJobError):
            Job.fetch(successor, connection=job.connection).delete()
        Queue(job.origin, connection=job.connection).enqueue(
            delete_expired_tokens,
            kwargs={"resume": dict(resume)},
            job_id=successor,
            job_timeout=job.timeout,
            description="token cleanup, continued",
        )
    except RedisError as exc:
        log.warning("cleanup_not_continued", extra={"error": str(exc)})
        return None
    return successor
