"""Keys derived from SECRET_KEY, one per purpose.

HKDF-SHA256 with the purpose as its `info` gives each use its own key: a key that leaks from
one use (or is rotated for it) says nothing about another, and no new secret has to be
configured. Changing SECRET_KEY changes every derived key, so whatever one encrypted can no
longer be read.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

INFO_PREFIX = b"cinema-accounts/"


def derive_key(purpose: str) -> bytes:
    """32 bytes for `purpose` (e.g. "email-outbox"), from SECRET_KEY."""
    return HKDF(
        algorithm=SHA256(), length=32, salt=None, info=INFO_PREFIX + purpose.encode()
    ).derive(current_app.config["SECRET_KEY"].encode())


def fernet_for(purpose: str) -> Fernet:
    """Authenticated encryption (AES-128-CBC + HMAC-SHA256) with the key of `purpose`."""
    return Fernet(base64.urlsafe_b64encode(derive_key(purpose)))
