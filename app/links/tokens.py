"""The tokens of emailed links (activation, password reset, email change): issued, spent,
dropped.

One of each kind per user at most; 32 random bytes from `secrets` (256 bits), of which only
the SHA-256 is stored."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa

from app.core.batches import Batches
from app.core.crypto import hash_token
from app.core.db import db, rows_changed, utcnow
from app.core.errors import InvalidToken
from app.identity.models import User
from app.links.models import (
    ActivationToken,
    EmailChangeToken,
    EmailTokenModel,
    PasswordResetToken,
)

# An unknown token may be mistyped, spent, or expired and deleted by the clean-up since:
# the person who never used it must read that links expire.
INVALID_LINK = "This link is invalid, expired or already used."

Token = TypeVar("Token", ActivationToken, PasswordResetToken, EmailChangeToken)


def drop_email_tokens(user_id: int, *models: EmailTokenModel) -> None:
    """Spend the user's emailed links of these kinds, sent or not: none works any more."""
    for model in models:
        db.session.execute(sa.delete(model).where(model.user_id == user_id))


def issue_email_token(model: EmailTokenModel, user: User, ttl_seconds: int, **details: Any) -> str:
    """Replace the user's token of this kind with a new one; return the secret for the email.
    `details` are the kind's own columns (an email change's new address and login)."""
    drop_email_tokens(user.id, model)
    secret = secrets.token_urlsafe(32)
    db.session.add(
        model(
            user_id=user.id,
            token_hash=hash_token(secret),
            expires_at=utcnow() + timedelta(seconds=ttl_seconds),
            **details,
        )
    )
    return secret


def spend_email_token(model: type[Token], secret: str, renewal: str) -> Token:
    """Delete the token and return it (its `user`, and what it was issued for); unknown,
    spent and expired tokens are refused, with `renewal` (a NextStep) as the way to a new
    link."""
    token = db.session.scalar(sa.select(model).where(model.token_hash == hash_token(secret)))
    if token is None:
        raise InvalidToken(INVALID_LINK, next_step=renewal)
    if token.expires_at <= utcnow():
        raise InvalidToken("This link has expired.", next_step=renewal)
    # The delete decides: of two concurrent requests with one token, only one removes the row.
    if rows_changed(sa.delete(model).where(model.id == token.id)) != 1:
        raise InvalidToken(INVALID_LINK, next_step=renewal)
    return token


def delete_expired_link_tokens(now: datetime, batches: Batches) -> dict[str, int]:
    """Delete the emailed links expired by `now` (the scheduled clean-up), by kind."""
    return {
        "activation": batches.delete(ActivationToken, ActivationToken.expires_at, up_to=now),
        "password_reset": batches.delete(
            PasswordResetToken, PasswordResetToken.expires_at, up_to=now
        ),
        "email_change": batches.delete(EmailChangeToken, EmailChangeToken.expires_at, up_to=now),
    }
