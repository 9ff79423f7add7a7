"""Signing in with two-factor on: the password step answers an mfa_token and no tokens; the
second step takes a code of the app (one step of skew either side, each step once) or an
unused recovery code, and answers the token pair. Real stack, pyotp on a travelled clock."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
import time_machine
from flask import Flask
from flask.testing import FlaskClient

from app.core.db import db
from app.mfa.models import MfaChallenge
from app.periodic.cleanup import delete_expired_tokens
from tests.support.apps import stored_values
from tests.support.http import Accounts, assert_401, assert_problem, login, me, refresh
from tests.support.mail import Mailbox
from tests.support.mfa import (
    STEP,
    Authenticator,
    enrol,
    event_types,
    mfa_token_of,
    second_step,
    sign_in,
    step_clock,
)

EMAIL = "ada@example.com"


def enrolled(
    client: FlaskClient, accounts: Accounts, clock: time_machine.Traveller
) -> tuple[Authenticator, list[str], dict[str, Any]]:
    pair = accounts.active_user(EMAIL)
    authenticator, codes = enrol(client, pair["access_token"], clock)
    return authenticator, codes, pair


def test_the_password_step_answers_the_two_factor_step_and_no_tokens(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    with step_clock() as clock:
        enrolled(client, accounts, clock)
        response = login(client, EMAIL)
    assert response.status_code == 200
    assert set(response.json) == {"mfa_required", "mfa_token", "expires_in"}
    assert response.json["mfa_required"] is True and response.json["expires_in"] == 300
    assert response.json["mfa_token"] not in "\n".join(stored_values(app))  # only its hash


def test_a_code_of_the_app_signs_in(client: FlaskClient, accounts: Accounts) -> None:
    with step_clock() as clock:
        authenticator, _codes, _pair = enrolled(client, accounts, clock)
        pair = sign_in(client, EMAIL, authenticator)
        assert set(pair) == {"access_token", "refresh_token", "token_type", "expires_in"}
        assert me(client, pair["access_token"]).json["mfa_enabled"] is True
        assert refresh(client, pair["refresh_token"]).status_code == 200
        assert event_types(client, pair["access_token"])[0] == "login_succeeded"


def test_spaces_in_a_code_are_forgiven(client: FlaskClient, accounts: Accounts) -> None:
    with step_clock() as clock:
        authenticator, _codes, _pair = enrolled(client, accounts, clock)
        code = authenticator.next_code()
        spaced = f" {code[:3]} {code[3:]} "
        assert second_step(client, mfa_token_of(client, EMAIL), spaced).status_code == 200


def test_one_step_of_skew_either_side_is_accepted(client: FlaskClient, accounts: Accounts) -> None:
    with step_clock() as clock:
        authenticator, _codes, _pair = enrolled(client, accounts, clock)
        clock.shift(3 * STEP)
        # A phone half a minute slow, then one half a minute fast: each code a new step.
        slow = second_step(client, mfa_token_of(client, EMAIL), authenticator.code(steps=-1))
        assert slow.status_code == 200, slow.json
        fast = second_step(client, mfa_token_of(client, EMAIL), authenticator.code(steps=1))
        assert fast.status_code == 200, fast.json


def test_two_steps_off_is_refused_at_the_edge_of_the_window(
    client: FlaskClient, accounts: Accounts
) -> None:
    """A code lives from its step's start to the end of the next step: 60 s in all."""
    with step_clock() as clock:
        authenticator, _codes, _pair = enrolled(client, accounts, clock)
        clock.shift(2 * STEP)
        code = authenticator.code()  # one second into its step
        token = mfa_token_of(client, EMAIL)
        clock.shift(2 * STEP - 1)  # the first second of the step after next
        assert_401(second_step(client, token, code))
        clock.shift(-1)  # the last second of the next step
        assert second_step(client, token, code).status_code == 200
        # A phone two steps fast is as wrong as one two steps slow.
        early = authenticator.code(steps=2)
        assert_401(second_step(client, mfa_token_of(client, EMAIL), early))
        assert_401(second_step(client, mfa_token_of(client, EMAIL), authenticator.code(steps=-2)))


def test_a_code_works_once_and_no_earlier_step_after_it(
    client: FlaskClient, accounts: Accounts
) -> None:
    with step_clock() as clock:
        authenticator, _codes, _pair = enrolled(client, accounts, clock)
        # The code that confirmed the app cannot sign in too.
        body = assert_401(second_step(client, mfa_token_of(client, EMAIL), authenticator.code()))
        assert "already used" in body["detail"]
        code = authenticator.next_code()
        assert second_step(client, mfa_token_of(client, EMAIL), code).status_code == 200
        assert_401(second_step(client, mfa_token_of(client, EMAIL), code))  # same step
        clock.shift(STEP)
        later = authenticator.code()
        assert second_step(client, mfa_token_of(client, EMAIL), later).status_code == 200
        # The previous step's code is still inside the window, but older than the last used.
        assert_401(second_step(client, mfa_token_of(client, EMAIL), authenticator.code(steps=-1)))


