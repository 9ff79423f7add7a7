"""A software authenticator for the tests: an ES256 key per credential, `none` attestation,
authenticator data with the UP/UV flags and a counter, and the client data a browser would
write. It signs whatever it is told to, so the attack tests can change one thing at a time.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url

UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40
ORIGIN = "http://cinema.test"  # the origin of the tests' PUBLIC_BASE_URL
RP_ID = "cinema.test"


@dataclass
class Credential:
    id: bytes
    key: ec.EllipticCurvePrivateKey
    user_handle: bytes
    rp_id: str
    counter: int = 0


def _client_data(kind: str, challenge: str, origin: str) -> bytes:
    data = {"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False}
    return json.dumps(data, separators=(",", ":")).encode()


def _cose(key: ec.EllipticCurvePrivateKey) -> bytes:
    numbers = key.public_key().public_numbers()
    x, y = numbers.x.to_bytes(32, "big"), numbers.y.to_bytes(32, "big")
    return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: x, -3: y})


@dataclass
class Authenticator:
    """Holds credentials, as a phone or a security key does; `flags` and `counter` of each
    answer can be set by the test."""

    credentials: dict[bytes, Credential] = field(default_factory=dict)

    def create(
        self,
        options: dict[str, Any],
        *,
        origin: str = ORIGIN,
        rp_id: str | None = None,
        flags: int = UP | UV,
        credential_id: bytes | None = None,
        challenge: str | None = None,
    ) -> dict[str, Any]:
        """navigator.credentials.create() with these creation options: `credential.toJSON()`."""
        rp = rp_id or options["rp"]["id"]
        cred = Credential(
            id=credential_id or secrets.token_bytes(32),
            key=ec.generate_private_key(ec.SECP256R1()),
            user_handle=base64url_to_bytes(options["user"]["id"]),
            rp_id=rp,
        )
        self.credentials[cred.id] = cred
        attested = (
            bytes(16) + len(cred.id).to_bytes(2, "big") + cred.id + _cose(cred.key)
        )  # AAGUID (none), the credential id, its public key
        auth_data = self._auth_data(rp, flags | AT, 0) + attested
        client = _client_data("webauthn.create", challenge or options["challenge"], origin)
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {
            "id": bytes_to_base64url(cred.id),
            "rawId": bytes_to_base64url(cred.id),
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
            "response": {
                "clientDataJSON": bytes_to_base64url(client),
                "attestationObject": bytes_to_base64url(attestation),
                "transports": ["internal"],
            },
        }

    def get(
        self,
        options: dict[str, Any],
        credential: Credential | None = None,
        *,
        origin: str = ORIGIN,
        rp_id: str | None = None,
        flags: int = UP | UV,
        counter: int | None = None,
        user_handle: bytes | None = None,
    ) -> dict[str, Any]:
        """navigator.credentials.get() with these request options, signed by `credential`
        (the only one held, by default); the counter moves on by one unless `counter` says."""
        cred = credential or next(iter(self.credentials.values()))
        cred.counter = cred.counter + 1 if counter is None else counter
        auth_data = self._auth_data(rp_id or options["rpId"], flags, cred.counter)
        client = _client_data("webauthn.get", options["challenge"], origin)
        signed = auth_data + hashlib.sha256(client).digest()
        signature = cred.key.sign(signed, ec.ECDSA(hashes.SHA256()))
        return {
            "id": bytes_to_base64url(cred.id),
            "rawId": bytes_to_base64url(cred.id),
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
            "response": {
                "clientDataJSON": bytes_to_base64url(client),
                "authenticatorData": bytes_to_base64url(auth_data),
                "signature": bytes_to_base64url(signature),
                "userHandle": bytes_to_base64url(user_handle or cred.user_handle),
            },
        }

    @staticmethod
    def _auth_data(rp_id: str, flags: int, counter: int) -> bytes:
        rp_hash = hashlib.sha256(rp_id.encode()).digest()
        return rp_hash + bytes([flags]) + counter.to_bytes(4, "big")
