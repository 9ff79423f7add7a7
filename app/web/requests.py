"""The request-body policy: which bodies are read, how JSON is parsed, how ids and the
Bearer scheme are read from the URL and headers, and the Blueprint class that uses them."""

from __future__ import annotations

import json
from typing import Any

import flask_smorest
from flask import Flask, Request, Response, current_app, request
from flask.sessions import NullSession, SessionInterface
from marshmallow import Schema
from marshmallow.utils import missing
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge, UnsupportedMediaType
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter, Map

MAX_ROW_ID = 2**31 - 1
# Every GET and HEAD endpoint only reads: a lost database connection is retried for them
# (app/factory.py).
READ_ONLY_METHODS = frozenset({"GET", "HEAD"})
BODY_TYPES = {"application/json", "multipart/form-data"}
# The largest JSON body of ours is a reset: a token and a 128-character password, well under
# 1 KiB. Anything near the cap is an attack, and reading it is the cost (600,000 keys took 8 s).
MAX_JSON_BODY = 16 * 1024
MAX_JSON_DEPTH = 32
_TOO_DEEP = f"The JSON body is nested more than {MAX_JSON_DEPTH} levels deep."


class JSONBodyParser(FlaskParser):
    """webargs reads a missing JSON body as `{}`, which an all-optional schema (the profile
    PATCH) would accept as a request that changes nothing. A body is required unless the
    schema says `OPTIONAL_BODY = True` (the refresh token may come in a header instead).

    webargs turns only a JSONDecodeError into its 400; JSON that Python reads badly is a
    400 here too, before any use case sees it."""

    def load_json(self, req: Request, schema: Schema) -> Any:
        data = super().load_json(req, schema)
        if data is missing and not getattr(schema, "OPTIONAL_BODY", False):
            raise BadRequest("This request needs a JSON body (Content-Type: application/json).")
        return data

    def _raw_load_json(self, req: Request) -> Any:
        try:
            data = super()._raw_load_json(req)
        except json.JSONDecodeError:
            raise  # webargs answers malformed JSON itself
        except RecursionError:  # the parser's own limit, deeper than any body we take
            raise BadRequest(_TOO_DEEP) from None
        except ValueError as exc:
            # json.loads refuses a number of over 4300 digits with a plain ValueError.
            raise BadRequest("The JSON body holds a number too long to read.") from exc
        unreadable = _not_unicode_text(data)
        if unreadable:
            raise BadRequest(unreadable)
        return data


def _not_unicode_text(data: Any) -> str | None:
    """Why a parsed body cannot be handled as text, or None.

    JSON may escape a lone surrogate (`"\\ud800"`), which no UTF-8 text can hold: hashing,
    storing or logging it fails, so every string and key must encode. Walked without
    recursion, and only so deep: no body of ours nests more than two levels."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return (
                    "The JSON body has a lone surrogate escape (\\ud800-\\udfff): not Unicode text."
                )
        elif isinstance(value, dict | list):
            if depth >= MAX_JSON_DEPTH:
                return _TOO_DEEP
            items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
            stack.extend((item, depth + 1) for item in items)
    return None


class RowIdConverter(IntegerConverter):
    """`<id:name>`: a row id, 1 to the largest `integer` column value (PostgreSQL's int4).

    Any other number is no row at all, so it is routed to 404 like an unknown id, before
    it can overflow a database driver (SQLite's stops at 64 bits); /openapi.json states
    the bounds."""

    def __init__(self, url_map: Map) -> None:
        super().__init__(url_map, min=1, max=MAX_ROW_ID)


class Blueprint(flask_smorest.Blueprint):  # type: ignore[misc]
    """The API's blueprints. Their answers carry tokens or personal data, so no cache keeps
    them, unless the blueprint says `cacheable=True` and its views set Cache-Control (the
    JWKS, the avatars) or have nothing to keep private (/health)."""

    ARGUMENTS_PARSER = JSONBodyParser()

    def __init__(self, *args: Any, cacheable: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not cacheable:
            self.after_request(no_store)


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


def _body_policy() -> None:
    """Every request's body, before any view reads it: one we cannot read is a 415, before a
    schema turns it into missing fields; JSON bodies get a few KiB, and only a multipart
    upload (the avatar) gets MAX_CONTENT_LENGTH.

    Werkzeug refuses a Content-Length over the cap before reading, but a chunked body (no
    Content-Length) it only stops reading at the cap: what was read so far would be handled
    as the whole body. So a chunked body is read here, one byte past the cap: more than the
    cap is a 413 like any other body, and the rest of the request reads what was kept."""
    environ = request.environ
    if "CONTENT_LENGTH" not in environ and "HTTP_TRANSFER_ENCODING" not in environ:
        return  # no body at all (every GET): skip parsing the headers below
    chunked = _is_chunked()
    if (request.content_length or chunked) and (
        request.mimetype not in BODY_TYPES and not request.mimetype.endswith("+json")
    ):
        raise UnsupportedMediaType(
            "Send the body as application/json (multipart/form-data for the avatar upload)."
        )
    upload_cap = current_app.config["MAX_CONTENT_LENGTH"]
    cap = upload_cap if request.mimetype == "multipart/form-data" else MAX_JSON_BODY
    cap = min(cap, upload_cap)
    request.max_content_length = cap
    if request.content_length is None and chunked:
        request.max_content_length = cap + 1
        if len(request.get_data(cache=True)) > cap:
            raise RequestEntityTooLarge()
        request.max_content_length = cap


def _is_chunked() -> bool:
    return "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def no_store(response: Response) -> Response:
    """Responses that carry tokens or personal data are kept by no cache (RFC 6749 5.1)."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


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


def init_http(app: Flask) -> None:
    app.url_map.converters["id"] = RowIdConverter
    # No redirect is ever built from the request: werkzeug would answer `//admin//users` or
    # a missing trailing slash with a 308 to `http://<Host header>/...`, a redirect anyone
    # can point at their own site. Such paths are 404s instead.
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    app.session_interface = NoCookieSession()
    app.before_request(_body_policy)
    app.after_request(_no_content_type_on_204)
    if app.config["TRUSTED_PROXIES"]:
        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=0)  # type: ignore[method-assign]
