"""Tokens the other cinema services verify: EdDSA access tokens, the JWKS, key rotation.

Forged tokens are built here with PyJWT or by hand (HMAC), never by the code under test;
the service's own key is read from the database only to sign claims it would refuse.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
import sqlalchemy as sa
import time_machine
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import upgrade
from sqlalchemy.orm import Session
from werkzeug.serving import make_server

from app.core.db import db, utcnow
from app.identity.users import seed_groups
from app.keys.models import SigningKey
from app.keys.service import current_key, private_key, retention
from tests.support.apps import BIN, ROOT, make_app
from tests.support.http import PASSWORD, Accounts, assert_401, bearer, claims, me
from tests.support.mail import Mailbox, SMTPServer
from tests.support.services import free_port

ISSUER = "http://cinema.test"  # PUBLIC_BASE_URL of the test apps
AUDIENCE = "cinema"
JWK_MEMBERS = {"kty", "crv", "x", "kid", "alg", "use"}


def kid_of(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def current_signing_key(app: Flask) -> tuple[str, Any]:
    """The service's current kid and private key, as the database holds them."""
    with app.app_context(), Session(db.engine) as session:
        key = current_key(session)
        assert key is not None
        return key.kid, private_key(key)


def rotate(app: Flask) -> None:
    # --now: these tests follow a new key from its first token. A plain rotation, which
    # publishes first, is tested in test_key_rotation_publishes_first.
    result = app.test_cli_runner().invoke(args=["keys", "rotate", "--now"])
    assert result.exit_code == 0, result.output


