"""The attacks on the second step, as tests: each sends what an attacker who holds the
password sends, against the real stack (limits counted in a real Redis, behind a trusted
proxy so that every attempt can come from another address; PostgreSQL and SQLite), and
asserts what the person would observe."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support.http import (
    PASSWORD,
    Accounts,
    assert_401,
    assert_problem,
    at_once,
    bearer,
    login,
)
from tests.support.mail import Mailbox
from tests.support.mfa import (
    STEP,
    Authenticator,
    enrol,
    mfa_token_of,
    renew_codes,
    second_step,
    set_up,
    step_clock,
    turn_off,
)

ADA, BO, CY = "ada@example.com", "bo@example.com", "cy@example.com"
NEW_PASSWORD = "copper walrus meadow lantern"


@pytest.fixture
def limited(app_factory: Callable[..., Flask], redis_url: str) -> FlaskClient:
    """The service behind one trusted proxy, with its limits counted in Redis."""
    return app_factory(RATELIMIT_ENABLED=True, REDIS_URL=redis_url, TRUSTED_PROXIES=1).test_client()


def from_address(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


def wrong(code: str) -> str:
    return f"{(int(code) + 500_000) % 1_000_000:06d}"


def test_an_mfa_token_of_one_account_takes_no_code_of_another(
    client: FlaskClient, accounts: Accounts
) -> None:
    with step_clock() as clock:
        ada, _ada_codes = enrol(client, accounts.active_user(ADA)["access_token"], clock)
        bo, bo_codes = enrol(client, accounts.active_user(BO)["access_token"], clock)
        token = mfa_token_of(client, ADA)
        clock.shift(STEP)
        assert_401(second_step(client, token, bo.code()))
        assert_401(second_step(client, token, bo_codes[0]))
        # Neither of Bo's codes was spent, and Ada's mfa_token still takes Ada's code.
        assert second_step(client, mfa_token_of(client, BO), bo.code()).status_code == 200
        assert second_step(client, mfa_token_of(client, BO), bo_codes[0]).status_code == 200
        assert second_step(client, token, ada.code()).status_code == 200


def test_guessing_six_digits_across_many_mfa_tokens_meets_the_account_limit(
    client: FlaskClient, accounts: Accounts, limited: FlaskClient
) -> None:
    """Every guess with a new mfa_token (the password is known) from a new address: the
    account's count holds whatever carries the code, and the right code is refused too."""
    with step_clock() as clock:
        authenticator, _codes = enrol(client, accounts.active_user(ADA)["access_token"], clock)
        clock.shift(STEP)
        code = authenticator.code()

        def guess(n: int, guessed: str) -> Any:
            here = from_address(f"198.51.100.{n}")
            return second_step(limited, mfa_token_of(limited, ADA, **here), guessed, **here)

        assert [guess(n, wrong(code)).status_code for n in range(5)] == [401] * 5
        held = guess(5, code)
        assert_problem(held, 429)
        assert 1 <= int(held.headers["Retry-After"]) <= 60
        # A minute later the owner gets in; then the hour's budget, 20, holds.
        clock.shift(61)
        assert guess(6, authenticator.code()).status_code == 200
        for minute in range(3):
            clock.shift(61)
            for n in range(5 if minute < 2 else 4):
                assert guess(10 * minute + n + 20, wrong(authenticator.code())).status_code == 401
        clock.shift(61)
        held = guess(99, authenticator.code())
        assert_problem(held, 429)
        assert int(held.headers["Retry-After"]) > 60


def test_past_the_limit_the_mfa_token_dies(
    client: FlaskClient, accounts: Accounts, limited: FlaskClient
) -> None:
    here = from_address("198.51.100.7")
    with step_clock() as clock:
        authenticator, _codes = enrol(client, accounts.active_user(ADA)["access_token"], clock)
        token = mfa_token_of(limited, ADA, **here)
        code = authenticator.next_code()
        for _ in range(5):
            assert_401(second_step(limited, token, wrong(code), **here))
        assert_problem(second_step(limited, token, code, **here), 429)
        clock.shift(61)
        body = assert_401(second_step(limited, token, authenticator.code(), **here))
        assert "log in again" in body["detail"]


