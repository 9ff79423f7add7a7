"""Schema pieces every package's bodies use: text without NUL, the one normalised email, and
the `{detail}` answer."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

# PostgreSQL text cannot hold NUL, so text that is stored or compared refuses it; as a
# `pattern` in /openapi.json it is part of the documented contract too.
no_nul = validate.Regexp(r"^[^\x00]*$", error="Must not contain NUL (U+0000) characters.")


# RFC 5321 section 4.5.3.1: a local part of at most 64 octets, a path of at most 256 (so an
# address of at most 254). Longer ones cannot be delivered, and over 320 the column refuses.
MAX_LOCAL_PART = 64
MAX_ADDRESS = 254


_is_email = validate.Email()


def normalise_email(value: Any) -> str:
    """The account's form of an email: trimmed and lower-cased, then validated.

    Only addresses the service can mail are accepted: Flask-Mail speaks no SMTPUTF8, so an
    account with a non-ASCII address would never receive its activation link. What this
    returns is what accounts are stored and found under, so the per-account rate limits key
    on it too (`"\u212aate@x"`, with a KELVIN SIGN, is `kate@x`). Raises ValidationError.
    """
    if not isinstance(value, str):
        raise ValidationError("Not a valid string.")
    result = value.strip().lower()
    if not result.isascii():
        raise ValidationError(
            "Use an address in ASCII letters; write an internationalised domain in its xn-- form."
        )
    if len(result.rsplit("@", 1)[0]) > MAX_LOCAL_PART or len(result) > MAX_ADDRESS:
        raise ValidationError(
            f"An address has at most {MAX_ADDRESS} characters, {MAX_LOCAL_PART} before the @."
        )
    return _is_email(result)


class NormalisedEmail(fields.Email):
    """An email field whose value is `normalise_email()`'s: trimmed, lower-cased, validated."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        return normalise_email(value)


def TokenString() -> fields.String:
    """An opaque token in a body (an emailed link's, a refresh token): required, bounded."""
    return fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=4096))


class DetailSchema(Schema):
    detail = fields.String(required=True)
