"""Keys derived from SECRET_KEY: derived once per process, per purpose and secret."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from app.core import crypto


@pytest.fixture
def hkdf_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """Every derivation made, with empty caches to start from."""
    calls: list[bytes] = []
    real = crypto.HKDF

    class CountingHKDF:
        def __init__(self, **kwargs: Any) -> None:
            self.hkdf = real(**kwargs)

        def derive(self, key_material: bytes) -> bytes:
            calls.append(key_material)
            return bytes(self.hkdf.derive(key_material))

    monkeypatch.setattr(crypto, "HKDF", CountingHKDF)
    crypto._derived.cache_clear()
    crypto._fernet.cache_clear()
    yield calls
    crypto._derived.cache_clear()
    crypto._fernet.cache_clear()


def test_a_key_is_derived_once_per_purpose_and_secret(app: Flask, hkdf_calls: list[Any]) -> None:
    with app.app_context():
        first = crypto.fernet_for("email-outbox")
        assert crypto.fernet_for("email-outbox") is first
        token = first.encrypt(b"payload")
        assert crypto.derive_key("email-outbox") == crypto.derive_key("email-outbox")
        assert len(hkdf_calls) == 1

        # Another purpose, or another secret (a previous SECRET_KEY), is another key.
        assert crypto.fernet_for("totp-secrets") is not first
        previous = crypto.fernet_for("email-outbox", "an older secret key, long enough")
        assert previous is not first
        assert len(hkdf_calls) == 3
        assert crypto.fernet_for("email-outbox").decrypt(token) == b"payload"
