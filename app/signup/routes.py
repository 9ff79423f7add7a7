"""HTTP layer of the emailed-link flows: parse, call one use case, dump."""

from __future__ import annotations

from typing import Any

from flask import Response, request

from app.identity.schemas import UserSchema
from app.passwords.schemas import CredentialsSchema
from app.signup import schemas, service
from app.signup.pages import PAGE_DOC, html_page
from app.web.blueprint import Blueprint
from app.web.limits import rate_limited
from app.web.schemas import DetailSchema

ACTIVATED = "Your account is active; you can log in now."

blp = Blueprint(
    "signup",
    __name__,
    url_prefix="/auth",
    description="Registration, activation and password reset: the emailed links",
)

# The unauthenticated token endpoints: a token cannot be guessed, but each request costs a
# lookup (and a reset an argon2 hash), so one address gets only so many.
EMAILED_LINK_LIMIT = "10/minute;60/hour"  # activate, reset: once per emailed link

ACCEPTED = {"detail": "If the address belongs to an account that needs it, an email is on its way."}


@blp.route("/register", methods=["POST"])
@rate_limited(per_address="20/hour", per_email="5/hour")
@blp.arguments(CredentialsSchema)
@blp.response(201, UserSchema)
@blp.alt_response(409, description="Email already registered")
def register(body: dict[str, str]) -> Any:
    """Create an inactive account and email its activation link."""
    return service.register(body["email"], body["password"])


@blp.route("/activate", methods=["GET"])
@blp.doc(**PAGE_DOC)
def activation_page() -> Response:
    """The page the activation link opens; its button POSTs the token. A GET spends nothing."""
    return html_page(
        "pages/activate.html",
        token=request.args.get("token", ""),
        success=ACTIVATED,
    )


@blp.route("/activate", methods=["POST"])
@rate_limited(per_address=EMAILED_LINK_LIMIT)
@blp.arguments(schemas.TokenSchema)
@blp.response(200, DetailSchema)
@blp.alt_response(400, description="Token unknown, spent or expired")
def activate(body: dict[str, str]) -> dict[str, str]:
    """Activate the account the token was issued to; the token is spent."""
    service.activate(body["token"])
    return {"detail": ACTIVATED}


@blp.route("/activate/resend", methods=["POST"])
@rate_limited(per_address="20/hour")  # per account: the service sends at most 3 an hour
@blp.arguments(schemas.EmailSchema)
@blp.response(202, DetailSchema)
def resend_activation(body: dict[str, str]) -> dict[str, str]:
    """Send a new activation link; the same answer whatever the email."""
    service.resend_activation(body["email"])
    return ACCEPTED


@blp.route("/password/forgot", methods=["POST"])
@rate_limited(per_address="20/hour")  # per account: the service sends at most 3 an hour
@blp.arguments(schemas.EmailSchema)
@blp.response(202, DetailSchema)
def forgot_password(body: dict[str, str]) -> dict[str, str]:
    """Email a reset link; the same answer whatever the email.

    An active account gets one, and so does an account never activated (using the link
    proves the address and activates it); an account an admin deactivated gets none.
    """
    service.forgot_password(body["email"])
    return ACCEPTED


@blp.route("/password/reset", methods=["GET"])
@blp.doc(**PAGE_DOC)
def reset_page() -> Response:
    """The page the reset link opens: a form that POSTs the new password. A GET spends nothing."""
    return html_page(
        "pages/reset.html",
        token=request.args.get("token", ""),
        success="Your password is changed; log in with the new one.",
    )


@blp.route("/password/reset", methods=["POST"])
@rate_limited(per_address=EMAILED_LINK_LIMIT)
@blp.arguments(schemas.PasswordResetSchema)
@blp.response(204)
@blp.alt_response(400, description="Token unknown, spent or expired")
def reset_password(body: dict[str, str]) -> None:
    """Set a new password with a reset token; every session of the user ends."""
    service.reset_password(body["token"], body["new_password"])
