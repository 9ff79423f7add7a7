"""Every other way a login ends ends its record too: logout, a replayed refresh token, a
password change or reset, a deactivation (the same `end_logins` as DELETE /auth/sessions)."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from tests.support.http import (
    PASSWORD,
    Accounts,
    assert_401,
    bearer,
    claims,
    logout,
    me,
    past_the_refresh_grace,
    refresh,
)
from tests.support.mail import Mailbox
from tests.support.sessions import list_sessions, stored_sessions, works

NEW_PASSWORD = "amber lantern glacier whistle"


def ended_families(app: Flask) -> set[str]:
    return {row.family_id for row in stored_sessions(app) if row.ended_at is not None}


def test_logout_and_a_replayed_refresh_token_end_the_record(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    leaving = accounts.active_user("records@example.com")
    replayed = accounts.login("records@example.com")
    staying = accounts.login("records@example.com")
    assert logout(client, leaving["refresh_token"], leaving["access_token"]).status_code == 204
    refresh(client, replayed["refresh_token"])
    with past_the_refresh_grace():
        assert_401(refresh(client, replayed["refresh_token"]))
    assert ended_families(app) == {
        claims(leaving["access_token"])["fam"],
        claims(replayed["access_token"])["fam"],
    }
    assert len(list_sessions(client, staying["access_token"])) == 1


def test_a_password_change_or_reset_ends_every_record(
    app: Flask, client: FlaskClient, accounts: Accounts, mailbox: Mailbox
) -> None:
    first = accounts.active_user("changer@example.com")
    second = accounts.login("changer@example.com")
    changed = client.post(
        "/auth/password/change",
        json={"old_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(first["access_token"]),
    )
    assert changed.status_code == 204
    assert len(ended_families(app)) == 2
    third = accounts.login("changer@example.com", NEW_PASSWORD)
    forgot = client.post("/auth/password/forgot", json={"email": "changer@example.com"})
    assert forgot.status_code == 202
    reset = client.post(
        "/auth/password/reset",
        json={"token": mailbox.last_token("changer@example.com"), "new_password": PASSWORD},
    )
    assert reset.status_code == 204
    assert len(ended_families(app)) == 3
    for pair in (first, second, third):
        assert_401(me(client, pair["access_token"]))


def test_deactivation_ends_every_record(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    admin = accounts.active_user("boss@example.com")
    accounts.set_group(app, "boss@example.com", "ADMIN")
    user = accounts.active_user("benched@example.com")
    accounts.login("benched@example.com")
    user_id = me(client, user["access_token"]).json["id"]
    deactivated = client.post(
        f"/admin/users/{user_id}/deactivate", headers=bearer(admin["access_token"])
    )
    assert deactivated.status_code == 200
    records = [row for row in stored_sessions(app) if row.user_id == user_id]
    assert len(records) == 2 and all(row.ended_at for row in records)
    assert works(client, admin)
