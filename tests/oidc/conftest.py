"""Fixtures of social sign-in: a real OpenID provider on a local port, and our app
configured with it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from oidc_provider_mock import run_server_in_thread

from tests.support.oidc import RETURN_TO, Browser, provider_settings


@pytest.fixture(scope="session")
def provider_issuer() -> Iterator[str]:
    """oidc-provider-mock, as a provider runs: its own server, its own keys; require_nonce,
    as a careful provider does."""
    with run_server_in_thread(require_nonce=True) as server:
        yield f"http://localhost:{server.server_port}"


@pytest.fixture
def oidc_app(app_factory: Callable[..., Flask], provider_issuer: str) -> Flask:
    return app_factory(
        OIDC_PROVIDERS={"mock": provider_settings(provider_issuer)},
        OIDC_RETURN_URLS=[RETURN_TO],
    )


@pytest.fixture
def oidc_client(oidc_app: Flask) -> FlaskClient:
    return oidc_app.test_client()


@pytest.fixture
def browser(oidc_client: FlaskClient, provider_issuer: str) -> Browser:
    return Browser(oidc_client, provider_issuer)
