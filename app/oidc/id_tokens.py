"""The check of a provider's id_token (OpenID Connect Core 3.1.3.7): its signature by a key
of the provider's JWKS, with an algorithm of one list (never `none`, never a MAC keyed by a
public key), then `iss`, `aud`, `azp` when present, `exp` and `iat` with a small leeway, and
the `nonce` of this sign-in."""

from __future__ import annotations

from typing import Any

from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError

from app.oidc.providers import Provider, signing_keys

ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"]
# Seconds of clock difference allowed between the provider and us.
LEEWAY = 60


class InvalidIdToken(Exception):
    """The id_token fails a check; the message names which, for the log line only."""


def verify_id_token(provider: Provider, id_token: str, nonce: str) -> dict[str, Any]:
    """The claims of `id_token` once every check passed (InvalidIdToken otherwise)."""
    try:
        try:
            token = jwt.decode(id_token, signing_keys(provider), algorithms=ALGORITHMS)
        except InvalidKeyIdError:
            # A key id we do not know: the provider may have rotated since we cached its JWKS.
            token = jwt.decode(id_token, signing_keys(provider, fresh=True), algorithms=ALGORITHMS)
        claims = CodeIDToken(
            token.claims,
            token.header,
            options={
                "iss": {"essential": True, "value": provider.issuer},
                "aud": {"essential": True, "value": provider.client_id},
                "sub": {"essential": True},
            },
            # The nonce must be there and be this sign-in's; `azp`, when present, ours.
            params={"nonce": nonce, "client_id": provider.client_id},
        )
        claims.validate(leeway=LEEWAY)
    except (JoseError, ValueError, TypeError) as exc:
        raise InvalidIdToken(type(exc).__name__) from exc
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise InvalidIdToken("sub")
    return dict(claims)
