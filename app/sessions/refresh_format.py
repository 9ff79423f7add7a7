"""The text of a refresh token: `<family>.<generation>.<secret>`, and what proves it ours.

- `family`: the login's id, 32 lowercase hex digits (the `fam` claim of its access tokens);
- `generation`: how many times the login has been refreshed when the token was made (0 at
  the login), in decimal without leading zeros;
- `secret`: 64 base64url characters, 48 bytes: 32 secret bytes, then a 16-byte tag,
  HMAC-SHA256 over family, generation and those bytes with a key derived from SECRET_KEY.

About 100 characters, all URL-safe. The login's row keeps only the SHA-256 of its current
token's text and of the one spent last, so a database leak yields no usable token, and a
token is spent, as before, by its hash. The tag proves that a token of an earlier generation
was issued here, without keeping it: presented again it is reuse and ends its login, while a
made-up one (a family id is in every access token other services see) ends nothing.

The 32 secret bytes of generation 0 are random; those of every later generation are derived
from the text of the token spent, the instant of that rotation (on the row, never shown) and
another key derived from SECRET_KEY. So a request that raced a rotation (REFRESH_REUSE_GRACE)
is given the very token the rotation made, which is stored nowhere; and SECRET_KEY with an
old token still cannot predict its successors without the database's instants.

Tokens issued before this format (43 opaque characters) are still accepted once, by their
hash, each rotated into this form (`legacy`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from app.core.crypto import derive_key, hash_token

_TOKEN = re.compile(r"([0-9a-f]{32})\.(0|[1-9][0-9]{0,9})\.([A-Za-z0-9_-]{64})")
# secrets.token_urlsafe(32), as the service made refresh tokens before (0016 migration).
_LEGACY = re.compile(r"[A-Za-z0-9_-]{40,64}")
# The column is a 32-bit integer; a login refreshed every second for a year is 3e7.
MAX_GENERATION = 2**31 - 2
SECRET_BYTES, TAG_BYTES = 32, 16
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Presented:
    """A refresh token as sent: its parts (None for a legacy token, whose login only the
    database knows), its text and the hash its login row keeps."""

    family: str | None
    generation: int
    text: str
    hash: str
    secret: bytes = b""
    tag: bytes = b""

    @property
    def legacy(self) -> bool:
        return self.family is None

    def is_tagged_ours(self) -> bool:
        """Whether this service made a token of this family, generation and secret (under
        the current SECRET_KEY): its tag is right."""
        if self.family is None:
            return False
        return hmac.compare_digest(_tag(self.family, self.generation, self.secret), self.tag)


def parse(text: str) -> Presented | None:
    """The token's parts, or None when it has neither shape (no database is asked then)."""
    match = _TOKEN.fullmatch(text)
    if match is not None:
        family, generation, encoded = match.groups()
        number = int(generation)
        if number > MAX_GENERATION:
            return None
        raw = base64.urlsafe_b64decode(encoded)  # 64 characters: exactly 48 bytes, no padding
        return Presented(
            family, number, text, hash_token(text), raw[:SECRET_BYTES], raw[SECRET_BYTES:]
        )
    if _LEGACY.fullmatch(text) is not None:
        return Presented(None, 0, text, hash_token(text))
    return None


def first_token(family: str) -> str:
    """The token of a new login: generation 0, random."""
    return _compose(family, 0, secrets.token_bytes(SECRET_BYTES))


def next_token(family: str, generation: int, spent_text: str, rotated_at: datetime) -> str:
    """The token of `generation`, made by spending `spent_text` at `rotated_at`: the same
    text every time it is asked with the same values."""
    instant = (rotated_at - _EPOCH) // _MICROSECOND
    message = f"{family}.{generation}.{instant}.{spent_text}".encode()
    secret = hmac.new(derive_key("refresh-token-next"), message, hashlib.sha256).digest()
    return _compose(family, generation, secret)


def _compose(family: str, generation: int, secret: bytes) -> str:
    tagged = base64.urlsafe_b64encode(secret + _tag(family, generation, secret)).decode()
    return f"{family}.{generation}.{tagged}"


def _tag(family: str, generation: int, secret: bytes) -> bytes:
    message = f"{family}.{generation}.".encode() + secret
    return hmac.new(derive_key("refresh-token-tag"), message, hashlib.sha256).digest()[:TAG_BYTES]
