"""HTTP layer of the caller's own account: who am I, the profile, the avatar, deleting the
account and downloading its data."""

from __future__ import annotations

from typing import Any

from flask import Response, request
from marshmallow import RAISE
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import RequestEntityTooLarge

from app.account import avatars, deletion, export, profile
from app.account.schemas import (
    AccountDeletionSchema,
    AccountExportSchema,
    AvatarUploadSchema,
    ProfileUpdateSchema,
)
from app.core.errors import InvalidInput
from app.events import service as events
from app.events.schemas import EventPageSchema, EventQuerySchema
from app.identity.schemas import ProfileSchema, UserSchema
from app.passwords.limits import password_check_guarded
from app.sessions.guard import authenticated, current_caller, load_caller_user
from app.web.blueprint import Blueprint
from app.web.limits import rate_limited
from app.web.problems import handle_domain_error, handle_http_exception

blp = Blueprint(
    "profile",
    __name__,
    url_prefix="/auth/me",
    description="The caller: account, profile, avatar, deletion, data export",
)

EXPORT_HEADERS = {
    "Content-Disposition": {
        "description": 'attachment; filename="cinema-account-<id>.json"',
        "required": True,
        "schema": {"type": "string"},
    }
}


@blp.route("", methods=["GET"])
@authenticated()
@blp.response(200, UserSchema)
def me() -> Any:
    """The calling user, with the profile."""
    return current_caller()


@blp.route("", methods=["DELETE"])
@authenticated()
@blp.arguments(AccountDeletionSchema)
@blp.response(204)
@blp.alt_response(400, description="The password is wrong")
@blp.alt_response(409, description="The caller is the last active admin")
@blp.alt_response(429, description="Too many wrong passwords")
# The password is checked here: without a limit a stolen access token could guess it.
@password_check_guarded
def delete_me(body: dict[str, str]) -> None:
    """Delete the caller's account, proven by the password: the user, profile, avatar,
    tokens, logins and unsent emails go; security events stay, pseudonymised. The email can
    register again."""
    deletion.delete_account(load_caller_user(), body["password"])


@blp.route("/export", methods=["GET"])
@authenticated()
# Every event of the account is read and sent at once: a download, not something to loop.
@rate_limited(per_caller="5/minute;30/hour")
@blp.response(200, AccountExportSchema, headers=EXPORT_HEADERS)
def export_me() -> Any:
    """Download, as a JSON attachment, everything the service holds on the caller (GDPR's
    right of access): the account and profile, live logins, security events; nothing secret."""
    user = load_caller_user()
    disposition = f'attachment; filename="cinema-account-{user.id}.json"'
    return export.export_account(user), {"Content-Disposition": disposition}


@blp.route("/events", methods=["GET"])
@authenticated()
@blp.arguments(EventQuerySchema, location="query", unknown=RAISE)
@blp.response(200, EventPageSchema)
def my_events(query: dict[str, int]) -> events.EventPage:
    """What happened to the caller's account (logins, password and email changes, ended
    sessions, admin actions), newest first."""
    return events.events_of(current_caller().id, query["page"], query["per_page"])


@blp.route("/profile", methods=["PATCH"])
@authenticated()
@blp.arguments(ProfileUpdateSchema)
@blp.response(200, ProfileSchema)
def update_profile(changes: dict[str, Any]) -> Any:
    """Change any of the profile's fields; null clears one."""
    return profile.update_profile(load_caller_user(), changes)


@blp.route("/avatar", methods=["PUT"])
@authenticated()
# Decoding an upload takes up to ~64 MB and a re-encoding's CPU, so an account may not loop it.
@rate_limited(per_caller="5/minute;30/hour")
@blp.arguments(AvatarUploadSchema, location="files", unknown=RAISE)
@blp.response(200, ProfileSchema)
@blp.alt_response(413, description="The body or the image is too large")
@blp.alt_response(415, description="Not a PNG, JPEG or WebP image (judged by its bytes)")
def put_avatar(files: dict[str, FileStorage]) -> Any:
    """Upload an avatar; it is stored re-encoded as WebP, at most 512x512, without metadata."""
    if request.form:  # the schema reads the files; a stray text field is unknown all the same
        raise InvalidInput(
            "The form has unknown fields.", errors={k: ["Unknown field."] for k in request.form}
        )
    return avatars.set_avatar(load_caller_user(), files["avatar"].stream)


@blp.route("/avatar", methods=["DELETE"])
@authenticated()
@blp.response(204)
def delete_avatar() -> None:
    """Remove the avatar."""
    avatars.delete_avatar(load_caller_user())


@blp.errorhandler(RequestEntityTooLarge)
def body_too_large(error: RequestEntityTooLarge) -> Response:
    """A body over MAX_CONTENT_LENGTH is refused unread; on the avatar upload the answer is
    the same as for an avatar over its own limit."""
    if request.endpoint == "profile.put_avatar":
        return handle_domain_error(avatars.avatar_too_large())
    return handle_http_exception(error)
