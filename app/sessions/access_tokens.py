"""The access token: signed for a login (`sign_access_token`), verified by the JWT manager,
which decodes it once instead of three times and checks its signature once per process.

flask-jwt-extended 4.7 decodes every token twice without checking it (its claims, then its
header, for the key callback) before the decode that verifies it, and PyJWT validates every
base64 character of the whole token each time: a quarter of an authenticated request's
own CPU. The key callback needs only the header's kid, read here from the header segment
alone; the one verifying decode then checks that same segment strictly, and its signature
covers it, so a header read differently here only picks a key that fails.

A client sends the same access token with every request for its whole life (15 minutes by
default), and checking its Ed25519 signature and parsing it again each time was a fifth of
an authenticated request's CPU. A signature holds for the same bytes whatever the hour, so
each process keeps the claims of the tokens it has verified, by their exact text: a token
that differs by one character is a different key and is verified in full, and only the
canonical text of a token is one (`is_canonical`), so a padded copy is neither accepted nor
remembered. What can change is re-checked on every use: the clock (exp, iat, nbf, with the
same leeway) and whether the token's signing key is still trusted. Revocation is the guard's
query, run every time.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
import uuid
from collections import OrderedDict
from datetime import datetime, timedelta
from typing import Any

from flask import Flask, current_app
from flask_jwt_extended import JWTManager, decode_token
from flask_jwt_extended.config import config
from flask_jwt_extended.exceptions import JWTExtendedException
from flask_jwt_extended.tokens import _decode_jwt
from jwt import DecodeError, ExpiredSignatureError, ImmatureSignatureError, InvalidTokenError

from app.identity.models import GroupName
from app.keys.ring import keyring

# Tokens remembered per process: about 1.5 KiB each, so at most a few MiB. Only tokens that
# passed the full check get in, so a stranger cannot fill it; at worst one evicts tokens
# that are then verified again.
VERIFIED_TOKENS = 2048


def login_named_by(claims: dict[str, Any]) -> tuple[int, str] | None:
    """The (user id, login family) a verified access token names, or None when it names none
    this service could have issued."""
    family, subject = claims.get("fam"), claims.get("sub")
    if claims.get("type") != "access" or not isinstance(family, str) or subject is None:
        return None
    try:
        return int(subject), family
    except (TypeError, ValueError):
        return None


def is_canonical(encoded_token: str) -> bool:
    """Whether the token is written the one way its bytes can be: each segment unpadded
    base64url that re-encodes to the same text. Decoders accept padding and ignore the bits
    of the last character that no byte uses, so one signed token has other spellings, and
    each would be a token, and a cache entry, of its own."""
    for segment in encoded_token.split("."):
        try:
            raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        except (ValueError, binascii.Error):
            return False
        if base64.urlsafe_b64encode(raw).rstrip(b"=") != segment.encode():
            return False
    return True


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


class VerifiedTokens:
    """The header and claims of verified tokens, by token text; least recently used first
    out. One per app, shared by a worker's threads."""

    def __init__(self, size: int = VERIFIED_TOKENS) -> None:
        self._size = size
        self._entries: OrderedDict[str, tuple[dict[str, Any], dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, token: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        with self._lock:
            found = self._entries.get(token)
            if found is not None:
                self._entries.move_to_end(token)
            return found

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, token: str, header: dict[str, Any], claims: dict[str, Any]) -> None:
        with self._lock:
            self._entries[token] = (header, claims)
            self._entries.move_to_end(token)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


def _check_times(claims: dict[str, Any], leeway: float) -> None:
    """PyJWT's checks of the time claims, for a token whose signature was checked before."""
    now = time.time()
    if "exp" in claims and claims["exp"] <= now - leeway:
        raise ExpiredSignatureError("Signature has expired")
    for claim in ("iat", "nbf"):
        if claim in claims and claims[claim] > now + leeway:
            raise ImmatureSignatureError(f"The token is not yet valid ({claim})")


class OneDecodeJWTManager(JWTManager):
    def init_app(self, app: Flask, add_context_processor: bool = False) -> None:
        super().init_app(app, add_context_processor)
        # Per app, as each app has its keys, issuer and audience.
        app.extensions["verified_access_tokens"] = VerifiedTokens()

    # Overrides the method of flask-jwt-extended 4.7.x (pinned) that reads a token, which
    # `decode_token` calls: the same arguments and errors, without its two unverified
    # decodes. Errors are the guard's to answer (app/sessions/guard.py), so an expired token's
    # error carries nothing for flask-jwt-extended's own callbacks.
    def _decode_jwt_from_config(
        self, encoded_token: str, csrf_value: Any = None, allow_expired: bool = False
    ) -> dict[str, Any]:
        verified: VerifiedTokens = current_app.extensions["verified_access_tokens"]
        # Only the guard's plain check is remembered (logout reads expired tokens too).
        remembered = None if allow_expired or csrf_value else verified.get(encoded_token)
        if remembered is not None:
            header, claims = remembered
            self._decode_key_callback(header, {})  # raises once its key is no longer trusted
            _check_times(claims, config.leeway)
            return dict(claims)
        # Only canonical tokens are remembered, so a copy spelt otherwise never meets the
        # cache above and needs no check there.
        if not is_canonical(encoded_token):
            raise DecodeError("The token is not in its canonical form")
        header = unverified_header(encoded_token)
        # The callback is ours (`_verification_key`) and reads only the header.
        secret = self._decode_key_callback(header, {})
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
        if not allow_expired and not csrf_value:
            verified.put(encoded_token, header, decoded)
        return dict(decoded)


jwt = OneDecodeJWTManager()


@jwt.decode_key_loader
def _verification_key(header: dict[str, Any], _claims: dict[str, Any]) -> Any:
    # The key named by the token's kid; the algorithm stays the one pinned in config.
    return keyring().verification_key(header.get("kid"))


def sign_access_token(
    user_id: int, group: GroupName, family_id: str, now: datetime, lifetime: timedelta
) -> str:
    """An access token of the login `family_id`, signed by the current key.

    It carries the family id, so ending the login (logout, reuse, a password change) also
    stops the access tokens issued to it. The user's id and group are passed, not the user:
    a refresh reads them in the statement that rotates its token."""
    settings = current_app.config
    return keyring().sign(
        {
            "iss": settings["PUBLIC_BASE_URL"],
            "aud": settings["JWT_AUDIENCE"],
            "sub": str(user_id),
            "iat": now,
            "exp": now + lifetime,
            "jti": uuid.uuid4().hex,
            "type": "access",
            "fam": family_id,
            # As of issue time, for the services that trust the token; our own endpoints
            # read the stored group, so a change applies on the next request.
            "group": group.value,
        }
    )


def login_of_any_token(token: str) -> tuple[int, str] | None:
    """The login an access token names, expired or not; None for anything not ours (logout
    ends the login of the access token it is given, if it can tell which)."""
    try:
        return login_named_by(decode_token(token, allow_expired=True))
    except (InvalidTokenError, JWTExtendedException):
        return None
