"""Password hashes: argon2id, upgraded at the next login when the parameters are raised."""

from __future__ import annotations

from functools import lru_cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

# argon2id at OWASP's recommended minimum (m=19 MiB, t=2, p=1): about 25 ms a hash here, where
# argon2-cffi's default (t=3, m=64 MiB, p=4) took about 170 ms and capped sign-ups at ~6/s on
# two cores. Raising these later is safe: older hashes are upgraded at the next login.
hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, type=Type.ID)


def hash_password(password: str) -> str:
    return hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    # An account without a password (social sign-in) is checked against the dummy, so it
    # costs what a wrong password costs and never matches.
    try:
        if password_hash is None:
            hasher.verify(dummy_hash(), password)
            return False
        return hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str | None) -> bool:
    if password_hash is None:
        return False
    return hasher.check_needs_rehash(password_hash)


@lru_cache(maxsize=1)
def dummy_hash() -> str:
    """Verified against when the email is unknown, so both failures take the same time."""
    return hasher.hash("not a real password, only here to spend the same time")
