"""A provider vouches for who the person is, as a password does: an account with two-factor
on meets the same second step after social sign-in (checklist item 32)."""

from __future__ import annotations

from flask.testing import FlaskClient

from tests.support.http import claims, me
from tests.support.mfa import enrol, second_step, step_clock
from tests.support.oidc import Browser, new_subject

VERIFIED = {"email_verified": True, "given_name": "Ada", "family_name": "Lovelace"}


def test_social_sign_in_of_an_account_with_two_factor_asks_for_the_code(
    browser: Browser, oidc_client: FlaskClient
) -> None:
    with step_clock() as clock:
        sub = new_subject()
        first = browser.tokens(sub, email="two@example.com", **VERIFIED)
        app, _recovery_codes = enrol(oidc_client, first["access_token"], clock)

        back = browser.sign_in(sub)
        answer = browser.exchange(back["code"])

        assert answer.status_code == 200, answer.get_json()
        step = answer.get_json()
        assert set(step) == {"mfa_required", "mfa_token", "expires_in"}  # no token yet
        wrong = second_step(oidc_client, step["mfa_token"], "000000")
        assert wrong.status_code == 401
        done = second_step(oidc_client, step["mfa_token"], app.next_code())
        assert done.status_code == 200, done.get_json()
        assert (
            claims(done.get_json()["access_token"])["sub"] == claims(first["access_token"])["sub"]
        )
        assert me(oidc_client, done.get_json()["access_token"]).status_code == 200


def test_social_sign_in_without_two_factor_gives_the_pair_at_once(browser: Browser) -> None:
    pair = browser.tokens(new_subject(), email="one@example.com", **VERIFIED)
    assert set(pair) == {"access_token", "refresh_token", "token_type", "expires_in"}
