"""The tables of two-factor sign-in: the TOTP factor, its recovery codes, and the logins
waiting for their second step."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import UTCDateTime, db, utcnow


class TotpFactor(db.Model):  # type: ignore[name-defined]
    """A user's authenticator app: pending from setup until confirmed, then on for as long as
    `users.mfa_enabled` says so (the flag the guard and the user object read)."""

    __tablename__ = "mfa_totp_factors"

    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    # The base32 secret, Fernet-encrypted with a key derived from SECRET_KEY (app.core.crypto).
    secret_encrypted: Mapped[str] = mapped_column(sa.Text)
    # The time step of the last code accepted: a code of that step or an earlier one is a
    # replay (RFC 6238 section 5.2).
    last_used_step: Mapped[int | None] = mapped_column(sa.BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:  # never the secret
        return f"<TotpFactor user_id={self.user_id}>"


class RecoveryCode(db.Model):  # type: ignore[name-defined]
    """One single-use recovery code; only its keyed hash is stored (see totp.recovery_hash)."""

    __tablename__ = "mfa_recovery_codes"
    __table_args__ = (sa.UniqueConstraint("user_id", "code_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(sa.String(64))
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class MfaChallenge(db.Model):  # type: ignore[name-defined]
    """A login whose first step passed and whose second waits: the mfa_token, of which only
    the SHA-256 is stored; single use, short-lived, bound to its account."""

    __tablename__ = "mfa_challenges"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
