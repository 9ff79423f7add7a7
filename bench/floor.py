"""The floor: the least a web process can do for the service's two cheapest requests, run by
`make bench` on the service's gunicorn settings and database to compare the service with.

`gunicorn bench.floor:app`, with DATABASE_URL and JWT_SECRET_KEY as the service has them.
It imports nothing from `app`, so it costs what Flask, PyJWT and one query cost, no more.
"""

import os
from typing import Any

import jwt
import psycopg2
from flask import Flask, jsonify, request

app = Flask(__name__)
_conn: Any = None  # one connection per worker, opened after gunicorn forks it


def verification_key() -> tuple[str, list[str]]:
    """The key and algorithms that verify the service's access tokens. The service signs with
    HS256 and JWT_SECRET_KEY today; when it signs with EdDSA, return its public key here."""
    return os.environ["JWT_SECRET_KEY"], ["HS256"]


KEY, ALGORITHMS = verification_key()


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
        claims = jwt.decode(token, KEY, algorithms=ALGORITHMS, options={"require": ["exp", "sub"]})
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
