"""Query strings and bodies of the admin blueprint."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.identity.models import GroupName
from app.identity.schemas import UserSchema
from app.web.schemas import no_nul

MAX_PER_PAGE = 100


class UserFilterSchema(Schema):
    email = fields.String(
        validate=[validate.Length(min=1, max=320), no_nul],
        metadata={"description": "Part of the email, any case"},
    )
    group = fields.Enum(GroupName)
    is_active = fields.Boolean()
    mfa_enabled = fields.Boolean()
    # The upper bound keeps OFFSET inside a bigint on PostgreSQL.
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    per_page = fields.Integer(load_default=20, validate=validate.Range(min=1, max=MAX_PER_PAGE))


class UserPageSchema(Schema):
    items = fields.List(fields.Nested(UserSchema), required=True)
    page = fields.Integer(required=True)
    per_page = fields.Integer(required=True)
    total = fields.Integer(required=True, metadata={"description": "Users matching the filter"})


class GroupChangeSchema(Schema):
    group = fields.Enum(GroupName, required=True)
