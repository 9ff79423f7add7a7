"""GET /.well-known/jwks.json: the public keys other services verify our access tokens with."""

from __future__ import annotations

from typing import Any

from app.keys.ring import keyring
from app.keys.schemas import JWKSetSchema
from app.keys.service import JWKS_MAX_AGE
from app.web.blueprint import Blueprint

blp = Blueprint(
    "keys",
    __name__,
    url_prefix="/.well-known",
    description="The public keys that verify our access tokens",
    cacheable=True,
)

CACHE_HEADERS = {
    "Cache-Control": {
        "description": f"`public, max-age={JWKS_MAX_AGE}`",
        "schema": {"type": "string"},
    }
}


@blp.route("/jwks.json", methods=["GET"])
@blp.response(200, JWKSetSchema, headers=CACHE_HEADERS)
def jwks() -> tuple[dict[str, Any], dict[str, str]]:
    """Every key whose tokens may still be alive (current and recently retired); public
    parameters only. Verify with `alg` EdDSA, `iss` PUBLIC_BASE_URL, `aud` JWT_AUDIENCE."""
    return {"keys": keyring().published()}, {"Cache-Control": f"public, max-age={JWKS_MAX_AGE}"}
