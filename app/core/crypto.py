"""Keys derived from SECRET_KEY, one per purpose; and the hash under which a token is kept.

HKDF-SHA256 with the purpose as its `info` gives each use its own key: a key that leaks from
one use (or is rotated for it) says nothing about another, and no new secret has to be
configured. Changing SECRET_KEY changes every derived key, so whatever one encrypted can no
longer be read.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

INFO_PREFIX = b"cinema-accounts/"


# A process derives each key once: the email worker reads every outbox row with the
# email-outbox key, and HKDF (with the Fernet built on it) cost more than the decryption.
# Keyed by the secret too, so a new SECRET_KEY (a test's app, a rotation read with the
# previous key) gets its own keys; a handful of purposes and secrets, hence the small bound.
KEYS_KEPT = 32


def derive_key(purpose: str, secret_key: str | None = None) -> bytes:
    """32 bytes for `purpose` (e.g. "email-outbox"), from SECRET_KEY (or from `secret_key`,
    a previous one, to read what it encrypted)."""
    root = secret_key if secret_key is not None else current_app.config["SECRET_KEY"]
    return _derived(purpose, root)


def fernet_for(purpose: str, secret_key: str | None = None) -> Fernet:
    """Authenticated encryption (AES-128-CBC + HMAC-SHA256) with the key of `purpose`; the
    same object for the same purpose and secret (Fernet keeps no state between calls)."""
    root = secret_key if secret_key is not None else current_app.config["SECRET_KEY"]
    return _fernet(purpose, root)


@lru_cache(maxsize=KEYS_KEPT)
def _derived(purpose: str, root: str) -> bytes:
    return HKDF(
        algorithm=SHA256(), length=32, salt=None, info=INFO_PREFIX + purpose.encode()
    ).derive(root.encode())


@lru_cache(maxsize=KEYS_KEPT)
def _fernet(purpose: str, root: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(_derived(purpose, root)))


def hash_token(token: str) -> str:
    """What is stored of a token we hand out (emailed links, refresh tokens): its SHA-256. The
    token carries 256 random bits, so the hash needs no salt and no slow function, and the
    database never holds a usable token."""
    return hashlib.sha256(token.encode()).hexdigest()
