"""Who a person is here: the user, its group and its profile."""

from __future__ import annotations

import enum
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.db import UTCDateTime, db, utcnow


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
    # None for an account that signs in by a provider (app/oidc) until forgot/reset sets one.
    password_hash: Mapped[str | None] = mapped_column(sa.String(255))
    is_active: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    # Set when an admin deactivates the account: unlike a never-activated one, it may not
    # activate itself again with a new emailed link.
    deactivated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Two-factor sign-in is on (app/mfa/ keeps the factor): on the user's row, so the guard's
    # one read of the caller and the admin list's filter see it without another query.
    mfa_enabled: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
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
