"""Security events: what a person sees of their account's history, what an admin sees, and
what the service keeps (same transaction as the change, nothing for unknown emails, nothing
secret, pseudonymised after deletion, gone after retention)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
import time_machine
from flask import Flask
from flask.testing import FlaskClient

from app.core.db import db, utcnow
from app.events.models import SecurityEvent
from app.events.service import subject_of
from app.identity.models import User
from app.periodic.cleanup import delete_expired_tokens
from tests.support.apps import stored_values
from tests.support.http import (
    PASSWORD,
    Accounts,
    assert_problem,
    bearer,
    login,
    logout,
    past_the_refresh_grace,
)

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) CinemaTest/1.0"
NEW_PASSWORD = "amber lantern glacier whistle"


def events(client: FlaskClient, access_token: str, **query: Any) -> dict[str, Any]:
    response = client.get("/auth/me/events", headers=bearer(access_token), query_string=query)
    assert response.status_code == 200, response.json
    body: dict[str, Any] = response.json
    return body


def types(page: dict[str, Any]) -> list[str]:
    return [item["type"] for item in page["items"]]


def user_id(app: Flask, email: str) -> int:
    with app.app_context():
        found = db.session.scalar(sa.select(User.id).where(User.email == email))
    assert found is not None
    return int(found)


def stored_events(app: Flask) -> list[SecurityEvent]:
    with app.app_context():
        rows = list(db.session.scalars(sa.select(SecurityEvent).order_by(SecurityEvent.id)))
        db.session.expunge_all()
    return rows


def test_a_person_sees_their_accounts_history_newest_first(
    client: FlaskClient, accounts: Accounts
) -> None:
    client.environ_base["HTTP_USER_AGENT"] = BROWSER
    accounts.register("ada@example.com")
    accounts.activate("ada@example.com")
    assert login(client, "ada@example.com", "not the password at all").status_code == 401
    pair = accounts.login("ada@example.com")
    changed = client.post(
        "/auth/password/change",
        json={"old_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(pair["access_token"]),
    )
    assert changed.status_code == 204
    pair = accounts.login("ada@example.com", NEW_PASSWORD)

    page = events(client, pair["access_token"])

    assert types(page) == [
        "login_succeeded",
        "password_changed",
        "login_succeeded",
        "login_failed",
        "activated",
        "registered",
    ]
    assert page["total"] == 6 and page["page"] == 1 and page["per_page"] == 20
    newest = page["items"][0]
    assert newest["ip"] == "127.0.0.1"
    assert newest["user_agent"] == BROWSER
    assert newest["actor_id"] is None
    assert newest["created_at"].endswith("+00:00")
    assert set(newest) == {"type", "created_at", "ip", "user_agent", "actor_id"}


def test_pages_go_back_in_time(client: FlaskClient, accounts: Accounts) -> None:
    accounts.active_user("pages@example.com")
    token = accounts.login("pages@example.com")["access_token"]
    first = events(client, token, per_page=2)
    second = events(client, token, per_page=2, page=2)
    assert types(first) == ["login_succeeded", "login_succeeded"]
    assert types(second) == ["activated", "registered"]
    assert first["total"] == second["total"] == 4
    too_many = client.get("/auth/me/events", headers=bearer(token), query_string={"per_page": 101})
    assert "per_page" in assert_problem(too_many, 422)["errors"]
    unknown = client.get("/auth/me/events", headers=bearer(token), query_string={"type": "x"})
    assert "type" in assert_problem(unknown, 422)["errors"]


def test_logout_and_a_replayed_refresh_token_are_recorded(
    client: FlaskClient, accounts: Accounts
) -> None:
    first = accounts.active_user("replay@example.com")
    assert (
        client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]}).status_code
        == 200
    )
    with past_the_refresh_grace():
        replayed = client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert replayed.status_code == 401
    second = accounts.login("replay@example.com")
    assert logout(client, second["refresh_token"], second["access_token"]).status_code == 204

    third = accounts.login("replay@example.com")
    assert types(events(client, third["access_token"]))[:4] == [
        "login_succeeded",
        "logged_out",
        "login_succeeded",
        "refresh_reuse_detected",
    ]


def test_an_unknown_email_leaves_no_event(app: Flask, client: FlaskClient) -> None:
    for _ in range(3):
        assert login(client, "nobody@example.com").status_code == 401
    assert stored_events(app) == []


def test_a_change_that_fails_records_nothing(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    pair = accounts.active_user("weak@example.com")
    before = len(stored_events(app))
    weak = client.post(
        "/auth/password/change",
        json={"old_password": PASSWORD, "new_password": "password"},
        headers=bearer(pair["access_token"]),
    )
    assert weak.status_code == 422
    assert len(stored_events(app)) == before


def test_admin_actions_name_the_admin_and_only_admins_read_anyones_events(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    admin = accounts.active_user("boss@example.com")
    accounts.set_group(app, "boss@example.com", "ADMIN")
    moderator = accounts.active_user("mod@example.com")
    accounts.set_group(app, "mod@example.com", "MODERATOR")
    accounts.active_user("target@example.com")
    target, boss = user_id(app, "target@example.com"), user_id(app, "boss@example.com")
    as_admin = bearer(admin["access_token"])
    for action, body in (
        ("deactivate", None),
        ("activate", None),
        ("change-group", {"group": "MODERATOR"}),
    ):
        answer = client.post(f"/admin/users/{target}/{action}", json=body, headers=as_admin)
        assert answer.status_code == 200, answer.json

    page = client.get(f"/admin/users/{target}/events", headers=as_admin)

    assert page.status_code == 200
    newest = page.json["items"][:3]
    assert [e["type"] for e in newest] == ["group_changed", "activated", "deactivated"]
    assert {e["actor_id"] for e in newest} == {boss}
    for other in (moderator["access_token"], accounts.login("target@example.com")["access_token"]):
        assert_problem(client.get(f"/admin/users/{target}/events", headers=bearer(other)), 403)
    assert_problem(client.get("/admin/users/999999/events", headers=as_admin), 404)


def test_events_hold_nothing_secret(app: Flask, client: FlaskClient, accounts: Accounts) -> None:
    pair = accounts.active_user("secret@example.com")
    logout(client, pair["refresh_token"], pair["access_token"])
    rows = stored_events(app)
    assert rows
    stored = " ".join(
        " ".join(str(v) for v in (r.type, r.ip, r.user_agent, r.subject, r.actor_id)) for r in rows
    )
    for secret in (PASSWORD, pair["refresh_token"], pair["access_token"], "secret@example.com"):
        assert secret not in stored
    for value in stored_values(app):
        assert PASSWORD not in value


def test_a_deleted_users_events_stay_pseudonymised(app: Flask, accounts: Accounts) -> None:
    accounts.active_user("gone@example.com")
    gone = user_id(app, "gone@example.com")
    with app.app_context():
        db.session.execute(sa.delete(User).where(User.id == gone))
        db.session.commit()
        subject = subject_of(gone)
    rows = stored_events(app)
    assert [r.type for r in rows] == ["registered", "activated", "login_succeeded"]
    assert all(r.user_id is None and r.subject == subject for r in rows)
    assert subject != str(gone) and len(subject) == 64


def test_events_are_kept_for_the_retention_period_then_deleted(
    app: Flask, accounts: Accounts
) -> None:
    start = utcnow()
    with time_machine.travel(start - timedelta(days=91), tick=False):
        accounts.register("old@example.com")
    with time_machine.travel(start - timedelta(days=89), tick=False):
        accounts.register("newer@example.com")
    with app.app_context():
        counts = delete_expired_tokens()
    assert counts["security_events"] == 1
    kept = stored_events(app)
    assert [r.user_id for r in kept] == [user_id(app, "newer@example.com")]
