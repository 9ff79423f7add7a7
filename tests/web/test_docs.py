"""/docs works offline: Swagger UI's assets come from this service (the pinned
swagger-ui-bundle package), under a Content-Security-Policy that allows only this origin.
The page rendering in a real browser with no network: tests/signup/test_pages_browser.py."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from flask.testing import FlaskClient


class References(HTMLParser):
    """Every URL the page loads, and the text of inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts: list[str] = []
        self._in_inline_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("src", "href"):
            if values.get(name):
                self.urls.append(str(values[name]))
        self._in_inline_script = tag == "script" and not values.get("src")

    def handle_data(self, data: str) -> None:
        if self._in_inline_script and data.strip():
            self.inline_scripts.append(data)

    def handle_endtag(self, tag: str) -> None:
        self._in_inline_script = False


def test_docs_loads_everything_from_this_service(client: FlaskClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    refs = References()
    refs.feed(page.get_data(as_text=True))
    assert refs.urls, "the page loads Swagger UI's script and stylesheet"
    assert refs.inline_scripts == []
    for url in refs.urls:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["X-Content-Type-Options"] == "nosniff"
    assert {client.get(url).mimetype for url in refs.urls} == {"text/css", "text/javascript"}


def test_docs_has_a_csp_that_allows_only_this_origin(client: FlaskClient) -> None:
    csp = client.get("/docs").headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert not re.search(r"https?:", csp)


def test_the_start_up_script_reads_the_local_spec_and_calls_no_validator(
    client: FlaskClient,
) -> None:
    script = client.get("/docs/swagger-init.js")
    assert script.mimetype == "text/javascript"
    text = script.get_data(as_text=True)
    assert "validatorUrl: null" in text
    assert not re.search(r"https?://", text)
    assert client.get("/docs").get_data(as_text=True).count('data-spec-url="/openapi.json"') == 1


def test_only_the_assets_the_page_uses_are_served(client: FlaskClient) -> None:
    for name in ("index.html", "swagger-initializer.js", "swagger-ui.js.map", "..%2Fconfig.py"):
        response = client.get(f"/docs/static/{name}")
        assert response.status_code == 404, name
        assert response.mimetype == "application/problem+json"


def test_docs_with_a_slash_redirects_to_docs(client: FlaskClient) -> None:
    response = client.get("/docs/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/docs"


def test_the_docs_routes_stay_out_of_the_api_description(client: FlaskClient) -> None:
    paths = client.get("/openapi.json").json["paths"]
    assert not [path for path in paths if path.startswith("/docs")]
