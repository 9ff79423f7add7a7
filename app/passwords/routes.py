"""HTTP layer of the password: log in with it, change it."""

from __future__ import annotations

from typing import Any

from app.passwords import schemas, service
from app.passwords.limits import LOGIN_PER_ADDRESS, login_guarded, password_check_guarded
from app.sessions.guard import authenticated, load_caller_user
from app.sessions.schemas import TokenPairSchema
from app.web.blueprint import Blueprint
from app.web.limits import rate_limited

blp = Blueprint(
    "passwords", __name__, url_prefix="/auth", description="Log in with a password; change it"
)


@blp.route("/login", methods=["POST"])
@rate_limited(per_address=LOGIN_PER_ADDRESS)
@blp.arguments(schemas.CredentialsSchema)
@blp.response(200, TokenPairSchema)
@blp.alt_response(401, description="Wrong email or password")
@blp.alt_response(403, description="Account not activated")
@login_guarded
def login(body: dict[str, str]) -> dict[str, Any]:
    """Exchange credentials for an access token and a refresh token."""
    return service.login(body["email"], body["password"])


@blp.route("/password/change", methods=["POST"])
@authenticated()
@blp.arguments(schemas.PasswordChangeSchema)
@blp.response(204)
@blp.alt_response(400, description="Current password wrong")
@blp.alt_response(429, description="Too many wrong current passwords")
# The current password is checked here: without a limit a stolen access token could guess it.
@password_check_guarded
def change_password(body: dict[str, str]) -> None:
    """Change the password; every session of the user ends."""
    service.change_password(load_caller_user(), body["old_password"], body["new_password"])
