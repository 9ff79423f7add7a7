"""The passkey calls the tests make, as a front end makes them."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from tests.passkeys.authenticator import Authenticator
from tests.support.http import bearer


def register_options(client: FlaskClient, access_token: str) -> Any:
    return client.post("/auth/passkeys/register/options", headers=bearer(access_token))


def register(
    client: FlaskClient, access_token: str, credential: dict[str, Any], **body: Any
) -> Any:
    return client.post(
        "/auth/passkeys", json={"credential": credential, **body}, headers=bearer(access_token)
    )


def login_options(client: FlaskClient) -> Any:
    return client.post("/auth/passkeys/login/options", json={})


def login(client: FlaskClient, credential: dict[str, Any]) -> Any:
    return client.post("/auth/passkeys/login", json={"credential": credential})


def add_passkey(
    client: FlaskClient, access_token: str, authenticator: Authenticator, name: str = "Phone"
) -> dict[str, Any]:
    """Register a passkey held by `authenticator`; returns the passkey as the API shows it."""
    options = register_options(client, access_token)
    assert options.status_code == 200, options.json
    response = register(client, access_token, authenticator.create(options.json), name=name)
    assert response.status_code == 201, response.json
    return response.json  # type: ignore[no-any-return]


def sign_in(client: FlaskClient, authenticator: Authenticator, **signing: Any) -> Any:
    """Ask for request options, have `authenticator` answer them, post the answer."""
    options = login_options(client)
    assert options.status_code == 200, options.json
    return login(client, authenticator.get(options.json, **signing))
