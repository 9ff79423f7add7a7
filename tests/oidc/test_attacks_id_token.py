"""Attacks on the id_token: each sent by a provider of the test's own (its discovery
document, its JWKS, a token endpoint answering what the test signed), against the real
stack. A forged id_token signs no one in and creates nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc.jwk import RSAKey

from tests.support.oidc import RETURN_TO, fragment, provider_settings
from tests.support.oidc_forger import Forger, forging_provider


@pytest.fixture(scope="session")
def forger() -> Iterator[Forger]:
    with forging_provider() as forger:
        yield forger


@pytest.fixture
def forged_client(app_factory: Callable[..., Flask], forger: Forger) -> FlaskClient:
    app = app_factory(
        OIDC_PROVIDERS={"forged": provider_settings(forger.issuer)},
        OIDC_RETURN_URLS=[RETURN_TO],
    )
    return app.test_client()


def started(client: FlaskClient) -> dict[str, str]:
    """Our authorize, as the browser follows it: the state and nonce sent to the provider."""
    response = client.get("/auth/oidc/forged/authorize")
    assert response.status_code == 302
    return dict(parse_qsl(urlsplit(response.headers["Location"]).query))


def come_back(client: FlaskClient, forger: Forger, id_token: str, state: str) -> Any:
    forger.id_token = id_token
    response = client.get("/auth/oidc/forged/callback", query_string={"code": "c", "state": state})
    assert response.status_code == 302
    return fragment(response.headers["Location"])


def test_a_well_formed_id_token_signs_in(forged_client: FlaskClient, forger: Forger) -> None:
    """The control: the forger's well-formed token passes, so each refusal below is due to
    the one thing its test changes."""
    sent = started(forged_client)
    back = come_back(
        forged_client, forger, forger.sign(forger.claims(sent["nonce"])), sent["state"]
    )
    assert "code" in back


@pytest.mark.parametrize(
    "override",
    [
        pytest.param({"aud": "another-client"}, id="wrong-aud"),
        pytest.param({"aud": "another-client", "azp": "cinema-accounts"}, id="wrong-aud-our-azp"),
        pytest.param(
            {"aud": ["another-client", "cinema-accounts"], "azp": "another-client"}, id="wrong-azp"
        ),
        pytest.param({"iss": "https://evil.example"}, id="wrong-iss"),
        pytest.param({"exp": 1_000_000_000, "iat": 999_999_000}, id="expired"),
        pytest.param({"nonce": "the-nonce-of-another-sign-in"}, id="another-nonce"),
        pytest.param({"nonce": None}, id="no-nonce"),
    ],
)
def test_a_forged_claim_is_refused(
    forged_client: FlaskClient, forger: Forger, override: dict[str, Any]
) -> None:
    sent = started(forged_client)
    token = forger.sign(forger.claims(sent["nonce"], **override))
    assert come_back(forged_client, forger, token, sent["state"]) == {"error": "invalid_id_token"}
    assert_nobody_signed_up(forged_client)


def assert_nobody_signed_up(client: FlaskClient) -> None:
    from app.identity.users import find_user_by_email

    with client.application.app_context():
        assert find_user_by_email("victim@example.com") is None


def test_a_signature_by_another_key_is_refused(forged_client: FlaskClient, forger: Forger) -> None:
    sent = started(forged_client)
    other_key = RSAKey.generate_key(2048)
    token = forger.sign(forger.claims(sent["nonce"]), key=other_key)
    assert come_back(forged_client, forger, token, sent["state"]) == {"error": "invalid_id_token"}


def test_alg_none_is_refused(forged_client: FlaskClient, forger: Forger) -> None:
    import base64
    import json

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    sent = started(forged_client)
    token = f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(forger.claims(sent['nonce']))}."
    assert come_back(forged_client, forger, token, sent["state"]) == {"error": "invalid_id_token"}


def test_a_mac_keyed_by_the_public_key_is_refused(
    forged_client: FlaskClient, forger: Forger
) -> None:
    """HS256 with the provider's public key as the secret: accepted by a verifier that lets
    the token's header choose the algorithm."""
    import base64
    import hashlib
    import hmac
    import json

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    sent = started(forged_client)
    signing_input = (
        f"{part({'alg': 'HS256', 'kid': 'published'})}.{part(forger.claims(sent['nonce']))}"
    )
    public_pem = forger.key.as_pem(private=False)
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    assert come_back(forged_client, forger, token, sent["state"]) == {"error": "invalid_id_token"}


def test_pkce_s256_the_provider_can_check(forged_client: FlaskClient, forger: Forger) -> None:
    """The code is only worth something with our verifier: the authorization request sends
    its S256 challenge, and the code's exchange the verifier that hashes to it."""
    from authlib.oauth2.rfc7636 import create_s256_code_challenge

    sent = started(forged_client)
    assert sent["code_challenge_method"] == "S256"
    forger.token_requests.clear()
    come_back(forged_client, forger, forger.sign(forger.claims(sent["nonce"])), sent["state"])
    [exchange] = forger.token_requests
    assert create_s256_code_challenge(exchange["code_verifier"]) == sent["code_challenge"]
    assert exchange["code_verifier"] not in str(sent)


def test_a_rotated_provider_key_is_fetched_again(
    app_factory: Callable[..., Flask], forger: Forger
) -> None:
    """The JWKS is cached; a token signed by a key id not in it fetches the JWKS again."""
    app = app_factory(
        OIDC_PROVIDERS={"forged": provider_settings(forger.issuer)},
        OIDC_RETURN_URLS=[RETURN_TO],
    )
    client = app.test_client()
    sent = started(client)
    assert "code" in come_back(
        client, forger, forger.sign(forger.claims(sent["nonce"])), sent["state"]
    )
    old_key = forger.key
    forger.rotate()
    try:
        sent = started(client)
        token = forger.sign(
            forger.claims(sent["nonce"], sub="after-rotation", email="r@example.com")
        )
        assert "code" in come_back(client, forger, token, sent["state"])
    finally:
        forger.key = old_key
