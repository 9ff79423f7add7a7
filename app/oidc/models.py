"""The tables of social sign-in: linked identities, sign-ins under way, one-time codes."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.db import UTCDateTime, db, utcnow
from app.identity.models import User


class LinkedIdentity(db.Model):  # type: ignore[name-defined]
    """An account at a provider, linked to one of ours: the pair (provider, subject), never
    the email, which a provider may let its owner change or reuse."""

    __tablename__ = "oidc_identities"
    __table_args__ = (sa.UniqueConstraint("provider", "subject"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(sa.String(40))
    subject: Mapped[str] = mapped_column(sa.String(255))
    # What the provider said at link time: shown to the person, never used to find them.
    email: Mapped[str | None] = mapped_column(sa.String(320))
    given_name: Mapped[str | None] = mapped_column(sa.String(100))
    family_name: Mapped[str | None] = mapped_column(sa.String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()


class PendingSignIn(db.Model):  # type: ignore[name-defined]
    """A sign-in (or a link) sent to the provider and not back yet: its state (hashed), the
    nonce and PKCE verifier it must come back with, the browser that started it (the hash of
    its cookie), and where it returns. Spent by the callback, whatever its outcome."""

    __tablename__ = "oidc_pending_sign_ins"

    id: Mapped[int] = mapped_column(primary_key=True)
    state_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    browser_hash: Mapped[str] = mapped_column(sa.String(64))
    provider: Mapped[str] = mapped_column(sa.String(40))
    nonce: Mapped[str] = mapped_column(sa.String(64))
    code_verifier: Mapped[str] = mapped_column(sa.String(128))
    return_to: Mapped[str] = mapped_column(sa.String(2000))
    # The account that asked to link; None for a sign-in.
    link_user_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class SignInCode(db.Model):  # type: ignore[name-defined]
    """The one-time code the callback hands the front end in the URL's fragment, for
    POST /auth/oidc/exchange: single use, short-lived, only its SHA-256 stored."""

    __tablename__ = "oidc_sign_in_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    code_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
