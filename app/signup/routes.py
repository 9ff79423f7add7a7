"""HTTP layer of the emailed-link flows: parse, call one use case, dump."""

from __future__ import annotations

from typing import Any

from flask import Response, request

from app.identity.schemas import UserSchema
from app.passwords.limits import password_check_guarded
from app.passwords.schemas import CredentialsSchema
from app.sessions.guard import authenticated, current_login_family, load_caller_user
from app.signup import email_change, schemas, service
from app.signup.pages import PAGE_DOC, html_page
from app.web.blueprint import Blueprint
from app.web.limits import rate_limited
from app.web.schemas import DetailSchema

ACTIVATED = "Your account is active; you can log in now."

blp = Blueprint(
    "signup",
    __name__,
    url_prefix="/auth",
    description="Registration, activation, password reset and email change: the emailed links",
)

# The unauthenticated token endpoints: a token cannot be guessed, but each request costs a
# lookup (and a reset an argon2 hash), so one address gets only so many.
EMAILED_LINK_LIMIT = "10/minute;60/hour"  # activate, reset, confirm an email

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


EMAIL_CHANGE_SENT = {
    "detail": "A confirmation link is on its way to the new address; your email changes once"
    " it is opened. The current address has been told."
}


@blp.route("/email/change", methods=["POST"])
@authenticated()
@blp.arguments(schemas.EmailChangeSchema)
@blp.response(202, DetailSchema)
@blp.alt_response(400, description="Wrong password")
@blp.alt_response(409, description="The address belongs to another account")
@blp.alt_response(429, description="Too many wrong passwords, or 3 change emails this hour")
# The password is checked here: without a limit a stolen access token could guess it.
@password_check_guarded
def change_email(body: dict[str, str]) -> dict[str, str]:
    """Ask to change the account's email; the change waits for the new address's link.

    A confirmation link goes to the new address, a notice without a link to the current one;
    a newer request kills the older link."""
    user = load_caller_user()
    email_change.request_email_change(
        user, body["new_email"], body["password"], current_login_family()
    )
    return EMAIL_CHANGE_SENT


@blp.route("/email/confirm", methods=["GET"])
@blp.doc(**PAGE_DOC)
def email_change_page() -> Response:
    """The page the email-change link opens; its button POSTs the token. A GET spends nothing."""
    return html_page("pages/email_confirm.html", token=request.args.get("token", ""))


@blp.route("/email/confirm", methods=["POST"])
@rate_limited(per_address=EMAILED_LINK_LIMIT)
@blp.arguments(schemas.TokenSchema)
@blp.response(200, UserSchema)
@blp.alt_response(400, description="Token unknown, spent or expired")
@blp.alt_response(409, description="Another account took the address since the request")
def confirm_email_change(body: dict[str, str]) -> Any:
    """Spend an email-change link: the account's email becomes the new address.

    Every other login of the account ends; the one that asked for the change keeps going."""
    return email_change.confirm_email_change(body["token"])
