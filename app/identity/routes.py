"""HTTP layer of the caller's profile and avatar: parse, call one use case, dump."""

from __future__ import annotations

from typing import Any

from flask import Response, request
from marshmallow import RAISE
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import RequestEntityTooLarge

from app.auth.guards import authenticated, current_account
from app.errors import InvalidInput, handle_domain_error, handle_http_exception
from app.http import Blueprint
from app.limits import rate_limited
from app.profile import service
from app.profile.schemas import AvatarUploadSchema, ProfileUpdateSchema
from app.schemas import ProfileSchema

blp = Blueprint(
    "profile", __name__, url_prefix="/auth/me", description="The caller's profile and avatar"
)


@blp.route("/profile", methods=["PATCH"])
@authenticated()
@blp.arguments(ProfileUpdateSchema)
@blp.response(200, ProfileSchema)
def update_profile(changes: dict[str, Any]) -> Any:
    """Change any of the profile's fields; null clears one."""
    return service.update_profile(current_account(), changes)


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
    return service.set_avatar(current_account(), files["avatar"].stream)


@blp.route("/avatar", methods=["DELETE"])
@authenticated()
@blp.response(204)
def delete_avatar() -> None:
    """Remove the avatar."""
    service.delete_avatar(current_account())


@blp.errorhandler(RequestEntityTooLarge)
def body_too_large(error: RequestEntityTooLarge) -> Response:
    """A body over MAX_CONTENT_LENGTH is refused unread; on the avatar upload the answer is
    the same as for an avatar over its own limit."""
    if request.endpoint == "profile.put_avatar":
        return handle_domain_error(service.avatar_too_large())
    return handle_http_exception(error)
