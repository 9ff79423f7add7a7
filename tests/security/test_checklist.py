"""Security checklist items the functional tests do not pin down, one test each.

Named after the item of the security checklist (OWASP ASVS 5, RFC 9700, RFC 8725) they
prove. Tokens are forged with PyJWT directly, so the test does not trust the code under test
to build them.
"""

from __future__ import annotations

import io
import logging
import statistics
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from argon2 import Type, extract_parameters
from flask import Flask
from flask.testing import FlaskClient

from tests.support.apps import run_worker, service_log_records, stored_password_hash, stored_values
from tests.support.http import PASSWORD, Accounts, assert_problem, bearer, claims
from tests.support.mail import Mailbox

NEW_PASSWORD = "quartz heron lantern meadow"
NEWER_PASSWORD = "copper falcon drizzle atlas"


# --- JWT (item 9) -------------------------------------------------------------------------


def as_refresh_claims(access_token: str) -> dict[str, Any]:
    """What a JWT refresh token of this login would carry: refresh tokens are opaque
    strings, so an attacker can only make up a JWT that looks like one."""
    return {**claims(access_token), "type": "refresh"}


def test_alg_none_is_refused(client: FlaskClient, accounts: Accounts) -> None:
    pair = accounts.active_user("none@example.com")
    for forged_claims, call in (
        (claims(pair["access_token"]), lambda t: client.get("/auth/me", headers=bearer(t))),
        (
            as_refresh_claims(pair["access_token"]),
            lambda t: client.post("/auth/refresh", json={"refresh_token": t}),
        ),
    ):
        # The genuine claims, unsigned: only the algorithm pinned in the server can refuse it.
        unsigned = jwt.encode(forged_claims, key=None, algorithm="none")
        assert_problem(call(unsigned), 401)
    # The genuine tokens still work, so the 401s above are about the algorithm alone.
    assert client.get("/auth/me", headers=bearer(pair["access_token"])).status_code == 200


def test_tampered_signature_is_refused(app: Flask, client: FlaskClient, accounts: Accounts) -> None:
    victim = accounts.register("victim@example.com")
    pair = accounts.active_user("attacker@example.com")
    header, _payload, signature = pair["access_token"].split(".")
    # Another user's id under the attacker's signature.
    forged_claims = {**claims(pair["access_token"]), "sub": str(victim["id"])}
    forged_payload = jwt.encode(
        forged_claims, "only-the-payload-is-kept-" * 2, algorithm="HS256"
    ).split(".")[1]
    swapped = f"{header}.{forged_payload}.{signature}"
    assert_problem(client.get("/auth/me", headers=bearer(swapped)), 401)
    # The right claims signed with a key that is not the server's.
    wrong_key = jwt.encode(
        claims(pair["access_token"]), "not-the-server-key-" * 3, algorithm="HS256"
    )
    assert_problem(client.get("/auth/me", headers=bearer(wrong_key)), 401)
    # A refresh token made up and signed with a wrong key is refused as well.
    wrong_refresh = jwt.encode(
        as_refresh_claims(pair["access_token"]), "not-the-server-key-" * 3, algorithm="HS256"
    )
    response = client.post("/auth/refresh", json={"refresh_token": wrong_refresh})
    assert_problem(response, 401)


def test_refresh_token_used_as_access_token_is_refused(
    client: FlaskClient, accounts: Accounts
) -> None:
    pair = accounts.active_user("confused@example.com")
    response = client.get("/auth/me", headers=bearer(pair["refresh_token"]))
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_access_token_used_as_refresh_token_is_refused(
    client: FlaskClient, accounts: Accounts
) -> None:
    pair = accounts.active_user("confused@example.com")
    assert_problem(client.post("/auth/refresh", json={"refresh_token": pair["access_token"]}), 401)
    assert_problem(client.post("/auth/refresh", json={}, headers=bearer(pair["access_token"])), 401)
    assert_problem(client.post("/auth/logout", json={"refresh_token": pair["access_token"]}), 401)


