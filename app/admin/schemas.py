"""Query strings and bodies of the admin blueprint."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app.identity.models import GroupName
from app.identity.schemas import UserSchema
from app.web.requests import MAX_ROW_ID
from app.web.schemas import MAX_ADDRESS

MAX_PER_PAGE = 100
DEFAULT_PER_PAGE = 20
# `page` reaches the first PAGE_DEPTH rows of a filter: page * per_page may be at most this
# (per_page 20: pages 1 to 500). Past them `after` pages by key, which costs the same at any
# depth where an OFFSET costs every row it skips.
PAGE_DEPTH = 10_000

# The email filter is a part of an address: 3 to 254 (the longest address) of the characters
# addresses are made of, letters, digits and . @ _ + - ' (the rarer ones an address may
# hold, such as # or ~, are not searched for). At least 3, so PostgreSQL's trigram index has
# a trigram to look up (app/identity/models.py, email_trigram_text); none of them a LIKE
# wildcard or an escape (% and backslash are refused, _ is matched as itself).
EMAIL_FILTER_MIN = 3
EMAIL_FILTER = rf"^[A-Za-z0-9.@_+'-]{{{EMAIL_FILTER_MIN},{MAX_ADDRESS}}}$"
EMAIL_FILTER_RULE = (
    f"Part of an email address, any case: {EMAIL_FILTER_MIN} to {MAX_ADDRESS} letters, digits"
    " and . @ _ + - ' characters."
)
DEEP_PAGE = (
    f"page * per_page may be at most {PAGE_DEPTH:,}: past the first {PAGE_DEPTH:,} rows, page"
    " by key with `after` (the `next_after` of the page before)."
)
PAGE_OR_AFTER = "Give `page` or `after`, not both: `after` pages by key, from the id it names."


class UserFilterSchema(Schema):
    email = fields.String(
        validate=validate.Regexp(EMAIL_FILTER, error=EMAIL_FILTER_RULE),
        metadata={"description": EMAIL_FILTER_RULE},
    )
    group = fields.Enum(GroupName)
    is_active = fields.Boolean()
    mfa_enabled = fields.Boolean()
    page = fields.Integer(
        validate=[validate.Range(min=1), validate.Range(max=PAGE_DEPTH, error=DEEP_PAGE)],
        metadata={
            "description": f"1 by default; page * per_page <= {PAGE_DEPTH:,} (deeper: `after`)"
        },
    )
    per_page = fields.Integer(
        load_default=DEFAULT_PER_PAGE, validate=validate.Range(min=1, max=MAX_PER_PAGE)
    )
    after = fields.Integer(
        validate=validate.Range(min=0, max=MAX_ROW_ID),
        metadata={
            "description": "Users with an id above this one (the `next_after` of the page"
            " before): paging by key, at any depth; not with `page`"
        },
    )

    @validates_schema
    def _one_way_of_paging(self, data: dict[str, Any], **_: Any) -> None:
        if "page" in data and "after" in data:
            raise ValidationError(PAGE_OR_AFTER, "after")
        if data.get("page", 1) * data["per_page"] > PAGE_DEPTH:
            raise ValidationError(DEEP_PAGE, "page")


class UserPageSchema(Schema):
    items = fields.List(fields.Nested(UserSchema), required=True)
    page = fields.Integer(
        required=True, allow_none=True, metadata={"description": "null when paged by `after`"}
    )
    per_page = fields.Integer(required=True)
    total = fields.Integer(
        required=True,
        metadata={
            "description": f"Users matching the filter: exact up to {PAGE_DEPTH:,}, an estimate"
            " beyond (then `total_exact` is false)"
        },
    )
    total_exact = fields.Boolean(required=True)
    next_after = fields.Integer(
        required=True,
        allow_none=True,
        metadata={
            "description": "The last id of this page when more users follow (pass it as"
            " `after` for the next page), else null"
        },
    )


class GroupChangeSchema(Schema):
    group = fields.Enum(GroupName, required=True)
