"""A provider of the test's own, on a local port: it publishes a discovery document and a
JWKS like any provider, and its token endpoint answers whatever id_token the test signed
(with a key the test controls), so a test can send what a forger would."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

CLIENT_ID = "cinema-accounts"


class Forger:
    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "published", "use": "sig"})
        self.issuer = ""
        self.id_token = ""
        self.token_requests: list[dict[str, str]] = []

    def claims(self, sent_nonce: str, **override: Any) -> dict[str, Any]:
        """A well-formed id_token's claims for `sent_nonce`, with `override` applied."""
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": CLIENT_ID,
            "sub": "forged-subject",
            "iat": now,
            "exp": now + 300,
            "nonce": sent_nonce,
            "email": "victim@example.com",
            "email_verified": True,
        }
        claims.update(override)
        return {k: v for k, v in claims.items() if v is not None}

    def sign(self, claims: dict[str, Any], key: RSAKey | None = None, alg: str = "RS256") -> str:
        """Signed by `key` (the published key by default), under the published key's id."""
        return jwt.encode({"alg": alg, "kid": self.key.kid}, claims, key or self.key)

    def rotate(self) -> None:
        """A new signing key, published in place of the old one, as providers rotate."""
        self.key = RSAKey.generate_key(2048, parameters={"kid": "rotated", "use": "sig"})

    def wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        if request.path == "/.well-known/openid-configuration":
            body: dict[str, Any] = {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
            }
        elif request.path == "/jwks":
            body = KeySet([self.key]).as_dict(private=False)
        elif request.path == "/token" and request.method == "POST":
            self.token_requests.append(dict(request.form))
            body = {"access_token": "at", "token_type": "Bearer", "id_token": self.id_token}
        else:
            return Response("not found", status=404)(environ, start_response)
        return Response(json.dumps(body), mimetype="application/json")(environ, start_response)


@contextmanager
def forging_provider() -> Iterator[Forger]:
    forger = Forger()
    server = make_server("127.0.0.1", 0, forger.wsgi, threaded=True)
    forger.issuer = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield forger
    finally:
        server.shutdown()
        thread.join(5)
