"""A login's record and its refresh tokens."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import UTCDateTime, db, utcnow


class RefreshToken(db.Model):  # type: ignore[name-defined]
    """A refresh token issued to a login ("family"). Ending a login revokes its tokens with
    its record (app/sessions/refresh_tokens.py), so a revoked token never refreshes.

    The token is an opaque random string; only its SHA-256 is stored."""

    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    family_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LoginSession(db.Model):  # type: ignore[name-defined]
    """A login, as its person sees it (GET /auth/sessions): made by the way in that started
    it, alive while neither ended nor expired. Its access tokens work exactly that long: the
    guard reads this row, by `family_id`, on every authenticated request.

    `family_id` is the login's id in its tokens (the access token's `fam` claim, the refresh
    tokens' `family_id`); `expires_at` is the family's absolute end, which rotation keeps.
    `last_used_at` moves at a refresh at most once a minute: a burst of refreshes (tabs, a
    retrying client) does not rewrite the row each time."""

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    family_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    user_agent: Mapped[str | None] = mapped_column(sa.String(255))
    # The client's address as resolved through TRUSTED_PROXIES; 45 holds any IPv6 text.
    ip: Mapped[str | None] = mapped_column(sa.String(45))
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


def live_logins_of(user_id: int) -> sa.ColumnElement[bool]:
    """The logins of `user_id` neither ended nor expired: the ones the guard lets in."""
    return sa.and_(
        LoginSession.user_id == user_id,
        LoginSession.ended_at.is_(None),
        LoginSession.expires_at > utcnow(),
    )
