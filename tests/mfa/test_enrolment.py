"""Turning two-factor on: setup gives the app its secret (and a QR code), which stays pending
until a code of it confirms it; confirmation shows the recovery codes once, ends the person's
other logins, writes an event and emails a notice. Real stack, pyotp on a travelled clock."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, unquote, urlparse

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.core.db import db
from app.mfa.models import RecoveryCode, TotpFactor
from tests.support.apps import stored_values
from tests.support.http import Accounts, assert_401, assert_problem, bearer, me, refresh
from tests.support.mail import Mailbox
from tests.support.mfa import Authenticator, confirm, enrol, event_types, set_up, step_clock

EMAIL = "ada@example.com"
RECOVERY_CODE = re.compile(r"[0-9a-hjkmnp-tv-z]{4}-[0-9a-hjkmnp-tv-z]{4}-[0-9a-hjkmnp-tv-z]{4}")


def test_setup_gives_the_app_a_secret_its_uri_and_a_qr_code(
    client: FlaskClient, accounts: Accounts
) -> None:
    pair = accounts.active_user(EMAIL)
    response = set_up(client, pair["access_token"])
    assert response.status_code == 200
    body = response.json
    assert set(body) == {"secret", "otpauth_uri", "qr_svg"}
    assert re.fullmatch(r"[A-Z2-7]{32}", body["secret"])  # base32, 160 bits
    uri = urlparse(body["otpauth_uri"])
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    assert unquote(uri.path) == f"/Cinema:{EMAIL}"
    query = parse_qs(uri.query)
    assert query["secret"] == [body["secret"]] and query["issuer"] == ["Cinema"]
    # What authenticator apps assume when the URI names nothing else.
    for name, default in (("algorithm", "SHA1"), ("digits", "6"), ("period", "30")):
        assert query.get(name, [default]) == [default]
    assert body["qr_svg"].startswith("<svg") and body["qr_svg"].rstrip().endswith("</svg>")
    assert me(client, pair["access_token"]).json["mfa_enabled"] is False  # pending


def test_the_issuer_is_a_setting(app_factory, accounts: Accounts) -> None:
    client = app_factory(TOTP_ISSUER="Cinema Staging").test_client()
    accounts.client = client
    pair = accounts.active_user(EMAIL)
    uri = set_up(client, pair["access_token"]).json["otpauth_uri"]
    assert unquote(urlparse(uri).path) == f"/Cinema Staging:{EMAIL}"
    assert parse_qs(urlparse(uri).query)["issuer"] == ["Cinema Staging"]


def test_confirming_turns_it_on_and_shows_ten_recovery_codes_once(
    app: Flask, client: FlaskClient, accounts: Accounts, mailbox: Mailbox
) -> None:
    pair = accounts.active_user(EMAIL)
    with step_clock() as clock:
        authenticator, codes = enrol(client, pair["access_token"], clock)
    assert len(codes) == 10 and len(set(codes)) == 10
    for code in codes:
        # 12 symbols of a 32-letter alphabet: 60 random bits, in groups a person can type.
        assert RECOVERY_CODE.fullmatch(code), code
    caller = me(client, pair["access_token"]).json
    assert caller["mfa_enabled"] is True
    assert event_types(client, pair["access_token"])[0] == "mfa_enabled"
    notice = mailbox.to(EMAIL)[-1]
    assert notice["Subject"] == "Two-factor sign-in is on for your cinema account"
    assert "Every other device that was signed in has been signed out." in mailbox.text(notice)
    # Nothing stored can be used as the secret or as a recovery code.
    stored = "\n".join(stored_values(app))
    assert authenticator.secret not in stored
    for code in codes:
        assert code not in stored and code.replace("-", "") not in stored


def test_a_second_setup_while_pending_replaces_the_secret(
    client: FlaskClient, accounts: Accounts
) -> None:
    pair = accounts.active_user(EMAIL)
    first = set_up(client, pair["access_token"]).json["secret"]
    second = set_up(client, pair["access_token"]).json["secret"]
    assert first != second
    with step_clock() as clock:
        old_app, new_app = Authenticator(first, clock), Authenticator(second, clock)
        assert_problem(confirm(client, pair["access_token"], old_app.code()), 400)
        assert confirm(client, pair["access_token"], new_app.code()).status_code == 200


def test_setup_while_on_is_a_conflict_and_keeps_the_factor(
    client: FlaskClient, accounts: Accounts
) -> None:
    pair = accounts.active_user(EMAIL)
    with step_clock() as clock:
        authenticator, _codes = enrol(client, pair["access_token"], clock)
        body = assert_problem(set_up(client, pair["access_token"]), 409)
        assert "already on" in body["detail"]
        assert authenticator.secret not in str(body)
        again = confirm(client, pair["access_token"], authenticator.next_code())
        assert_problem(again, 409)


def test_a_wrong_code_confirms_nothing(app: Flask, client: FlaskClient, accounts: Accounts) -> None:
    pair = accounts.active_user(EMAIL)
    with step_clock() as clock:
        authenticator = Authenticator(set_up(client, pair["access_token"]).json["secret"], clock)
        wrong = authenticator.code(steps=2)  # a phone a whole minute ahead
        body = assert_problem(confirm(client, pair["access_token"], wrong), 400)
        assert body["title"] == "Wrong Code"
    assert me(client, pair["access_token"]).json["mfa_enabled"] is False
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(RecoveryCode)) == 0
        factor = db.session.scalar(sa.select(TotpFactor))
        assert factor is not None and factor.last_used_step is None


def test_confirming_with_nothing_pending_is_a_conflict(
    client: FlaskClient, accounts: Accounts
) -> None:
    pair = accounts.active_user(EMAIL)
    body = assert_problem(confirm(client, pair["access_token"], "123456"), 409)
    assert "pending" in body["detail"]


FULLWIDTH_DIGITS = "\uff11\uff12\uff13\uff14\uff15\uff16"


@pytest.mark.parametrize("code", ["12345", "1234567", "abcdef", "12345x", "", FULLWIDTH_DIGITS])
def test_a_code_that_is_no_code_is_refused_before_anything_is_checked(
    client: FlaskClient, accounts: Accounts, code: str
) -> None:
    pair = accounts.active_user(EMAIL)
    set_up(client, pair["access_token"])
    body = assert_problem(confirm(client, pair["access_token"], code), 422)
    assert "code" in body["errors"]


def test_turning_it_on_ends_the_other_logins_and_keeps_this_one(
    client: FlaskClient, accounts: Accounts
) -> None:
    """A refresh token issued before enrolment keeps working only for the login that turned
    two-factor on (it has just proved the app); every other login must sign in again, and
    so meets the second step (README, "Two-factor sign-in")."""
    phone = accounts.active_user(EMAIL)
    laptop = accounts.login(EMAIL)
    with step_clock() as clock:
        enrol(client, laptop["access_token"], clock)
        assert_401(refresh(client, phone["refresh_token"]))
        assert_401(me(client, phone["access_token"]))
        assert me(client, laptop["access_token"]).status_code == 200
        assert refresh(client, laptop["refresh_token"]).status_code == 200


def test_setup_needs_an_access_token(client: FlaskClient) -> None:
    assert_401(client.post("/auth/mfa/totp/setup"))
    assert_401(client.post("/auth/mfa/totp/confirm", json={"code": "123456"}))
    assert_401(client.post("/auth/mfa/totp/setup", headers=bearer("not-a-token")))
