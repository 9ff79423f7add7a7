"""Turning two-factor off and renewing the recovery codes: both prove the password and a
code; turning it off ends the person's other logins; each writes an event and emails a
notice; a refusal changes nothing. Real stack, pyotp on a travelled clock."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from tests.support.apps import stored_values
from tests.support.http import Accounts, assert_401, assert_problem, login, me, refresh
from tests.support.mail import Mailbox
from tests.support.mfa import (
    enrol,
    event_types,
    mfa_token_of,
    renew_codes,
    second_step,
    sign_in,
    step_clock,
    turn_off,
)

EMAIL = "ada@example.com"


def test_turning_it_off_with_password_and_code(
    client: FlaskClient, accounts: Accounts, mailbox: Mailbox
) -> None:
    phone = accounts.active_user(EMAIL)
    with step_clock() as clock:
        authenticator, _codes = enrol(client, phone["access_token"], clock)
        laptop = sign_in(client, EMAIL, authenticator)
        response = turn_off(client, laptop["access_token"], authenticator.next_code())
        assert response.status_code == 204 and response.data == b""
        assert me(client, laptop["access_token"]).json["mfa_enabled"] is False
        assert refresh(client, laptop["refresh_token"]).status_code == 200
        assert_401(refresh(client, phone["refresh_token"]))  # the other login ended
        assert event_types(client, laptop["access_token"])[0] == "mfa_disabled"
        assert set(login(client, EMAIL).json) >= {"access_token", "refresh_token"}
    assert mailbox.to(EMAIL)[-1]["Subject"] == "Two-factor sign-in is off for your cinema account"


def test_a_recovery_code_can_turn_it_off_for_a_person_who_lost_the_phone(
    client: FlaskClient, accounts: Accounts
) -> None:
    with step_clock() as clock:
        _authenticator, codes = enrol(client, accounts.active_user(EMAIL)["access_token"], clock)
        pair = second_step(client, mfa_token_of(client, EMAIL), codes[0]).json
        assert turn_off(client, pair["access_token"], codes[1]).status_code == 204


def test_a_wrong_password_or_code_turns_nothing_off(
    client: FlaskClient, accounts: Accounts, mailbox: Mailbox
) -> None:
    pair = accounts.active_user(EMAIL)
    with step_clock() as clock:
        authenticator, codes = enrol(client, pair["access_token"], clock)
        sent = len(mailbox.to(EMAIL))
        code = authenticator.next_code()
        wrong_password = turn_off(client, pair["access_token"], code, password="not the password")
        assert assert_problem(wrong_password, 400)["title"] == "Wrong Password"
        wrong_code = turn_off(client, pair["access_token"], codes[0][::-1])
        assert assert_problem(wrong_code, 400)["title"] == "Wrong Code"
        assert me(client, pair["access_token"]).json["mfa_enabled"] is True
        # The code the wrong password came with was not spent.
        assert second_step(client, mfa_token_of(client, EMAIL), code).status_code == 200
    assert len(mailbox.to(EMAIL)) == sent


def test_turning_off_what_is_not_on_is_a_conflict(client: FlaskClient, accounts: Accounts) -> None:
    pair = accounts.active_user(EMAIL)
    body = assert_problem(turn_off(client, pair["access_token"], "123456"), 409)
    assert "not on" in body["detail"]


def test_new_recovery_codes_replace_the_old_ones(
    app: Flask, client: FlaskClient, accounts: Accounts, mailbox: Mailbox
) -> None:
    pair = accounts.active_user(EMAIL)
    with step_clock() as clock:
        authenticator, old = enrol(client, pair["access_token"], clock)
        response = renew_codes(client, pair["access_token"], authenticator.next_code())
        assert response.status_code == 200
        new = response.json["recovery_codes"]
        assert len(new) == 10 and not set(new) & set(old)
        assert me(client, pair["access_token"]).status_code == 200  # no login ended
        assert_401(second_step(client, mfa_token_of(client, EMAIL), old[2]))
        assert second_step(client, mfa_token_of(client, EMAIL), new[0]).status_code == 200
    assert mailbox.to(EMAIL)[-2]["Subject"] == "New recovery codes for your cinema account"
    stored = "\n".join(stored_values(app))
    assert not any(code in stored or code.replace("-", "") in stored for code in new)


def test_recovery_codes_need_password_and_code(client: FlaskClient, accounts: Accounts) -> None:
    pair = accounts.active_user(EMAIL)
    with step_clock() as clock:
        authenticator, _codes = enrol(client, pair["access_token"], clock)
        code = authenticator.next_code()
        assert_problem(renew_codes(client, pair["access_token"], code, password="nope nope"), 400)
        assert_problem(renew_codes(client, pair["access_token"], "000000"), 400)
    assert_problem(
        renew_codes(client, accounts.active_user("bo@example.com")["access_token"], code), 409
    )
