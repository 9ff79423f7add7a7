"""The emailed-link flows: registration and its activation link, a new activation link, the
forgotten password and its reset link (the email change: app/signup/email_change.py).

Each use case checks, writes, and commits once; it raises a domain error instead of building
a response. Emails are recorded in the outbox, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import IntegrityError

from app.core.db import db
from app.core.errors import Conflict, InvalidToken, NextStep
from app.core.log import audit, request_ip
from app.courier.messages import hours, queue_message
from app.courier.queue import dispatch
from app.courier.quota import email_quota_allows
from app.events.models import EventType
from app.events.service import record_event
from app.identity.models import GroupName, User, UserProfile
from app.identity.users import find_user_by_email, get_group
from app.links.models import ActivationToken, PasswordResetToken
from app.links.tokens import INVALID_LINK, drop_email_tokens, issue_email_token, spend_email_token
from app.passwords import hashing
from app.passwords.service import set_password
from app.passwords.strength import check_password_strength

EMAIL_TAKEN = "An account with this email already exists."


def _queue_activation_email(user: User, template: str = "activation") -> None:
    ttl = current_app.config["ACTIVATION_TOKEN_TTL"]
    secret = issue_email_token(ActivationToken, user, ttl)
    link = f"{current_app.config['PUBLIC_BASE_URL']}/auth/activate?token={secret}"
    queue_message(
        user.email,
        template,
        "Activate your cinema account",
        user_id=user.id,
        link=link,
        lifetime=hours(ttl),
    )


def register(email: str, password: str) -> User:
    """A new account; or, for an email whose account was never activated, a fresh start.

    Whoever registered the email first may not own it (pre-hijacking): until the link is
    used, a new registration replaces the pending password and kills every older link.
    """
    check_password_strength(password, email)
    password_hash = hashing.hash_password(password)
    user = pending_account(email)
    registered_before = user is not None
    if user is None:
        user = User(email=email, password_hash=password_hash, group=get_group(GroupName.USER))
        user.profile = UserProfile()
        db.session.add(user)
        try:
            # The unique index decides between two concurrent registrations of one email;
            # the one that loses comes second and starts the winner's account afresh.
            db.session.flush()
        except IntegrityError as exc:
            db.session.rollback()
            user = pending_account(email)
            if user is None:
                raise Conflict(EMAIL_TAKEN) from exc
            registered_before = True
    user.password_hash = password_hash
    # The contract: a registration again kills every older link (a reset link too).
    drop_email_tokens(user.id, PasswordResetToken)
    _queue_activation_email(user)  # replaces any older activation link
    record_event(EventType.REGISTERED, user.id)
    db.session.commit()
    audit("user_registered", user_id=user.id, registered_before=registered_before)
    return user


def pending_account(email: str) -> User | None:
    """The never-activated account of this email, locked until the commit, or None when the
    email is free; 409 when it belongs to an activated or admin-deactivated account."""
    # The row lock queues concurrent registrations of one pending account (PostgreSQL;
    # SQLite runs one writer at a time): each replaces the password and links in turn.
    user = db.session.scalar(sa.select(User).where(User.email == email).with_for_update(of=User))
    if user is not None and (user.is_active or user.deactivated_at is not None):
        raise Conflict(EMAIL_TAKEN)
    return user


def activate(secret: str) -> None:
    """Spend an activation link: the account it was sent for becomes active. A link that
    outlived an admin's deactivation activates nothing."""
    user = spend_email_token(ActivationToken, secret, NextStep.ASK_ACTIVATION_LINK).user
    if user.deactivated_at is not None:
        raise InvalidToken(INVALID_LINK, next_step=NextStep.ASK_ACTIVATION_LINK)
    user.activate()
    record_event(EventType.ACTIVATED, user.id)
    db.session.commit()
    audit("user_activated", user_id=user.id)


def _look_up_later(job: Callable[[str, str | None], None], email: str) -> None:
    """Hand the address to `job`, and do nothing else: the request's work is the same for
    every address, so neither its answer nor its time tells whether an account exists or
    in which state it is (active, never activated, deactivated). The job looks the account
    up and records what its state calls for in the outbox.

    With REDIS_URL the job is an RQ job that carries the address and the requester's (for
    the log line), never a link. If Redis cannot take it, nothing was promised: the answer
    is the same 202, and the person asks again. Without REDIS_URL (the embedded default)
    the job runs in-process before the answer, and the time is not the same."""
    dispatch(job, email, request_ip())


def resend_activation(email: str) -> None:
    """Same answer and same work whatever the email; `send_activation_again` decides."""
    _look_up_later(send_activation_again, email)


def send_activation_again(email: str, ip: str | None) -> None:
    """The job of resend: only a never-activated account gets a new link."""
    user = find_user_by_email(email)
    if user is None or user.is_active or user.deactivated_at is not None:
        return
    if not email_quota_allows("activation", user.email):
        return  # the newest of the links already sent still works
    _queue_activation_email(user, template="activation_resend")
    db.session.commit()
    audit("activation_resent", user_id=user.id, ip=ip)


def forgot_password(email: str) -> None:
    """Same answer and same work whatever the email; `send_reset_link` decides."""
    _look_up_later(send_reset_link, email)


def send_reset_link(email: str, ip: str | None) -> None:
    """The job of forgot. An active account gets a reset link, and so does one never
    activated: the link proves the mailbox, so using it activates the account too. An
    account an admin deactivated gets nothing."""
    user = find_user_by_email(email)
    if user is None or user.deactivated_at is not None:
        return
    if not email_quota_allows("password-reset", user.email):
        return  # the newest of the links already sent still works
    ttl = current_app.config["PASSWORD_RESET_TOKEN_TTL"]
    secret = issue_email_token(PasswordResetToken, user, ttl)
    link = f"{current_app.config['PUBLIC_BASE_URL']}/auth/password/reset?token={secret}"
    queue_message(
        user.email,
        "password_reset",
        "Reset your cinema password",
        user_id=user.id,
        link=link,
        lifetime=hours(ttl),
    )
    db.session.commit()
    audit("password_reset_requested", user_id=user.id, ip=ip)


def reset_password(secret: str, new_password: str) -> None:
    """Spend a reset link for a new password: every login ends, and nobody is signed in. A
    never-activated account is activated, since the link proved the mailbox."""
    user = spend_email_token(PasswordResetToken, secret, NextStep.ASK_RESET_LINK).user
    if user.deactivated_at is not None:  # a link that outlived the deactivation (a race)
        raise InvalidToken(INVALID_LINK, next_step=NextStep.ASK_RESET_LINK)
    set_password(user, new_password, field="new_password")
    activates = not user.is_active
    if activates:
        # The link reached the mailbox: it proves the address as an activation link does.
        user.activate()
        drop_email_tokens(user.id, ActivationToken)
        record_event(EventType.ACTIVATED, user.id)
    record_event(EventType.PASSWORD_RESET, user.id)
    db.session.commit()
    audit("password_reset", user_id=user.id)
    if activates:
        audit("user_activated", user_id=user.id, by="password_reset")
