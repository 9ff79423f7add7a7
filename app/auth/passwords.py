"""Password hashing (argon2id) and the strength rule of the contract."""

from __future__ import annotations

from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from zxcvbn import zxcvbn

from app.errors import InvalidInput

MIN_LENGTH = 8
MAX_LENGTH = 128
# zxcvbn's score 3 starts at 10**8 guesses ("safely unguessable" for online attacks).
MIN_GUESSES_LOG10 = 8.0
# zxcvbn's cost grows faster than linearly with length; long passwords are judged in
# chunks whose guess counts multiply, which keeps a 128-character check well under 50 ms.
CHUNK = 48

# argon2-cffi's default profile (RFC 9106 low-memory: argon2id, t=3, m=64 MiB, p=4) is above
# OWASP's minimum (m=19 MiB, t=2, p=1).
hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return hasher.check_needs_rehash(password_hash)


@lru_cache(maxsize=1)
def dummy_hash() -> str:
    """Verified against when the email is unknown, so both failures take the same time."""
    return hasher.hash("not a real password, only here to spend the same time")


def _chunks(password: str) -> list[str]:
    # A chunk that repeats earlier text adds nothing, so "ab" * 64 is as weak as "ab" * 24.
    starts = range(0, len(password), CHUNK)
    return [
        password[i : i + CHUNK]
        for i in starts
        if i == 0 or password[i : i + CHUNK] not in password[:i]
    ]


def check_password_strength(password: str, email: str, field: str = "password") -> None:
    """Raise InvalidInput saying why, and what to do, when the password is too guessable."""
    if len(password) < MIN_LENGTH:
        _refuse(field, f"Use at least {MIN_LENGTH} characters; a few unrelated words work well.")
    if len(password) > MAX_LENGTH:
        _refuse(field, f"Use at most {MAX_LENGTH} characters.")
    local_part = email.split("@", 1)[0]
    lowered = password.casefold()
    if (len(local_part) >= 4 and local_part.casefold() in lowered) or email.casefold() in lowered:
        _refuse(field, "Do not build the password from your email address; choose unrelated words.")
    results = [
        zxcvbn(chunk, user_inputs=[email, local_part], max_length=CHUNK)
        for chunk in _chunks(password)
    ]
    if sum(r["guesses_log10"] for r in results) >= MIN_GUESSES_LOG10:
        return
    feedback = min(results, key=lambda r: r["guesses_log10"])["feedback"]
    advice = (
        [feedback["warning"], *feedback["suggestions"]]
        if feedback["warning"]
        else feedback["suggestions"]
    )
    hint = " ".join(a for a in advice if a) or "Add another word or two; uncommon words are better."
    _refuse(field, f"This password is too easy to guess. {hint}")


def _refuse(field: str, message: str) -> None:
    raise InvalidInput("The password does not meet the rules.", errors={field: [message]})
