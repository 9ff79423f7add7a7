"""Schema pieces every package's bodies use: text without NUL, the one normalised email, and
the `{detail}` answer."""

from __future__ import annotations

import re
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

# A local part is the mailbox's name, nothing more: "a%b@relay" and "b!a@relay" ask the relay
# to pass the message on to b (source routing, still honoured by some relays), and a quoted
# one can hold an "@" that parsers along the way read as another address.
ROUTED = "Use a plain address: quotes, % or ! in it can send mail somewhere else."
# Names that resolve inside a network, never to a public mail host: localhost (RFC 6761),
# local (mDNS, RFC 6762) and the private names of its appendix G, home.arpa (RFC 8375),
# internal (ICANN's private-use name) and the customary localdomain.
INTERNAL_NAMES = (
    "localhost",
    "localdomain",
    "local",
    "internal",
    "intranet",
    "private",
    "corp",
    "home",
    "lan",
    "home.arpa",
)
# A top-level label is letters, or an internationalised name in its xn-- form; never digits,
# so neither 127.0.0.10 nor 0x7f.0x01 (127.0.0.1 to inet_aton) passes for a domain name.
_PUBLIC_TLD = re.compile(r"[a-z]{2,63}|xn--[a-z0-9-]{1,59}")
EMAIL_RULE = (
    "An address on a public domain name (not an IP address, localhost or a local network"
    " name), without quotes, % or !; compared trimmed and lower-cased."
)
NOT_PUBLIC = (
    "Use an address on a public domain name, such as name@example.com: not an IP address,"
    " localhost or a local network name."
)


def _refuse_internal_routes(address: str) -> None:
    """Refuse an address whose mail our relay would carry inside its own network, or on to
    a server the address names: the activation email would go wherever a stranger points."""
    local, at, domain = address.rpartition("@")
    if not at:
        return  # no address at all: the syntax check says so
    if set(local) & set('%!"'):
        raise ValidationError(ROUTED)
    labels = domain.split(".")
    internal = any(domain == name or domain.endswith(f".{name}") for name in INTERNAL_NAMES)
    # An address literal ([127.0.0.1], [IPv6:::1]) has no top-level label of letters either.
    if len(labels) < 2 or internal or not _PUBLIC_TLD.fullmatch(labels[-1]):
        raise ValidationError(NOT_PUBLIC)


def normalise_email(value: Any) -> str:
    """The account's form of an email: trimmed and lower-cased, then validated.

    Only addresses the service can mail are accepted: Flask-Mail speaks no SMTPUTF8, so an
    account with a non-ASCII address would never receive its activation link. What this
    returns is what accounts are stored and found under, so the per-account rate limits key
    on it too (`"\u212aate@x"`, with a KELVIN SIGN, is `kate@x`). Addresses that route mail
    inside the network or through another server are refused (`_refuse_internal_routes`).
    Raises ValidationError.
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
    _refuse_internal_routes(result)
    return _is_email(result)


class NormalisedEmail(fields.Email):
    """An email field whose value is `normalise_email()`'s: trimmed, lower-cased, validated."""

    def __init__(self, **kwargs: Any) -> None:
        # What JSON Schema can say of the rule, so /openapi.json documents it: the pattern
        # holds for every accepted value, as no %, ! or " can stand in the domain either.
        documented = {"pattern": '^[^%!"]*$', "description": EMAIL_RULE}
        super().__init__(metadata={**documented, **kwargs.pop("metadata", {})}, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        return normalise_email(value)


def TokenString() -> fields.String:
    """An opaque token in a body (an emailed link's, a refresh token): required, bounded."""
    return fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=4096))


class DetailSchema(Schema):
    detail = fields.String(required=True)
