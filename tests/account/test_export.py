"""GET /auth/me/export: everything the service holds on the caller, as a JSON attachment, and
nothing secret (GDPR's right of access)."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient

from app.core.db import utcnow
from tests.support.account import export_me, scalars_in, stored_secrets
from tests.support.http import PASSWORD, Accounts, assert_401, assert_problem, bearer, logout, me
from tests.support.http import refresh as refresh_tokens
from tests.support.images import image_bytes
from tests.support.mail import Mailbox

EMAIL = "curious@example.com"
PROFILE = {"first_name": "Ada", "last_name": "Lovelace", "gender": "WOMAN", "info": "Noir."}


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


@pytest.fixture
def handed_out(
    client: FlaskClient, accounts: Accounts, mailbox: Mailbox
) -> Iterator[dict[str, Any]]:
    """A person with a profile and an avatar, three logins (one refreshed, one ended) and a
    reset link; yields every token and link secret they were handed, the live pair first.
    The refresh comes two minutes after the sign-in, on a travelled clock that the test
    keeps: a login's last use is recorded at most once a minute."""
    with time_machine.travel(utcnow(), tick=True) as clock:
        first = accounts.active_user(EMAIL)
        headers = bearer(first["access_token"])
        client.patch("/auth/me/profile", json=PROFILE, headers=headers)
        upload = {"avatar": (io.BytesIO(image_bytes("PNG")), "me.png", "image/png")}
        assert client.put("/auth/me/avatar", data=upload, headers=headers).status_code == 200
        clock.shift(timedelta(minutes=2))
        rotated = refresh_tokens(client, first["refresh_token"]).json
        ended = accounts.login(EMAIL)
        assert logout(client, ended["refresh_token"], ended["access_token"]).status_code == 204
        newest = accounts.login(EMAIL)
        client.post("/auth/password/forgot", json={"email": EMAIL})
        links = [
            link.split("token=", 1)[1]
            for message in mailbox.to(EMAIL)
            for link in re.findall(r"https?://\S+token=\S+", mailbox.text(message))
        ]
        assert len(links) == 2  # the activation link (spent) and the reset link (pending)
        yield {"pairs": [newest, rotated, first, ended], "links": links}


def test_the_export_is_a_json_attachment_of_the_account(
    client: FlaskClient, handed_out: dict[str, Any]
) -> None:
    token = handed_out["pairs"][0]["access_token"]
    caller = me(client, token).json

    response = export_me(client, token)

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="cinema-account-{caller["id"]}.json"'
    )
    assert "no-store" in response.headers["Cache-Control"]
    data = response.json
    assert set(data) == {
        "exported_at",
        "user",
        "sessions",
        "security_events",
        "passkeys",
        "identities",
    }
    assert data["user"] == caller  # the user object with its profile and avatar URL
    assert data["user"]["profile"]["first_name"] == "Ada"
    assert data["user"]["profile"]["avatar_url"].startswith("http://cinema.test/media/avatars/")
    assert data["passkeys"] == data["identities"] == []


def test_the_export_lists_the_live_logins_newest_first(
    client: FlaskClient, handed_out: dict[str, Any]
) -> None:
    sessions = export_me(client, handed_out["pairs"][0]["access_token"]).json["sessions"]

    assert len(sessions) == 2  # the newest login and the refreshed one; not the ended one
    newest, refreshed = sessions
    assert at(newest["created_at"]) > at(refreshed["created_at"])
    assert at(refreshed["last_used_at"]) > at(refreshed["created_at"])  # the refresh
    assert newest["last_used_at"] == newest["created_at"]
    for session in sessions:
        assert at(session["expires_at"]) > at(session["last_used_at"])
        assert set(session) == {"created_at", "last_used_at", "expires_at", "user_agent", "ip"}


def test_the_export_holds_every_security_event_newest_first(
    client: FlaskClient, handed_out: dict[str, Any]
) -> None:
    token = handed_out["pairs"][0]["access_token"]
    events = export_me(client, token).json["security_events"]

    page = client.get("/auth/me/events?per_page=100", headers=bearer(token)).json
    assert events == page["items"]
    assert len(events) == page["total"] == 6
    assert [e["type"] for e in events] == [
        "login_succeeded",
        "logged_out",
        "login_succeeded",
        "login_succeeded",
        "activated",
        "registered",
    ]


def test_nothing_secret_is_in_the_export(
    app: Flask, client: FlaskClient, handed_out: dict[str, Any]
) -> None:
    """Walk the exported document and every secret stored for the account (hashes, encrypted
    payloads, the pseudonym of its events, login ids) and handed to it (tokens, links)."""
    response = export_me(client, handed_out["pairs"][0]["access_token"])
    text = response.get_data(as_text=True)
    values = scalars_in(json.loads(text))
    handed = [
        pair[kind] for pair in handed_out["pairs"] for kind in ("access_token", "refresh_token")
    ]
    secrets = {PASSWORD, *handed, *handed_out["links"], *stored_secrets(app)}
    assert len(secrets) > 15

    for secret in secrets:
        assert secret not in text
        assert all(secret not in value for value in values)


def test_the_export_needs_an_access_token(client: FlaskClient) -> None:
    assert_401(client.get("/auth/me/export"))


def test_the_export_is_limited_per_caller(app_factory: Any, mailbox: Mailbox) -> None:
    client = app_factory(RATELIMIT_ENABLED=True).test_client()
    token = Accounts(client, mailbox).active_user(EMAIL)["access_token"]
    for _ in range(5):
        assert export_me(client, token).status_code == 200
    assert_problem(export_me(client, token), 429)


def test_the_openapi_document_describes_the_export(client: FlaskClient) -> None:
    operation = client.get("/openapi.json").json["paths"]["/auth/me/export"]["get"]
    assert operation["security"] == [{"bearerAuth": []}]
    ok = operation["responses"]["200"]
    assert ok["headers"]["Content-Disposition"]["required"] is True
    assert ok["content"]["application/json"]["schema"]["$ref"].endswith("/AccountExport")
    assert {"401", "429"} <= set(operation["responses"])
