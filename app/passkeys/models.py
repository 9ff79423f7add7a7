"""The passkeys' tables: the credentials, and the challenges of ceremonies under way."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import UTCDateTime, db, utcnow
from app.identity.ways_in import register_way_in

NAME_LENGTH = 64


class Passkey(db.Model):  # type: ignore[name-defined]
    """One WebAuthn credential of one user. Nothing here is secret: the public key verifies,
    and the credential id is sent to whoever asks in excludeCredentials."""

    __tablename__ = "passkeys"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    credential_id: Mapped[bytes] = mapped_column(sa.LargeBinary(1023), unique=True)
    public_key: Mapped[bytes] = mapped_column(sa.LargeBinary)
    # The user handle the authenticator keeps with the credential; a sign-in presents it.
    user_handle: Mapped[bytes] = mapped_column(sa.LargeBinary(64))
    sign_count: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    transports: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    backed_up: Mapped[bool] = mapped_column(default=False)
    name: Mapped[str] = mapped_column(sa.String(NAME_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebAuthnChallenge(db.Model):  # type: ignore[name-defined]
    """A challenge handed out and not yet spent: its SHA-256, the ceremony it is for, and
    what asked for it (the user registering; the address signing in)."""

    __tablename__ = "webauthn_challenges"

    id: Mapped[int] = mapped_column(primary_key=True)
    challenge_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    ceremony: Mapped[str] = mapped_column(sa.String(16))
    user_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    address: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def passkey_count(user_id: int) -> int:
    """How many passkeys the user has: a way in each (app/identity/ways_in.py)."""
    query = sa.select(sa.func.count(Passkey.id)).where(Passkey.user_id == user_id)
    return db.session.scalar(query) or 0


register_way_in("passkeys", passkey_count)
