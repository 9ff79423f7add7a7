"""The challenge store: in the database, each challenge single use, 5 minutes, and bound to
the ceremony and to what asked for it (the user who registers; the address that signs in).

The database rather than Redis: the spend is one DELETE whose row count says who won (two
requests racing with one challenge: one wins), it needs no second store to configure, and
the scheduled clean-up deletes what nobody spent. It is bounded: each user, and each
address, keeps only its MAX_LIVE newest challenges, so asking again and again grows nothing.
Only the SHA-256 of a challenge is stored.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa

from app.core.batches import Batches
from app.core.db import db, rows_changed, utcnow
from app.passkeys.models import WebAuthnChallenge

CHALLENGE_BYTES = 32  # 256 bits
CHALLENGE_TTL = timedelta(minutes=5)
MAX_LIVE = 5
REGISTER = "register"
LOGIN = "login"


def _hash(challenge: bytes) -> str:
    return hashlib.sha256(challenge).hexdigest()


def issue_challenge(ceremony: str, *, user_id: int | None, address: str | None) -> bytes:
    """A new random challenge for `ceremony`, bound to `user_id` (registration) or `address`
    (sign-in); the oldest of that owner's challenges beyond MAX_LIVE are dropped. The caller
    commits."""
    owner = (
        WebAuthnChallenge.user_id == user_id
        if user_id is not None
        else WebAuthnChallenge.address == address
    )
    mine = sa.and_(WebAuthnChallenge.ceremony == ceremony, owner)
    kept = (
        sa.select(WebAuthnChallenge.id)
        .where(mine)
        .order_by(WebAuthnChallenge.id.desc())
        .limit(MAX_LIVE - 1)
    )
    older = WebAuthnChallenge.id.not_in(kept.scalar_subquery())
    db.session.execute(sa.delete(WebAuthnChallenge).where(mine, older))
    challenge = secrets.token_bytes(CHALLENGE_BYTES)
    db.session.add(
        WebAuthnChallenge(
            challenge_hash=_hash(challenge),
            ceremony=ceremony,
            user_id=user_id,
            address=address,
            expires_at=utcnow() + CHALLENGE_TTL,
        )
    )
    return challenge


def spend_challenge(challenge: bytes, ceremony: str, *, user_id: int | None = None) -> bool:
    """Spend `challenge`: True when it was issued for `ceremony` (to `user_id`, for a
    registration), unspent and unexpired. The caller commits."""
    owned = WebAuthnChallenge.ceremony == ceremony
    if user_id is not None:
        owned = sa.and_(owned, WebAuthnChallenge.user_id == user_id)
    found = WebAuthnChallenge.challenge_hash == _hash(challenge)
    # One DELETE: of two requests racing with one challenge, one deletes the row.
    live = WebAuthnChallenge.expires_at > utcnow()
    return rows_changed(sa.delete(WebAuthnChallenge).where(found, owned, live)) == 1


def delete_expired_challenges(now: datetime, batches: Batches) -> int:
    """Delete the challenges expired by `now` (the scheduled clean-up)."""
    return batches.delete(WebAuthnChallenge, WebAuthnChallenge.expires_at, up_to=now)
