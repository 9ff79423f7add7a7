"""A login's record, which holds its refresh token's state."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import UTCDateTime, db, utcnow


class LoginSession(db.Model):  # type: ignore[name-defined]
    """A login, as its person sees it (GET /auth/sessions): made by the way in that started
    it, alive while neither ended nor expired. Its access tokens work exactly that long: the
    guard reads this row, by `family_id`, on every authenticated request.

    `family_id` is the login's id in its tokens (the access token's `fam` claim, the first
    part of its refresh token); `expires_at` is the family's absolute end, which rotation
    keeps. `last_used_at` moves at a refresh at most once a minute (shown to the minute).

    The refresh token (app/sessions/refresh_format.py) is kept here too, as state, not rows:
    `refresh_generation` counts the rotations, `refresh_hash` is the SHA-256 of the current
    token's text, `previous_refresh_hash` that of the token spent last, at `rotated_at`.
    Ending the login ends its refresh token with it. `legacy_refresh_hash` is the hash of a
    token issued before this format (migration 0016), the only way to find such a token's
    login; None for every login started since.

    None of the columns a refresh rewrites is indexed (the legacy one's index is partial,
    over its non-empty rows, and a refresh never writes it), so PostgreSQL can put the row's
    new version in its page ("HOT") without a new entry in any of the table's indexes; the
    table leaves 15 % of each page free for it (fillfactor 85, migration 0016)."""

    __tablename__ = "sessions"
    __table_args__ = (
        sa.Index(
            "ix_sessions_legacy_refresh_hash",
            "legacy_refresh_hash",
            unique=True,
            postgresql_where=sa.text("legacy_refresh_hash IS NOT NULL"),
            sqlite_where=sa.text("legacy_refresh_hash IS NOT NULL"),
        ),
    )

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
    refresh_generation: Mapped[int] = mapped_column(default=0, server_default=sa.text("0"))
    refresh_hash: Mapped[str | None] = mapped_column(sa.String(64))
    previous_refresh_hash: Mapped[str | None] = mapped_column(sa.String(64))
    rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    legacy_refresh_hash: Mapped[str | None] = mapped_column(sa.String(64))


def live_logins_of(user_id: int) -> sa.ColumnElement[bool]:
    """The logins of `user_id` neither ended nor expired: the ones the guard lets in."""
    return sa.and_(
        LoginSession.user_id == user_id,
        LoginSession.ended_at.is_(None),
        LoginSession.expires_at > utcnow(),
    )
