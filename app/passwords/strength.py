"""The strength rule of the contract: 8 to 128 characters, not guessable, not built from the
account's email."""

from __future__ import annotations

import re

from app.core.errors import InvalidInput
from app.passwords.estimator import estimate

MIN_LENGTH = 8
MAX_LENGTH = 128
# zxcvbn's score 3 starts at 10**8 guesses ("safely unguessable" for online attacks).
MIN_GUESSES_LOG10 = 8.0
_SEPARATORS = re.compile(r"[\W_]+")

EMAIL_MESSAGE = "Do not build the password from your email address; choose unrelated words."


def _email_words(email: str) -> list[str]:
    """The words of the address an attacker who targets this user knows, longest first."""
    words = {w for w in _SEPARATORS.split(email.casefold()) if len(w) >= 4}
    return sorted(words | {w[::-1] for w in words}, key=len, reverse=True)


def _built_from_email(password: str, email: str) -> bool:
    """The local part, ignoring case and separators, forwards or backwards, is in the password:
    "MarieCurie1867!" and "eiruc.eiram" are built from marie.curie@radium.org."""
    local_part = _SEPARATORS.sub("", email.split("@", 1)[0].casefold())
    squeezed = _SEPARATORS.sub("", password.casefold())
    if email.casefold() in password.casefold():
        return True
    return len(local_part) >= 4 and (local_part in squeezed or local_part[::-1] in squeezed)


def check_password_strength(password: str, email: str, field: str = "password") -> None:
    """Raise InvalidInput saying why, and what to do, when the password is too guessable."""
    if len(password) < MIN_LENGTH:
        _refuse(field, f"Use at least {MIN_LENGTH} characters; a few unrelated words work well.")
    if len(password) > MAX_LENGTH:
        _refuse(field, f"Use at most {MAX_LENGTH} characters.")
    if _built_from_email(password, email):
        _refuse(field, EMAIL_MESSAGE)
    words = _email_words(email)
    # The address's words add nothing against a targeted guess, so only the rest is judged.
    # (zxcvbn's own user_inputs miss them next to separators: "curie_marie radium 1867".)
    rest = re.sub("|".join(map(re.escape, words)), " ", password, flags=re.I) if words else ""
    if rest and rest != password:
        rest = _SEPARATORS.sub(" ", rest).strip()
        if not rest or estimate(rest, [email], MIN_GUESSES_LOG10).guesses_log10 < MIN_GUESSES_LOG10:
            _refuse(field, EMAIL_MESSAGE)
    judged = estimate(password, [email, *words], MIN_GUESSES_LOG10)
    if judged.guesses_log10 >= MIN_GUESSES_LOG10:
        return
    advice = [judged.feedback["warning"], *judged.feedback["suggestions"]]
    hint = " ".join(a for a in advice if a) or "Add another word or two; uncommon words are better."
    _refuse(field, f"This password is too easy to guess. {hint}")


def _refuse(field: str, message: str) -> None:
    raise InvalidInput("The password does not meet the rules.", errors={field: [message]})
