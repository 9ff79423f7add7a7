"""A login ("family"): started with its first token pair and its record, continued by
spending refresh tokens, ended (one login, every login of a user, or all but one) in one
place, `end_logins`, which ends the record and revokes the refresh tokens together."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app

from app.core.batches import Batches
from app.core.crypto import hash_token
from app.core.db import db, rows_changed, utcnow
from app.core.errors import NotAuthenticated
from app.core.log import audit
from app.events.models import EventType
from app.events.service import record_event
from app.identity.models import User
from app.sessions.access_tokens import issue_access_token
from app.sessions.models import LoginSession, RefreshToken
from app.web.requests import client_of_request

NOT_VALID = "The refresh token is not valid or has been revoked; log in again."
# A login's last use is written at most this often: a burst of refreshes (tabs, retries)
# costs no write of its record each.
LAST_USED_STEP = timedelta(minutes=1)

# Core INSERTs: nothing reads the rows back, and the ORM's unit of work would cost as much
# CPU as the rest of a refresh. Built once: SQLAlchemy computes a new statement's cache key on
# every execution.
_INSERT_REFRESH_TOKEN = sa.insert(RefreshToken.__table__)
_INSERT_LOGIN = sa.insert(LoginSession.__table__)
_sessions = LoginSession.__table__
_NOTE_USE = (
    sa.update(_sessions)
    .where(_sessions.c.family_id == sa.bindparam("family"))
    .values(last_used_at=sa.bindparam("now", type_=_sessions.c.last_used_at.type))
)


def issue_token_pair(
    user: User, family_id: str | None = None, family_expires_at: datetime | None = None
) -> dict[str, Any]:
    """Create an access token and a refresh token for one login ("family"): a new login, with
    its record, when `family_id` is None (every way in starts its login here), else the next
    pair of that login, which keeps the family's absolute expiry: refreshing never makes a
    login last longer than JWT_REFRESH_TOKEN_EXPIRES.

    The refresh token is an opaque random string (256 bits) whose SHA-256 is its record:
    only this service reads it, so it needs no signature, and no other service can mistake
    it for an access token.
    """
    config = current_app.config
    now = utcnow()
    if family_expires_at is None:
        family_expires_at = now + timedelta(seconds=config["JWT_REFRESH_TOKEN_EXPIRES"])
    new_login = family_id is None
    family_id = family_id or uuid.uuid4().hex
    # An access token never outlives its login: near the end of the family it is shorter.
    access_ttl = min(timedelta(seconds=config["JWT_ACCESS_TOKEN_EXPIRES"]), family_expires_at - now)
    # Signed before this transaction writes: signing may make the first key, in a
    # transaction of its own, which a write held here would keep waiting on SQLite.
    access_token = issue_access_token(user, family_id, now, access_ttl)
    if new_login:
        _start_login(user.id, family_id, now, family_expires_at)
    return {
        "access_token": access_token,
        "refresh_token": _add_refresh_token(user.id, family_id, family_expires_at),
        "token_type": "bearer",
        "expires_in": int(access_ttl.total_seconds()),
    }


def _add_refresh_token(user_id: int, family_id: str, expires_at: datetime) -> str:
    refresh_token = secrets.token_urlsafe(32)
    db.session.execute(
        _INSERT_REFRESH_TOKEN,
        {
            "token_hash": hash_token(refresh_token),
            "user_id": user_id,
            "family_id": family_id,
            "expires_at": expires_at,
        },
    )
    return refresh_token


def _start_login(user_id: int, family_id: str, now: datetime, expires_at: datetime) -> None:
    """The login's record, with the client that started it (none outside a request)."""
    ip, user_agent = client_of_request()
    db.session.execute(
        _INSERT_LOGIN,
        {
            "user_id": user_id,
            "family_id": family_id,
            "created_at": now,
            "last_used_at": now,
            "expires_at": expires_at,
            "user_agent": user_agent,
            "ip": ip,
        },
    )


# The last use of the token's login, read in the statement that spends the token. None: the
# login has ended (a login ended while this token was being issued: the end's update of the
# tokens could not see it yet).
_LIVE_LOGIN_LAST_USED = (
    sa.select(LoginSession.last_used_at)
    .where(LoginSession.family_id == RefreshToken.family_id, LoginSession.ended_at.is_(None))
    .correlate(RefreshToken)
    .scalar_subquery()
)
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
    .returning(RefreshToken, _LIVE_LOGIN_LAST_USED)
    .execution_options(synchronize_session=False)
)


