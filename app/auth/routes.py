"""HTTP layer of the auth blueprint: parse, call one use case, dump."""

from __future__ import annotations

from typing import Any

from flask import Response, request

from app.auth import schemas, service
from app.auth.guards import authenticated, current_account, current_caller
from app.auth.pages import PAGE_DOC, html_page
from app.errors import NotAuthenticated
from app.http import Blueprint, bearer_token
from app.limits import LOGIN_PER_ADDRESS, login_guarded, password_check_guarded, rate_limited
from app.schemas import DetailSchema, UserSchema

ACTIVATED = "Your account is active; you can log in now."

blp = Blueprint("auth", __name__, url_prefix="/auth", description="Registration, login and tokens")

# The unauthenticated token endpoints: a token cannot be guessed, but each request costs a
# lookup (and a reset an argon2 hash), so one address gets only so many.
EMAILED_LINK_LIMIT = "10/minute;60/hour"  # activate, reset: once per emailed link
SESSION_ENDPOINT_LIMIT = "60/minute"  # refresh, logout: every device behind one address

ACCEPTED = {"detail": "If the address belongs to an account that needs it, an email is on its way."}


@blp.route("/register", methods=["POST"])
@rate_limited(per_address="20/hour", per_email="5/hour")
@blp.arguments(schemas.CredentialsSchema)
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


@blp.route("/login", methods=["POST"])
@rate_limited(per_address=LOGIN_PER_ADDRESS)
@blp.arguments(schemas.CredentialsSchema)
@blp.response(200, schemas.TokenPairSchema)
@blp.alt_response(401, description="Wrong email or password")
@blp.alt_response(403, description="Account not activated")
@login_guarded
def login(body: dict[str, str]) -> dict[str, Any]:
    """Exchange credentials for an access token and a refresh token."""
    return service.login(body["email"], body["password"])


@blp.route("/refresh", methods=["POST"])
@rate_limited(per_address=SESSION_ENDPOINT_LIMIT)
@blp.arguments(schemas.RefreshTokenSchema, required=False)
@blp.response(200, schemas.TokenPairSchema)
@blp.alt_response(401, description="Unknown, expired, revoked or spent refresh token")
def refresh(body: dict[str, str]) -> dict[str, Any]:
    """Spend a refresh token (body, or Authorization: Bearer) for a new pair."""
    token = body.get("refresh_token") or bearer_token()
    if not token:
        raise NotAuthenticated("Send the refresh token in the body or as a Bearer token.")
    return service.refresh(token)


@blp.route("/logout", methods=["POST"])
@rate_limited(per_address=SESSION_ENDPOINT_LIMIT)
@blp.arguments(schemas.LogoutSchema)
@blp.response(204)
@blp.alt_response(401, description="Not a valid refresh token")
def logout(body: dict[str, str]) -> None:
    """End the login: the refresh token and the presented access token stop working."""
    service.logout(body["refresh_token"], bearer_token())


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
    service.change_password(current_account(), body["old_password"], body["new_password"])


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


@blp.route("/me", methods=["GET"])
@authenticated()
@blp.response(200, UserSchema)
def me() -> Any:
    """The calling user, with the profile."""
    return current_caller()
