"""Bodies of the emailed-link endpoints: an address to send a link to, a link's token, an
email change."""

from __future__ import annotations

from marshmallow import Schema

from app.passwords.schemas import Password
from app.web.schemas import NormalisedEmail, TokenString


class EmailSchema(Schema):
    email = NormalisedEmail(required=True)


class TokenSchema(Schema):
    token = TokenString()


class PasswordResetSchema(Schema):
    token = TokenString()
    new_password = Password()


class EmailChangeSchema(Schema):
    new_email = NormalisedEmail(required=True)
    password = Password()
