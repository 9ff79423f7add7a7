"""Bodies of the session endpoints: the token pair every way in answers, refresh and logout."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.web.schemas import TokenString


class RefreshTokenSchema(Schema):
    OPTIONAL_BODY = True  # the token may come as `Authorization: Bearer <refresh token>`
    refresh_token = fields.String(load_only=True, validate=validate.Length(min=1, max=4096))


class LogoutSchema(Schema):
    refresh_token = TokenString()


class TokenPairSchema(Schema):
    access_token = fields.String(required=True)
    refresh_token = fields.String(required=True)
    token_type = fields.String(required=True, metadata={"example": "bearer"})
    expires_in = fields.Integer(
        required=True, metadata={"description": "access token lifetime, seconds"}
    )