def test_one_address_guessing_for_many_accounts_meets_the_address_limit(
    client: FlaskClient, accounts: Accounts, limited: FlaskClient
) -> None:
    attacker = from_address("203.0.113.50")
    with step_clock() as clock:
        apps = {
            email: enrol(client, accounts.active_user(email)["access_token"], clock)[0]
            for email in (ADA, BO, CY)
        }
        clock.shift(STEP)
        statuses = [
            second_step(
                limited,
                mfa_token_of(limited, email, **attacker),
                wrong(apps[email].code()),
                **attacker,
            ).status_code
            for email in (ADA, BO, CY)
            for _ in range(4)
        ]
        assert statuses == [401] * 10 + [429] * 2
        # Cy's own count is far from full: Cy, elsewhere, signs in.
        home = from_address("192.0.2.33")
        token = mfa_token_of(limited, CY, **home)
        assert second_step(limited, token, apps[CY].code(), **home).status_code == 200


def test_wrong_codes_with_a_stolen_access_token_are_limited_too(
    client: FlaskClient, accounts: Accounts, limited: FlaskClient
) -> None:
    """Turning it off and renewing the codes check a code as sign-in does: counted per
    account, and per caller with the wrong passwords."""
    with step_clock() as clock:
        pair = accounts.active_user(ADA)
        authenticator, _codes = enrol(client, pair["access_token"], clock)
        code = authenticator.next_code()
        attempts = [turn_off(limited, pair["access_token"], wrong(code)) for _ in range(5)]
        assert [a.status_code for a in attempts] == [400] * 5
        assert_problem(renew_codes(limited, pair["access_token"], code), 429)
        assert_problem(turn_off(limited, pair["access_token"], code), 429)


def test_one_code_sent_twice_at_once_signs_in_once(
    app_factory: Callable[..., Flask], accounts: Accounts
) -> None:
    """Two web processes (two apps, each with its own connection pool) get one code at the
    same moment, with two mfa_tokens, and again with one: exactly one wins each time."""
    first, second = app_factory(), app_factory()
    accounts.client = first.test_client()
    with step_clock() as clock:
        authenticator, _codes = enrol(
            accounts.client, accounts.active_user(ADA)["access_token"], clock
        )
        for tokens in ("two", "one"):
            code = authenticator.next_code()
            token = mfa_token_of(accounts.client, ADA)
            other = token if tokens == "one" else mfa_token_of(accounts.client, ADA)
            # at_once hands each request a client of `first`; the other makes one of `second`.
            statuses = at_once(
                first,
                [
                    lambda c, t=token, k=code: second_step(c, t, k),
                    lambda _c, t=other, k=code: second_step(second.test_client(), t, k),
                ],
            )
            assert statuses == [200, 401], tokens


def test_a_password_reset_signs_no_one_in_and_the_next_login_meets_the_second_step(
    client: FlaskClient, accounts: Accounts, mailbox: Mailbox
) -> None:
    with step_clock() as clock:
        authenticator, _codes = enrol(client, accounts.active_user(ADA)["access_token"], clock)
        assert client.post("/auth/password/forgot", json={"email": ADA}).status_code == 202
        reset = client.post(
            "/auth/password/reset",
            json={"token": mailbox.last_token(ADA), "new_password": NEW_PASSWORD},
        )
        assert reset.status_code == 204 and reset.data == b""
        assert mfa_token_of(client, ADA, password=NEW_PASSWORD)
        assert sign_in_with(client, authenticator, NEW_PASSWORD).status_code == 200


def sign_in_with(client: FlaskClient, authenticator: Authenticator, password: str) -> Any:
    token = mfa_token_of(client, ADA, password=password)
    return second_step(client, token, authenticator.next_code())


def test_no_secret_reaches_a_log_line_or_a_later_answer(
    client: FlaskClient, accounts: Accounts, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    pair = accounts.active_user(ADA)
    with step_clock() as clock:
        authenticator, codes = enrol(client, pair["access_token"], clock)
        token = mfa_token_of(client, ADA)
        used_code = authenticator.next_code()
        assert_401(second_step(client, token, wrong(used_code)))
        signed_in = second_step(client, token, used_code).json
        recovered = second_step(client, mfa_token_of(client, ADA), codes[0]).json
        renewed = renew_codes(client, recovered["access_token"], authenticator.next_code()).json
        secrets = [authenticator.secret, *codes, *renewed["recovery_codes"], token, PASSWORD]
        later = [
            client.get("/auth/me", headers=bearer(recovered["access_token"])),
            client.get("/auth/me/events", headers=bearer(recovered["access_token"])),
            set_up(client, recovered["access_token"]),  # 409 while on
            login(client, ADA),
        ]
    assert signed_in["access_token"]
    answers = "\n".join(response.get_data(as_text=True) for response in later)
    lines = "\n".join(
        f"{record.getMessage()} {record.__dict__!r}"
        for record in caplog.records
        if not record.name.startswith("mail.log")  # the test's own SMTP server
    )
    for secret in secrets:
        assert secret not in answers
        assert secret not in lines, secret
        assert secret.replace("-", "") not in lines
