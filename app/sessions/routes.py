"""HTTP layer of a login once started: refresh its tokens, end it; the caller's sessions."""

from __future__ import annotations

from typing import Any

from app.core.errors import NotAuthenticated
from app.sessions import schemas, self_service, service
from app.sessions.guard import authenticated, current_caller, current_login_family
from app.web.blueprint import Blueprint
from app.web.limits import rate_limited
from app.web.requests import bearer_token

blp = Blueprint(
    "sessions",
    __name__,
    url_prefix="/auth",
    description="Refresh, log out, and see and end the caller's sessions (logins)",
)

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


@blp.route("/sessions", methods=["GET"])
@authenticated()
@blp.response(200, schemas.SessionListSchema)
def list_sessions() -> dict[str, Any]:
    """The caller's live sessions (logins), most recently used first (at most 100);
    `current` marks the one of this access token."""
    caller = current_caller()
    return {"items": self_service.live_sessions(caller.id, current_login_family())}


@blp.route("/sessions/<hexid:session_id>", methods=["DELETE"])
@authenticated()
@blp.response(204)
@blp.alt_response(404, description="Not a live session of the caller")
def end_session(session_id: str) -> None:
    """End one session: its refresh and access tokens stop working at once."""
    self_service.end_session(current_caller().id, session_id)


@blp.route("/sessions", methods=["DELETE"])
@authenticated()
@blp.response(204)
def end_other_sessions() -> None:
    """End every session of the caller but the current one."""
    self_service.end_other_sessions(current_caller().id, current_login_family())