# --- Passwords (items 1, 2) -------------------------------------------------------------


@pytest.mark.real_hasher
def test_stored_hash_is_argon2id_at_or_above_the_owasp_minimum(
    app: Flask, accounts: Accounts
) -> None:
    accounts.register("hashed@example.com")
    parameters = extract_parameters(stored_password_hash(app, "hashed@example.com"))
    assert parameters.type is Type.ID
    assert parameters.memory_cost >= 19456  # KiB: 19 MiB
    assert parameters.time_cost >= 2


@pytest.mark.real_hasher
def test_unknown_email_and_wrong_password_take_the_same_time(
    client: FlaskClient, accounts: Accounts
) -> None:
    accounts.active_user("timed@example.com")

    def attempt(address: str) -> tuple[float, dict[str, Any]]:
        started = time.perf_counter()
        response = client.post("/auth/login", json={"email": address, "password": "wrong pw 1"})
        elapsed = time.perf_counter() - started
        return elapsed, assert_problem(response, 401)

    attempt("nobody@example.com")  # the dummy hash is made once, on first use: not timed
    unknown, wrong = [], []
    for _ in range(15):  # interleaved, so a burst of load on the machine hits both
        elapsed, unknown_body = attempt("nobody@example.com")
        unknown.append(elapsed)
        elapsed, wrong_body = attempt("timed@example.com")
        wrong.append(elapsed)
    assert unknown_body == wrong_body
    difference = abs(statistics.median(unknown) - statistics.median(wrong))
    assert difference < 0.050, f"medians differ by {difference * 1000:.1f} ms"


# --- Email tokens (items 5, 7) ----------------------------------------------------------


def test_the_database_never_holds_a_usable_token(
    app: Flask, client: FlaskClient, accounts: Accounts, mailbox: Mailbox
) -> None:
    address = "stored@example.com"
    accounts.register(address)
    activation = mailbox.last_token(address)
    pending = stored_values(app)  # the activation token is spent by activating
    accounts.activate(address)
    pair = accounts.login(address)
    assert client.post("/auth/password/forgot", json={"email": address}).status_code == 202
    reset = mailbox.last_token(address)
    secrets = {
        "activation token": activation,
        "reset token": reset,
        "access token": pair["access_token"],
        "refresh token": pair["refresh_token"],
        "password": PASSWORD,
    }
    stored = pending + stored_values(app)
    assert any(len(value) == 64 for value in stored)  # the SHA-256 hex digests are there
    for name, secret in secrets.items():
        leaks = [value for value in stored if secret in value]
        assert not leaks, f"the {name} is stored as is"


def test_links_come_from_public_base_url_never_from_the_host_header(
    client: FlaskClient, accounts: Accounts, mailbox: Mailbox
) -> None:
    spoofed = {"Host": "evil.example", "X-Forwarded-Host": "evil.example"}
    address = "linked@example.com"
    response = client.post(
        "/auth/register", json={"email": address, "password": PASSWORD}, headers=spoofed
    )
    assert response.status_code == 201
    assert mailbox.last_link(address).startswith("http://cinema.test/auth/activate?token=")
    accounts.activate(address)
    response = client.post("/auth/password/forgot", json={"email": address}, headers=spoofed)
    assert response.status_code == 202
    assert mailbox.last_link(address).startswith("http://cinema.test/auth/password/reset?token=")
    for message in mailbox.to(address):
        assert "evil.example" not in message.as_string()


# --- Input (item 16) --------------------------------------------------------------------


