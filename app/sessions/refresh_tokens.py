"""A login ("family") and its refresh tokens: issue the token pair, spend a refresh token,
end a login or every login of a user."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app

from app.core.crypto import hash_token
from app.core.db import db, delete_in_batches, utcnow
from app.core.errors import NotAuthenticated
from app.core.log import audit
from app.events.models import EventType
from app.events.service import record_event
from app.identity.models import User
from app.sessions.access_tokens import issue_access_token
from app.sessions.models import RefreshToken

# A Core INSERT: nothing reads the record back, and the ORM's unit of work would cost as much
# CPU as the rest of a refresh. Built once: SQLAlchemy computes a new statement's cache key on
# every execution.
_INSERT_REFRESH_TOKEN = sa.insert(RefreshToken.__table__)


def issue_token_pair(
    user: User, family_id: str | None = None, family_expires_at: datetime | None = None
) -> dict[str, Any]:
    """Create an access token and a refresh token for one login ("family"): a new login when
    `family_id` is None, else the next pair of that login.

    Rotation keeps the family's absolute expiry: refreshing never makes a login last longer
    than JWT_REFRESH_TOKEN_EXPIRES.

    The refresh token is an opaque random string (256 bits) whose SHA-256 is its record:
    only this service reads it, so it needs no signature, and no other service can mistake
    it for an access token.
    """
    config = current_app.config
    family_id = family_id or uuid.uuid4().hex
    now = utcnow()
    if family_expires_at is None:
        family_expires_at = now + timedelta(seconds=config["JWT_REFRESH_TOKEN_EXPIRES"])
    # An access token never outlives its login: near the end of the family it is shorter.
    access_ttl = min(timedelta(seconds=config["JWT_ACCESS_TOKEN_EXPIRES"]), family_expires_at - now)
    access_token = issue_access_token(user, family_id, now, access_ttl)
    refresh_token = secrets.token_urlsafe(32)
    db.session.execute(
        _INSERT_REFRESH_TOKEN,
        {
            "token_hash": hash_token(refresh_token),
            "user_id": user.id,
            "family_id": family_id,
            "expires_at": family_expires_at,
        },
    )
    return {
        "access_token": access_token,
        "refresh_token": refresh_token,
        "token_type": "bearer",
        "expires_in": int(access_ttl.total_seconds()),
    }


# Built once, values bound at execution. No session object can hold the token yet, so the
# ORM need not look for one to update ("synchronize_session": a third of the statement's CPU).
_SPEND_UNUSED_TOKEN = (
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


def spend_refresh_token(refresh_token: str) -> RefreshToken:
    """Mark the presented refresh token used and return its record.

    A refresh token works once. Presented again (at refresh or at logout) it was stolen or
    replayed, so every token of its login ("family") is revoked (RFC 9700 section 4.14.2).
    """
    token_hash = hash_token(refresh_token)
    now = utcnow()
    # Spend it atomically, and read it in the same round trip: of two concurrent requests
    # with one token, only one updates the row.
    record = db.session.scalar(_SPEND_UNUSED_TOKEN, {"presented_hash": token_hash, "now": now})
    if record is not None:
        return record
    known = db.session.scalar(sa.select(RefreshToken).where(RefreshToken.token_hash == token_hash))
    if known is None or known.revoked_at is not None:
        raise NotAuthenticated("The refresh token is not valid or has been revoked; log in again.")
    if known.expires_at <= now:
        raise NotAuthenticated("The refresh token has expired; log in again.")
    end_login(known.family_id)
    record_event(EventType.REFRESH_REUSE_DETECTED, known.user_id)
    db.session.commit()
    audit("refresh_token_reuse_detected", user_id=known.user_id, family=known.family_id)
    raise NotAuthenticated(
        "The refresh token was already used; every session of this login is revoked."
    )


def end_login(family_id: str) -> None:
    """Revoke the login's refresh tokens: its access tokens stop at their next use."""
    db.session.execute(
        sa.update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


def end_all_logins(user_id: int, keep_family: str | None = None) -> None:
    """Revoke every login of the user (a password change, a deactivation), or every one but
    `keep_family`: the login that made the change (two-factor turned on or off)."""
    ending = [RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None)]
    if keep_family is not None:
        ending.append(RefreshToken.family_id != keep_family)
    db.session.execute(sa.update(RefreshToken).where(*ending).values(revoked_at=utcnow()))


def delete_expired_refresh_tokens(now: datetime, batch_size: int, pause_seconds: float) -> int:
    """Delete the refresh tokens of logins expired by `now` (the scheduled clean-up)."""
    return delete_in_batches(
        RefreshToken, RefreshToken.expires_at <= now, batch_size, pause_seconds
    )
