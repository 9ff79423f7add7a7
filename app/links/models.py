"""The tables of the emailed links' tokens."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.db import UTCDateTime, db, utcnow
from app.identity.models import User


class _EmailToken:
    """The emailed links' tokens: one of each kind per user, only the SHA-256 of the secret
    is stored."""

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    if TYPE_CHECKING:  # declared by each subclass, with its own table
        user_id: Mapped[int]
        user: Mapped[User]


class ActivationToken(_EmailToken, db.Model):  # type: ignore[name-defined]
    __tablename__ = "activation_tokens"

    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    user: Mapped[User] = relationship()


class PasswordResetToken(_EmailToken, db.Model):  # type: ignore[name-defined]
    __tablename__ = "password_reset_tokens"

    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    user: Mapped[User] = relationship()


class EmailChangeToken(_EmailToken, db.Model):  # type: ignore[name-defined]
    """A pending email change: the link goes to `new_email`, and spending it makes that the
    account's address. `family_id` is the login that asked, kept when the others end."""

    __tablename__ = "email_change_tokens"

    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    user: Mapped[User] = relationship()
    new_email: Mapped[str] = mapped_column(sa.String(320))
    family_id: Mapped[str | None] = mapped_column(sa.String(64))


EmailTokenModel = type[ActivationToken] | type[PasswordResetToken] | type[EmailChangeToken]
