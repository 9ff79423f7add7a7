"""Social sign-in driven as a browser drives it: our authorize, the provider's sign-in page
(a real OpenID provider on a local port, oidc-provider-mock), our callback, the exchange."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
from flask.testing import FlaskClient

RETURN_TO = "http://cinema.test/signed-in"
CLIENT_ID = "cinema-accounts"


def provider_settings(issuer: str, **extra: str) -> dict[str, str]:
    return {
        "issuer": issuer,
        "client_id": CLIENT_ID,
        "client_secret": "test-client-secret",
        "display_name": "Mock",
        "scopes": "openid email profile",
        **extra,
    }


def new_subject() -> str:
    return f"sub-{uuid.uuid4().hex}"


def fragment(location: str) -> dict[str, str]:
    """The `#a=b` of a redirect to return_to, as a dict (the front end's reading of it)."""
    base, _, frag = location.partition("#")
    assert base == RETURN_TO, location
    return dict(parse_qsl(frag))


class Browser:
    """One browser: our service through the Flask test client (its cookie jar is the
    browser's), the provider over HTTP with httpx."""

    def __init__(self, client: FlaskClient, issuer: str, provider: str = "mock") -> None:
        self.client = client
        self.issuer = issuer
        self.provider = provider

    def set_person(self, sub: str, **claims: Any) -> None:
        """Who the provider will say signs in (its own API, PUT /users/<sub>)."""
        httpx.put(f"{self.issuer}/users/{sub}", json=claims, timeout=5).raise_for_status()

    def authorize(self, return_to: str = RETURN_TO) -> str:
        response = self.client.get(
            f"/auth/oidc/{self.provider}/authorize", query_string={"return_to": return_to}
        )
        assert response.status_code == 302, response.get_data(as_text=True)
        return str(response.headers["Location"])

    def at_provider(self, authorize_url: str, sub: str, action: str = "") -> str:
        """Sign in at the provider's page as `sub` (or deny): its redirect back to us."""
        form = {"sub": sub} if not action else {"action": action}
        response = httpx.post(authorize_url, data=form, timeout=5, follow_redirects=False)
        assert response.status_code == 302, response.text
        return str(response.headers["Location"])

    def callback(self, location: str) -> Any:
        parts = urlsplit(location)
        return self.client.get(parts.path, query_string=parts.query)

    def sign_in(self, sub: str, **claims: Any) -> dict[str, str]:
        """The whole way there and back: the fragment return_to receives."""
        if claims:
            self.set_person(sub, **claims)
        back = self.callback(self.at_provider(self.authorize(), sub))
        assert back.status_code == 302, back.get_data(as_text=True)
        return fragment(str(back.headers["Location"]))

    def exchange(self, code: str) -> Any:
        return self.client.post("/auth/oidc/exchange", json={"code": code})

    def tokens(self, sub: str, **claims: Any) -> dict[str, Any]:
        """Sign in and exchange the code: the token pair."""
        back = self.sign_in(sub, **claims)
        assert "code" in back, back
        response = self.exchange(back["code"])
        assert response.status_code == 200, response.get_json()
        return dict(response.get_json())
