"""HTTP layer of the admin blueprint: parse, call one use case, dump."""

from __future__ import annotations

from typing import Any

from flask import current_app
from marshmallow import RAISE

from app.admin import schemas, service
from app.events.schemas import EventPageSchema, EventQuerySchema
from app.identity.models import GroupName
from app.identity.schemas import UserSchema
from app.sessions.guard import STAFF, authenticated, current_caller
from app.web.blueprint import Blueprint
from app.web.limits import rate_limited

blp = Blueprint(
    "admin", __name__, url_prefix="/admin", description="User management for moderators and admins"
)

_NOT_FOUND = "No user with this id"


@blp.route("/users", methods=["GET"])
@authenticated(*STAFF)
# Each caller's lists are counted, bad filters too: every list is cheap, but a staff token
# must not loop them (ADMIN_LIST_RATE_LIMIT).
@rate_limited(per_caller=lambda: current_app.config["ADMIN_LIST_RATE_LIMIT"])
# Unknown query parameters are refused like unknown body fields: a typo is not a filter.
@blp.arguments(schemas.UserFilterSchema, location="query", unknown=RAISE)
@blp.response(200, schemas.UserPageSchema)
def list_users(query: dict[str, Any]) -> service.UserPage:
    """Users in id order, filtered by email substring, group, state and two-factor; by
    numbered page within the first 10,000 rows, by key (`after`) at any depth."""
    user_filter = service.UserFilter(
        email=query.get("email"),
        group=query.get("group"),
        is_active=query.get("is_active"),
        mfa_enabled=query.get("mfa_enabled"),
    )
    return service.list_users(
        user_filter, query["per_page"], page=query.get("page"), after=query.get("after")
    )


@blp.route("/users/<id:user_id>", methods=["GET"])
@authenticated(*STAFF)
@blp.response(200, UserSchema)
@blp.alt_response(404, description=_NOT_FOUND)
def get_user(user_id: int) -> Any:
    """One user, with the profile."""
    return service.get_user(user_id)


@blp.route("/users/<id:user_id>/activate", methods=["POST"])
@authenticated(GroupName.ADMIN)
@blp.response(200, UserSchema)
@blp.alt_response(404, description=_NOT_FOUND)
def activate_user(user_id: int) -> Any:
    """Activate the account (already active: unchanged); a pending activation link is spent."""
    return service.activate_user(current_caller().id, user_id)


@blp.route("/users/<id:user_id>/deactivate", methods=["POST"])
@authenticated(GroupName.ADMIN)
@blp.response(200, UserSchema)
@blp.alt_response(404, description=_NOT_FOUND)
@blp.alt_response(409, description="It would leave no active admin")
def deactivate_user(user_id: int) -> Any:
    """Deactivate the account; its refresh and access tokens stop working at once."""
    return service.deactivate_user(current_caller().id, user_id)


@blp.route("/users/<id:user_id>/change-group", methods=["POST"])
@authenticated(GroupName.ADMIN)
@blp.arguments(schemas.GroupChangeSchema)
@blp.response(200, UserSchema)
@blp.alt_response(404, description=_NOT_FOUND)
@blp.alt_response(409, description="It would leave no active admin")
def change_group(body: dict[str, Any], user_id: int) -> Any:
    """Move the user to another group; it applies on the user's next request."""
    return service.change_group(current_caller().id, user_id, body["group"])


@blp.route("/users/<id:user_id>/mfa/reset", methods=["POST"])
@authenticated(GroupName.ADMIN)
@blp.response(200, UserSchema)
@blp.alt_response(404, description=_NOT_FOUND)
def reset_mfa(user_id: int) -> Any:
    """Turn off the two-factor of a person locked out of it; every login of the person ends
    and they are told by email (already off: unchanged)."""
    return service.reset_mfa(current_caller().id, user_id)


@blp.route("/users/<id:user_id>/events", methods=["GET"])
@authenticated(GroupName.ADMIN)
@blp.arguments(EventQuerySchema, location="query", unknown=RAISE)
@blp.response(200, EventPageSchema)
@blp.alt_response(404, description=_NOT_FOUND)
def user_events(query: dict[str, int], user_id: int) -> Any:
    """What happened to the user's account, newest first."""
    return service.user_events(user_id, query["page"], query["per_page"])
