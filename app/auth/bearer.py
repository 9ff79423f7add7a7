"""The JWT manager, with an access token decoded once instead of three times.

flask-jwt-extended 4.7 decodes every token twice without checking it (its claims, then its
header, for the key callback) before the decode that verifies it, and PyJWT validates every
base64 character of the whole token each time: a quarter of an authenticated request's
own CPU. The key callback needs only the header's kid, read here from the header segment
alone; the one verifying decode then checks that same segment strictly, and its signature
covers it, so a header read differently here only picks a key that fails.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from flask_jwt_extended import JWTManager
from flask_jwt_extended.config import config
from flask_jwt_extended.tokens import _decode_jwt
from jwt import DecodeError


def unverified_header(encoded_token: str) -> dict[str, Any]:
    """The token's header, not verified: only to choose the key that verifies it."""
    segment = encoded_token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error, RecursionError) as exc:
        raise DecodeError("Invalid header") from exc
    if not isinstance(header, dict):
        raise DecodeError("Invalid header string: must be a json object")
    return header


class OneDecodeJWTManager(JWTManager):
    # Overrides the method of flask-jwt-extended 4.7.x (pinned) that reads a token, which
    # `decode_token` calls: the same arguments and errors, without its two unverified
    # decodes. Errors are the guard's to answer (app/auth/guards.py), so an expired token's
    # error carries nothing for flask-jwt-extended's own callbacks.
    def _decode_jwt_from_config(
        self, encoded_token: str, csrf_value: Any = None, allow_expired: bool = False
    ) -> dict[str, Any]:
        # The callback is ours (app/auth/guards.py) and reads only the header.
        secret = self._decode_key_callback(unverified_header(encoded_token), {})
        decoded: dict[str, Any] = _decode_jwt(
            algorithms=config.decode_algorithms,
            allow_expired=allow_expired,
            audience=config.decode_audience,
            csrf_value=csrf_value,
            encoded_token=encoded_token,
            identity_claim_key=config.identity_claim_key,
            issuer=config.decode_issuer,
            leeway=config.leeway,
            secret=secret,
            verify_aud=config.decode_audience is not None,
            verify_sub=config.verify_sub,
        )
        return decoded
