"""DELETE /auth/me: what goes (the user, profile, tokens, logins, unsent emails), what stays
(pseudonymised security events), and the address, free to register again."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.core.db import db
from app.events.models import SecurityEvent
from app.events.service import subject_of
from tests.support.account import delete_me, export_me, rows_of
from tests.support.apps import stored_values
from tests.support.http import Accounts, assert_401, assert_problem, bearer, me, refresh
from tests.support.mail import Mailbox

EMAIL = "leaving@example.com"
PROFILE = {"first_name": "Grace", "last_name": "Hopper", "info": "Prefers silent films."}


@dataclass
class Leaving:
    """A person about to delete their account: a profile, two logins, a reset link."""

    id: int
    first: dict[str, Any]
    second: dict[str, Any]


@pytest.fixture
def leaving(client: FlaskClient, accounts: Accounts, mailbox: Mailbox) -> Leaving:
    first = accounts.active_user(EMAIL)
    client.patch("/auth/me/profile", json=PROFILE, headers=bearer(first["access_token"]))
    second = accounts.login(EMAIL)
    assert client.post("/auth/password/forgot", json={"email": EMAIL}).status_code == 202
    assert mailbox.last_token(EMAIL)  # the reset link went out
    return Leaving(me(client, first["access_token"]).json["id"], first, second)


def test_everything_of_the_account_goes_in_one_request(
    app: Flask, client: FlaskClient, leaving: Leaving
) -> None:
    before = rows_of(app, leaving.id)
    assert before["users"] == before["user_profiles"] == before["password_reset_tokens"] == 1
    assert before["sessions"] == 2  # two logins, each holding its refresh token
    assert before["email_outbox"] == 2  # the activation and reset emails
    assert before["security_events"] == 4

    response = delete_me(client, leaving.first["access_token"])

    assert response.status_code == 204, response.json
    assert response.data == b""
    assert "Content-Type" not in response.headers
    assert rows_of(app, leaving.id) == dict.fromkeys(before, 0)


def test_only_pseudonymised_security_events_stay(
    app: Flask, client: FlaskClient, leaving: Leaving
) -> None:
    assert delete_me(client, leaving.first["access_token"]).status_code == 204
    with app.app_context():
        events = db.session.scalars(sa.select(SecurityEvent).order_by(SecurityEvent.id)).all()
        subject = subject_of(leaving.id)
    assert [e.type for e in events] == [
        "registered",
        "activated",
        "login_succeeded",
        "login_succeeded",
        "deleted",
    ]
    assert all(e.user_id is None and e.subject == subject for e in events)
    # Nothing stored anywhere says who the person was.
    for value in stored_values(app):
        for personal in (EMAIL, *PROFILE.values()):
            assert personal not in value


def test_every_token_of_the_account_fails_at_once(client: FlaskClient, leaving: Leaving) -> None:
    assert delete_me(client, leaving.first["access_token"]).status_code == 204
    for pair in (leaving.first, leaving.second):
        assert_401(me(client, pair["access_token"]))
        assert_401(export_me(client, pair["access_token"]))
        assert_401(delete_me(client, pair["access_token"]))
        assert_401(refresh(client, pair["refresh_token"]))
    login = client.post("/auth/login", json={"email": EMAIL, "password": "whatever it was"})
    assert_401(login)


def test_the_reset_link_sent_before_is_dead(
    client: FlaskClient, leaving: Leaving, mailbox: Mailbox
) -> None:
    token = mailbox.last_token(EMAIL)
    assert delete_me(client, leaving.first["access_token"]).status_code == 204
    reset = client.post(
        "/auth/password/reset", json={"token": token, "new_password": "quartz heron lantern"}
    )
    assert_problem(reset, 400)


def test_the_address_can_register_again_as_a_new_account(
    client: FlaskClient, accounts: Accounts, leaving: Leaving
) -> None:
    assert delete_me(client, leaving.first["access_token"]).status_code == 204

    tokens = accounts.active_user(EMAIL)

    again = me(client, tokens["access_token"]).json
    assert again["email"] == EMAIL
    assert again["profile"] == dict.fromkeys(
        ("first_name", "last_name", "gender", "date_of_birth", "info", "avatar_url")
    )
    history = client.get("/auth/me/events", headers=bearer(tokens["access_token"])).json
    assert [e["type"] for e in history["items"]] == ["login_succeeded", "activated", "registered"]


def test_deletion_needs_an_access_token_and_a_password_body(
    client: FlaskClient, leaving: Leaving
) -> None:
    headers = bearer(leaving.first["access_token"])
    assert_401(client.delete("/auth/me", json={"password": "x"}))
    assert_problem(client.delete("/auth/me", headers=headers), 400)  # no body
    assert_problem(client.delete("/auth/me", json={}, headers=headers), 422)
    assert_problem(client.delete("/auth/me", json={"password": ""}, headers=headers), 422)
    assert_problem(client.delete("/auth/me", data="password=x", headers=headers), 415)
    assert me(client, leaving.first["access_token"]).status_code == 200


def test_the_openapi_document_describes_deletion(client: FlaskClient) -> None:
    operation = client.get("/openapi.json").json["paths"]["/auth/me"]["delete"]
    assert operation["security"] == [{"bearerAuth": []}]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("/AccountDeletion")
    assert {"204", "400", "401", "409", "422", "429"} <= set(operation["responses"])
