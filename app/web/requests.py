"""How every request is read: ids in the URL, the Bearer credential, no cookie session,
the body policy (app/web/bodies.py), the client's address behind trusted proxies."""

from __future__ import annotations

from typing import Any

from flask import Flask, Request, Response, has_request_context, request
from flask.sessions import NullSession, SessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import BaseConverter, IntegerConverter, Map

from app.web.bodies import body_policy

MAX_ROW_ID = 2**31 - 1
HEX_ID = "[0-9a-f]{32}"
# What the tables keep of a request's client (a login, a security event): any IPv6 text
# fits in 45 characters, and a user agent is cut to a length worth showing.
ADDRESS_LENGTH = 45
USER_AGENT_LENGTH = 255


class RowIdConverter(IntegerConverter):
    """`<id:name>`: a row id, 1 to the largest `integer` column value (PostgreSQL's int4).

    Any other number is no row at all, so it is routed to 404 like an unknown id, before
    it can overflow a database driver (SQLite's stops at 64 bits); /openapi.json states
    the bounds."""

    def __init__(self, url_map: Map) -> None:
        super().__init__(url_map, min=1, max=MAX_ROW_ID)


class HexIdConverter(BaseConverter):
    """`<hexid:name>`: a random 128-bit id as 32 lower-case hex digits (a login's family id).

    Anything else names nothing, so it is routed to 404 like an unknown id, and never reaches
    a query as text PostgreSQL cannot hold (NUL); /openapi.json states the pattern."""

    regex = HEX_ID


def bearer_token() -> str | None:
    """The token of the Bearer credential in Authorization, or None when there is none.

    The scheme is read in any case (RFC 9110 section 11.1: login answers token_type
    "bearer"), separated from the token by any whitespace, and the header may list other
    credentials beside it, comma-separated, as flask-jwt-extended read it. What follows the
    scheme is returned as sent: a token with a space in it is not valid, not missing."""
    for credential in request.headers.get("Authorization", "").split(","):
        scheme_and_token = credential.strip().split(None, 1)
        if scheme_and_token and scheme_and_token[0].lower() == "bearer":
            return scheme_and_token[1] if len(scheme_and_token) == 2 else None
    return None


def client_of_request() -> tuple[str | None, str | None]:
    """The request's client address, as resolved through TRUSTED_PROXIES, and its user agent,
    cut to what the tables keep; None for what is missing, or outside a request."""
    if not has_request_context():
        return None, None
    address = (request.remote_addr or "")[:ADDRESS_LENGTH] or None
    return address, request.headers.get("User-Agent", "")[:USER_AGENT_LENGTH] or None


def _no_content_type_on_204(response: Response) -> Response:
    """A 204 has no body, so nothing for a Content-Type to describe (RFC 9110 section 8.3)."""
    if response.status_code == 204:
        response.headers.pop("Content-Type", None)
    return response


class NoCookieSession(SessionInterface):
    """The API keeps no session in a cookie (callers send tokens): no request reads or signs
    one. Flask's default opens a signed-cookie session for every request, which cost /health
    a tenth of its CPU; writing to `flask.session` now fails loudly."""

    def open_session(self, app: Flask, request: Request) -> NullSession:
        return self.make_null_session(app)

    def save_session(self, app: Flask, session: Any, response: Response) -> None:
        return None


def init_requests(app: Flask) -> None:
    app.url_map.converters["id"] = RowIdConverter
    app.url_map.converters["hexid"] = HexIdConverter
    # No redirect is ever built from the request: werkzeug would answer `//admin//users` or
    # a missing trailing slash with a 308 to `http://<Host header>/...`, a redirect anyone
    # can point at their own site. Such paths are 404s instead.
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    app.session_interface = NoCookieSession()
    app.before_request(body_policy)
    app.after_request(_no_content_type_on_204)
    if app.config["TRUSTED_PROXIES"]:
        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=0)  # type: ignore[method-assign]
