"""The signing-key table: public halves in clear, private halves encrypted at rest."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import UTCDateTime, db, utcnow


class SigningKey(db.Model):  # type: ignore[name-defined]
    """A key pair that signs access tokens from `signs_from` until `retired_at`; published
    from its creation (before it signs, see service.rotate_key) until its tokens expired."""

    __tablename__ = "signing_keys"
    __table_args__ = (
        # One key per algorithm without a retirement date, the newest (signing, or next to
        # sign), decided by the database: two `keys ensure` or `keys rotate` run at once
        # cannot both add one.
        sa.Index(
            "uq_signing_keys_current",
            "alg",
            unique=True,
            sqlite_where=sa.text("retired_at IS NULL"),
            postgresql_where=sa.text("retired_at IS NULL"),
        ),
    )

    # The RFC 7638 thumbprint of the public key: stable, and names nothing secret.
    kid: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(sa.String(16))
    public_jwk: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    # PKCS #8 DER, Fernet-encrypted with a key derived from SECRET_KEY (app.crypto).
    private_key_encrypted: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    signs_from: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When it stops signing: set by the rotation that replaces it, possibly in the future.
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:  # never the private part
        return (
            f"<SigningKey kid={self.kid} signs_from={self.signs_from} retired_at={self.retired_at}>"
        )
