"""The HTML pages the emailed links open: self-contained, their one script allowed by a
nonce, nothing leaked through the referrer, nothing spent by a GET."""

from __future__ import annotations

import secrets
from typing import Any

from flask import Response, make_response, render_template

PAGE_DOC: dict[str, Any] = {
    "responses": {
        "200": {
            "description": "An HTML page",
            "content": {"text/html": {"schema": {"type": "string"}}},
        }
    },
    "parameters": [
        {"in": "query", "name": "token", "schema": {"type": "string"}, "required": False}
    ],
}


def html_page(template: str, **context: Any) -> Response:
    nonce = secrets.token_urlsafe(16)
    response = make_response(render_template(template, nonce=nonce, **context))
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
    )
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
