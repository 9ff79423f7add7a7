"""Both passkey ceremonies end to end with a software authenticator, on SQLite and
PostgreSQL: the options as the contract describes them, register, sign in, what is kept."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from webauthn.helpers import bytes_to_base64url

from app.core.db import db
from app.identity.models import User
from tests.passkeys.authenticator import RP_ID, Authenticator
from tests.passkeys.flows import (
    add_passkey,
    login_options,
    register,
    register_options,
    sign_in,
)
from tests.support.http import Accounts, assert_401, assert_problem, bearer, me
from tests.support.mail import Mailbox

EMAIL = "viewer@example.com"


def events(client: FlaskClient, token: str) -> list[str]:
    response = client.get("/auth/me/events", headers=bearer(token))
    return [event["type"] for event in response.json["items"]]


def test_creation_options_are_the_contracts(client: FlaskClient, accounts: Accounts) -> None:
    token = accounts.active_user(EMAIL)["access_token"]
    phone = Authenticator()
    first = add_passkey(client, token, phone)
    options = register_options(client, token).json
    assert options["rp"] == {"id": RP_ID, "name": "Cinema"}
    assert set(options["user"]) == {"id", "name", "displayName"}
    assert options["user"]["name"] == EMAIL
    assert EMAIL.encode() not in options["user"]["id"].encode()  # an opaque handle
    assert len(options["challenge"]) >= 22  # at least 128 bits, base64url
    assert [p["alg"] for p in options["pubKeyCredParams"]] == [-8, -7, -257]
    assert options["timeout"] == 300000
    assert len(options["excludeCredentials"]) == 1
    assert options["authenticatorSelection"]["residentKey"] == "required"
    assert options["authenticatorSelection"]["userVerification"] == "required"
    assert options["attestation"] == "none"
    assert first["name"] == "Phone"


def test_register_then_sign_in_starts_a_login(
    app: Flask, client: FlaskClient, accounts: Accounts, mailbox: Mailbox
) -> None:
    token = accounts.active_user(EMAIL)["access_token"]
    phone = Authenticator()
    passkey = add_passkey(client, token, phone, name="My phone")
    assert set(passkey) == {"id", "name", "created_at", "last_used_at", "backed_up", "transports"}
    assert passkey["last_used_at"] is None and passkey["transports"] == ["internal"]
    assert '"My phone" was added' in mailbox.text(mailbox.to(EMAIL)[-1])

    response = sign_in(client, phone)
    assert response.status_code == 200, response.json
    assert set(response.json) >= {"access_token", "refresh_token"}
    assert me(client, response.json["access_token"]).json["email"] == EMAIL
    listed = client.get("/auth/passkeys", headers=bearer(token)).json["items"]
    assert listed[0]["last_used_at"] is not None
    assert events(client, token)[:2] == ["login_succeeded", "passkey_added"]
    with app.app_context():
        assert db.session.scalar(sa.text("SELECT sign_count FROM passkeys")) == 1


def test_the_caller_existing_passkeys_are_excluded(client: FlaskClient, accounts: Accounts) -> None:
    token = accounts.active_user(EMAIL)["access_token"]
    phone = Authenticator()
    add_passkey(client, token, phone)
    excluded = register_options(client, token).json["excludeCredentials"]
    assert excluded == [
        {
            "id": bytes_to_base64url(next(iter(phone.credentials))),
            "type": "public-key",
            "transports": ["internal"],
        }
    ]


def test_request_options_are_for_discoverable_passkeys(client: FlaskClient) -> None:
    options = login_options(client)
    assert options.status_code == 200
    assert set(options.json) == {
        "challenge",
        "rpId",
        "timeout",
        "userVerification",
        "allowCredentials",
    }
    assert options.json["allowCredentials"] == []
    assert options.json["userVerification"] == "required"
    assert options.json["rpId"] == RP_ID
    assert login_options(client).json["challenge"] != options.json["challenge"]


def test_counters_that_stay_zero_are_fine(client: FlaskClient, accounts: Accounts) -> None:
    token = accounts.active_user(EMAIL)["access_token"]
    synced = Authenticator()
    add_passkey(client, token, synced)
    for _ in range(2):
        assert sign_in(client, synced, counter=0).status_code == 200


def test_a_credential_registered_twice_is_a_conflict(
    client: FlaskClient, accounts: Accounts
) -> None:
    token = accounts.active_user(EMAIL)["access_token"]
    phone = Authenticator()
    first = register_options(client, token).json
    taken = b"same-credential-id-0123456789abc"
    assert register(client, token, phone.create(first, credential_id=taken)).status_code == 201
    again = register_options(client, token).json
    response = register(client, token, phone.create(again, credential_id=taken))
    assert_problem(response, 409)
    assert len(client.get("/auth/passkeys", headers=bearer(token)).json["items"]) == 1


def test_an_account_not_active_gets_403(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    token = accounts.active_user(EMAIL)["access_token"]
    phone = Authenticator()
    add_passkey(client, token, phone)
    with app.app_context():
        db.session.execute(sa.update(User).values(is_active=False))
        db.session.commit()
    assert_problem(sign_in(client, phone), 403)
    with app.app_context():
        user = db.session.scalar(sa.select(User))
        user.deactivate()
        db.session.commit()
    body = assert_problem(sign_in(client, phone), 403)
    assert "deactivated" in body["detail"]


def test_the_options_need_a_caller(client: FlaskClient) -> None:
    assert_401(client.post("/auth/passkeys/register/options"))
    assert_401(client.get("/auth/passkeys"))
