"""HTTP layer of the password: log in with it, change it."""

from __future__ import annotations

from typing import Any

from flask import Response

from app.mfa.schemas import LOGIN_ANSWER, RecoveryCodesSchema, login_answer
from app.passwords import schemas, service
from app.passwords.limits import LOGIN_PER_ADDRESS, login_guarded, password_check_guarded
from app.sessions.guard import authenticated, current_login_family, load_caller_user
from app.web.blueprint import Blueprint
from app.web.limits import rate_limited

blp = Blueprint(
    "passwords", __name__, url_prefix="/auth", description="Log in with a password; change it"
)


@blp.route("/login", methods=["POST"])
@rate_limited(per_address=LOGIN_PER_ADDRESS)
@blp.arguments(schemas.CredentialsSchema)
@blp.response(200, LOGIN_ANSWER, description="The token pair, or the two-factor step")
@blp.alt_response(401, description="Wrong email or password")
@blp.alt_response(403, description="Account not activated")
@login_guarded
def login(body: dict[str, str]) -> Response:
    """Exchange credentials for an access token and a refresh token; an account with
    two-factor on gets an mfa_token for POST /auth/login/mfa instead."""
    return login_answer(service.login(body["email"], body["password"]))


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


# Changes of the second factor prove the password too: they are the password's to check, and
# wrong passwords count as they do for a change of the password.
@blp.route("/mfa/totp", methods=["DELETE"])
@authenticated()
@blp.arguments(schemas.PasswordAndCodeSchema)
@blp.response(204)
@blp.alt_response(400, description="Wrong password or code")
@blp.alt_response(409, description="Two-factor is not on")
@blp.alt_response(429, description="Too many wrong passwords or codes")
@blp.doc(tags=["mfa"])
@password_check_guarded
def turn_off_two_factor(body: dict[str, str]) -> None:
    """Turn two-factor off; every other login of the account ends."""
    service.turn_off_two_factor(
        load_caller_user(), body["password"], body["code"], current_login_family()
    )


@blp.route("/mfa/recovery-codes", methods=["POST"])
@authenticated()
@blp.arguments(schemas.PasswordAndCodeSchema)
@blp.response(200, RecoveryCodesSchema)
@blp.alt_response(400, description="Wrong password or code")
@blp.alt_response(409, description="Two-factor is not on")
@blp.alt_response(429, description="Too many wrong passwords or codes")
@blp.doc(tags=["mfa"])
@password_check_guarded
def renew_recovery_codes(body: dict[str, str]) -> dict[str, Any]:
    """A fresh set of recovery codes, shown this once; the old ones die."""
    codes = service.renew_recovery_codes(load_caller_user(), body["password"], body["code"])
    return {"recovery_codes": codes}
