"""The user object and its profile, as every answer that shows a user dumps them."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields

from app.identity.models import Gender, GroupName
from app.identity.storage import avatar_storage


class ProfileSchema(Schema):
    first_name = fields.String(allow_none=True)
    last_name = fields.String(allow_none=True)
    gender = fields.Enum(Gender, allow_none=True)
    date_of_birth = fields.Date(allow_none=True)
    info = fields.String(allow_none=True)
    avatar_url = fields.Method("get_avatar_url", allow_none=True)

    def get_avatar_url(self, profile: Any) -> str | None:
        key = getattr(profile, "avatar_key", None)
        if not key:
            return None
        return avatar_storage().url(key)


class UserSchema(Schema):
    id = fields.Integer(required=True)
    email = fields.Email(required=True)
    is_active = fields.Boolean(required=True)
    group = fields.Function(
        lambda user: user.group_name.value, metadata={"enum": [g.value for g in GroupName]}
    )
    mfa_enabled = fields.Boolean(
        required=True, metadata={"description": "Two-factor sign-in is on"}
    )
    created_at = fields.AwareDateTime(required=True)
    updated_at = fields.AwareDateTime(required=True)
    profile = fields.Nested(ProfileSchema, allow_none=True)
