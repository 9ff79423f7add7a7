"""Request bodies of the caller's profile and avatar."""

from __future__ import annotations

import re
from datetime import date

from flask_smorest.fields import Upload
from marshmallow import Schema, ValidationError, fields, validate

from app.models import Gender, utcnow
from app.schemas import no_nul

EARLIEST_BIRTH_DATE = date(1900, 1, 1)
# Names are one line of text: no tabs, newlines or other control characters, C0 or C1, and
# none of Unicode's own line breaks (NEL is C1; LINE and PARAGRAPH SEPARATOR).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _single_line(value: str) -> None:
    if _CONTROL.search(value):
        raise ValidationError("Use a single line without control characters.")


def _not_blank(value: str) -> None:
    # An empty or all-space name displays as no name at all; null is how a name is cleared.
    if not value.strip():
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
        allow_none=True, validate=[validate.Length(max=100), _single_line, _not_blank]
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
