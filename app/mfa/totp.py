"""The authenticator app's side of two-factor (RFC 6238) and the recovery codes: a secret
made, encrypted and read; its otpauth URI and QR code; a code matched to its time step;
recovery codes made, read as typed, and hashed. No database here."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime

import pyotp
import segno
from cryptography.fernet import Fernet

from app.core.crypto import fernet_for

ENCRYPTION_PURPOSE = "totp-secrets"
# What every authenticator app expects from an otpauth URI that names nothing else: 30-second
# steps, 6 digits, HMAC-SHA-1 (pyotp's defaults, written here to say they are chosen).
STEP_SECONDS = 30
DIGITS = 6
# Steps of clock skew accepted either side of the server's (RFC 6238 section 5.2 suggests one).
WINDOW = 1
RECOVERY_CODES = 10
# Crockford's base32: no i, l, o or u, so nothing reads as another symbol. 12 symbols are 60
# random bits, written as three groups of four.
RECOVERY_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
RECOVERY_SYMBOLS = 12
# Spaces, hyphens and case are forgiven, and the letters left out are read as the digits a
# person meant by them.
_AS_TYPED = str.maketrans({"i": "1", "l": "1", "o": "0", " ": None, "-": None})
_TOTP_CODE = re.compile(rf"[0-9]{{{DIGITS}}}")
# Every code the API takes: six digits, or a recovery code; spaces and hyphens anywhere.
CODE_PATTERN = r"^[ -]*(?:(?:[0-9][ -]*){6}|(?:[0-9a-tv-zA-TV-Z][ -]*){12})$"


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)


def new_secret() -> str:
    """160 random bits in base32, the length RFC 4226 recommends."""
    return pyotp.random_base32(length=32)


def cipher(secret_key: str | None = None) -> Fernet:
    """The key that encrypts TOTP secrets: derived from SECRET_KEY, or from `secret_key`
    (`flask mfa reencrypt` reads the secrets a previous SECRET_KEY encrypted)."""
    return fernet_for(ENCRYPTION_PURPOSE, secret_key)


def encrypt_secret(secret: str) -> str:
    return cipher().encrypt(secret.encode()).decode()


def decrypt_secret(encrypted: str) -> str:
    return cipher().decrypt(encrypted.encode()).decode()


def otpauth_uri(secret: str, account_name: str, issuer: str) -> str:
    return _totp(secret).provisioning_uri(name=account_name, issuer_name=issuer)


def qr_svg(uri: str) -> str:
    """The URI as a QR code, an inline SVG a page can show as it is (white behind it, so it
    scans on a dark page too)."""
    return str(segno.make(uri, error="m").svg_inline(scale=4, light="#fff"))


def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step whose code `code` is, within WINDOW steps of `now`, or None."""
    totp = _totp(secret)
    current = totp.timecode(now)
    for step in range(current - WINDOW, current + WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def as_typed(code: str) -> str:
    """A code as the person meant it: lower case, without spaces or hyphens, with i, l and o
    read as 1, 1 and 0."""
    return code.lower().translate(_AS_TYPED)


def is_totp_code(code: str) -> bool:
    """Whether a code read by `as_typed` is an authenticator's code (else a recovery code)."""
    return _TOTP_CODE.fullmatch(code) is not None


def new_recovery_codes() -> list[str]:
    codes = []
    for _ in range(RECOVERY_CODES):
        symbols = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_SYMBOLS))
        codes.append("-".join(symbols[i : i + 4] for i in range(0, RECOVERY_SYMBOLS, 4)))
    return codes


def recovery_hash(secret: str, code: str) -> str:
    """What is stored of a recovery code (read by `as_typed`): an HMAC keyed with the
    factor's secret. A copy of the database alone cannot test guesses against it (the
    secret is encrypted), and a SECRET_KEY rotation, which re-encrypts the secret, keeps
    every code working."""
    return hmac.new(secret.encode(), b"recovery-code:" + code.encode(), hashlib.sha256).hexdigest()
