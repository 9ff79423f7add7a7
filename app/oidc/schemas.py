"""Bodies, queries and answers of social sign-in."""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, validate

URL_LENGTH = 2000
# Our codes and states are 43 characters; a provider's code may be longer.
SECRET_LENGTH = 2000


class ProviderSchema(Schema):
    name = fields.String(required=True)
    display_name = fields.String(required=True)


class ProviderListSchema(Schema):
    items = fields.List(fields.Nested(ProviderSchema), required=True)


class ReturnToQuerySchema(Schema):
    return_to = fields.String(
        validate=validate.Length(max=URL_LENGTH),
        metadata={"description": "one of OIDC_RETURN_URLS; the first one when left out"},
    )


class LinkRequestSchema(Schema):
    return_to = fields.String(validate=validate.Length(max=URL_LENGTH))


class AuthorizeUrlSchema(Schema):
    authorize_url = fields.String(required=True)


class CallbackQuerySchema(Schema):
    """What a provider sends back; it may add parameters of its own (`iss`, `scope`,
    `session_state`), which are ignored."""

    class Meta:
        unknown = EXCLUDE

    code = fields.String(validate=validate.Length(max=SECRET_LENGTH))
    state = fields.String(validate=validate.Length(max=SECRET_LENGTH))
    error = fields.String(validate=validate.Length(max=SECRET_LENGTH))


class ExchangeSchema(Schema):
    code = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=100))


class IdentitySchema(Schema):
    id = fields.Integer(required=True)
    provider = fields.String(required=True)
    email = fields.String(required=True, allow_none=True)
    created_at = fields.AwareDateTime(required=True)
    last_used_at = fields.AwareDateTime(required=True, allow_none=True)


class IdentityListSchema(Schema):
    items = fields.List(fields.Nested(IdentitySchema), required=True)
