"""HTTP layer of the caller's profile and avatar, on the auth blueprint."""

from __future__ import annotations

from typing import Any

from flask import request
from marshmallow import RAISE
from werkzeug.datastructures import FileStorage

from app.auth import profile
from app.auth.guards import BEARER, current_account, login_required
from app.auth.profile_schemas import AvatarUploadSchema, ProfileUpdateSchema
from app.auth.routes import blp
from app.errors import InvalidInput
from app.schemas import ProfileSchema


@blp.route("/me/profile", methods=["PATCH"])
@login_required
@blp.arguments(ProfileUpdateSchema)
@blp.response(200, ProfileSchema)
@blp.doc(security=BEARER)
def update_profile(changes: dict[str, Any]) -> Any:
    """Change any of the profile's fields; null clears one."""
    return profile.update_profile(current_account(), changes)


@blp.route("/me/avatar", methods=["PUT"])
@login_required
@blp.arguments(AvatarUploadSchema, location="files", unknown=RAISE)
@blp.response(200, ProfileSchema)
@blp.alt_response(413, description="The body or the image is too large")
@blp.alt_response(415, description="Not a PNG, JPEG or WebP image (judged by its bytes)")
@blp.doc(security=BEARER)
def put_avatar(files: dict[str, FileStorage]) -> Any:
    """Upload an avatar; it is stored re-encoded as WebP, at most 512x512, without metadata."""
    if request.form:  # the schema reads the files; a stray text field is unknown all the same
        raise InvalidInput(
            "The form has unknown fields.", errors={k: ["Unknown field."] for k in request.form}
        )
    return profile.set_avatar(current_account(), files["avatar"].stream)


@blp.route("/me/avatar", methods=["DELETE"])
@login_required
@blp.response(204)
@blp.doc(security=BEARER)
def delete_avatar() -> None:
    """Remove the avatar."""
    profile.delete_avatar(current_account())
