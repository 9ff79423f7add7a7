"""Encryption at rest for secrets the service must read back (signing keys, ...)."""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app


def fernet_for(purpose: str) -> Fernet:
    """A Fernet key derived from SECRET_KEY, a different one for each purpose.

    HKDF with the purpose as its `info` gives independent keys from one setting, so no
    further secret is needed to start, and a value encrypted for one purpose cannot be
    decrypted as another. Changing SECRET_KEY makes what was encrypted unreadable.
    """
    secret = str(current_app.config["SECRET_KEY"]).encode()
    derived = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=f"accounts-service/{purpose}".encode(),
    ).derive(secret)
    return Fernet(base64.urlsafe_b64encode(derived))
