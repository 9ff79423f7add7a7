"""What APP_ENV=production refuses to start with: weak or published keys, SQLite, no Redis,
no SMTP server. Read by app/core/config.py, which says it in one line."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

SIGNING_KEYS = ("SECRET_KEY", "JWT_SECRET_KEY")
# Every key value this repository ever published as an example: whoever read it could read
# what the key protects (SECRET_KEY encrypts the signing keys at rest and the email outbox),
# so production refuses it whatever its length.
PUBLISHED_EXAMPLE_KEYS = frozenset(
    {
        "dev-secret-key-not-for-production",
        "dev-jwt-secret-key-not-for-production",
        "replace-with-a-long-random-string-for-secret-key",
        "replace-with-a-long-random-string-for-jwt-key",
    }
)
MIN_KEY_LENGTH = 32
MIN_KEY_DISTINCT_CHARACTERS = 10
# Shannon entropy of the key's own characters, in bits: `secrets.token_hex(16)` (32 characters)
# has about 115, `token_urlsafe(48)` about 350; "abab..." or a word repeated has far less.
MIN_KEY_ENTROPY_BITS = 96
KEY_COMMAND = 'python -c "import secrets; print(secrets.token_urlsafe(48))"'


def entropy_bits(value: str) -> float:
    """Shannon entropy of the string's character frequencies, times its length."""
    counts = Counter(value)
    return -sum(n * math.log2(n / len(value)) for n in counts.values())


def weak_key_reason(value: str) -> str | None:
    """Why a signing key cannot protect production, or None."""
    if not value:
        return "is not set"
    if value in PUBLISHED_EXAMPLE_KEYS or value.startswith("replace-with"):
        return "is an example value published in this repository"
    if len(value) < MIN_KEY_LENGTH:
        return f"is shorter than {MIN_KEY_LENGTH} characters"
    if len(set(value)) < MIN_KEY_DISTINCT_CHARACTERS or entropy_bits(value) < MIN_KEY_ENTROPY_BITS:
        return "is not random enough (too few different characters)"
    return None


def unsafe_production_settings(config: dict[str, Any]) -> list[str]:
    """What production cannot run with, one sentence each naming the setting."""
    problems = []
    for name in SIGNING_KEYS:
        reason = weak_key_reason(str(config.get(name) or ""))
        if reason:
            problems.append(f"{name} {reason}; generate one with {KEY_COMMAND}")
    if config["SECRET_KEY"] and config["SECRET_KEY"] == config["JWT_SECRET_KEY"]:
        problems.append("SECRET_KEY and JWT_SECRET_KEY must differ")
    if str(config["SQLALCHEMY_DATABASE_URI"]).startswith("sqlite"):
        problems.append("DATABASE_URL must point at PostgreSQL, not SQLite")
    if not config["REDIS_URL"]:
        problems.append("REDIS_URL must be set (jobs and rate limits need Redis)")
    if not config["MAIL_SERVER"]:
        # Without it emails are printed: reset links would land in the process's log.
        problems.append("MAIL_SERVER must be set (without it emails, links and all, are printed)")
    return problems
