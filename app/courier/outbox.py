"""The email outbox: an email is recorded in the transaction of the change that causes it.

`queue_email` writes an `email_outbox` row (the message encrypted) before the use case
commits, and after the commit hands the row's id to RQ (`send_outbox_email`), or sends it
in-process without REDIS_URL. RQ jobs carry only that id, so no link secret sits in Redis
or in the dashboard. The job claims the row (a row lock held until it ends), sends the
message with the row's Message-ID, marks the row sent and drops the payload, in one
transaction: two jobs for the same row, on any workers, never both send it.

A permanent refusal by the mail server (a 5xx answer, `EmailRefused`) ends the email at
once: the row is marked failed with the server's answer, its payload dropped, and RQ records
the job as failed without retrying it.

If the hand-over is lost (Redis down or restarted empty at commit, a worker killed in the
middle of a send), `sweep_outbox` - run every minute by the scheduler - dispatches again
every row not sent within SWEEP_AFTER seconds whose job is no longer alive. Delivery is
therefore at least once: a send cut off after the server took the message but before its
answer came (or before the row was marked) goes again, as the same message (same
Message-ID), which mail clients show once.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from email.utils import make_msgid, parseaddr
from typing import Any

import sqlalchemy as sa
from cryptography.fernet import Fernet
from flask import current_app
from redis.exceptions import RedisError
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from app.core.crypto import fernet_for
from app.core.db import UTCDateTime, db, utcnow
from app.core.redis import redis_connection
from app.courier.delivery import EmailRefused, OutboxMessage, deliver
from app.courier.models import EmailOutbox
from app.courier.queue import enqueue_after_commit, is_running

log = logging.getLogger(__name__)

ENCRYPTION_PURPOSE = "email-outbox"
# A dispatched email not sent this long after its dispatch is dispatched again (if its job
# is no longer queued, waiting for a retry or running); later sweeps wait twice as long
# each time, up to SWEEP_AFTER_MAX, so an SMTP server down for hours is not hammered.
SWEEP_AFTER = 120
SWEEP_AFTER_MAX = 3600
SWEEP_BATCH = 500
# Links expire after a day by default: an email still not sent by then is given up (its
# payload dropped and the fact logged), and outbox rows are deleted a week after they end
# (by the scheduled clean-up: app/courier/retention.py).
GIVE_UP_AFTER = timedelta(days=1)
KEEP_FINISHED = timedelta(days=7)
# Jobs waiting in Redis for their turn: the sweep leaves them alone.
WAITING = {JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED}


def _fernet() -> Fernet:
    return fernet_for(ENCRYPTION_PURPOSE)


JOB_PREFIX = "email-outbox-"


def job_id(outbox_id: int) -> str:
    return f"{JOB_PREFIX}{outbox_id}"


def queue_email(
    to: str, subject: str, text_body: str, html_body: str, user_id: int | None = None
) -> None:
    """Record the email in the current transaction; it is dispatched once that commits.
    `user_id` names the account it is for, whose deletion takes the email if still unsent."""
    sender_domain = parseaddr(current_app.config["MAIL_DEFAULT_SENDER"])[1].rpartition("@")[2]
    payload = json.dumps({"to": to, "subject": subject, "text": text_body, "html": html_body})
    row = EmailOutbox(
        user_id=user_id,
        message_id=make_msgid(domain=sender_domain or None),
        payload=_fernet().encrypt(payload.encode()).decode(),
        next_attempt_at=utcnow() + timedelta(seconds=SWEEP_AFTER),
    )
    db.session.add(row)
    db.session.flush()  # the id the job will carry
    enqueue_after_commit(send_outbox_email, row.id, job_id=job_id(row.id))


# The job's statements, built once (Core, on the table: no ORM object is loaded or tracked).
_outbox = EmailOutbox.__table__
_this_row = _outbox.c.id == sa.bindparam("outbox_id")
# The row, if still to be sent, locked until the job's transaction ends. PostgreSQL waits
# for a lock another job holds on it, then reads the row anew: sent meanwhile, it is no
# longer found; left unsent (that send failed), this job sends it.
_CLAIM = (
    sa.select(_outbox.c.message_id, _outbox.c.payload)
    .where(_this_row, _outbox.c.sent_at.is_(None), _outbox.c.payload.is_not(None))
    .with_for_update()
)
# SQLite locks no rows (FOR UPDATE is not rendered): a write first takes its database-wide
# write lock, held to the end of the job's transaction, which SQLite's other writers wait
# for (its busy timeout, 5 s). SQLite is for development: production refuses it.
_SQLITE_WRITE_LOCK = sa.update(_outbox).where(_this_row).values(attempts=_outbox.c.attempts)
_MARK_SENT = (
    sa.update(_outbox)
    .where(_this_row)
    .values(sent_at=sa.bindparam("at", type_=UTCDateTime), payload=None)
)
_MARK_FAILED = (
    sa.update(_outbox)
    .where(_this_row)
    .values(
        failed_at=sa.bindparam("at", type_=UTCDateTime),
        failure=sa.bindparam("reason"),
        payload=None,
    )
)


def send_outbox_email(outbox_id: int) -> None:
    """The job: send the recorded email unless it was sent already (a second dispatch).

    The row is claimed for the send (`_CLAIM`) and marked sent in the same transaction, so
    two jobs for one email (a sweep's dispatch beside a late original, a job queued twice)
    never both send it, whichever workers run them. On a connection of its own, with Core
    statements: the ORM session would only add its bookkeeping to three statements."""
    params: dict[str, Any] = {"outbox_id": outbox_id}
    with db.engine.connect() as connection:  # rolled back when closed, unless committed
        if connection.dialect.name == "sqlite":
            connection.execute(_SQLITE_WRITE_LOCK, params)
        claimed = connection.execute(_CLAIM, params).first()
        if claimed is None:
            log.info("email_already_sent", extra={"outbox_id": outbox_id})
            return
        message_id, payload = claimed
        fields = json.loads(_fernet().decrypt(payload.encode()))
        message = OutboxMessage(
            subject=fields["subject"],
            recipients=[fields["to"]],
            body=fields["text"],
            html=fields["html"],
        )
        message.msgId = message_id

        def mark_sent() -> None:
            connection.execute(_MARK_SENT, {**params, "at": utcnow()})
            connection.commit()

        try:
            deliver(message, on_accepted=mark_sent)
        except EmailRefused as refusal:
            # Out of the sweep's reach (no payload) and kept, saying why, for the operator.
            failed = {**params, "at": utcnow(), "reason": refusal.reason}
            connection.execute(_MARK_FAILED, failed)
            connection.commit()
            log.warning("email_refused", extra={"outbox_id": outbox_id, "reason": refusal.reason})
            raise


def unsent_emails(failed_only: bool = False) -> list[EmailOutbox]:
    """The emails not sent, oldest first: waiting to be sent (or sent again), refused for
    good (failed) or given up; with `failed_only`, the refused ones."""
    statement = sa.select(EmailOutbox).where(EmailOutbox.sent_at.is_(None))
    if failed_only:
        statement = statement.where(EmailOutbox.failed_at.is_not(None))
    return list(db.session.scalars(statement.order_by(EmailOutbox.id)))


def _sweep_one(row: EmailOutbox, now: datetime) -> bool:
    """Give the row up, or dispatch it again if its job is gone; whether it was dispatched.
    Either way the sweep looks at it next after a wait that doubles with each dispatch."""
    if row.created_at < now - GIVE_UP_AFTER:
        row.payload = None
        log.warning("email_given_up", extra={"outbox_id": row.id})
        return False
    dispatched = not _job_alive(row.id, now)
    if dispatched:
        row.attempts += 1
        enqueue_after_commit(send_outbox_email, row.id, job_id=job_id(row.id))
    wait = min(SWEEP_AFTER * 2**row.attempts, SWEEP_AFTER_MAX)
    row.next_attempt_at = now + timedelta(seconds=wait)
    return dispatched


def _job_alive(outbox_id: int, now: datetime) -> bool:
    """Whether RQ still holds a job for the row that will run or is running. A dead one
    (failed, or started by a worker that was killed) is deleted, so the id can be reused."""
    if not current_app.config["REDIS_URL"]:
        return False
    try:
        job = Job.fetch(job_id(outbox_id), connection=redis_connection())
    except NoSuchJobError:
        return False  # never reached Redis, or Redis restarted empty
    if job.get_status(refresh=False) in WAITING or is_running(job, now):
        return True
    job.delete()
    return False


def sweep_outbox() -> int:
    """Dispatch again every email not sent in time whose job is gone; return how many.

    Rows are taken with SKIP LOCKED (on PostgreSQL), so two sweeps at once share the work.
    With Redis unreachable nothing can be dispatched: the rows stay due for the next sweep.
    """
    now = utcnow()
    due = db.session.scalars(
        sa.select(EmailOutbox)
        .where(
            EmailOutbox.sent_at.is_(None),
            EmailOutbox.payload.is_not(None),
            EmailOutbox.next_attempt_at <= now,
        )
        .order_by(EmailOutbox.id)
        .limit(SWEEP_BATCH)
        .with_for_update(skip_locked=True)
    ).all()
    try:
        dispatched = sum(_sweep_one(row, now) for row in due)
    except RedisError:
        db.session.rollback()
        log.warning("outbox_sweep_redis_unavailable")
        return 0
    db.session.commit()
    if dispatched:
        log.info("outbox_swept", extra={"dispatched": dispatched})
    return dispatched
