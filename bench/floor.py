"""The floor: the least a web process can do for the service's cheapest requests and for a
refresh, run by `make bench` on the service's gunicorn settings and database to compare the
service with.

`gunicorn bench.floor:app`, with DATABASE_URL as the service has it.
It imports nothing from `app`, so it costs what Flask, PyJWT and one query cost, no more.
"""

import hashlib
import json
import os
import secrets
import time
import uuid
from typing import Any

import jwt
import psycopg2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask, jsonify, request

app = Flask(__name__)
_conn: Any = None  # one connection per worker, opened after gunicorn forks it


def connection() -> Any:
    global _conn
    if _conn is None or _conn.closed:
        _conn = psycopg2.connect(os.environ["DATABASE_URL"])
        _conn.autocommit = True  # one statement, so no BEGIN and COMMIT round trips
    return _conn


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
ISSUER = os.environ.get("PUBLIC_BASE_URL", "http://localhost:8000")
# The floor's refresh signs with a key of its own, of the service's algorithm (Ed25519), so a
# signature costs what the service's costs; nothing verifies these tokens.
SIGNING_KEY = Ed25519PrivateKey.generate()
ACCESS_TTL = 900
# The least a rotating refresh can do: find the login by the presented token's hash, check
# that it and its user are alive, and swap in the new token's hash, in one statement that
# is its own durable transaction (autocommit; synchronous_commit as the server has it). The
# table is the floor's own, `bench_floor_logins`, made and filled by bench/in_process.py.
ROTATE = (
    "UPDATE bench_floor_logins AS l SET token_hash = %s, generation = l.generation + 1"
    " FROM users AS u"
    " WHERE l.token_hash = %s AND l.expires_at > now() AND u.id = l.user_id AND u.is_active"
    " RETURNING l.user_id, l.family_id"
)


@app.get("/health")
def health() -> Any:
    return jsonify(status="ok")


@app.get("/me")
def me() -> Any:
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
    with connection().cursor() as cur:
        cur.execute("SELECT id, email, is_active FROM users WHERE id = %s", (user_id,))
        row = cur.fetchone()
    if row is None or not row[2]:
        return jsonify(detail="The account no longer exists or is not active."), 401
    return jsonify(id=row[0], email=row[1])


@app.post("/refresh")
def refresh() -> Any:
    """Spend the presented refresh token and hand out the next pair: one statement, one
    signature."""
    body = request.get_json(silent=True)
    presented = body.get("refresh_token") if isinstance(body, dict) else None
    if not isinstance(presented, str):
        return jsonify(detail="The refresh token is not valid."), 401
    new = secrets.token_urlsafe(32)
    with connection().cursor() as cur:
        cur.execute(
            ROTATE,
            (
                hashlib.sha256(new.encode()).hexdigest(),
                hashlib.sha256(presented.encode()).hexdigest(),
            ),
        )
        row = cur.fetchone()
    if row is None:
        return jsonify(detail="The refresh token is not valid."), 401
    now = int(time.time())
    claims = {
        "sub": str(row[0]),
        "fam": row[1],
        "type": "access",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + ACCESS_TTL,
        "jti": uuid.uuid4().hex,
    }
    access = jwt.encode(claims, SIGNING_KEY, algorithm="EdDSA")
    return jsonify(
        access_token=access, refresh_token=new, token_type="bearer", expires_in=ACCESS_TTL
    )
