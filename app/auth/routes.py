"""HTTP layer of the auth blueprint: parse, call one use case, dump."""

from __future__ import annotations

import secrets
from typing import Any

from flask import Response, make_response, render_template, request
from flask_limiter.util import get_remote_address

from app.auth import schemas, service
from app.auth.guards import BEARER, current_account, login_required
from app.errors import NotAuthenticated
from app.extensions import Blueprint, limiter
from app.schemas import DetailSchema, UserSchema

blp = Blueprint("auth", __name__, url_prefix="/auth", description="Registration, login and tokens")

ACCEPTED = {"detail": "If the address belongs to an account that needs it, an email is on its way."}


def _body_email() -> str:
    """Rate-limit key for "per account" limits: the normalised email of the body."""
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # `silent` covers ValueError only; the body parser answers 400
        body = None
    email = body.get("email") if isinstance(body, dict) else None
    # Only an ASCII address can be an account's (and a key Redis can encode).
    if isinstance(email, str) and email.strip() and email.isascii():
        return "email:" + email.strip().lower()
    return "ip:" + get_remote_address()


def _failed(response: Response) -> bool:
    return response.status_code in (401, 403)


def _caller() -> str:
    """Rate-limit key for an authenticated endpoint: the caller's account."""
    return f"user:{current_account().id}"


def _wrong_password(response: Response) -> bool:
    return response.status_code == 400


def _bearer_token() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _html_page(template: str, **context: Any) -> Response:
    """The link pages: self-contained, their one script allowed by a nonce, no referrer leaks."""
    nonce = secrets.token_urlsafe(16)
    response = make_response(render_template(template, nonce=nonce, **context))
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
    )
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


_PAGE_DOC = {
    "responses": {
        "200": {
            "description": "An HTML page",
            "content": {"text/html": {"schema": {"type": "string"}}},
        }
    }
}
_TOKEN_QUERY = {
    "parameters": [
        {"in": "query", "name": "token", "schema": {"type": "string"}, "required": False}
    ]
}


@blp.route("/register", methods=["POST"])
@limiter.limit("20/hour", key_func=get_remote_address)
@limiter.limit("5/hour", key_func=_body_email)
@blp.arguments(schemas.CredentialsSchema)
@blp.response(201, UserSchema)
@blp.alt_response(429, description="Too many requests; retry after Retry-After")
@blp.alt_response(409, description="Email already registered")
def register(body: dict[str, str]) -> Any:
    """Create an inactive account and email its activation link."""
    return service.register(body["email"], body["password"])


@blp.route("/activate", methods=["GET"])
@blp.doc(**_PAGE_DOC, **_TOKEN_QUERY)
def activation_page() -> Response:
    """The page the activation link opens; its button POSTs the token. A GET spends nothing."""
    return _html_page(
        "pages/activate.html",
        token=request.args.get("token", ""),
        success="Your account is active; you can log in now.",
    )


@blp.route("/activate", methods=["POST"])
@blp.arguments(schemas.TokenSchema)
@blp.response(200, DetailSchema)
@blp.alt_response(400, description="Token unknown, spent or expired")
def activate(body: dict[str, str]) -> dict[str, str]:
    """Activate the account the token was issued to; the token is spent."""
    service.activate(body["token"])
    return {"detail": "Your account is active; you can log in now."}


@blp.route("/activate/resend", methods=["POST"])
@limiter.limit("20/hour", key_func=get_remote_address)
@limiter.limit("3/hour", key_func=_body_email)
@blp.arguments(schemas.EmailSchema)
@blp.response(202, DetailSchema)
@blp.alt_response(429, description="Too many requests; retry after Retry-After")
def resend_activation(body: dict[str, str]) -> dict[str, str]:
    """Send a new activation link; the same answer whatever the email."""
    service.resend_activation(body["email"])
    return ACCEPTED


@blp.route("/login", methods=["POST"])
@limiter.limit("20/minute", key_func=get_remote_address, deduct_when=_failed)
@limiter.limit("5/minute;20/hour", key_func=_body_email, deduct_when=_failed)
@blp.arguments(schemas.CredentialsSchema)
@blp.response(200, schemas.TokenPairSchema)
@blp.alt_response(429, description="Too many requests; retry after Retry-After")
@blp.alt_response(401, description="Wrong email or password")
@blp.alt_response(403, description="Account not activated")
def login(body: dict[str, str]) -> dict[str, Any]:
    """Exchange credentials for an access token and a refresh token."""
    return service.login(body["email"], body["password"])


@blp.route("/refresh", methods=["POST"])
@blp.arguments(schemas.RefreshTokenSchema, required=False)
@blp.response(200, schemas.TokenPairSchema)
@blp.alt_response(401, description="Unknown, expired, revoked or spent refresh token")
def refresh(body: dict[str, str]) -> dict[str, Any]:
    """Spend a refresh token (body, or Authorization: Bearer) for a new pair."""
    token = body.get("refresh_token") or _bearer_token()
    if not token:
        raise NotAuthenticated("Send the refresh token in the body or as a Bearer token.")
    return service.refresh(token)


@blp.route("/logout", methods=["POST"])
@blp.arguments(schemas.LogoutSchema)
@blp.response(204)
@blp.alt_response(401, description="Not a valid refresh token")
def logout(body: dict[str, str]) -> None:
    """End the login: the refresh token and the presented access token stop working."""
    service.logout(body["refresh_token"], _bearer_token())


@blp.route("/password/change", methods=["POST"])
@login_required
# The current password is checked here: without a limit a stolen access token could guess it.
@limiter.limit("5/minute;20/hour", key_func=_caller, deduct_when=_wrong_password)
@blp.arguments(schemas.PasswordChangeSchema)
@blp.response(204)
@blp.alt_response(400, description="Current password wrong")
@blp.alt_response(429, description="Too many requests; retry after Retry-After")
@blp.doc(security=BEARER)
def change_password(body: dict[str, str]) -> None:
    """Change the password; every session of the user ends."""
    service.change_password(current_account(), body["old_password"], body["new_password"])


@blp.route("/password/forgot", methods=["POST"])
@limiter.limit("20/hour", key_func=get_remote_address)
@limiter.limit("3/hour", key_func=_body_email)
@blp.arguments(schemas.EmailSchema)
@blp.response(202, DetailSchema)
@blp.alt_response(429, description="Too many requests; retry after Retry-After")
def forgot_password(body: dict[str, str]) -> dict[str, str]:
    """Email a reset link to an active account; the same answer whatever the email."""
    service.forgot_password(body["email"])
    return ACCEPTED


@blp.route("/password/reset", methods=["GET"])
@blp.doc(**_PAGE_DOC, **_TOKEN_QUERY)
def reset_page() -> Response:
    """The page the reset link opens: a form that POSTs the new password. A GET spends nothing."""
    return _html_page(
        "pages/reset.html",
        token=request.args.get("token", ""),
        success="Your password is changed; log in with the new one.",
    )


@blp.route("/password/reset", methods=["POST"])
@blp.arguments(schemas.PasswordResetSchema)
@blp.response(204)
@blp.alt_response(400, description="Token unknown, spent or expired")
def reset_password(body: dict[str, str]) -> None:
    """Set a new password with a reset token; every session of the user ends."""
    service.reset_password(body["token"], body["new_password"])


@blp.route("/me", methods=["GET"])
@login_required
@blp.response(200, UserSchema)
@blp.doc(security=BEARER)
def me() -> Any:
    """The calling user, with the profile."""
    return current_account()
