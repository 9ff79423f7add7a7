"""HTTP layer of two-factor: set it up and confirm it, and the login's second step.

Turning it off and renewing the recovery codes prove the password too, so their routes are
with the password's (app/passwords/routes.py); an admin's reset is in app/admin/routes.py.
"""

from __future__ import annotations

from typing import Any

from app.mfa import schemas, second_step, service
from app.mfa.limits import ENROLMENT_PER_CALLER, STEP_PER_ADDRESS
from app.sessions.guard import authenticated, current_login_family, load_caller_user
from app.sessions.schemas import TokenPairSchema
from app.web.blueprint import Blueprint
from app.web.limits import client_address, rate_limited

blp = Blueprint(
    "mfa", __name__, url_prefix="/auth", description="Two-factor sign-in: an authenticator app"
)


@blp.route("/mfa/totp/setup", methods=["POST"])
@authenticated()
@rate_limited(per_caller=ENROLMENT_PER_CALLER)
@blp.response(200, schemas.TotpSetupSchema)
@blp.alt_response(409, description="Two-factor is already on")
def set_up() -> dict[str, str]:
    """Start two-factor: a new secret for the authenticator app (and its QR code), pending
    until confirmed; a pending one is replaced."""
    return service.set_up(load_caller_user())


@blp.route("/mfa/totp/confirm", methods=["POST"])
@authenticated()
@rate_limited(per_caller=ENROLMENT_PER_CALLER)
@blp.arguments(schemas.CodeSchema)
@blp.response(200, schemas.RecoveryCodesSchema)
@blp.alt_response(400, description="Wrong code")
@blp.alt_response(409, description="No setup pending, or two-factor already on")
def confirm(body: dict[str, str]) -> dict[str, Any]:
    """Turn two-factor on with a code of the app; the answer holds the recovery codes, shown
    this once. Every other login of the account ends."""
    codes = service.confirm(load_caller_user(), body["code"], current_login_family())
    return {"recovery_codes": codes}


@blp.route("/login/mfa", methods=["POST"])
@rate_limited(per_address=STEP_PER_ADDRESS)
@blp.arguments(schemas.SecondStepSchema)
@blp.response(200, TokenPairSchema)
@blp.alt_response(401, description="Wrong or used code, or a dead mfa_token")
@blp.alt_response(429, description="Too many codes; the mfa_token is dead")
def finish_login(body: dict[str, str]) -> dict[str, Any]:
    """The second step of a login: the mfa_token of POST /auth/login and a code (the app's,
    or a recovery code) for the token pair."""
    return second_step.finish_login(body["mfa_token"], body["code"], client_address())
