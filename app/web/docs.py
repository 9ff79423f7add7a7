"""Swagger UI at /docs from the pinned swagger-ui-bundle package: no CDN, so it works
offline and runs exactly the code we installed.

flask-smorest serves the /docs page itself; `templates/swagger_ui.html` replaces its page
with one that has no inline script, so a strict Content-Security-Policy holds. This module
serves the assets under /docs/static/, the page's start-up script, /docs/ as a redirect,
and the page's security headers.
"""

from __future__ import annotations

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    redirect,
    render_template,
    request,
    send_from_directory,
)
from swagger_ui_bundle import swagger_ui_path
from werkzeug.exceptions import NotFound

# The files the page loads; the package's demo index.html and source maps are not served.
ASSETS = frozenset({"swagger-ui.css", "swagger-ui-bundle.js"})
PAGE_ENDPOINT = "api-docs.openapi_swagger_ui"
# Swagger UI draws its images as data: URIs and fetches nothing but /openapi.json.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

blp = Blueprint("docs_assets", __name__)


@blp.route("/docs/static/<name>")
def asset(name: str) -> Response:
    if name not in ASSETS:
        raise NotFound()
    return send_from_directory(swagger_ui_path, name)


@blp.route("/docs/swagger-init.js")
def swagger_init() -> Response:
    """Starts Swagger UI on /openapi.json, with OPENAPI_SWAGGER_UI_CONFIG on top."""
    script = render_template(
        "docs/swagger_init.js", config=current_app.config.get("OPENAPI_SWAGGER_UI_CONFIG", {})
    )
    return Response(script, mimetype="text/javascript")


@blp.route("/docs/")
def docs_with_slash() -> Response:
    return redirect("/docs", code=302)  # type: ignore[return-value]


def _page_headers(response: Response) -> Response:
    if request.endpoint == PAGE_ENDPOINT:
        response.headers["Content-Security-Policy"] = PAGE_CSP
        response.headers["Referrer-Policy"] = "no-referrer"
    elif request.endpoint in {"docs_assets.asset", "docs_assets.swagger_init"}:
        response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def init_docs(app: Flask) -> None:
    app.register_blueprint(blp)
    app.after_request(_page_headers)