class CountingStream(io.BytesIO):
    """A request body that records how much of it the server read."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.bytes_read += len(chunk)
        return chunk

    def readline(self, size: int | None = -1) -> bytes:
        line = super().readline(size)
        self.bytes_read += len(line)
        return line


@pytest.mark.parametrize("rate_limits", [False, True], ids=["limits-off", "limits-on"])
def test_body_over_the_limit_is_413_before_it_is_read(
    app_factory: Callable[..., Flask], rate_limits: bool
) -> None:
    # With limits on, the per-email limit looks into the body first: it must not read it either.
    client = app_factory(MAX_CONTENT_LENGTH=1024, RATELIMIT_ENABLED=rate_limits).test_client()
    body = b'{"email": "big@example.com", "password": "' + b"x" * 4096 + b'"}'
    stream = CountingStream(body)
    response = client.post(
        "/auth/login",
        input_stream=stream,
        content_type="application/json",
        headers={"Content-Length": str(len(body))},
    )
    assert_problem(response, 413)
    assert stream.bytes_read == 0


# --- Logging (item 19) ------------------------------------------------------------------


def test_no_password_token_or_hash_in_any_log_line(
    app: Flask,
    client: FlaskClient,
    accounts: Accounts,
    mailbox: Mailbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger: every library's debug lines too
    # SQLAlchemy logs statements only when its own logger is switched on, as an operator
    # chasing a slow query would (echo=True, INFO): the bound values must stay out even then.
    # Its DEBUG level prints result rows by design, which no setting of ours can hide.
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
    address = "journey@example.com"
    secrets: dict[str, str] = {"password": PASSWORD}

    accounts.register(address)
    secrets["first hash"] = stored_password_hash(app, address)
    secrets["activation token"] = mailbox.last_token(address)
    accounts.activate(address)
    pair = accounts.login(address)
    refreshed = client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]}).json
    assert (
        client.post(
            "/auth/logout",
            json={"refresh_token": refreshed["refresh_token"]},
            headers=bearer(refreshed["access_token"]),
        ).status_code
        == 204
    )
    assert client.post("/auth/password/forgot", json={"email": address}).status_code == 202
    secrets["reset token"] = mailbox.last_token(address)
    response = client.post(
        "/auth/password/reset",
        json={"token": secrets["reset token"], "new_password": NEW_PASSWORD},
    )
    assert response.status_code == 204
    secrets["reset password"] = NEW_PASSWORD
    secrets["second hash"] = stored_password_hash(app, address)
    pair2 = accounts.login(address, NEW_PASSWORD)
    response = client.post(
        "/auth/password/change",
        json={"old_password": NEW_PASSWORD, "new_password": NEWER_PASSWORD},
        headers=bearer(pair2["access_token"]),
    )
    assert response.status_code == 204
    secrets["changed password"] = NEWER_PASSWORD
    secrets["third hash"] = stored_password_hash(app, address)
    for name, token in (("first", pair), ("refreshed", refreshed), ("second", pair2)):
        secrets[f"{name} access token"] = token["access_token"]
        secrets[f"{name} refresh token"] = token["refresh_token"]
    # A failed login with a password that is nobody's must not be logged either.
    client.post("/auth/login", json={"email": address, "password": "not mine at all 42"})
    secrets["failed password"] = "not mine at all 42"

    assert caplog.records, "the journey logged nothing at all"
    records = service_log_records(caplog.records)
    lines = [f"{record.name}: {record.getMessage()} {record.__dict__}" for record in records]
    for name, secret in secrets.items():
        leaks = [line[:300] for line in lines if secret in line]
        assert not leaks, f"the {name} reached the logs: {leaks}"


def test_the_worker_logs_no_link_token(
    redis_app: Flask, mailbox: Mailbox, caplog: pytest.LogCaptureFixture
) -> None:
    client = redis_app.test_client()
    client.post("/auth/register", json={"email": "queued@example.com", "password": PASSWORD})
    with caplog.at_level(logging.DEBUG):
        run_worker(redis_app)
    token = mailbox.last_token("queued@example.com")
    ours = "\n".join(r.getMessage() for r in service_log_records(caplog.records))
    assert "send_outbox_email" in ours  # the worker did log the job it ran…
    assert token not in ours  # …but not the link it carried
