"""Rate limits on the guessable endpoints: per account (email) and per client address."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis

from tests.support.http import PASSWORD, Accounts, assert_problem
from tests.support.mail import Mailbox

WRONG = "a wrong password for sure"


def from_address(address: str) -> dict:
    return {"environ_base": {"REMOTE_ADDR": address}}


def assert_429(response) -> None:
    body = assert_problem(response, 429)
    assert "Retry-After" in body["detail"]
    assert int(response.headers["Retry-After"]) > 0


@pytest.fixture
def limited(app_factory: Callable[..., Flask]) -> FlaskClient:
    return app_factory(RATELIMIT_ENABLED=True).test_client()


class TestLogin:
    @time_machine.travel("2026-11-27 08:00:00+00:00", tick=False)
    def test_failures_for_one_account_from_many_addresses_get_429(
        self, limited: FlaskClient, mailbox: Mailbox
    ) -> None:
        Accounts(limited, mailbox).active_user("target@example.com")  # from 127.0.0.1
        for n in range(6):  # five free failures, then one per (growing) delay
            response = limited.post(
                "/auth/login",
                json={"email": "target@example.com", "password": WRONG},
                **from_address(f"10.0.0.{n}"),
            )
            assert response.status_code == 401
        blocked = limited.post(
            "/auth/login",
            json={"email": "Target@Example.com", "password": PASSWORD},
            **from_address("10.0.1.1"),
        )
        assert_429(blocked)  # even the right password waits: the guessing is slowed down
        assert int(blocked.headers["Retry-After"]) <= 60
        # The owner, from where they logged in before, is not held up by a stranger's guesses.
        owner = limited.post(
            "/auth/login", json={"email": "target@example.com", "password": PASSWORD}
        )
        assert owner.status_code == 200

    def test_successful_logins_do_not_count(self, limited: FlaskClient, mailbox: Mailbox) -> None:
        accounts = Accounts(limited, mailbox)
        accounts.active_user("regular@example.com")
        for _ in range(7):
            accounts.login("regular@example.com")

    def test_failures_from_one_address_over_many_accounts_get_429(
        self, limited: FlaskClient
    ) -> None:
        for n in range(20):
            response = limited.post(
                "/auth/login",
                json={"email": f"spray{n}@example.com", "password": WRONG},
                **from_address("10.9.9.9"),
            )
            assert response.status_code == 401
        assert_429(
            limited.post(
                "/auth/login",
                json={"email": "spray-last@example.com", "password": WRONG},
                **from_address("10.9.9.9"),
            )
        )
        other = limited.post(
            "/auth/login",
            json={"email": "spray-last@example.com", "password": WRONG},
            **from_address("10.9.9.10"),
        )
        assert other.status_code == 401


@pytest.mark.parametrize("path", ["/auth/password/forgot", "/auth/activate/resend"])
class TestEmailSenders:
    def test_per_email_whatever_the_address(
        self, limited: FlaskClient, mailbox: Mailbox, path: str
    ) -> None:
        """At most three emails an hour reach one account; the requests past them get the
        same 202 as any other (a 429 would tell which emails have accounts) and send nothing."""
        accounts = Accounts(limited, mailbox)
        for address in ("flooded@example.com", "calm@example.com"):
            if path.endswith("forgot"):
                accounts.active_user(address)
            else:
                accounts.register(address)
        mailbox.clear()
        for n in range(5):
            response = limited.post(
                path, json={"email": " FLOODED@example.com"}, **from_address(f"10.1.0.{n}")
            )
            assert response.status_code == 202
        assert len(mailbox.to("flooded@example.com")) == 3
        assert limited.post(path, json={"email": "calm@example.com"}).status_code == 202
        assert len(mailbox.to("calm@example.com")) == 1

    def test_per_address_whatever_the_email(self, limited: FlaskClient, path: str) -> None:
        for n in range(20):
            response = limited.post(
                path, json={"email": f"many{n}@example.com"}, **from_address("10.2.2.2")
            )
            assert response.status_code == 202
        assert_429(
            limited.post(path, json={"email": "one-more@example.com"}, **from_address("10.2.2.2"))
        )


def test_the_counter_lives_in_redis_shared_by_every_process(
    app_factory: Callable[..., Flask], redis_url: str
) -> None:
    """Two app instances stand for two gunicorn processes: what one counts, the other sees."""
    first = app_factory(RATELIMIT_ENABLED=True, REDIS_URL=redis_url).test_client()
    for _ in range(5):
        response = first.post(
            "/auth/login", json={"email": "shared@example.com", "password": WRONG}
        )
        assert response.status_code == 401
    second = app_factory(RATELIMIT_ENABLED=True, REDIS_URL=redis_url).test_client()
    assert_429(second.post("/auth/login", json={"email": "shared@example.com", "password": WRONG}))
    assert Redis.from_url(redis_url).keys("*accounts-limits*")


def test_wrong_current_passwords_at_change_get_429(limited: FlaskClient, mailbox: Mailbox) -> None:
    """The change endpoint checks the current password: with a stolen access token it was an
    unlimited guessing oracle, where login stops after five failures."""
    tokens = Accounts(limited, mailbox).active_user("changer@example.com")
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    for n in range(5):
        response = limited.post(
            "/auth/password/change",
            json={"old_password": f"{WRONG} {n}", "new_password": "amber walrus kettle drum"},
            headers=headers,
            **from_address(f"10.3.0.{n}"),
        )
        assert response.status_code == 400
    blocked = limited.post(
        "/auth/password/change",
        json={"old_password": PASSWORD, "new_password": "amber walrus kettle drum"},
        headers=headers,
        **from_address("10.3.1.1"),
    )
    assert_429(blocked)
