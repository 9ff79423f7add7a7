"""Who a person is here: the user, its group and its profile."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

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


# The characters the admin list's email filter may hold besides letters and digits
# (app/admin/schemas.py), each written as two letters in `email_trigram_text`; "q" is the
# escape, so it is doubled first.
EMAIL_TRIGRAM_CODES = {"q": "qq", ".": "qd", "@": "qa", "_": "qu", "+": "qp", "-": "qh", "'": "qs"}


def email_trigram_text(email: Any) -> Any:
    """`email` as the trigram index `ix_users_email_trigrams` holds it: letters and digits
    only, each separator spelt as two letters (`ada.l@x.io` is `adaqdlqaxqdio`).

    PostgreSQL's pg_trgm takes trigrams from runs of letters and digits only. On the
    address itself, `com.example` is looked up as `com` and `example`, which nearly every
    address of example.com holds, and `use_____` as `use`: the index would hand back the
    whole table to find no row. Spelt out, a filter is one run whose trigrams overlap, so
    they find only rows that hold it in that order, or nearly; the exact comparison on
    `email` (app/admin/service.py) then decides. The codes are written into the SQL
    (`literal_execute`), never sent as parameters, so a query's expression is the index's
    whatever the driver does."""
    for character, code in EMAIL_TRIGRAM_CODES.items():
        email = sa.func.replace(
            email,
            sa.literal(character, literal_execute=True),
            sa.literal(code, literal_execute=True),
        )
    return email


def email_trigram_pattern(part: str) -> str:
    """`part` of an address (lower case), spelt as `email_trigram_text` spells addresses."""
    return "".join(EMAIL_TRIGRAM_CODES.get(character, character) for character in part)


class User(db.Model):  # type: ignore[name-defined]
    __tablename__ = "users"
    __table_args__ = (
        # Emails are normalised before they are stored; the check keeps the unique index honest.
        sa.CheckConstraint("email = lower(email)", name="email_lowercase"),
        # The admin list's filters, each in id order (migration 0014): a group, and the
        # rarer states, inactive and two-factor on (the common ones walk the primary key, as
        # most rows match). Each carries the other filters' columns (INCLUDE, PostgreSQL), so
        # a combination of filters is decided inside one index, without reading the table.
        # The group's index also serves the foreign key.
        sa.Index(
            "ix_users_group_id_id",
            "group_id",
            "id",
            postgresql_include=["is_active", "mfa_enabled"],
        ),
        sa.Index(
            "ix_users_inactive_id",
            "id",
            postgresql_include=["group_id", "mfa_enabled"],
            postgresql_where=sa.text("NOT is_active"),
            sqlite_where=sa.text("NOT is_active"),
        ),
        sa.Index(
            "ix_users_mfa_enabled_id",
            "id",
            postgresql_include=["group_id", "is_active"],
            postgresql_where=sa.text("mfa_enabled"),
            sqlite_where=sa.text("mfa_enabled"),
        ),
    )

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
    group_id: Mapped[int] = mapped_column(sa.ForeignKey("user_groups.id", ondelete="RESTRICT"))
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


# The email substring filter of the admin list, on PostgreSQL only (SQLite has no pg_trgm;
# its LIKE reads the table, which serves development): trigrams of `email_trigram_text`.
sa.Index(
    "ix_users_email_trigrams",
    email_trigram_text(User.__table__.c.email).label("email_trigram_text"),
    postgresql_using="gin",
    postgresql_ops={"email_trigram_text": "gin_trgm_ops"},
).ddl_if(dialect="postgresql")


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