def spend_refresh_token(refresh_token: str) -> RefreshToken:
    """Mark the presented refresh token used, note its login's use, and return its record.

    A refresh token works once. Presented again within REFRESH_REUSE_GRACE seconds of its
    rotation, while it is the token its login spent last, it is a request that raced the
    rotation (two tabs refreshing at once, a retry after a lost answer): its record is
    returned again, and its login goes on. Presented again otherwise, it was stolen or
    replayed, so the whole login ends (RFC 9700 section 4.14.2).
    """
    token_hash = hash_token(refresh_token)
    now = utcnow()
    # Spend it atomically, and read it in the same round trip: of concurrent requests with
    # one token, only one updates the row; the others find it spent below.
    spent = db.session.execute(_SPEND_UNUSED_TOKEN, {"presented_hash": token_hash, "now": now})
    row = spent.first()
    if row is None:
        return _presented_again(token_hash, now)
    record, last_used_at = row
    if last_used_at is None:
        raise NotAuthenticated(NOT_VALID)
    if now - last_used_at >= LAST_USED_STEP:
        db.session.execute(_NOTE_USE, {"family": record.family_id, "now": now})
    return record


def _presented_again(token_hash: str, now: datetime) -> RefreshToken:
    """A token that could not be spent: unknown, revoked, expired, or spent before."""
    known = db.session.scalar(sa.select(RefreshToken).where(RefreshToken.token_hash == token_hash))
    if known is None or known.revoked_at is not None:
        raise NotAuthenticated(NOT_VALID)
    if known.expires_at <= now:
        raise NotAuthenticated("The refresh token has expired; log in again.")
    if _just_rotated(known, now):
        audit("refresh_token_presented_within_grace", user_id=known.user_id, family=known.family_id)
        return known
    end_login(known.family_id)
    record_event(EventType.REFRESH_REUSE_DETECTED, known.user_id)
    db.session.commit()
    audit("refresh_token_reuse_detected", user_id=known.user_id, family=known.family_id)
    raise NotAuthenticated(
        "The refresh token was already used; every session of this login is revoked."
    )


def _just_rotated(token: RefreshToken, now: datetime) -> bool:
    """Whether the spent `token` was rotated within REFRESH_REUSE_GRACE seconds and is the
    token its login spent last: a token two rotations back is a copy, whenever it comes."""
    grace = current_app.config["REFRESH_REUSE_GRACE"]
    if not grace or token.used_at is None or now > token.used_at + timedelta(seconds=grace):
        return False
    spent_since = (
        sa.select(RefreshToken.id)
        .where(RefreshToken.family_id == token.family_id, RefreshToken.used_at > token.used_at)
        .exists()
    )
    return not db.session.scalar(sa.select(spent_since))


def end_logins(*which: sa.ColumnElement[bool]) -> int:
    """End the live logins that meet `which` (conditions on LoginSession) in the current
    transaction; return how many ended. The one way a login ends: its record is ended and
    its refresh tokens revoked together, and its access tokens stop at their next use (the
    guard reads the record on every request, on every process)."""
    now = utcnow()
    live = sa.and_(LoginSession.ended_at.is_(None), LoginSession.expires_at > now, *which)
    # Tokens first, sessions second, the order a refresh takes its row locks in.
    db.session.execute(
        sa.update(RefreshToken)
        .where(
            RefreshToken.family_id.in_(sa.select(LoginSession.family_id).where(live)),
            RefreshToken.revoked_at.is_(None),
        )
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    return rows_changed(
        sa.update(LoginSession)
        .where(live)
        .values(ended_at=now)
        .execution_options(synchronize_session=False)
    )


def end_login(family_id: str) -> None:
    """End one login (logout, a replayed refresh token)."""
    end_logins(LoginSession.family_id == family_id)


def end_all_logins(user_id: int, keep_family: str | None = None) -> None:
    """End every login of the user (a password change, a deactivation), or every one but
    `keep_family`: the login that made the change (an email change, two-factor turned on
    or off)."""
    keep = [] if keep_family is None else [LoginSession.family_id != keep_family]
    end_logins(LoginSession.user_id == user_id, *keep)


def delete_expired_refresh_tokens(now: datetime, batches: Batches) -> int:
    """Delete the refresh tokens of logins expired by `now` (the scheduled clean-up)."""
    return batches.delete(RefreshToken, RefreshToken.expires_at, up_to=now)


def delete_expired_logins(now: datetime, batches: Batches) -> int:
    """Delete the records of logins expired by `now`, ended or not (the scheduled clean-up)."""
    return batches.delete(LoginSession, LoginSession.expires_at, up_to=now)
