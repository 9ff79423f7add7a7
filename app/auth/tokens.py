"""Email tokens (activation, reset) and the JWT pair with its refresh-token record."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app
from flask_jwt_extended import create_access_token, create_refresh_token, decode_token
from jwt import ExpiredSignatureError, InvalidTokenError

from app.db import db, rows_changed
from app.errors import InvalidToken, NotAuthenticated
from app.models import ActivationToken, PasswordResetToken, RefreshToken, User, utcnow

EmailTokenModel = type[ActivationToken] | type[PasswordResetToken]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_email_token(model: EmailTokenModel, user: User, ttl_seconds: int) -> str:
    """Replace the user's token of this kind with a new one; return the secret for the email.

    32 random bytes from `secrets` (256 bits); only the SHA-256 is stored.
    """
    db.session.execute(sa.delete(model).where(model.user_id == user.id))
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
        raise InvalidToken(f"This link is invalid or has already been used. {how_to_renew}")
    if token.expires_at <= utcnow():
        raise InvalidToken(f"This link has expired. {how_to_renew}")
    # The delete decides: of two concurrent requests with one token, only one removes the row.
    if rows_changed(sa.delete(model).where(model.id == token.id)) != 1:
        raise InvalidToken(f"This link is invalid or has already been used. {how_to_renew}")
    return token.user


def issue_token_pair(
    user: User, family_id: str | None = None, family_expires_at: datetime | None = None
) -> dict[str, Any]:
    """Create an access token and a refresh token for one login ("family").

    The access token carries the family id, so revoking the family (logout, reuse, password
    change) also stops the access tokens issued to it. Rotation keeps the family's absolute
    expiry: refreshing never makes a login last longer than JWT_REFRESH_TOKEN_EXPIRES.
    """
    config = current_app.config
    family_id = family_id or uuid.uuid4().hex
    now = utcnow()
    if family_expires_at is None:
        family_expires_at = now + timedelta(seconds=config["JWT_REFRESH_TOKEN_EXPIRES"])
    # An access token never outlives its login: near the end of the family it is shorter.
    access_ttl = min(timedelta(seconds=config["JWT_ACCESS_TOKEN_EXPIRES"]), family_expires_at - now)
    claims = {"fam": family_id}
    identity = str(user.id)
    access_token = create_access_token(
        identity=identity, additional_claims=claims, expires_delta=access_ttl
    )
    refresh_jti = uuid.uuid4().hex
    refresh_token = create_refresh_token(
        identity=identity,
        additional_claims={**claims, "jti": refresh_jti},
        expires_delta=family_expires_at - now,
    )
    db.session.add(
        RefreshToken(
            jti=refresh_jti, user_id=user.id, family_id=family_id, expires_at=family_expires_at
        )
    )
    return {
        "access_token": access_token,
        "refresh_token": refresh_token,
        "token_type": "bearer",
        "expires_in": int(access_ttl.total_seconds()),
    }


def decode_refresh_token(token: str) -> dict[str, Any]:
    """Check signature, expiry and type; the database state is checked by the caller."""
    try:
        claims = decode_token(token)
    except ExpiredSignatureError as exc:
        raise NotAuthenticated("The refresh token has expired; log in again.") from exc
    except (InvalidTokenError, ValueError, KeyError) as exc:
        raise NotAuthenticated("The refresh token is not valid.") from exc
    if claims.get("type") != "refresh" or "fam" not in claims:
        raise NotAuthenticated("The refresh token is not valid.")
    return claims


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
