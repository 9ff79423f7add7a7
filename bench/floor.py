"""The floor: the least a web process can do for the service's two cheapest requests, run by
`make bench` on the service's gunicorn settings and database to compare the service with.

`gunicorn bench.floor:app`, with DATABASE_URL as the service has it.
It imports nothing from `app`, so it costs what Flask, PyJWT and one query cost, no more.
"""

import json
import os
from typing import Any

import jwt
import psycopg2
from flask import Flask, jsonify, request

app = Flask(__name__)
_conn: Any = None  # one connection per worker, opened after gunicorn forks it


def verification_key() -> tuple[Any, list[str]]:
    """The public key that verifies the service's access tokens: its current signing key, as
    the JWKS publishes it, read once at start from the service's database."""
    with psycopg2.connect(os.environ["DATABASE_URL"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT public_jwk, alg FROM signing_keys WHERE retired_at IS NULL")
        row = cur.fetchone()
    conn.close()
    if row is None:
        raise RuntimeError("the service has no signing key: run `flask keys ensure`")
    jwk = row[0] if isinstance(row[0], dict) else json.loads(row[0])
    # The stored JWK has no "alg" (the JWKS adds it from the row's column when publishing).
    return jwt.PyJWK(jwk, algorithm=row[1]).key, [row[1]]


KEY, ALGORITHMS = verification_key()
AUDIENCE = os.environ.get("JWT_AUDIENCE", "cinema")


@app.get("/health")
def health() -> Any:
    return jsonify(status="ok")


@app.get("/me")
def me() -> Any:
    global _conn
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    try:
        if scheme.lower() != "bearer":
            raise jwt.InvalidTokenError("no bearer token")
        claims = jwt.decode(
            token,
            KEY,
            algorithms=ALGORITHMS,
            audience=AUDIENCE,
            options={"require": ["exp", "sub"], "verify_iss": False},
        )
        user_id = int(claims["sub"])
    except (jwt.InvalidTokenError, ValueError):
        return jsonify(detail="The access token is not valid."), 401
    if _conn is None or _conn.closed:
        _conn = psycopg2.connect(os.environ["DATABASE_URL"])
        _conn.autocommit = True  # one statement, so no BEGIN and COMMIT round trips
    with _conn.cursor() as cur:
        cur.execute("SELECT id, email, is_active FROM users WHERE id = %s", (user_id,))
        row = cur.fetchone()
    if row is None or not row[2]:
        return jsonify(detail="The account no longer exists or is not active."), 401
    return jsonify(id=row[0], email=row[1])
