"""Request bodies of the caller's profile, avatar and deletion; the data export."""

from __future__ import annotations

import re
import unicodedata
from datetime import date

from flask_smorest.fields import Upload
from marshmallow import Schema, ValidationError, fields, validate

from app.core.db import utcnow
from app.events.schemas import EventSchema
from app.identity.models import Gender
from app.identity.schemas import UserSchema
from app.oidc.schemas import IdentitySchema
from app.passkeys.schemas import PasskeySchema
from app.passwords.schemas import Password
from app.web.schemas import no_nul

EARLIEST_BIRTH_DATE = date(1900, 1, 1)
# Names are one line of text: no tabs, newlines or other control characters, C0 or C1, and
# none of Unicode's own line breaks (NEL is C1; LINE and PARAGRAPH SEPARATOR).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


# Bidirectional embeddings, overrides and isolates reorder the text shown around them
# ("Trojan Source"): "Ada\u202eecilA" displays as "AdaAlice", and the reordering spills
# into whatever page shows the name.
_BIDI_CONTROL = re.compile(r"[\u202a-\u202e\u2066-\u2069]")
# Characters drawn as nothing that are neither spaces nor format characters (Cf, such as
# U+200B, U+200D, U+2060, U+FEFF and U+00AD): the combining grapheme joiner, the Hangul
# fillers, the Braille blank and the variation selectors.
_DRAWN_BLANK = re.compile(
    r"[\u034f\u115f\u1160\u2800\u3164\uffa0\ufe00-\ufe0f\U000e0100-\U000e01ef]"
)


def _single_line(value: str) -> None:
    if _CONTROL.search(value):
        raise ValidationError("Use a single line without control characters.")


def _no_bidi_controls(value: str) -> None:
    if _BIDI_CONTROL.search(value):
        raise ValidationError(
            "Must not contain bidirectional controls (U+202A to U+202E, U+2066 to U+2069)."
        )


def _invisible(char: str) -> bool:
    return char.isspace() or unicodedata.category(char) == "Cf" or bool(_DRAWN_BLANK.match(char))


def _not_blank(value: str) -> None:
    # A name of spaces or invisible characters displays as no name at all (or as someone
    # else's next to it); null is how a name is cleared.
    if all(_invisible(char) for char in value):
        raise ValidationError("Must not be blank; send null to clear it.")


def _plausible_birth_date(value: date) -> None:
    if value < EARLIEST_BIRTH_DATE:
        raise ValidationError(
            f"Must not be before {EARLIEST_BIRTH_DATE.isoformat()} (dates are YYYY-MM-DD)."
        )
    if value > utcnow().date():
        raise ValidationError("Must not be in the future (dates are YYYY-MM-DD).")


def Name() -> fields.String:
    return fields.String(
        allow_none=True,
        validate=[validate.Length(max=100), _single_line, _no_bidi_controls, _not_blank],
    )


class ProfileUpdateSchema(Schema):
    """Any subset of the editable fields; null clears one. Every other field is refused."""

    first_name = Name()
    last_name = Name()
    gender = fields.Enum(Gender, allow_none=True)
    date_of_birth = fields.Date(
        allow_none=True,
        validate=_plausible_birth_date,
        error_messages={"invalid": "Not a valid date: use YYYY-MM-DD, for example 1990-12-10."},
        metadata={"description": "YYYY-MM-DD, from 1900-01-01 to today"},
    )
    info = fields.String(allow_none=True, validate=[validate.Length(max=2000), no_nul])


class AvatarUploadSchema(Schema):
    avatar = Upload(
        required=True,
        metadata={"description": "A PNG, JPEG or WebP image of at most 5 MiB"},
    )


class AccountDeletionSchema(Schema):
    password = Password()


class SessionSummarySchema(Schema):
    created_at = fields.AwareDateTime(required=True, metadata={"description": "The sign-in"})
    last_used_at = fields.AwareDateTime(
        required=True, metadata={"description": "The latest refresh (the sign-in if none)"}
    )
    expires_at = fields.AwareDateTime(required=True)
    user_agent = fields.String(required=True, allow_none=True)
    ip = fields.String(required=True, allow_none=True)


class AccountExportSchema(Schema):
    """Everything the service holds on the caller, and nothing secret: no hash, no token."""

    exported_at = fields.AwareDateTime(required=True)
    user = fields.Nested(UserSchema, required=True)
    sessions = fields.List(
        fields.Nested(SessionSummarySchema),
        required=True,
        metadata={"description": "The live logins, newest first"},
    )
    security_events = fields.List(
        fields.Nested(EventSchema),
        required=True,
        metadata={"description": "Every event kept, newest first"},
    )
    passkeys = fields.List(
        fields.Nested(PasskeySchema),
        required=True,
        metadata={"description": "As GET /auth/passkeys lists them, oldest first"},
    )
    identities = fields.List(
        fields.Nested(IdentitySchema),
        required=True,
        metadata={"description": "The linked sign-in providers"},
    )
