"""The data model: groups, users, profiles, the three kinds of token and the email outbox."""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import db


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Stores UTC and always hands back an aware datetime, on SQLite as on PostgreSQL."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class GroupName(enum.StrEnum):
    USER = "USER"
    MODERATOR = "MODERATOR"
    ADMIN = "ADMIN"


class Gender(enum.StrEnum):
    MAN = "MAN"
    WOMAN = "WOMAN"


class UserGroup(db.Model):  # type: ignore[name-defined]
    __tablename__ = "user_groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[GroupName] = mapped_column(
        sa.Enum(GroupName, name="group_name", native_enum=False, length=20), unique=True
    )


class User(db.Model):  # type: ignore[name-defined]
    __tablename__ = "users"
    # Emails are normalised before they are stored; the check keeps the unique index honest.
    __table_args__ = (sa.CheckConstraint("email = lower(email)", name="email_lowercase"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    is_active: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    # Set when an admin deactivates the account: unlike a never-activated one, it may not
    # activate itself again with a new emailed link.
    deactivated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    group_id: Mapped[int] = mapped_column(
        sa.ForeignKey("user_groups.id", ondelete="RESTRICT"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    group: Mapped[UserGroup] = relationship(lazy="joined")
    profile: Mapped[UserProfile] = relationship(
        back_populates="user", lazy="joined", cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def group_name(self) -> GroupName:
        return self.group.name

    def activate(self) -> None:
        self.is_active = True
        self.deactivated_at = None

    def deactivate(self) -> None:
        self.is_active = False
        self.deactivated_at = self.deactivated_at or utcnow()

    def __repr__(self) -> str:  # never the hash
        return f"<User id={self.id} group={self.group.name if self.group else None}>"


class UserProfile(db.Model):  # type: ignore[name-defined]
    __tablename__ = "user_profiles"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    first_name: Mapped[str | None] = mapped_column(sa.String(100))
    last_name: Mapped[str | None] = mapped_column(sa.String(100))
    gender: Mapped[Gender | None] = mapped_column(
        sa.Enum(Gender, name="gender", native_enum=False, length=10)
    )
    date_of_birth: Mapped[date | None] = mapped_column(sa.Date)
    info: Mapped[str | None] = mapped_column(sa.Text)
    avatar_key: Mapped[str | None] = mapped_column(sa.String(255))

    user: Mapped[User] = relationship(back_populates="profile")


class _EmailToken:
    """Activation and reset tokens: one per user, only the SHA-256 of the secret is stored."""

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


class RefreshToken(db.Model):  # type: ignore[name-defined]
    """A refresh token issued to a login ("family"); its rows also say which logins live: a
    login's access tokens work while its family has a row neither revoked nor expired.

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


class EmailOutbox(db.Model):  # type: ignore[name-defined]
    """An email promised by a committed change, written in the same transaction.

    The payload (recipient, subject, bodies) is encrypted, since a body carries a link
    secret, and dropped once the email is delivered; `message_id` stays, so a re-send after
    a lost acknowledgement is the same message to the recipient's mail client.
    """

    __tablename__ = "email_outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[str] = mapped_column(sa.String(255), unique=True)
    payload: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When the sweep next looks at it, if it is still not sent by then.
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # How many times the sweep dispatched it again.
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Refused for good by the mail server (a 5xx answer), and its answer: never tried again.
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failure: Mapped[str | None] = mapped_column(sa.String(255))


TOKEN_MODELS: dict[str, Any] = {
    "activation": ActivationToken,
    "password_reset": PasswordResetToken,
    "refresh": RefreshToken,
}
