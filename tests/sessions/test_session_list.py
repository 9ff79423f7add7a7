"""A person's sessions (logins) as GET /auth/sessions lists them: where each came from,
which is the current one, when it was last used, and the document that describes the paths."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import time_machine
from flask import Flask
from flask.testing import FlaskClient

from app.core.db import utcnow
from app.periodic.cleanup import delete_expired_tokens
from tests.support.http import Accounts, assert_401, claims, me, refresh
from tests.support.mail import Mailbox
from tests.support.sessions import (
    SESSION_KEYS,
    current_session,
    list_sessions,
    login_as,
    stored_sessions,
    works,
)

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) CinemaTest/1.0"


def test_a_login_is_listed_with_the_client_and_address_it_came_from(
    app_factory: Callable[..., Flask], mailbox: Mailbox
) -> None:
    app = app_factory(TRUSTED_PROXIES=1)
    client = app.test_client()
    accounts = Accounts(client, mailbox)
    accounts.register("seen@example.com")
    accounts.activate("seen@example.com")
    before = utcnow().replace(microsecond=0)
    pair = login_as(
        client, "seen@example.com", **{"User-Agent": BROWSER, "X-Forwarded-For": "203.0.113.9"}
    )
    (item,) = list_sessions(client, pair["access_token"])
    assert item["current"] is True
    assert item["id"] == claims(pair["access_token"])["fam"]  # the login its tokens name
    assert item["user_agent"] == BROWSER
    assert item["ip"] == "203.0.113.9"  # the client, as the trusted proxy saw it
    created = datetime.fromisoformat(item["created_at"])
    assert created.utcoffset() == timedelta(0)
    assert before <= created <= utcnow()
    assert item["last_used_at"] == item["created_at"]
    # The login's absolute end, which is also its refresh tokens'.
    assert datetime.fromisoformat(item["expires_at"]) == created + timedelta(days=7)


def test_a_long_user_agent_is_cut_and_an_unproxied_forwarded_address_is_not_believed(
    client: FlaskClient, accounts: Accounts
) -> None:
    accounts.register("long@example.com")
    accounts.activate("long@example.com")
    pair = login_as(
        client, "long@example.com", **{"User-Agent": "A" * 5000, "X-Forwarded-For": "192.0.2.1"}
    )
    (item,) = list_sessions(client, pair["access_token"])
    assert item["user_agent"] == "A" * 255
    assert item["ip"] == "127.0.0.1"  # no trusted proxy: X-Forwarded-For is anyone's text


def test_current_marks_the_login_of_the_presented_access_token(
    client: FlaskClient, accounts: Accounts
) -> None:
    phone = accounts.active_user("two@example.com")
    laptop = accounts.login("two@example.com")
    from_phone = list_sessions(client, phone["access_token"])
    from_laptop = list_sessions(client, laptop["access_token"])
    assert len(from_phone) == len(from_laptop) == 2
    assert {item["id"] for item in from_phone} == {item["id"] for item in from_laptop}
    phone_id = current_session(client, phone["access_token"])["id"]
    laptop_id = current_session(client, laptop["access_token"])["id"]
    assert phone_id != laptop_id
    # Most recently used first: the laptop logged in last.
    assert [item["id"] for item in from_phone] == [laptop_id, phone_id]


def test_a_person_sees_only_their_own_sessions(client: FlaskClient, accounts: Accounts) -> None:
    mine = accounts.active_user("own@example.com")
    accounts.active_user("stranger@example.com")
    assert len(list_sessions(client, mine["access_token"])) == 1


def test_a_refresh_continues_the_same_session(client: FlaskClient, accounts: Accounts) -> None:
    first = accounts.active_user("rotating@example.com")
    before = current_session(client, first["access_token"])
    second = refresh(client, first["refresh_token"]).json
    (after,) = list_sessions(client, second["access_token"])
    assert after["id"] == before["id"] and after["current"] is True
    assert after["created_at"] == before["created_at"]
    assert after["expires_at"] == before["expires_at"]


def test_last_used_at_moves_on_refresh_at_most_once_a_minute(
    client: FlaskClient, accounts: Accounts
) -> None:
    start = utcnow()
    with time_machine.travel(start, tick=False):
        pair = accounts.active_user("busy@example.com")
        logged_in = current_session(client, pair["access_token"])["last_used_at"]

    def refresh_at(seconds: float) -> str:
        nonlocal pair
        with time_machine.travel(start + timedelta(seconds=seconds), tick=False):
            pair = refresh(client, pair["refresh_token"]).json
            return str(current_session(client, pair["access_token"])["last_used_at"])

    assert refresh_at(30) == logged_in
    assert refresh_at(59) == logged_in
    assert datetime.fromisoformat(refresh_at(61)) == start + timedelta(seconds=61)
    assert datetime.fromisoformat(refresh_at(100)) == start + timedelta(seconds=61)
    assert datetime.fromisoformat(refresh_at(125)) == start + timedelta(seconds=125)
    # Only a refresh is a use: a request with the access token writes nothing.
    with time_machine.travel(start + timedelta(seconds=300), tick=False):
        assert works(client, pair)
        last = current_session(client, pair["access_token"])["last_used_at"]
        assert datetime.fromisoformat(last) == start + timedelta(seconds=125)


def test_expired_sessions_are_not_listed_and_the_cleanup_deletes_their_records(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    old = accounts.active_user("week@example.com")
    with time_machine.travel(utcnow() + timedelta(days=7, seconds=1)):
        assert_401(me(client, old["access_token"]))
        new = accounts.login("week@example.com")
        (item,) = list_sessions(client, new["access_token"])
        assert item["current"] is True
        with app.app_context():
            assert delete_expired_tokens()["sessions"] == 1
    assert [row.family_id for row in stored_sessions(app)] == [item["id"]]


# --- the document ----------------------------------------------------------------------------


def test_the_openapi_document_describes_the_session_paths(client: FlaskClient) -> None:
    document = client.get("/openapi.json").json
    listing = document["paths"]["/auth/sessions"]["get"]
    assert listing["security"] == [{"bearerAuth": []}]
    schema_ref = listing["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    page = document["components"]["schemas"][schema_ref.rsplit("/", 1)[1]]
    assert set(page["properties"]) == {"items"}
    item = document["components"]["schemas"]["Session"]
    assert set(item["required"]) == set(item["properties"]) == SESSION_KEYS
    assert item["properties"]["id"]["type"] == "string"
    assert {"200", "401"} <= set(listing["responses"])
    (parameter,) = document["paths"]["/auth/sessions/{session_id}"]["parameters"]
    assert parameter["schema"]["pattern"] == "^[0-9a-f]{32}$"
    one = document["paths"]["/auth/sessions/{session_id}"]["delete"]
    assert {"204", "401", "404"} <= set(one["responses"])
    others = document["paths"]["/auth/sessions"]["delete"]
    assert {"204", "401"} <= set(others["responses"])
    for operation in (one, others):
        assert operation["security"] == [{"bearerAuth": []}]
        assert "content" not in operation["responses"]["204"]
