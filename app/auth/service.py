"""The use cases of the sign-up and sign-in journey.

Each function checks, writes, and commits once; it raises a domain error instead of
building a response. Emails are recorded in the outbox, in the same transaction.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import current_app, render_template
from flask_jwt_extended import decode_token
from flask_jwt_extended.exceptions import JWTExtendedException
from jwt import InvalidTokenError
from sqlalchemy.exc import IntegrityError

from app.auth import passwords, tokens
from app.auth.bearer import login_of
from app.db import db
from app.errors import (
    Conflict,
    InvalidInput,
    InvalidToken,
    NotAuthenticated,
    PermissionDenied,
    WrongPassword,
)
from app.jobs.outbox import queue_email
from app.limits import may_email
from app.log import audit
from app.models import (
    ActivationToken,
    GroupName,
    PasswordResetToken,
    RefreshToken,
    User,
    UserProfile,
    utcnow,
)
from app.users import active_user, find_user_by_email, get_group

RENEW_ACTIVATION = "Ask for a new activation link with POST /auth/activate/resend."
RENEW_RESET = "Ask for a new reset link with POST /auth/password/forgot."
EMAIL_TAKEN = "An account with this email already exists."


def _queue_email(to: str, template: str, subject: str, **context: Any) -> None:
    context.setdefault("base_url", current_app.config["PUBLIC_BASE_URL"])
    text = render_template(f"email/{template}.txt", **context)
    html = render_template(f"email/{template}.html", **context)
    queue_email(to, subject, text, html)


def _hours(seconds: int) -> str:
    hours = seconds / 3600
    return f"{hours:g} hour{'s' if hours != 1 else ''}"


def _queue_activation_email(user: User, template: str = "activation") -> None:
    ttl = current_app.config["ACTIVATION_TOKEN_TTL"]
    secret = tokens.issue_email_token(ActivationToken, user, ttl)
    link = f"{current_app.config['PUBLIC_BASE_URL']}/auth/activate?token={secret}"
    _queue_email(
        user.email, template, "Activate your cinema account", link=link, lifetime=_hours(ttl)
    )


def register(email: str, password: str) -> User:
    """A new account; or, for an email whose account was never activated, a fresh start.

    Whoever registered the email first may not own it (pre-hijacking): until the link is
    used, a new registration replaces the pending password and kills every older link.
    """
    passwords.check_password_strength(password, email)
    password_hash = passwords.hash_password(password)
    user = _pending_account(email)
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
            user = _pending_account(email)
            if user is None:
                raise Conflict(EMAIL_TAKEN) from exc
            registered_before = True
    user.password_hash = password_hash
    # The contract: a registration again kills every older link (a reset link too).
    tokens.drop_email_tokens(user.id, PasswordResetToken)
    _queue_activation_email(user)  # replaces any older activation link
    db.session.commit()
    audit("user_registered", user_id=user.id, registered_before=registered_before)
    return user


def _pending_account(email: str) -> User | None:
    """The never-activated account of this email, locked until the commit, or None when the
    email is free; 409 when it belongs to an activated or admin-deactivated account."""
    # The row lock queues concurrent registrations of one pending account (PostgreSQL;
    # SQLite runs one writer at a time): each replaces the password and links in turn.
    user = db.session.scalar(sa.select(User).where(User.email == email).with_for_update(of=User))
    if user is not None and (user.is_active or user.deactivated_at is not None):
        raise Conflict(EMAIL_TAKEN)
    return user


def activate(secret: str) -> None:
    user = tokens.spend_email_token(ActivationToken, secret, RENEW_ACTIVATION)
    if user.deactivated_at is not None:
        raise InvalidToken(f"{tokens.UNUSABLE_LINK} {RENEW_ACTIVATION}")
    user.activate()
    db.session.commit()
    audit("user_activated", user_id=user.id)


def resend_activation(email: str) -> None:
    """Same answer whatever the email; only a never-activated account gets a new link."""
    user = find_user_by_email(email)
    if user is None or user.is_active or user.deactivated_at is not None:
        return
    if not may_email("activation", user.email):
        return  # the newest of the links already sent still works
    _queue_activation_email(user, template="activation_resend")
    db.session.commit()
    audit("activation_resent", user_id=user.id)


def login(email: str, password: str) -> dict[str, Any]:
    user = find_user_by_email(email)
    if user is None:
        passwords.verify_password(passwords.dummy_hash(), password)
        audit("login_failed", reason="unknown_email")
        raise NotAuthenticated("The email or password is wrong.")
    if not passwords.verify_password(user.password_hash, password):
        audit("login_failed", reason="wrong_password", user_id=user.id)
        raise NotAuthenticated("The email or password is wrong.")
    if user.deactivated_at is not None:
        audit("login_refused", reason="deactivated", user_id=user.id)
        raise PermissionDenied("This account has been deactivated; contact support.")
    if not user.is_active:
        audit("login_refused", reason="not_activated", user_id=user.id)
        raise PermissionDenied(f"This account is not activated yet. {RENEW_ACTIVATION}")
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)
    pair = tokens.issue_token_pair(user)
    db.session.commit()
    audit("login_succeeded", user_id=user.id)
    return pair


# Built once, values bound at execution. No session object can hold the token yet, so the
# ORM need not look for one to update ("synchronize_session": a third of the statement's CPU).
_SPEND = (
    sa.update(RefreshToken)
    .where(
        RefreshToken.token_hash == sa.bindparam("presented_hash"),
        RefreshToken.used_at.is_(None),
        RefreshToken.revoked_at.is_(None),
        RefreshToken.expires_at > sa.bindparam("now", type_=RefreshToken.expires_at.type),
    )
    .values(used_at=sa.bindparam("now", type_=RefreshToken.used_at.type))
    .returning(RefreshToken)
    .execution_options(synchronize_session=False)
)


def _spend_refresh_token(refresh_token: str) -> RefreshToken:
    """Mark the presented refresh token used and return its record.

    A refresh token works once. Presented again (at refresh or at logout) it was stolen or
    replayed, so every token of its login ("family") is revoked (RFC 9700 section 4.14.2).
    """
    token_hash = tokens.hash_token(refresh_token)
    now = utcnow()
    # Spend it atomically, and read it in the same round trip: of two concurrent requests
    # with one token, only one updates the row.
    record = db.session.scalar(_SPEND, {"presented_hash": token_hash, "now": now})
    if record is not None:
        return record
    known = db.session.scalar(sa.select(RefreshToken).where(RefreshToken.token_hash == token_hash))
    if known is None or known.revoked_at is not None:
        raise NotAuthenticated("The refresh token is not valid or has been revoked; log in again.")
    if known.expires_at <= now:
        raise NotAuthenticated("The refresh token has expired; log in again.")
    tokens.revoke_family(known.family_id)
    db.session.commit()
    audit("refresh_token_reuse_detected", user_id=known.user_id, family=known.family_id)
    raise NotAuthenticated(
        "The refresh token was already used; every session of this login is revoked."
    )


def refresh(refresh_token: str) -> dict[str, Any]:
    record = _spend_refresh_token(refresh_token)
    user = active_user(record.user_id)  # refused: the spend is never committed
    pair = tokens.issue_token_pair(
        user, family_id=record.family_id, family_expires_at=record.expires_at
    )
    db.session.commit()
    audit("token_refreshed", user_id=user.id, family=record.family_id)
    return pair


def logout(refresh_token: str, access_token: str | None) -> None:
    record = _spend_refresh_token(refresh_token)
    tokens.revoke_family(record.family_id)
    if access_token:
        # The access token may be of another login of the same user; end that one too.
        try:
            login = login_of(decode_token(access_token, allow_expired=True))
        except (InvalidTokenError, JWTExtendedException):
            login = None
        if login is not None and login[0] == record.user_id:
            tokens.revoke_family(login[1])
    db.session.commit()
    audit("logged_out", user_id=record.user_id, family=record.family_id)


def change_password(user: User, old_password: str, new_password: str) -> None:
    if not passwords.verify_password(user.password_hash, old_password):
        audit("password_change_failed", user_id=user.id)
        raise WrongPassword("The current password is wrong.")
    set_password(user, new_password, field="new_password")
    db.session.commit()
    audit("password_changed", user_id=user.id)


def forgot_password(email: str) -> None:
    """Same answer whatever the email. An active account gets a reset link, and so does one
    never activated: the link proves the mailbox, so using it activates the account too.
    An account an admin deactivated gets nothing."""
    user = find_user_by_email(email)
    if user is None or user.deactivated_at is not None:
        return
    if not may_email("password-reset", user.email):
        return  # the newest of the links already sent still works
    ttl = current_app.config["PASSWORD_RESET_TOKEN_TTL"]
    secret = tokens.issue_email_token(PasswordResetToken, user, ttl)
    link = f"{current_app.config['PUBLIC_BASE_URL']}/auth/password/reset?token={secret}"
    _queue_email(
        user.email, "password_reset", "Reset your cinema password", link=link, lifetime=_hours(ttl)
    )
    db.session.commit()
    audit("password_reset_requested", user_id=user.id)


def reset_password(secret: str, new_password: str) -> None:
    user = tokens.spend_email_token(PasswordResetToken, secret, RENEW_RESET)
    if user.deactivated_at is not None:  # a link that outlived the deactivation (a race)
        raise InvalidToken(f"{tokens.UNUSABLE_LINK} {RENEW_RESET}")
    set_password(user, new_password, field="new_password")
    activates = not user.is_active
    if activates:
        # The link reached the mailbox: it proves the address as an activation link does.
        user.activate()
        tokens.drop_email_tokens(user.id, ActivationToken)
    db.session.commit()
    audit("password_reset", user_id=user.id)
    if activates:
        audit("user_activated", user_id=user.id, by="password_reset")


def set_password(user: User, new_password: str, field: str) -> None:
    """Set a new password: strength rule, every session ended, no reset link left, a notice."""
    if passwords.verify_password(user.password_hash, new_password):
        raise InvalidInput(
            "The new password must differ from the current one.",
            errors={field: ["Choose a password different from the current one."]},
        )
    passwords.check_password_strength(new_password, user.email, field=field)
    user.password_hash = passwords.hash_password(new_password)
    tokens.revoke_user_sessions(user.id)
    tokens.drop_email_tokens(user.id, PasswordResetToken)
    _queue_email(
        user.email, "password_changed", "Your cinema password was changed", changed_at=utcnow()
    )
