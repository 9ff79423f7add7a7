"""The use cases of `flask keys`: make the first key, rotate, list; and what a key is.

A key is published (and verifies tokens) from its creation until no token it signed can
still be alive: its retirement, plus the time a process may go on signing with it before
its cache notices the rotation (SIGNING_KEY_CACHE_SECONDS), plus the lifetime of an access
token (JWT_ACCESS_TOKEN_EXPIRES). After that its row is deleted by the next
`keys ensure` or `keys rotate`, and is never published again whatever runs.

A key signs from `signs_from` until `retired_at`. A rotation publishes the new key first and
lets it sign only once no cache can still hold a JWKS without it (`publish_ahead`), so the
services that verify our tokens with a cached JWKS never meet a kid they do not know.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from cryptography.fernet import InvalidToken
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_der_private_key,
)
from flask import current_app
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.crypto import fernet_for
from app.core.db import db, utcnow
from app.core.errors import Conflict
from app.keys.models import SigningKey

ALGORITHM = "EdDSA"
ENCRYPTION_PURPOSE = "signing-keys"
# How long whoever fetches the JWKS may keep it. Short: a verifier that meets an unknown kid
# fetches again anyway (PyJWKClient does), and a shared cache in front of it must not hide a
# new key for long.
JWKS_MAX_AGE = 300


class SigningKeyError(RuntimeError):
    """No key can sign: none was made, or its private part cannot be read. The message
    says what to run; it reaches the log, never a response."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638: SHA-256 of the required members, sorted, without whitespace."""
    required = {name: jwk[name] for name in ("crv", "kty", "x")}
    canonical = json.dumps(required, sort_keys=True, separators=(",", ":"))
    return _b64url(hashlib.sha256(canonical.encode()).digest())


def new_signing_key() -> SigningKey:
    private = Ed25519PrivateKey.generate()
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": _b64url(private.public_key().public_bytes_raw())}
    der = private.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
    return SigningKey(
        kid=thumbprint(jwk),
        alg=ALGORITHM,
        public_jwk=jwk,
        private_key_encrypted=fernet_for(ENCRYPTION_PURPOSE).encrypt(der).decode(),
    )


def private_key(key: SigningKey) -> PrivateKeyTypes:
    try:
        der = fernet_for(ENCRYPTION_PURPOSE).decrypt(key.private_key_encrypted.encode())
    except InvalidToken as exc:
        raise SigningKeyError(
            f"the private part of signing key {key.kid} cannot be decrypted: SECRET_KEY is not "
            "the one it was encrypted with. Restore SECRET_KEY, or run `flask keys rotate`."
        ) from exc
    return load_der_private_key(der, password=None)


def _can_sign(key: SigningKey) -> bool:
    try:
        private_key(key)
    except SigningKeyError:
        return False
    return True


def retention() -> timedelta:
    """How long a retired key stays published (see the module's docstring)."""
    config = current_app.config
    return timedelta(
        seconds=config["SIGNING_KEY_CACHE_SECONDS"] + config["JWT_ACCESS_TOKEN_EXPIRES"]
    )


def publish_ahead() -> timedelta:
    """How long a rotated-in key is published before it signs: a process serves the JWKS it
    loaded for up to SIGNING_KEY_CACHE_SECONDS, and whoever fetched it keeps it for its
    max-age."""
    return timedelta(seconds=JWKS_MAX_AGE + current_app.config["SIGNING_KEY_CACHE_SECONDS"])


def published_until(key: SigningKey) -> datetime | None:
    """None for the newest key, which has no retirement date yet."""
    return None if key.retired_at is None else key.retired_at + retention()


def live_keys(session: Session) -> list[SigningKey]:
    """The keys whose tokens may still be alive, newest first."""
    still_published = sa.or_(
        SigningKey.retired_at.is_(None), SigningKey.retired_at > utcnow() - retention()
    )
    statement = sa.select(SigningKey).where(still_published).order_by(SigningKey.created_at.desc())
    return list(session.scalars(statement))


def signs_at(key: SigningKey, moment: datetime) -> bool:
    """Whether `key` signs at `moment`: of the algorithm in use, past its `signs_from`, not
    yet retired. `signing_at` says the same in SQL."""
    return (
        key.alg == ALGORITHM
        and key.signs_from <= moment
        and (key.retired_at is None or moment < key.retired_at)
    )


def signing_at(moment: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(
        SigningKey.alg == ALGORITHM,
        SigningKey.signs_from <= moment,
        sa.or_(SigningKey.retired_at.is_(None), SigningKey.retired_at > moment),
    )


def current_key(session: Session) -> SigningKey | None:
    """The key that signs now."""
    statement = sa.select(SigningKey).where(signing_at(utcnow()))
    return session.scalar(statement.order_by(SigningKey.signs_from.desc()).limit(1))


def ensure_key() -> SigningKey | None:
    """Create a key that signs at once if none signs now; return it, or None when one does.

    A current key whose private part SECRET_KEY cannot decrypt (the secret was changed, or a
    development database outlived its checkout's `instance/`) cannot sign: it is retired,
    still published for the tokens it signed, and a new one made, instead of every login
    failing. Idempotent, and safe to run twice at once: the unique index lets one insert win."""
    with _own_session() as session:
        _drop_expired_keys(session)
        current = current_key(session)
        if current is not None and _can_sign(current):
            session.commit()
            return None
        key = _rotate_in(session, signs_from=utcnow())
        try:
            session.commit()
        except IntegrityError:
            return None  # another process made the key a moment ago
        return key


def rotate_key(at_once: bool = False) -> SigningKey:
    """Make a new key, published at once, that signs once every cache that may hold a JWKS
    without it has expired (`publish_ahead`), or at once (`at_once`: the current key is
    compromised, whatever it costs the services holding such a JWKS). One transaction."""
    now = utcnow()
    with _own_session() as session:
        _drop_expired_keys(session)
        key = _rotate_in(session, signs_from=now if at_once else now + publish_ahead())
        try:
            session.commit()
        except IntegrityError as exc:
            raise Conflict(
                "Another rotation ran at the same moment; see `flask keys list`."
            ) from exc
        return key


def _rotate_in(session: Session, signs_from: datetime) -> SigningKey:
    """A new key that signs from `signs_from`: the key signing now retires at that moment,
    and one still waiting to sign is withdrawn, having signed nothing."""
    now = utcnow()
    of_ours = SigningKey.alg == ALGORITHM
    still_signing = sa.or_(SigningKey.retired_at.is_(None), SigningKey.retired_at > now)
    # One rotation at a time (on PostgreSQL): a second one waits here until the first has
    # committed, then replaces its key as a rotation run after it would. The unique index
    # stops what slips past, such as two first keys.
    session.execute(sa.select(SigningKey.kid).where(of_ours, still_signing).with_for_update())
    session.execute(sa.delete(SigningKey).where(of_ours, SigningKey.signs_from > now))
    session.execute(
        sa.update(SigningKey).where(of_ours, still_signing).values(retired_at=signs_from)
    )
    key = new_signing_key()
    key.signs_from = signs_from
    session.add(key)
    return key


def all_keys() -> list[SigningKey]:
    return list(db.session.scalars(sa.select(SigningKey).order_by(SigningKey.created_at.desc())))


def _own_session() -> Session:
    """Keys are written in a transaction of their own, never in a request's unit of work."""
    return Session(db.engine, expire_on_commit=False)


def _drop_expired_keys(session: Session) -> None:
    session.execute(sa.delete(SigningKey).where(SigningKey.retired_at <= utcnow() - retention()))
