"""What EdDSA access tokens cost against HS256: `.venv/bin/python bench/signatures.py`.

Two figures, both in this process, without HTTP, wrk or gunicorn:

1. The signature alone: PyJWT signing and verifying the claims of one of our access tokens
   with HS256 (the previous release) and with EdDSA (Ed25519, this one), best of 5 runs.
2. A whole request through the app (Flask's test client): `GET /auth/me` and
   `POST /auth/refresh`, median of 300 (wall time, and CPU time of this process), on the
   database of `DATABASE_URL` (a throw-away SQLite file when unset; it must be empty or
   already migrated).

Run the same script on a checkout of the previous release to get its row of figure 2.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CLAIMS: dict[str, Any] = {
    "iss": "http://localhost:8000",
    "aud": "cinema",
    "sub": "12345",
    "iat": int(time.time()),
    "exp": int(time.time()) + 900,
    "jti": "0" * 32,
    "type": "access",
    "fam": "f" * 32,
    "group": "USER",
}
PASSWORD = "violet tangerine submarine orbit"


def per_call_us(statement: Any, number: int = 2000) -> float:
    return min(timeit.repeat(statement, number=number, repeat=5)) / number * 1e6


def signature_figures() -> None:
    secret = "s" * 48
    private = Ed25519PrivateKey.generate()
    public = private.public_key()
    hs = jwt.encode(CLAIMS, secret, algorithm="HS256")
    ed = jwt.encode(CLAIMS, private, algorithm="EdDSA", headers={"kid": "k"})
    options = {"audience": "cinema", "issuer": "http://localhost:8000"}
    rows = [
        ("HS256", lambda: jwt.encode(CLAIMS, secret, algorithm="HS256"),
         lambda: jwt.decode(hs, secret, algorithms=["HS256"], **options)),
        ("EdDSA", lambda: jwt.encode(CLAIMS, private, algorithm="EdDSA", headers={"kid": "k"}),
         lambda: jwt.decode(ed, public, algorithms=["EdDSA"], **options)),
    ]  # fmt: skip
    print("| algorithm | sign µs | verify µs |\n|---|---:|---:|")
    for name, sign, verify in rows:
        print(f"| {name} | {per_call_us(sign):.1f} | {per_call_us(verify):.1f} |")


def request_figures(samples: int = 300) -> None:
    from flask_migrate import upgrade

    from app import create_app

    url = os.environ.get("DATABASE_URL") or f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite3"
    config = {"SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": None, "RATELIMIT_ENABLED": False}
    app = create_app(config)
    with app.app_context():
        upgrade()
    runner = app.test_cli_runner()
    runner.invoke(args=["create-admin", "--email", "bench@example.com", "--password", PASSWORD])
    client = app.test_client()
    pair = client.post(
        "/auth/login", json={"email": "bench@example.com", "password": PASSWORD}
    ).json
    headers = {"Authorization": f"Bearer {pair['access_token']}"}

    def me() -> Any:
        return client.get("/auth/me", headers=headers)

    def refresh() -> Any:
        nonlocal pair
        response = client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        pair = response.json
        return response

    def medians_ms(call: Any) -> tuple[float, float]:
        """Wall time, and the CPU time of this process alone: on a busy machine the second
        still shows what the signature costs, while the first waits for other processes."""
        wall, cpu = [], []
        for _ in range(samples):
            started, started_cpu = time.perf_counter(), time.process_time()
            response = call()
            wall.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - started_cpu) * 1000)
            assert response.status_code == 200, response.json
        return statistics.median(wall), statistics.median(cpu)

    for _ in range(20):  # warm up: key cache, connection pool, imports
        me()
    print(f"\n{url.split(':')[0]}, median of {samples} in-process requests:")
    print("| request | median ms | median CPU ms (this process) |\n|---|---:|---:|")
    for name, call in (("GET /auth/me", me), ("POST /auth/refresh", refresh)):
        wall, cpu = medians_ms(call)
        print(f"| {name} | {wall:.2f} | {cpu:.2f} |")


if __name__ == "__main__":
    signature_figures()
    request_figures()