def test_a_wrong_code_leaves_the_mfa_token_alive_and_is_recorded(
    client: FlaskClient, accounts: Accounts
) -> None:
    with step_clock() as clock:
        authenticator, _codes, _pair = enrolled(client, accounts, clock)
        token = mfa_token_of(client, EMAIL)
        wrong = f"{(int(authenticator.next_code()) + 1) % 1_000_000:06d}"
        assert_401(second_step(client, token, wrong))
        signed_in = second_step(client, token, authenticator.code())
        assert signed_in.status_code == 200
        history = event_types(client, signed_in.json["access_token"])
        assert history[:2] == ["login_succeeded", "mfa_failed"]


def test_the_mfa_token_works_once(client: FlaskClient, accounts: Accounts) -> None:
    with step_clock() as clock:
        authenticator, _codes, _pair = enrolled(client, accounts, clock)
        token = mfa_token_of(client, EMAIL)
        assert second_step(client, token, authenticator.next_code()).status_code == 200
        body = assert_401(second_step(client, token, authenticator.next_code()))
        assert "log in again" in body["detail"]


def test_the_mfa_token_dies_after_five_minutes(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    with step_clock() as clock:
        authenticator, _codes, _pair = enrolled(client, accounts, clock)
        token = mfa_token_of(client, EMAIL)
        clock.shift(300)
        assert_401(second_step(client, token, authenticator.code()))
        fresh = mfa_token_of(client, EMAIL)
        clock.shift(299)
        assert second_step(client, fresh, authenticator.code()).status_code == 200
        mfa_token_of(client, EMAIL)  # a live one, which the clean-up keeps
        with app.app_context():  # the scheduled clean-up deletes the expired one only
            assert delete_expired_tokens()["mfa_challenges"] == 1
            assert db.session.scalar(sa.select(sa.func.count()).select_from(MfaChallenge)) == 1


def test_a_recovery_code_signs_in_once_whatever_its_spelling(
    client: FlaskClient, accounts: Accounts, mailbox: Mailbox
) -> None:
    with step_clock() as clock:
        _authenticator, codes, _pair = enrolled(client, accounts, clock)
        typed = codes[0].upper().replace("-", " ")
        first = second_step(client, mfa_token_of(client, EMAIL), typed)
        assert first.status_code == 200, first.json
        assert_401(second_step(client, mfa_token_of(client, EMAIL), codes[0]))
        second = second_step(client, mfa_token_of(client, EMAIL), codes[1].replace("-", ""))
        assert second.status_code == 200
        assert event_types(client, second.json["access_token"])[:2] == [
            "login_succeeded",
            "recovery_code_used",
        ]
    notice = mailbox.to(EMAIL)[-1]
    assert notice["Subject"] == "A recovery code was used to sign in to your cinema account"
    assert "Recovery codes left: 8." in mailbox.text(notice)


def test_a_recovery_code_ends_every_other_login(client: FlaskClient, accounts: Accounts) -> None:
    """Whoever signs in with a recovery code may have lost the phone, and the finder may be
    signed in: every other login ends."""
    with step_clock() as clock:
        authenticator, codes, before = enrolled(client, accounts, clock)
        other = sign_in(client, EMAIL, authenticator)
        recovered = second_step(client, mfa_token_of(client, EMAIL), codes[0])
        assert recovered.status_code == 200
        for ended in (before, other):
            assert_401(refresh(client, ended["refresh_token"]))
        assert me(client, recovered.json["access_token"]).status_code == 200


def test_a_deactivated_account_cannot_finish_its_second_step(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    with step_clock() as clock:
        authenticator, _codes, _pair = enrolled(client, accounts, clock)
        token = mfa_token_of(client, EMAIL)
        with app.app_context():
            from app.identity.users import find_user_by_email

            user = find_user_by_email(EMAIL)
            assert user is not None
            user.deactivate()
            db.session.commit()
        assert_401(second_step(client, token, authenticator.next_code()))


def test_bad_input_is_refused_before_anything_is_checked(
    client: FlaskClient, accounts: Accounts
) -> None:
    with step_clock() as clock:
        enrolled(client, accounts, clock)
        token = mfa_token_of(client, EMAIL)
        for body in (
            {"mfa_token": token},
            {"code": "123456"},
            {"mfa_token": token, "code": 123456},
        ):
            assert_problem(client.post("/auth/login/mfa", json=body), 422)
        extra = {"mfa_token": token, "code": "123456", "user_id": 1}
        assert_problem(client.post("/auth/login/mfa", json=extra), 422)
        assert_problem(
            client.post("/auth/login/mfa", data="{", content_type="application/json"), 400
        )
