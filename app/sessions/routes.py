"""HTTP layer of a login once started: refresh its tokens, end it."""

from __future__ import annotations

from typing import Any

from app.core.errors import NotAuthenticated
from app.sessions import schemas, service
from app.web.blueprint import Blueprint
from app.web.limits import rate_limited
from app.web.requests import bearer_token

blp = Blueprint("sessions", __name__, url_prefix="/auth", description="Refresh and log out")

SESSION_ENDPOINT_LIMIT = "60/minute"  # refresh, logout: every device behind one address


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
