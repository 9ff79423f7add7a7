"""The events a person or an admin reads."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.events.models import EventType

MAX_PER_PAGE = 100


class EventSchema(Schema):
    type = fields.String(required=True, metadata={"enum": [t.value for t in EventType]})
    created_at = fields.AwareDateTime(required=True)
    ip = fields.String(allow_none=True, metadata={"description": "The client's address"})
    user_agent = fields.String(allow_none=True)
    actor_id = fields.Integer(
        allow_none=True, metadata={"description": "The admin who acted, if not the person"}
    )


class EventPageSchema(Schema):
    items = fields.List(fields.Nested(EventSchema), required=True)
    page = fields.Integer(required=True)
    per_page = fields.Integer(required=True)
    total = fields.Integer(required=True)


class EventQuerySchema(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=10_000))
    per_page = fields.Integer(load_default=20, validate=validate.Range(min=1, max=MAX_PER_PAGE))
