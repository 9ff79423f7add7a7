"""The email change: a confirmation link to the new address, which, once used, makes it the
account's email.

Each use case checks, writes, and commits once; it raises a domain error instead of building
a response. Emails are recorded in the outbox, in the same transaction.
"""

from __future__ import annotations

from flask import current_app
from sqlalchemy.exc import IntegrityError

from app.core.db import db
from app.core.errors import Conflict, InvalidInput, InvalidToken, NextStep
from app.core.log import audit
from app.courier.messages import hours, queue_message
from app.courier.quota import take_email_quota
from app.events.models import EventType
from app.events.service import record_event
from app.identity.models import User
from app.links.models import EmailChangeToken, PasswordResetToken
from app.links.tokens import INVALID_LINK, drop_email_tokens, issue_email_token, spend_email_token
from app.passwords.service import check_current_password
from app.sessions.endings import end_all_logins
from app.signup.service import EMAIL_TAKEN, pending_account


def request_email_change(user: User, new_email: str, password: str, login: str | None) -> None:
    """Start an email change for a signed-in user who proves the password: a confirmation
    link to the new address, a notice without a link to the current one. A newer request
    kills the older link; `login` (the asking login's family) outlives the change.

    The password is checked before the address is looked at (WrongPassword), so a stolen
    access token alone learns nothing of which addresses have accounts; only then is the
    current address an InvalidInput, and an activated or admin-deactivated account's a
    Conflict. A never-activated registration holds its address only until a link proves the
    mailbox (see `confirm_email_change`). At most 3 such emails an hour per account."""
    check_current_password(user, password, refusal="email_change_failed")
    if new_email == user.email:
        raise InvalidInput(
            "The new email address is the account's current one.",
            errors={"new_email": ["This is already your email address."]},
        )
    pending_account(new_email)
    take_email_quota("email-change", user.email)
    ttl = current_app.config["ACTIVATION_TOKEN_TTL"]
    secret = issue_email_token(EmailChangeToken, user, ttl, new_email=new_email, family_id=login)
    link = f"{current_app.config['PUBLIC_BASE_URL']}/auth/email/confirm?token={secret}"
    subject = "Confirm your new cinema email address"
    queue_message(
        new_email, "email_change", subject, user_id=user.id, link=link, lifetime=hours(ttl)
    )
    subject = "Your cinema email address is about to change"
    queue_message(user.email, "email_change_notice", subject, user_id=user.id, new_email=new_email)
    record_event(EventType.EMAIL_CHANGE_REQUESTED, user.id)
    db.session.commit()
    audit("email_change_requested", user_id=user.id)


def confirm_email_change(secret: str) -> User:
    """Spend an email-change link: the address it was sent to becomes the account's email,
    every other login ends, and no reset link sent to the old address works any more.

    The link proved the mailbox, so a never-activated registration of the address is
    dropped (as a second registration would replace it); an address an activated account
    took since the request is a Conflict, decided by the unique index, and changes nothing:
    the link keeps working until it expires."""
    token = spend_email_token(EmailChangeToken, secret, NextStep.ASK_EMAIL_CHANGE_LINK)
    user = token.user
    if not user.is_active:  # an admin deactivated the account since the request
        raise InvalidToken(INVALID_LINK, next_step=NextStep.ASK_EMAIL_CHANGE_LINK)
    pending = pending_account(token.new_email)
    if pending is not None:
        db.session.delete(pending)
        db.session.flush()  # gone before the address is taken, or the unique index refuses
    user.email = token.new_email
    try:
        db.session.flush()
    except IntegrityError as exc:  # registered since the check above
        db.session.rollback()
        raise Conflict(EMAIL_TAKEN) from exc
    end_all_logins(user.id, keep_family=token.family_id)
    drop_email_tokens(user.id, PasswordResetToken)
    record_event(EventType.EMAIL_CHANGED, user.id)
    db.session.commit()
    audit("email_changed", user_id=user.id, replaced_pending=pending is not None)
    return user
