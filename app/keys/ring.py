"""Each process's copy of the signing keys: the current one signs, the live ones verify.

Every process (gunicorn worker, RQ worker, CLI) reads the keys from the database and keeps
them for SIGNING_KEY_CACHE_SECONDS, so a rotation needs no restart: every process publishes
the new key within that time and signs with it from the moment the rotation set, which its
copy holds (after `keys rotate --now`, within that time). A token whose `kid` a process does
not know yet (signed by a process that noticed the rotation first) makes it reload at once;
such reloads happen at most once a second, so made-up kids cannot hammer the database.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from flask import Flask, current_app
from sqlalchemy.orm import Session

from app.core.db import db, utcnow
from app.keys import service
from app.keys.models import SigningKey

FORCED_RELOAD_INTERVAL = 1.0  # seconds


@dataclass(frozen=True)
class PublicKey:
    jwk: dict[str, Any]
    key: PublicKeyTypes
    published_until: datetime | None

    def is_live(self, now: datetime) -> bool:
        return self.published_until is None or now < self.published_until


@dataclass(frozen=True)
class Signer:
    key: SigningKey  # detached: its columns only
    private: PrivateKeyTypes


@dataclass(frozen=True)
class Snapshot:
    """The keys as one database read found them; replaced whole, never changed."""

    signers: list[Signer]  # the keys that sign now or later, latest to start first
    public: dict[str, PublicKey]
    loaded_at: float  # time.monotonic()

    def signer(self, moment: datetime) -> Signer | None:
        return next((s for s in self.signers if service.signs_at(s.key, moment)), None)


class KeyRing:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None

    def sign(self, claims: dict[str, Any]) -> str:
        """An access token: the kid and the key come from the same snapshot."""
        signer = self._fresh(self._ttl()).signer(utcnow())
        if signer is None:
            raise service.SigningKeyError(
                "there is no signing key: run `flask --app wsgi keys ensure`"
            )
        return jwt.encode(
            claims,
            signer.private,  # type: ignore[arg-type]
            algorithm=service.ALGORITHM,
            headers={"kid": signer.key.kid},
        )

    def verification_key(self, kid: Any) -> PublicKeyTypes:
        """The public key of `kid`; a missing, unknown or expired kid is an invalid token."""
        if not isinstance(kid, str):
            raise jwt.InvalidTokenError("The token names no signing key (kid).")
        found = self._live(self._fresh(self._ttl()), kid)
        if found is None:
            found = self._live(self._fresh(min(self._ttl(), FORCED_RELOAD_INTERVAL)), kid)
        if found is None:
            raise jwt.InvalidTokenError("The token's signing key (kid) is not ours.")
        return found.key

    def published(self) -> list[dict[str, Any]]:
        """The public JWKs of every key whose tokens may still be alive."""
        now = utcnow()
        public = self._fresh(self._ttl()).public.values()
        return [key.jwk for key in public if key.is_live(now)]

    def forget(self) -> None:
        """Read the keys again on next use (this process just rotated them)."""
        self._snapshot = None

    def _live(self, snapshot: Snapshot, kid: str) -> PublicKey | None:
        found = snapshot.public.get(kid)
        return found if found is not None and found.is_live(utcnow()) else None

    @staticmethod
    def _ttl() -> float:
        return float(current_app.config["SIGNING_KEY_CACHE_SECONDS"])

    def _fresh(self, max_age: float) -> Snapshot:
        snapshot = self._snapshot
        if snapshot is not None and time.monotonic() - snapshot.loaded_at < max_age:
            return snapshot
        with self._lock:  # one reload per process, however many threads noticed
            snapshot = self._snapshot
            if snapshot is None or time.monotonic() - snapshot.loaded_at >= max_age:
                snapshot = self._snapshot = _load()
            return snapshot


def _load() -> Snapshot:
    keys = _read_live_keys()
    now = utcnow()
    if current_app.config["APP_ENV"] == "development" and not _signs_now(keys, now):
        service.ensure_key()  # `flask run` works without `keys ensure` first
        keys = _read_live_keys()
    # Those that sign now or will: a snapshot kept across a rotation's switch has the next key.
    signing = [key for key in keys if key.retired_at is None or key.retired_at > now]
    signing.sort(key=lambda key: key.signs_from, reverse=True)
    return Snapshot(
        signers=[Signer(key, service.private_key(key)) for key in signing],
        public={
            key.kid: PublicKey(
                jwk={**key.public_jwk, "kid": key.kid, "alg": key.alg, "use": "sig"},
                key=jwt.PyJWK(key.public_jwk, algorithm=key.alg).key,
                published_until=service.published_until(key),
            )
            for key in keys
        },
        loaded_at=time.monotonic(),
    )


def _read_live_keys() -> list[SigningKey]:
    # A session of its own: a reload happens in the middle of some request, whose unit of
    # work it must neither flush nor commit.
    with Session(db.engine) as session:
        keys = service.live_keys(session)
        session.expunge_all()
        return keys


def _signs_now(keys: list[SigningKey], now: datetime) -> bool:
    return any(service.signs_at(key, now) for key in keys)


def init_keys(app: Flask) -> None:
    app.extensions["signing_keys"] = KeyRing()


def keyring() -> KeyRing:
    ring: KeyRing = current_app.extensions["signing_keys"]
    return ring