def signing_input(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"


def hs256_by_hand(claims: dict[str, Any], secret: bytes, header: dict[str, Any]) -> str:
    """HS256 without PyJWT, which refuses a public key as an HMAC secret: an attacker won't."""
    unsigned = signing_input(header, claims)
    signature = hmac.new(secret, unsigned.encode(), hashlib.sha256).digest()
    return f"{unsigned}.{b64url(signature)}"


def eddsa_by_hand(claims: dict[str, Any], private: Any, header: dict[str, Any]) -> str:
    """EdDSA with any header, even one PyJWT would refuse to write."""
    unsigned = signing_input({"alg": "EdDSA", **header}, claims)
    return f"{unsigned}.{b64url(private.sign(unsigned.encode()))}"


@pytest.fixture
def served(app: Flask) -> Iterator[str]:
    """The app behind a real HTTP server, for verifiers that fetch the JWKS over HTTP."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture
def pair(accounts: Accounts) -> dict[str, Any]:
    return accounts.active_user("viewer@example.com")


# --- what another service sees -------------------------------------------------------------


def test_an_access_token_verifies_with_the_served_jwks_alone(
    served: str, pair: dict[str, Any]
) -> None:
    token = pair["access_token"]
    # Exactly what the README tells another service to do: no secret, only the JWKS URL.
    jwks_client = jwt.PyJWKClient(f"{served}/.well-known/jwks.json")
    signing_key = jwks_client.get_signing_key_from_jwt(token)
    verified = jwt.decode(
        token,
        signing_key.key,
        algorithms=["EdDSA"],
        audience=AUDIENCE,
        issuer=ISSUER,
        options={"require": ["exp", "iat", "sub", "iss", "aud"]},
    )
    assert verified["type"] == "access"
    assert jwt.get_unverified_header(token)["alg"] == "EdDSA"
    assert {"iss", "aud", "sub", "iat", "exp", "jti", "fam", "group"} <= set(verified)
    assert verified["group"] == "USER"
    assert verified["exp"] - verified["iat"] == pair["expires_in"]
    # The same verification with the wrong audience or issuer fails: they are really checked.
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(token, signing_key.key, algorithms=["EdDSA"], audience="payments-admin")
    with pytest.raises(jwt.InvalidIssuerError):
        jwt.decode(
            token,
            signing_key.key,
            algorithms=["EdDSA"],
            audience=AUDIENCE,
            issuer="http://evil.test",
        )


def test_the_jwks_holds_public_keys_only_and_is_cached_briefly(
    app: Flask, client: FlaskClient, pair: dict[str, Any]
) -> None:
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "public, max-age=300"
    keys = response.json["keys"]
    assert keys
    for key in keys:
        assert set(key) == JWK_MEMBERS  # no `d`, nor any other private member
        assert (key["kty"], key["crv"], key["alg"], key["use"]) == (
            "OKP",
            "Ed25519",
            "EdDSA",
            "sig",
        )
    assert kid_of(pair["access_token"]) in {key["kid"] for key in keys}
    _kid, private = current_signing_key(app)
    raw_private = private.private_bytes_raw()
    body = response.get_data(as_text=True)
    assert b64url(raw_private) not in body
    assert base64.b64encode(raw_private).decode() not in body
    assert '"d"' not in body


def test_the_jwks_is_documented_in_openapi(client: FlaskClient) -> None:
    spec = client.get("/openapi.json").json
    operation = spec["paths"]["/.well-known/jwks.json"]["get"]
    assert "Cache-Control" in operation["responses"]["200"]["headers"]
    assert "security" not in operation  # other services fetch it without a token


# --- rotation -------------------------------------------------------------------------------


def test_after_a_rotation_old_tokens_work_until_expiry_and_new_ones_carry_the_new_kid(
    app: Flask, client: FlaskClient, accounts: Accounts, served: str
) -> None:
    old = accounts.active_user("rotating@example.com")
    rotate(app)
    new = accounts.login("rotating@example.com")
    assert kid_of(new["access_token"]) != kid_of(old["access_token"])
    assert kid_of(new["access_token"]) == current_signing_key(app)[0]
    published = {key["kid"] for key in client.get("/.well-known/jwks.json").json["keys"]}
    assert {kid_of(old["access_token"]), kid_of(new["access_token"])} <= published
    # Both verify, here and for another service that only has the JWKS.
    jwks_client = jwt.PyJWKClient(f"{served}/.well-known/jwks.json")
    for token in (old["access_token"], new["access_token"]):
        assert me(client, token).status_code == 200
        key = jwks_client.get_signing_key_from_jwt(token).key
        jwt.decode(token, key, algorithms=["EdDSA"], audience=AUDIENCE, issuer=ISSUER)
    # A refresh issued under the old key gives a token of the new one.
    refreshed = client.post("/auth/refresh", json={"refresh_token": old["refresh_token"]}).json
    assert kid_of(refreshed["access_token"]) == kid_of(new["access_token"])
    with time_machine.travel(utcnow() + timedelta(seconds=old["expires_in"] + 1)):
        assert "expired" in assert_401(me(client, old["access_token"]))["detail"]


def test_a_retired_key_is_dropped_once_every_token_it_signed_has_expired(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    old_kid = kid_of(accounts.active_user("dropped@example.com")["access_token"])
    rotate(app)
    runner = app.test_cli_runner()
    with app.app_context():
        keep_for = retention()
    assert keep_for == timedelta(seconds=30 + 900)  # cache time + access-token lifetime
    listed = runner.invoke(args=["keys", "list"]).output
    assert f"{old_kid}  created" in listed
    assert "published until" in listed
    with time_machine.travel(utcnow() + keep_for - timedelta(seconds=5)):
        kids = {key["kid"] for key in client.get("/.well-known/jwks.json").json["keys"]}
        assert old_kid in kids
    with time_machine.travel(utcnow() + keep_for + timedelta(seconds=5)):
        kids = {key["kid"] for key in client.get("/.well-known/jwks.json").json["keys"]}
        assert old_kid not in kids
        assert len(kids) >= 1  # the current key stays
        assert "no longer published" in runner.invoke(args=["keys", "list"]).output
        assert runner.invoke(args=["keys", "ensure"]).exit_code == 0
    with app.app_context():
        assert db.session.get(SigningKey, old_kid) is None  # deleted by `keys ensure`


# --- a token accepted once is remembered by its exact text, and checked again ----------------


def test_a_token_changed_after_it_was_accepted_is_verified_again_and_refused(
    client: FlaskClient, pair: dict[str, Any]
) -> None:
    token = pair["access_token"]
    assert me(client, token).status_code == 200  # verified, and remembered by this process
    header, payload, signature = token.split(".")
    raised = b64url(json.dumps({**claims(token), "sub": "1", "group": "ADMIN"}).encode())
    # A character early in the signature: the last one also carries padding bits.
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    for forged in (
        f"{header}.{raised}.{signature}",  # the claims another account's, the signature kept
        f"{header}.{payload}.{flipped}",
    ):
        assert_401(me(client, forged))
    assert me(client, token).status_code == 200


def test_a_key_withdrawn_from_the_database_stops_tokens_already_accepted(
    app_factory: Callable[..., Flask], mailbox: Mailbox
) -> None:
    # What an operator does with a key that leaked: a new key, and the old row deleted.
    app = app_factory(SIGNING_KEY_CACHE_SECONDS=0)
    client = app.test_client()
    token = Accounts(client, mailbox).active_user("withdrawn@example.com")["access_token"]
    assert me(client, token).status_code == 200
    rotate(app)
    with app.app_context():
        db.session.execute(sa.delete(SigningKey).where(SigningKey.kid == kid_of(token)))
        db.session.commit()
    assert "not valid" in assert_401(me(client, token))["detail"]


def test_a_token_accepted_before_is_refused_from_the_second_it_expires(
    client: FlaskClient, pair: dict[str, Any]
) -> None:
    token = pair["access_token"]
    assert me(client, token).status_code == 200
    expires = claims(token)["exp"]
    with time_machine.travel(expires - 2):
        assert me(client, token).status_code == 200
    with time_machine.travel(expires + 1):
        assert "expired" in assert_401(me(client, token))["detail"]


def test_keys_ensure_is_idempotent(app: Flask) -> None:
    runner = app.test_cli_runner()
    with app.app_context():
        before = db.session.scalar(sa.select(sa.func.count()).select_from(SigningKey))
    for _ in range(2):
        result = runner.invoke(args=["keys", "ensure"])
        assert result.exit_code == 0
        assert "already current" in result.output
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(SigningKey)) == before
        current = db.session.scalars(
            sa.select(SigningKey).where(SigningKey.retired_at.is_(None))
        ).all()
    assert len(current) == 1


def test_the_private_key_is_encrypted_at_rest(app: Flask, tmp_path: Path) -> None:
    kid, private = current_signing_key(app)
    with app.app_context():
        stored = db.session.get(SigningKey, kid)
        assert stored is not None
        columns = SigningKey.__table__.columns
        row = json.dumps({column.key: str(getattr(stored, column.key)) for column in columns})
    raw = private.private_bytes_raw()
    assert raw.hex() not in row
    assert b64url(raw) not in row
    assert base64.b64encode(raw).decode() not in row
    # Another SECRET_KEY cannot read it, and says what to do.
    other = make_app(
        app.config["SQLALCHEMY_DATABASE_URI"], tmp_path, 0, SECRET_KEY=secrets.token_urlsafe(48)
    )
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        current_signing_key(other)
    with other.app_context():
        db.engine.dispose()


def test_keys_ensure_replaces_a_key_the_secret_key_no_longer_reads(
    app: Flask, tmp_path: Path, mailbox: Mailbox
) -> None:
    """A development database that outlived its checkout's instance/ (or a changed
    SECRET_KEY): the stored key cannot sign, and `keys ensure` makes one that can instead of
    leaving every login to fail; tokens the old key signed still verify until they expire."""
    before = Accounts(app.test_client(), mailbox).active_user("keeper@example.com")
    old_kid, _ = current_signing_key(app)
    other = make_app(
        app.config["SQLALCHEMY_DATABASE_URI"], tmp_path, 0, SECRET_KEY=secrets.token_urlsafe(48)
    )
    try:
        result = other.test_cli_runner().invoke(args=["keys", "ensure"])
        assert result.exit_code == 0, result.output
        assert "created signing key" in result.output
        new_kid, _ = current_signing_key(other)
        assert new_kid != old_kid
        client = other.test_client()
        assert me(client, before["access_token"]).status_code == 200  # the old key verifies
        pair = Accounts(client, mailbox).login("keeper@example.com")
        assert kid_of(pair["access_token"]) == new_kid
    finally:
        # The suite's other apps read keys with the original secret: give them one back.
        assert app.test_cli_runner().invoke(args=["keys", "ensure"]).exit_code == 0
        with other.app_context():
            db.engine.dispose()


# --- forgeries --------------------------------------------------------------------------------


class TestForgedTokensAre401:
    @pytest.fixture
    def genuine(self, pair: dict[str, Any]) -> dict[str, Any]:
        return claims(pair["access_token"])

    @pytest.fixture
    def our_key(self, app: Flask) -> tuple[str, Any]:
        return current_signing_key(app)

    def test_the_baseline_signed_with_our_key_passes(
        self, client: FlaskClient, genuine: dict[str, Any], our_key: tuple[str, Any]
    ) -> None:
        # So each 401 below is about the one thing it changes.
        kid, private = our_key
        token = jwt.encode(genuine, private, algorithm="EdDSA", headers={"kid": kid})
        assert me(client, token).status_code == 200
        assert me(client, eddsa_by_hand(genuine, private, {"kid": kid})).status_code == 200

    def test_hs256_signed_with_any_secret(
        self, app: Flask, client: FlaskClient, genuine: dict[str, Any], our_key: tuple[str, Any]
    ) -> None:
        kid, private = our_key
        public = private.public_key()
        candidates = {
            "the old JWT_SECRET_KEY": app.config["JWT_SECRET_KEY"].encode(),
            "SECRET_KEY": app.config["SECRET_KEY"].encode(),
            "another secret": b"another secret of at least 32 bytes!!",
            # Algorithm confusion: the public key, which everyone has, as the HMAC secret.
            "the public key, raw": public.public_bytes_raw(),
            "the public key, as in the JWK": b64url(public.public_bytes_raw()).encode(),
            "the public key, PEM": public.public_bytes(
                Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
            ),
        }
        for name, secret in candidates.items():
            for header in ({"alg": "HS256", "typ": "JWT", "kid": kid}, {"alg": "HS256"}):
                response = me(client, hs256_by_hand(genuine, secret, header))
                assert response.status_code == 401, name
                assert response.headers["WWW-Authenticate"] == "Bearer"

    def test_alg_none_even_with_our_kid(
        self, client: FlaskClient, genuine: dict[str, Any], our_key: tuple[str, Any]
    ) -> None:
        kid, _private = our_key
        for alg in ("none", "None", "NONE"):
            header = b64url(json.dumps({"alg": alg, "typ": "JWT", "kid": kid}).encode())
            payload = b64url(json.dumps(genuine).encode())
            assert_401(me(client, f"{header}.{payload}."))

    def test_other_keys_and_algorithms_under_our_kid(
        self, client: FlaskClient, genuine: dict[str, Any], our_key: tuple[str, Any]
    ) -> None:
        kid, _private = our_key
        others = [
            (Ed25519PrivateKey.generate(), "EdDSA"),
            (ec.generate_private_key(ec.SECP256R1()), "ES256"),
            (rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"),
        ]
        for key, algorithm in others:
            for header in ({"kid": kid}, {"kid": "made-up"}, {}):
                assert_401(
                    me(client, jwt.encode(genuine, key, algorithm=algorithm, headers=header))
                )

    def test_wrong_or_missing_issuer_or_audience(
        self, client: FlaskClient, genuine: dict[str, Any], our_key: tuple[str, Any]
    ) -> None:
        kid, private = our_key
        without_iss = {k: v for k, v in genuine.items() if k != "iss"}
        without_aud = {k: v for k, v in genuine.items() if k != "aud"}
        for forged in (
            {**genuine, "iss": "http://evil.test"},
            {**genuine, "iss": ISSUER + "/"},
            without_iss,
            {**genuine, "aud": "payments"},
            {**genuine, "aud": ["payments", "catalogue"]},
            without_aud,
        ):
            token = jwt.encode(forged, private, algorithm="EdDSA", headers={"kid": kid})
            assert_401(me(client, token))

    def test_unknown_missing_or_malformed_kid(
        self, client: FlaskClient, genuine: dict[str, Any], our_key: tuple[str, Any]
    ) -> None:
        _kid, private = our_key
        for header in ({}, {"kid": "not-one-of-ours"}, {"kid": 7}, {"kid": ""}, {"kid": None}):
            assert_401(me(client, eddsa_by_hand(genuine, private, header)))

    def test_a_login_that_was_never_issued(
        self,
        client: FlaskClient,
        accounts: Accounts,
        genuine: dict[str, Any],
        our_key: tuple[str, Any],
    ) -> None:
        # Whoever holds a signing key (a leaked backup, a bug) still needs a live login.
        kid, private = our_key
        someone_else = accounts.active_user("someone@example.com")
        for family in (uuid.uuid4().hex, claims(someone_else["access_token"])["fam"]):
            forged = {**genuine, "fam": family, "jti": uuid.uuid4().hex}
            token = jwt.encode(forged, private, algorithm="EdDSA", headers={"kid": kid})
            assert "revoked" in assert_401(me(client, token))["detail"]


# --- every process finds the current key ------------------------------------------------------


def test_a_process_that_missed_the_rotation_reloads_on_an_unknown_kid(
    app_factory: Callable[..., Flask], mailbox: Mailbox
) -> None:
    # Two app instances stand for two processes; neither re-reads the keys on its own.
    rotating = app_factory(SIGNING_KEY_CACHE_SECONDS=3600)
    stale = app_factory(SIGNING_KEY_CACHE_SECONDS=3600)
    accounts = Accounts(rotating.test_client(), mailbox)
    old = accounts.active_user("stale@example.com")
    assert me(stale.test_client(), old["access_token"]).status_code == 200  # its cache is full
    rotate(rotating)
    new = accounts.login("stale@example.com")
    assert kid_of(new["access_token"]) != kid_of(old["access_token"])
    # The stale process meets the new kid and reloads (at most once a second).
    deadline = time.monotonic() + 10
    while me(stale.test_client(), new["access_token"]).status_code != 200:
        assert time.monotonic() < deadline, "the stale process never learnt the new key"
        time.sleep(0.1)
    # Having reloaded, it signs with the new key too.
    stale_login = Accounts(stale.test_client(), mailbox).login("stale@example.com")
    assert kid_of(stale_login["access_token"]) == kid_of(new["access_token"])


def test_made_up_kids_cannot_make_a_process_hammer_the_database(
    app: Flask, client: FlaskClient, pair: dict[str, Any]
) -> None:
    _kid, private = current_signing_key(app)
    reloads: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM signing_keys" in statement:
            reloads.append(statement)

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", count)
    started = time.monotonic()
    try:
        for _ in range(40):
            token = jwt.encode(
                claims(pair["access_token"]),
                private,
                algorithm="EdDSA",
                headers={"kid": secrets.token_urlsafe(8)},
            )
            assert_401(me(client, token))
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    elapsed = time.monotonic() - started
    assert len(reloads) <= 1 + int(elapsed)  # one forced reload a second at most


# --- no key ---------------------------------------------------------------------------------


def test_in_development_the_first_token_makes_the_first_key(
    tmp_path: Path, smtp_server: SMTPServer, mailbox: Mailbox
) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    app = make_app(url, tmp_path, smtp_server.port)
    with app.app_context():
        upgrade()
        seed_groups()
        assert db.session.scalar(sa.select(sa.func.count()).select_from(SigningKey)) == 0
    client = app.test_client()
    token = Accounts(client, mailbox).active_user("first@example.com")["access_token"]
    assert me(client, token).status_code == 200
    assert [key["kid"] for key in client.get("/.well-known/jwks.json").json["keys"]] == [
        kid_of(token)
    ]
    with app.app_context():
        db.engine.dispose()


def test_in_production_a_missing_key_is_an_error_that_names_the_command(
    tmp_path: Path,
    redis_url: str,
    caplog: pytest.LogCaptureFixture,
    make_postgres_database: Callable[[str], str],
) -> None:
    app = make_app(
        make_postgres_database("nokey"),
        tmp_path,
        0,
        APP_ENV="production",
        REDIS_URL=redis_url,
        SECRET_KEY=secrets.token_urlsafe(48),
        JWT_SECRET_KEY=secrets.token_urlsafe(48),
    )
    try:
        with app.app_context():
            upgrade()
        result = app.test_cli_runner().invoke(
            args=["create-admin", "--email", "boss@example.com", "--password", PASSWORD]
        )
        assert result.exit_code == 0, result.output
        # Alembic's logging set-up replaced the root handlers, caplog's among them.
        errors_log = logging.getLogger("app.web.problems")
        errors_log.addHandler(caplog.handler)
        try:
            response = app.test_client().post(
                "/auth/login", json={"email": "boss@example.com", "password": PASSWORD}
            )
        finally:
            errors_log.removeHandler(caplog.handler)
        assert response.status_code == 500
        assert "keys ensure" not in response.get_data(as_text=True)  # for the operator only
        logged = [str(r.exc_info[1]) for r in caplog.records if r.exc_info]
        assert any("flask --app wsgi keys ensure" in message for message in logged)
    finally:
        with app.app_context():
            db.engine.dispose()


# --- two gunicorn workers -------------------------------------------------------------------


def _request(
    url: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310 - http to our own server
        url, data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.postgres("gunicorn workers share a PostgreSQL database")
def test_two_gunicorn_workers_agree_on_the_current_key_after_a_rotation(
    app: Flask, database_url: str, tmp_path: Path
) -> None:
    email = "workers@example.com"
    created = app.test_cli_runner().invoke(
        args=["create-admin", "--email", email, "--password", PASSWORD]
    )
    assert created.exit_code == 0, created.output
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    access_log = tmp_path / "access.log"
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("GUNICORN", "WEB_CONCURRENCY"))
    }
    process = subprocess.Popen(
        [
            str(BIN / "gunicorn"),
            "wsgi:app",
            "--workers=2",
            f"--bind=127.0.0.1:{port}",
            f"--access-logfile={access_log}",
            "--access-logformat=%(p)s %({x-probe}i)s",
        ],
        cwd=ROOT,
        env={
            **environ,
            "APP_ENV": "development",
            "DATABASE_URL": database_url,
            "REDIS_URL": "",
            "RATELIMIT_ENABLED": "false",
            "PUBLIC_BASE_URL": ISSUER,
            "SIGNING_KEY_CACHE_SECONDS": "1",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if _request(f"{base}/health")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.2)

        def logins(count: int) -> dict[str, list[str]]:
            """Concurrent logins; the kid of each token, by the worker (pid) that signed it."""
            probes = [uuid.uuid4().hex for _ in range(count)]

            def login(probe: str) -> tuple[str, str]:
                status, body = _request(
                    f"{base}/auth/login",
                    {"email": email, "password": PASSWORD},
                    {"X-Probe": probe},
                )
                assert status == 200, body
                return probe, body["access_token"]

            with ThreadPoolExecutor(max_workers=4) as pool:
                tokens = dict(pool.map(login, probes))
            # A worker writes its access-log line just after the response, so wait for it.
            worker_of: dict[str, str] = {}
            deadline = time.monotonic() + 10
            while not set(tokens) <= set(worker_of):
                assert time.monotonic() < deadline, "gunicorn logged no line for a request"
                time.sleep(0.05)
                for line in access_log.read_text().splitlines():
                    pid, probe = line.split()
                    worker_of[probe] = pid
            kids: dict[str, list[str]] = {}
            for probe, token in tokens.items():
                kids.setdefault(worker_of[probe], []).append(kid_of(token))
            return kids

        def both_workers(check: Callable[[dict[str, list[str]]], bool]) -> dict[str, list[str]]:
            deadline = time.monotonic() + 60
            while True:
                kids = logins(8)
                if len(kids) == 2 and check(kids):
                    return kids
                assert time.monotonic() < deadline, f"the two workers never agreed: {kids}"

        before = both_workers(lambda kids: True)
        old_kids = {kid for worker in before.values() for kid in worker}
        assert len(old_kids) == 1
        old_token = _token_for(base, email)
        rotate(app)
        new_kid = current_signing_key(app)[0]
        assert new_kid not in old_kids
        # Within the cache time (1 s here) both workers sign with the new key.
        after = both_workers(lambda kids: all(set(k) == {new_kid} for k in kids.values()))
        assert set(after) == set(before)  # the same two workers, neither restarted
        # Either worker verifies what the other signed, and the old key's tokens still pass.
        for _ in range(6):
            for token in (old_token, _token_for(base, email)):
                status, body = _request(f"{base}/auth/me", headers=bearer(token))
                assert status == 200, body
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)


def _token_for(base: str, email: str) -> str:
    status, body = _request(f"{base}/auth/login", {"email": email, "password": PASSWORD})
    assert status == 200, body
    return str(body["access_token"])
