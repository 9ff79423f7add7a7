"""The brakes on email change, against a real Redis shared as by every gunicorn process and a
real RQ worker: a stolen access token can neither guess the password through it nor make it
mail-bomb an address, and its link endpoint is limited per client address like the others."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support.apps import run_worker
from tests.support.http import PASSWORD, Accounts, assert_problem, at_once, bearer
from tests.support.mail import Mailbox

WRONG = "not the password at all"
NEW_PASSWORD = "marble lantern exquisite harbour"


@pytest.fixture
def limited_app(app_factory: Callable[..., Flask], redis_url: str) -> Flask:
    """Rate limits on, counted in Redis; emails are RQ jobs (`run_worker`)."""
    return app_factory(RATELIMIT_ENABLED=True, REDIS_URL=redis_url)


def signed_in(app: Flask, mailbox: Mailbox, email: str) -> str:
    """Register, activate through the emailed link, log in; returns the access token."""
    client = app.test_client()
    accounts = Accounts(client, mailbox)
    accounts.register(email)
    run_worker(app)
    accounts.activate(email)
    return str(accounts.login(email)["access_token"])


def from_address(address: str) -> dict[str, Any]:
    return {"environ_base": {"REMOTE_ADDR": address}}


def change(client: FlaskClient, access: str, new_email: str, password: str, n: int = 0) -> Any:
    return client.post(
        "/auth/email/change",
        json={"new_email": new_email, "password": password},
        headers=bearer(access),
        **from_address(f"10.7.0.{n}"),
    )


def test_wrong_passwords_get_429_and_count_with_the_password_change(
    limited_app: Flask, mailbox: Mailbox
) -> None:
    """The attack: a stolen access token guesses the password through the email change, from
    a new address each time, then tries its luck at the password change."""
    access = signed_in(limited_app, mailbox, "owner@example.com")
    client = limited_app.test_client()
    for n in range(5):
        assert change(client, access, "thief@example.com", f"{WRONG} {n}", n).status_code == 400
    blocked = change(client, access, "thief@example.com", PASSWORD, 9)
    assert_problem(blocked, 429)
    assert int(blocked.headers["Retry-After"]) > 0
    changed = client.post(
        "/auth/password/change",
        json={"old_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(access),
    )
    assert_problem(changed, 429)
    run_worker(limited_app)
    assert mailbox.to("thief@example.com") == []


def test_concurrent_wrong_passwords_get_the_limit_and_no_more(
    limited_app: Flask, mailbox: Mailbox
) -> None:
    access = signed_in(limited_app, mailbox, "owner@example.com")
    statuses = at_once(
        limited_app,
        [
            lambda c, n=n: change(c, access, "thief@example.com", f"{WRONG} {n}", n)
            for n in range(30)
        ],
    )
    assert statuses == [400] * 5 + [429] * 25


def test_the_right_password_forgets_the_failures_even_when_the_change_is_refused(
    limited_app: Flask, mailbox: Mailbox
) -> None:
    access = signed_in(limited_app, mailbox, "owner@example.com")
    signed_in(limited_app, mailbox, "taken@example.com")
    client = limited_app.test_client()
    for n in range(4):
        assert change(client, access, "new@example.com", f"{WRONG} {n}").status_code == 400
    assert change(client, access, "taken@example.com", PASSWORD).status_code == 409
    for n in range(5):  # a full count again: the 409 was the owner's
        assert change(client, access, "new@example.com", f"{WRONG} {n}").status_code == 400
    assert_problem(change(client, access, "new@example.com", WRONG), 429)


def test_a_stolen_token_cannot_mail_bomb_an_address(limited_app: Flask, mailbox: Mailbox) -> None:
    """The attack: with the access token and the password, ask again and again for the
    change to a victim's address. Three emails an hour reach it; the newest link works."""
    access = signed_in(limited_app, mailbox, "owner@example.com")
    client = limited_app.test_client()
    mailbox.clear()
    statuses = [
        change(client, access, "victim@example.com", PASSWORD, n).status_code for n in range(10)
    ]
    assert statuses == [202] * 3 + [429] * 7
    assert int(change(client, access, "victim@example.com", PASSWORD).headers["Retry-After"]) > 0
    run_worker(limited_app)
    assert len(mailbox.to("victim@example.com")) == 3
    assert len(mailbox.to("owner@example.com")) == 3
    confirmed = client.post(
        "/auth/email/confirm", json={"token": mailbox.last_token("victim@example.com")}
    )
    assert confirmed.status_code == 200


def test_the_confirmation_is_limited_per_client_address(limited_app: Flask) -> None:
    client = limited_app.test_client()
    body = {"token": "not-a-token"}
    for _ in range(10):
        response = client.post("/auth/email/confirm", json=body, **from_address("10.8.8.8"))
        assert response.status_code == 400
    assert_problem(client.post("/auth/email/confirm", json=body, **from_address("10.8.8.8")), 429)
    other = client.post("/auth/email/confirm", json=body, **from_address("10.8.8.9"))
    assert other.status_code == 400
