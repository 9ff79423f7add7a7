"""Request and response bodies of the auth blueprint."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.auth.passwords import MAX_LENGTH
from app.schemas import NormalisedEmail


def Password() -> fields.String:
    # The strength rule needs the email, so the service judges it; here only the size.
    return fields.String(
        required=True, load_only=True, validate=validate.Length(min=1, max=MAX_LENGTH)
    )


def TokenString() -> fields.String:
    return fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=4096))


class CredentialsSchema(Schema):
    email = NormalisedEmail(required=True)
    password = Password()


class EmailSchema(Schema):
    email = NormalisedEmail(required=True)


class TokenSchema(Schema):
    token = TokenString()


class RefreshTokenSchema(Schema):
    OPTIONAL_BODY = True  # the token may come as `Authorization: Bearer <refresh token>`
    refresh_token = fields.String(load_only=True, validate=validate.Length(min=1, max=4096))


class LogoutSchema(Schema):
    refresh_token = TokenString()


class PasswordChangeSchema(Schema):
    old_password = Password()
    new_password = Password()


class PasswordResetSchema(Schema):
    token = TokenString()
    new_password = Password()


class TokenPairSchema(Schema):
    access_token = fields.String(required=True)
    refresh_token = fields.String(required=True)
    token_type = fields.String(required=True, metadata={"example": "bearer"})
    expires_in = fields.Integer(
        required=True, metadata={"description": "access token lifetime, seconds"}
    )
