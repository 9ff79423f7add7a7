"""The configured providers, and what each publishes: its discovery document and its
JWKS, fetched with a timeout and kept for OIDC_CACHE_SECONDS in each process.

Nothing here runs at startup: a provider is fetched on its first sign-in, so a provider that
is down fails its own sign-ins (ProviderUnavailable) and nothing else.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import requests
from flask import current_app
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from app.core.errors import ProviderUnavailable, UnknownProvider
from app.core.log import audit

_cache: dict[str, tuple[float, Any]] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class Provider:
    name: str
    display_name: str
    issuer: str
    client_id: str
    client_secret: str
    scopes: str

    def __repr__(self) -> str:  # never the secret
        return f"<Provider {self.name} issuer={self.issuer}>"


def all_providers() -> list[Provider]:
    return [Provider(name=name, **s) for name, s in current_app.config["OIDC_PROVIDERS"].items()]


def get_provider(name: str) -> Provider:
    """The provider configured under `name` (UnknownProvider, a 404, otherwise)."""
    settings = current_app.config["OIDC_PROVIDERS"].get(name)
    if settings is None:
        raise UnknownProvider(f"No sign-in provider is called {name!r}.")
    return Provider(name=name, **settings)


def metadata(provider: Provider) -> dict[str, Any]:
    """The provider's discovery document, whose `issuer` must be the configured one (OpenID
    Connect Discovery 4.3: else another issuer's tokens would pass our `iss` check)."""
    url = f"{provider.issuer}/.well-known/openid-configuration"
    document = _cached(url, provider)
    endpoints = ("authorization_endpoint", "token_endpoint", "jwks_uri")
    if (
        not isinstance(document, dict)
        or document.get("issuer") != provider.issuer
        or not all(isinstance(document.get(key), str) for key in endpoints)
    ):
        _forget(url)
        audit("oidc_provider_unusable", provider=provider.name, reason="discovery_document")
        raise ProviderUnavailable(f"The sign-in provider {provider.name} is misconfigured.")
    return document


def signing_keys(provider: Provider, *, fresh: bool = False) -> KeySet:
    """The provider's JWKS; `fresh` fetches it again (a key id we do not know yet: the
    provider rotated its keys since we cached them)."""
    url = metadata(provider)["jwks_uri"]
    if fresh:
        _forget(url)
    try:
        return KeySet.import_key_set(_cached(url, provider))
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        _forget(url)
        raise ProviderUnavailable(
            f"The sign-in provider {provider.name} is misconfigured."
        ) from exc


def _cached(url: str, provider: Provider) -> Any:
    now = time.monotonic()
    with _lock:
        hit = _cache.get(url)
    if hit is not None and hit[0] > now:
        return hit[1]
    config = current_app.config
    try:
        response = requests.get(url, timeout=config["OIDC_HTTP_TIMEOUT"])
        response.raise_for_status()
        document = response.json()
    except (requests.RequestException, ValueError) as exc:
        audit("oidc_provider_unreachable", provider=provider.name, error=type(exc).__name__)
        raise ProviderUnavailable(
            f"The sign-in provider {provider.name} cannot be reached; try again later."
        ) from exc
    with _lock:
        _cache[url] = (now + config["OIDC_CACHE_SECONDS"], document)
    return document


def _forget(url: str) -> None:
    with _lock:
        _cache.pop(url, None)
