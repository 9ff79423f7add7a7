"""Attacks on both passkey ceremonies (checklist item 33): each sends what an attacker sends
against the real stack and asserts what a user would see. A refused sign-in says the same
words whatever failed, so none tells whether a credential exists."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
import time_machine
from flask import Flask
from flask.testing import FlaskClient
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url

from app.core.db import db, utcnow
from tests.passkeys.authenticator import UP, Authenticator
from tests.passkeys.flows import (
    add_passkey,
    login,
    login_options,
    register,
    register_options,
    sign_in,
)
from tests.support.http import Accounts, assert_401, assert_problem, bearer

EMAIL = "viewer@example.com"
OTHER = "mallory@example.com"
EVIL_ORIGIN = "https://cinema-login.example"


def refused(response: Any) -> str:
    """A refused sign-in: 401, the one sentence, no token."""
    body = assert_401(response)
    assert "access_token" not in body
    return str(body["detail"])


def passkey_count(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(sa.text("SELECT count(*) FROM passkeys")) or 0


def events(client: FlaskClient, token: str) -> list[str]:
    items = client.get("/auth/me/events", headers=bearer(token)).json["items"]
    return [event["type"] for event in items]


# --- registration ------------------------------------------------------------------------


def test_registration_from_another_origin_or_rp_id_is_refused(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    token = accounts.active_user(EMAIL)["access_token"]
    key = Authenticator()
    phished = key.create(register_options(client, token).json, origin=EVIL_ORIGIN)
    assert "origin" in assert_problem(register(client, token, phished), 400)["detail"]
    other_rp = key.create(register_options(client, token).json, rp_id="cinema-login.example")
    assert "RP ID" in assert_problem(register(client, token, other_rp), 400)["detail"]
    assert passkey_count(app) == 0


def test_registration_without_user_verification_is_refused(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    token = accounts.active_user(EMAIL)["access_token"]
    touched_only = Authenticator().create(register_options(client, token).json, flags=UP)
    assert_problem(register(client, token, touched_only), 400)
    assert passkey_count(app) == 0


def test_a_registration_challenge_is_single_use(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    token = accounts.active_user(EMAIL)["access_token"]
    options = register_options(client, token).json
    assert register(client, token, Authenticator().create(options)).status_code == 201
    replayed = register(client, token, Authenticator().create(options))
    assert "challenge" in assert_problem(replayed, 400)["detail"]
    assert passkey_count(app) == 1


def test_a_failed_attempt_spends_the_challenge(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    token = accounts.active_user(EMAIL)["access_token"]
    options = register_options(client, token).json
    assert_problem(register(client, token, Authenticator().create(options, flags=UP)), 400)
    retried = register(client, token, Authenticator().create(options))
    assert "challenge" in assert_problem(retried, 400)["detail"]
    assert passkey_count(app) == 0


def test_an_expired_registration_challenge_is_refused(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    token = accounts.active_user(EMAIL)["access_token"]
    options = register_options(client, token).json
    with time_machine.travel(utcnow() + timedelta(minutes=5, seconds=1), tick=False):
        answer = register(client, token, Authenticator().create(options))
    assert "challenge" in assert_problem(answer, 400)["detail"]
    assert passkey_count(app) == 0


def test_a_challenge_issued_to_one_user_registers_nothing_on_another(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    victim = accounts.active_user(EMAIL)["access_token"]
    attacker = accounts.active_user(OTHER)["access_token"]
    victims_options = register_options(client, victim).json
    answer = register(client, attacker, Authenticator().create(victims_options))
    assert "challenge" in assert_problem(answer, 400)["detail"]
    assert passkey_count(app) == 0


def test_a_sign_in_challenge_registers_nothing(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    token = accounts.active_user(EMAIL)["access_token"]
    creation = register_options(client, token).json
    sign_in_challenge = login_options(client).json["challenge"]
    forged = Authenticator().create(creation, challenge=sign_in_challenge)
    assert "challenge" in assert_problem(register(client, token, forged), 400)["detail"]
    assert passkey_count(app) == 0


def test_another_users_credential_id_is_a_conflict(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    victim = accounts.active_user(EMAIL)["access_token"]
    victims_key = Authenticator()
    add_passkey(client, victim, victims_key)
    victims_id = next(iter(victims_key.credentials))
    attacker = accounts.active_user(OTHER)["access_token"]
    options = register_options(client, attacker).json
    stolen_id = Authenticator().create(options, credential_id=victims_id)
    assert_problem(register(client, attacker, stolen_id), 409)
    assert passkey_count(app) == 1
    assert sign_in(client, victims_key).status_code == 200  # still the victim's


def test_a_malformed_credential_is_a_clear_4xx(client: FlaskClient, accounts: Accounts) -> None:
    token = accounts.active_user(EMAIL)["access_token"]
    options = register_options(client, token).json
    good = Authenticator().create(options)
    broken = {**good, "response": {**good["response"], "attestationObject": "AAAA"}}
    assert_problem(register(client, token, broken), 400)
    assert_problem(register(client, token, {"id": "x"}), 422)
    assert_problem(login(client, {"id": "!"}), 422)


# --- sign-in -----------------------------------------------------------------------------


def registered(client: FlaskClient, accounts: Accounts) -> tuple[str, Authenticator]:
    token = accounts.active_user(EMAIL)["access_token"]
    key = Authenticator()
    add_passkey(client, token, key)
    return token, key


def test_sign_in_from_another_origin_or_rp_id_is_refused(
    client: FlaskClient, accounts: Accounts
) -> None:
    _token, key = registered(client, accounts)
    refused(sign_in(client, key, origin=EVIL_ORIGIN))
    refused(sign_in(client, key, rp_id="cinema-login.example"))
    assert sign_in(client, key).status_code == 200


def test_a_signed_sign_in_replayed_is_refused(client: FlaskClient, accounts: Accounts) -> None:
    _token, key = registered(client, accounts)
    answer = key.get(login_options(client).json)
    assert login(client, answer).status_code == 200
    refused(login(client, answer))


def test_an_expired_sign_in_challenge_is_refused(client: FlaskClient, accounts: Accounts) -> None:
    _token, key = registered(client, accounts)
    options = login_options(client).json
    with time_machine.travel(utcnow() + timedelta(minutes=5, seconds=1), tick=False):
        refused(login(client, key.get(options)))


def test_a_registration_challenge_signs_no_one_in(client: FlaskClient, accounts: Accounts) -> None:
    token, key = registered(client, accounts)
    creation = register_options(client, token).json
    refused(login(client, key.get({"challenge": creation["challenge"], "rpId": "cinema.test"})))


def test_a_tampered_signature_is_refused(client: FlaskClient, accounts: Accounts) -> None:
    _token, key = registered(client, accounts)
    answer = key.get(login_options(client).json)
    signature = bytearray(base64url_to_bytes(answer["response"]["signature"]))
    signature[-1] ^= 0x01
    answer["response"]["signature"] = bytes_to_base64url(bytes(signature))
    refused(login(client, answer))


def test_sign_in_without_user_verification_is_refused(
    client: FlaskClient, accounts: Accounts
) -> None:
    _token, key = registered(client, accounts)
    refused(sign_in(client, key, flags=UP))


def test_a_counter_gone_backwards_refuses_and_is_recorded(
    client: FlaskClient, accounts: Accounts
) -> None:
    token, key = registered(client, accounts)
    assert sign_in(client, key, counter=5).status_code == 200
    refused(sign_in(client, key, counter=5))  # a clone that did not count the last use
    refused(sign_in(client, key, counter=3))
    assert events(client, token)[:2] == ["passkey_clone_suspected"] * 2
    assert sign_in(client, key, counter=6).status_code == 200


def test_an_unknown_credential_and_a_bad_signature_read_alike(
    client: FlaskClient, accounts: Accounts
) -> None:
    _token, key = registered(client, accounts)
    stranger = Authenticator()
    stranger.create({"rp": {"id": "cinema.test"}, "user": {"id": "AAAA"}, "challenge": "AA"})
    unknown = refused(sign_in(client, stranger))
    tampered = key.get(login_options(client).json)
    tampered["response"]["signature"] = tampered["response"]["signature"][::-1]
    assert refused(login(client, tampered)) == unknown


def test_another_users_credential_id_with_the_attackers_key_is_refused(
    client: FlaskClient, accounts: Accounts
) -> None:
    _token, victims_key = registered(client, accounts)
    victims_id = next(iter(victims_key.credentials))
    attacker = Authenticator()
    attacker.create(
        {"rp": {"id": "cinema.test"}, "user": {"id": bytes_to_base64url(b"x")}, "challenge": "A"},
        credential_id=victims_id,
    )
    forged = attacker.get(login_options(client).json)
    forged["response"]["userHandle"] = bytes_to_base64url(
        victims_key.credentials[victims_id].user_handle
    )
    refused(login(client, forged))


def test_a_user_handle_naming_another_account_is_refused(
    client: FlaskClient, accounts: Accounts
) -> None:
    _token, key = registered(client, accounts)
    other = accounts.active_user(OTHER)["access_token"]
    others_handle = base64url_to_bytes(register_options(client, other).json["user"]["id"])
    refused(sign_in(client, key, user_handle=others_handle))
    assert sign_in(client, key).status_code == 200
