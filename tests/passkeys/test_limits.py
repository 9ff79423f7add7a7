"""The brakes on the passkey endpoints: per-address limits on both options endpoints and on
sign-in, and a challenge store that asking again and again does not grow."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import sqlalchemy as sa
import time_machine
from flask import Flask
from flask.testing import FlaskClient

from app.core.db import db, utcnow
from app.passkeys.challenges import MAX_LIVE
from app.periodic.cleanup import delete_expired_tokens
from tests.passkeys.authenticator import Authenticator
from tests.support.http import Accounts, assert_problem, bearer


def challenges(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(sa.text("SELECT count(*) FROM webauthn_challenges")) or 0


def test_the_challenge_store_is_bounded(
    client: FlaskClient, accounts: Accounts, app: Flask
) -> None:
    token = accounts.active_user("viewer@example.com")["access_token"]
    for _ in range(MAX_LIVE + 3):
        assert client.post("/auth/passkeys/login/options", json={}).status_code == 200
        assert (
            client.post("/auth/passkeys/register/options", headers=bearer(token)).status_code == 200
        )
    assert challenges(app) == 2 * MAX_LIVE


def test_the_passkey_endpoints_are_limited_per_address(
    app_factory: Callable[..., Flask], accounts: Accounts, redis_url: str
) -> None:
    token = accounts.active_user("viewer@example.com")["access_token"]  # on an app without limits
    app = app_factory(RATELIMIT_ENABLED=True, REDIS_URL=redis_url)
    client = app.test_client()
    statuses = [client.post("/auth/passkeys/login/options", json={}).status_code for _ in range(21)]
    assert statuses == [200] * 20 + [429]
    answer = Authenticator()
    answer.create({"rp": {"id": "cinema.test"}, "user": {"id": "AAAA"}, "challenge": "AA"})
    forged = answer.get({"challenge": "AAAA", "rpId": "cinema.test"})
    tries = [
        client.post("/auth/passkeys/login", json={"credential": forged}).status_code
        for _ in range(21)
    ]
    assert tries == [401] * 20 + [429]
    assert_problem(client.post("/auth/passkeys/login", json={"credential": forged}), 429)
    mine = [
        client.post("/auth/passkeys/register/options", headers=bearer(token)).status_code
        for _ in range(11)
    ]
    assert mine == [200] * 10 + [429]


def test_the_scheduled_cleanup_deletes_expired_challenges(client: FlaskClient, app: Flask) -> None:
    client.post("/auth/passkeys/login/options", json={})
    with time_machine.travel(utcnow() + timedelta(minutes=4), tick=False):
        client.post("/auth/passkeys/login/options", json={})
    later = utcnow() + timedelta(minutes=5, seconds=1)
    with time_machine.travel(later, tick=False), app.app_context():
        assert delete_expired_tokens()["webauthn_challenges"] == 1
    assert challenges(app) == 1
