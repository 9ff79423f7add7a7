"""Bodies of the password endpoints: credentials, the change, and the password field every
body that sets one uses."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.mfa.schemas import Code
from app.passwords.strength import MAX_LENGTH
from app.web.schemas import NormalisedEmail


def Password() -> fields.String:
    # The strength rule needs the email, so the service judges it; here only the size.
    return fields.String(
        required=True, load_only=True, validate=validate.Length(min=1, max=MAX_LENGTH)
    )


class CredentialsSchema(Schema):
    email = NormalisedEmail(required=True)
    password = Password()


class PasswordChangeSchema(Schema):
    old_password = Password()
    new_password = Password()


class PasswordAndCodeSchema(Schema):
    """Both factors, for a change of the second one."""

    password = Password()
    code = Code()
