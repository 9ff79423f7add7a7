"""HTTP layer of social sign-in: the providers, the way to one and back, the exchange of the
one-time code, and the caller's linked identities."""

from __future__ import annotations

from typing import Any

from flask import current_app, redirect, request
from marshmallow import RAISE
from werkzeug.http import dump_cookie
from werkzeug.wrappers import Response

from app.mfa.schemas import LOGIN_ANSWER, login_answer
from app.oidc import schemas, service
from app.oidc.flow import PENDING_TTL
from app.sessions.guard import authenticated, load_caller_user
from app.web.blueprint import Blueprint
from app.web.limits import rate_limited

blp = Blueprint("oidc", __name__, url_prefix="/auth", description="Sign in with a provider")

# Binds a sign-in under way to the browser that started it: the callback must come back
# with it. Lax: the provider's redirect back is a top-level navigation, which carries it.
BROWSER_COOKIE = "oidc_browser"
COOKIE_PATH = "/auth/oidc"
PER_ADDRESS = "20/minute;200/hour"


def _browser_cookie(browser: str) -> dict[str, str]:
    return {
        "Set-Cookie": dump_cookie(
            BROWSER_COOKIE,
            browser,
            max_age=int(PENDING_TTL.total_seconds()),
            path=COOKIE_PATH,
            secure=current_app.config["PUBLIC_BASE_URL"].startswith("https:"),
            httponly=True,
            samesite="Lax",
        )
    }


@blp.route("/oidc/providers", methods=["GET"])
@blp.response(200, schemas.ProviderListSchema)
def providers() -> dict[str, Any]:
    """The providers one may sign in with."""
    return {"items": service.list_providers()}


@blp.route("/oidc/<provider>/authorize", methods=["GET"])
@rate_limited(per_address=PER_ADDRESS)
@blp.arguments(schemas.ReturnToQuerySchema, location="query", unknown=RAISE)
@blp.alt_response(302, description="To the provider's sign-in page")
@blp.alt_response(400, description="return_to is not allowed")
@blp.alt_response(404, description="No provider of this name")
@blp.alt_response(503, description="The provider cannot be reached")
def authorize(query: dict[str, str], provider: str) -> Response:
    """Start a sign-in with the provider: a redirect to it."""
    url, browser = service.start(provider, query.get("return_to"))
    response = redirect(url, code=302)
    response.headers.extend(_browser_cookie(browser))
    return response


@blp.route("/oidc/<provider>/link", methods=["POST"])
@authenticated()
@rate_limited(per_address=PER_ADDRESS)
@blp.arguments(schemas.LinkRequestSchema)
@blp.response(200, schemas.AuthorizeUrlSchema)
@blp.alt_response(400, description="return_to is not allowed")
@blp.alt_response(404, description="No provider of this name")
@blp.alt_response(503, description="The provider cannot be reached")
def link(body: dict[str, str], provider: str) -> tuple[dict[str, str], int, dict[str, str]]:
    """Start linking the provider's account to the caller's: following `authorize_url` in
    this browser links it. The answer sets the cookie the callback checks."""
    url, browser = service.start(provider, body.get("return_to"), load_caller_user())
    return {"authorize_url": url}, 200, _browser_cookie(browser)


@blp.route("/oidc/<provider>/callback", methods=["GET"])
@rate_limited(per_address=PER_ADDRESS)
@blp.arguments(schemas.CallbackQuerySchema, location="query")
@blp.alt_response(302, description="Back to return_to, with #code=, #linked= or #error=")
@blp.alt_response(400, description="A state never issued, or already spent")
def callback(query: dict[str, str], provider: str) -> Response:
    """Where the provider sends the browser back."""
    target = service.finish(provider, query, request.cookies.get(BROWSER_COOKIE))
    response = redirect(target, code=302)
    response.delete_cookie(BROWSER_COOKIE, path=COOKIE_PATH, httponly=True, samesite="Lax")
    return response


@blp.route("/oidc/exchange", methods=["POST"])
@rate_limited(per_address=PER_ADDRESS)
@blp.arguments(schemas.ExchangeSchema)
@blp.response(200, LOGIN_ANSWER, description="The token pair, or the two-factor step")
@blp.alt_response(400, description="The code is unknown, spent or expired")
@blp.alt_response(403, description="The account is deactivated")
def exchange(body: dict[str, str]) -> Response:
    """Turn the one-time sign-in code of the callback into a token pair; an account with
    two-factor on gets an mfa_token for POST /auth/login/mfa instead."""
    return login_answer(service.exchange(body["code"]))


@blp.route("/identities", methods=["GET"])
@authenticated()
@blp.response(200, schemas.IdentityListSchema)
def identities() -> dict[str, Any]:
    """The provider accounts linked to the caller's."""
    return {"items": service.identities_of(load_caller_user())}


@blp.route("/identities/<int:identity_id>", methods=["DELETE"])
@authenticated()
@blp.response(204)
@blp.alt_response(404, description="No linked identity of the caller has this id")
@blp.alt_response(409, description="It is the account's last way to sign in")
def unlink(identity_id: int) -> None:
    """Unlink a provider account from the caller's."""
    service.unlink(load_caller_user(), identity_id)
