"""Ending sessions (checklist item 27): DELETE /auth/sessions/{id} ends one login of the
caller, DELETE /auth/sessions every one but the current; the tokens of an ended login stop at
once; another person's session, an ended one or no session at all is the same 404."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient

from app.core.db import utcnow
from tests.support.http import Accounts, assert_401, assert_problem, bearer, refresh
from tests.support.sessions import (
    assert_ended,
    current_session,
    end_other_sessions,
    end_session,
    event_types,
    list_sessions,
    stored_sessions,
    works,
)


def test_ending_a_session_stops_its_tokens_at_once_and_is_recorded(
    client: FlaskClient, accounts: Accounts
) -> None:
    phone = accounts.active_user("ender@example.com")
    laptop = accounts.login("ender@example.com")
    phone_id = current_session(client, phone["access_token"])["id"]
    laptop_id = current_session(client, laptop["access_token"])["id"]
    response = end_session(client, laptop["access_token"], phone_id)
    assert response.status_code == 204
    assert response.get_data() == b""
    assert_ended(client, phone)
    assert works(client, laptop)
    assert [item["id"] for item in list_sessions(client, laptop["access_token"])] == [laptop_id]
    assert event_types(client, laptop["access_token"])[0] == "session_ended"


def test_ending_the_current_session_logs_it_out(client: FlaskClient, accounts: Accounts) -> None:
    pair = accounts.active_user("self@example.com")
    own_id = current_session(client, pair["access_token"])["id"]
    assert end_session(client, pair["access_token"], own_id).status_code == 204
    assert_ended(client, pair)


def test_another_persons_session_is_404_and_stays_alive(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    """The attack: a signed-in person ends sessions by id, theirs or not."""
    victim = accounts.active_user("victim@example.com")
    attacker = accounts.active_user("attacker@example.com")
    victim_id = current_session(client, victim["access_token"])["id"]
    before = [(row.id, row.ended_at) for row in stored_sessions(app)]
    body = assert_problem(end_session(client, attacker["access_token"], victim_id), 404)
    assert str(victim_id) not in body["detail"]
    # The same answer as for an id that is no session at all.
    unknown = assert_problem(end_session(client, attacker["access_token"], uuid.uuid4().hex), 404)
    assert unknown == body
    assert works(client, victim)
    assert refresh(client, victim["refresh_token"]).status_code == 200
    assert [(row.id, row.ended_at) for row in stored_sessions(app)] == before
    assert "session_ended" not in event_types(client, attacker["access_token"])


def test_an_ended_session_is_404(client: FlaskClient, accounts: Accounts) -> None:
    phone = accounts.active_user("twice@example.com")
    laptop = accounts.login("twice@example.com")
    phone_id = current_session(client, phone["access_token"])["id"]
    assert end_session(client, laptop["access_token"], phone_id).status_code == 204
    assert_problem(end_session(client, laptop["access_token"], phone_id), 404)
    assert event_types(client, laptop["access_token"]).count("session_ended") == 1


def test_an_expired_session_is_404(client: FlaskClient, accounts: Accounts) -> None:
    old = accounts.active_user("expired@example.com")
    old_id = current_session(client, old["access_token"])["id"]
    with time_machine.travel(utcnow() + timedelta(days=7, seconds=1)):
        new = accounts.login("expired@example.com")
        assert_problem(end_session(client, new["access_token"], old_id), 404)


@pytest.mark.parametrize(
    "shape", [str.upper, lambda id_: id_[:-1], lambda id_: id_ + "0", lambda id_: id_[:-1] + "%00"]
)
def test_what_is_not_a_session_id_is_404(
    client: FlaskClient, accounts: Accounts, shape: Callable[[str], str]
) -> None:
    """The caller's own session id, spelt otherwise: no session (32 lower-case hex digits are
    a session id), and never a query with a NUL in it."""
    pair = accounts.active_user("odd@example.com")
    own_id = current_session(client, pair["access_token"])["id"]
    for session_id in (shape(own_id), "1", "-1", "abc"):
        assert_problem(end_session(client, pair["access_token"], session_id), 404)
    assert works(client, pair)


def test_the_session_endpoints_need_an_access_token(
    client: FlaskClient, accounts: Accounts
) -> None:
    pair = accounts.active_user("anon@example.com")
    own_id = current_session(client, pair["access_token"])["id"]
    assert_401(client.get("/auth/sessions"))
    assert_401(client.delete(f"/auth/sessions/{own_id}"))
    assert_401(client.delete("/auth/sessions"))
    # A refresh token is no access token.
    assert_401(client.delete("/auth/sessions", headers=bearer(pair["refresh_token"])))
    assert works(client, pair)


# --- ending all the others -------------------------------------------------------------------


def test_ending_the_other_sessions_keeps_the_current_one(
    client: FlaskClient, accounts: Accounts
) -> None:
    here = accounts.active_user("everywhere@example.com")
    others = [accounts.login("everywhere@example.com") for _ in range(3)]
    stranger = accounts.active_user("bystander@example.com")
    response = end_other_sessions(client, here["access_token"])
    assert response.status_code == 204
    for pair in others:
        assert_ended(client, pair)
    assert works(client, here)
    assert works(client, stranger)
    (item,) = list_sessions(client, here["access_token"])
    assert item["current"] is True
    # One event says it; with nothing left to end, a second call records nothing.
    assert end_other_sessions(client, here["access_token"]).status_code == 204
    assert event_types(client, here["access_token"]).count("session_ended") == 1
    assert refresh(client, here["refresh_token"]).status_code == 200
