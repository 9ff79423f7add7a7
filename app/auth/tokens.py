"""Email tokens (activation, reset) and the token pair with its refresh-token record."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app

from app.db import db, rows_changed
from app.errors import InvalidToken
from app.keys.ring import keyring
from app.models import ActivationToken, PasswordResetToken, RefreshToken, User, utcnow

EmailTokenModel = type[ActivationToken] | type[PasswordResetToken]

# An unknown token may be mistyped, spent, or expired and deleted by the clean-up since:
# the person who never used it must read that links expire.
UNUSABLE_LINK = "This link is invalid, expired or already used."


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def drop_email_tokens(user_id: int, *models: EmailTokenModel) -> None:
    """Spend the user's emailed links of these kinds, sent or not: none works any more."""
    for model in models:
        db.session.execute(sa.delete(model).where(model.user_id == user_id))


def issue_email_token(model: EmailTokenModel, user: User, ttl_seconds: int) -> str:
    """Replace the user's token of this kind with a new one; return the secret for the email.

    32 random bytes from `secrets` (256 bits); only the SHA-256 is stored.
    """
    drop_email_tokens(user.id, model)
    secret = secrets.token_urlsafe(32)
    db.session.add(
        model(
            user_id=user.id,
            token_hash=hash_token(secret),
            expires_at=utcnow() + timedelta(seconds=ttl_seconds),
        )
    )
    return secret


def spend_email_token(model: EmailTokenModel, secret: str, how_to_renew: str) -> User:
    """Delete the token and return its user; unknown, spent and expired tokens are refused."""
    token = db.session.scalar(sa.select(model).where(model.token_hash == hash_token(secret)))
    if token is None:
        raise InvalidToken(f"{UNUSABLE_LINK} {how_to_renew}")
    if token.expires_at <= utcnow():
        raise InvalidToken(f"This link has expired. {how_to_renew}")
    # The delete decides: of two concurrent requests with one token, only one removes the row.
    if rows_changed(sa.delete(model).where(model.id == token.id)) != 1:
        raise InvalidToken(f"{UNUSABLE_LINK} {how_to_renew}")
    return token.user


# A Core INSERT: nothing reads the record back, and the ORM's unit of work would cost as much
# CPU as the rest of a refresh. Built once: SQLAlchemy computes a new statement's cache key on
# every execution.
_INSERT_REFRESH_TOKEN = sa.insert(RefreshToken.__table__)


def issue_token_pair(
    user: User, family_id: str | None = None, family_expires_at: datetime | None = None
) -> dict[str, Any]:
    """Create an access token and a refresh token for one login ("family").

    The access token carries the family id, so revoking the family (logout, reuse, password
    change) also stops the access tokens issued to it. Rotation keeps the family's absolute
    expiry: refreshing never makes a login last longer than JWT_REFRESH_TOKEN_EXPIRES.

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
    access_token = keyring().sign(
        {
            "iss": config["PUBLIC_BASE_URL"],
            "aud": config["JWT_AUDIENCE"],
            "sub": str(user.id),
            "iat": now,
            "exp": now + access_ttl,
            "jti": uuid.uuid4().hex,
            "type": "access",
            "fam": family_id,
            # As of issue time, for the services that trust the token; our own endpoints
            # read the stored group, so a change applies on the next request.
            "group": user.group.name.value,
        }
    )
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


def revoke_family(family_id: str) -> None:
    db.session.execute(
        sa.update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


def revoke_user_sessions(user_id: int) -> None:
    db.session.execute(
        sa.update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
