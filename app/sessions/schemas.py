"""Bodies of the session endpoints: the token pair every way in answers, refresh and logout,
the list of the caller's sessions."""

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


class SessionSchema(Schema):
    id = fields.String(
        required=True,
        metadata={"description": "The session's id: the `fam` claim of its access tokens"},
    )
    created_at = fields.AwareDateTime(required=True, metadata={"description": "When it began"})
    last_used_at = fields.AwareDateTime(
        required=True, metadata={"description": "Its last refresh, to the minute"}
    )
    expires_at = fields.AwareDateTime(
        required=True, metadata={"description": "When it ends; refreshing never extends it"}
    )
    user_agent = fields.String(
        required=True, allow_none=True, metadata={"description": "The client that logged in"}
    )
    ip = fields.String(
        required=True, allow_none=True, metadata={"description": "The address it logged in from"}
    )
    current = fields.Boolean(
        required=True, metadata={"description": "The session of this request's access token"}
    )


class SessionListSchema(Schema):
    items = fields.List(fields.Nested(SessionSchema), required=True)
