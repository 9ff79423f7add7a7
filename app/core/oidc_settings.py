"""The settings of social sign-in (app/oidc): the providers, each from its own
`OIDC_<NAME>_…` variables, the front-end URLs a sign-in may return to, and the fetches'
limits. Read by app/core/config.py with the rest."""

from __future__ import annotations

import re
from typing import Any

DEFAULT_SCOPES = "openid email profile"
# A provider's name is part of URLs (/auth/oidc/<name>/…) and of variable names.
PROVIDER_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


def oidc_settings(
    env: dict[str, str], public_base_url: str, error: type[Exception]
) -> dict[str, Any]:
    names = [n.strip().lower() for n in (env.get("OIDC_PROVIDERS") or "").split(",") if n.strip()]
    providers = {name: _provider(env, name, error) for name in names}
    return_urls = (env.get("OIDC_RETURN_URLS") or "").split(",")
    return {
        "OIDC_PROVIDERS": providers,
        # Compared exactly: a return_to that is not one of these is refused (no open redirect).
        "OIDC_RETURN_URLS": [u.strip() for u in return_urls if u.strip()] or [public_base_url],
        # true: a provider's verified email signs in the activated account that has it.
        "OIDC_LINK_VERIFIED_EMAIL": (env.get("OIDC_LINK_VERIFIED_EMAIL") or "").strip().lower()
        in {"1", "true", "yes", "on"},
        # Seconds a request to a provider may take (discovery, JWKS, the code's exchange).
        "OIDC_HTTP_TIMEOUT": _number(env, "OIDC_HTTP_TIMEOUT", 5, error),
        # Seconds a provider's discovery document and JWKS are kept before fetching again.
        "OIDC_CACHE_SECONDS": _number(env, "OIDC_CACHE_SECONDS", 3600, error),
    }


def _provider(env: dict[str, str], name: str, error: type[Exception]) -> dict[str, str]:
    if not PROVIDER_NAME.fullmatch(name):
        raise error(f"OIDC_PROVIDERS: {name!r} is not a name (a-z, 0-9, _; 40 at most)")
    prefix = f"OIDC_{name.upper()}_"
    settings = {
        "issuer": (env.get(prefix + "ISSUER") or "").rstrip("/"),
        "client_id": env.get(prefix + "CLIENT_ID") or "",
        "client_secret": env.get(prefix + "CLIENT_SECRET") or "",
        "display_name": env.get(prefix + "DISPLAY_NAME") or name.capitalize(),
        "scopes": env.get(prefix + "SCOPES") or DEFAULT_SCOPES,
    }
    for key in ("issuer", "client_id", "client_secret"):
        if not settings[key]:
            raise error(f"{prefix}{key.upper()} is required, since OIDC_PROVIDERS names {name}")
    return settings


def _number(env: dict[str, str], name: str, default: int, error: type[Exception]) -> int:
    raw = env.get(name) or ""
    if not raw.strip():
        return default
    if not raw.strip().isdigit() or int(raw) < 1:
        raise error(f"{name} must be a whole number of seconds, got {raw!r}")
    return int(raw)
