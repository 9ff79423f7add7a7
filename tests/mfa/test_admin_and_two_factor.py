"""Admins and two-factor: the user list shows it and filters by it, an admin resets a
locked-out person's factor (event naming the admin, notice email, every login ended), and
ADMIN_MFA_REQUIRED keeps admins without it out of the admin endpoints."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import time_machine
from flask import Flask
from flask.testing import FlaskClient

from tests.support.http import Accounts, assert_401, assert_problem, bearer, login, refresh
from tests.support.mail import Mailbox
from tests.support.mfa import Authenticator, enrol, mfa_token_of, second_step, sign_in, step_clock

BOSS, MOD, ADA, BO = "boss@example.com", "mod@example.com", "ada@example.com", "bo@example.com"


def member(app: Flask, accounts: Accounts, email: str, group: str = "USER") -> dict[str, Any]:
    pair = accounts.active_user(email)
    accounts.set_group(app, email, group)
    return pair


def enrolled(
    client: FlaskClient, accounts: Accounts, clock: time_machine.Traveller, email: str
) -> tuple[Authenticator, dict[str, Any]]:
    pair = accounts.active_user(email)
    authenticator, _codes = enrol(client, pair["access_token"], clock)
    return authenticator, pair


def user_id(client: FlaskClient, access_token: str) -> int:
    return int(client.get("/auth/me", headers=bearer(access_token)).json["id"])


def test_admins_see_two_factor_in_the_list_and_filter_by_it(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    boss = member(app, accounts, BOSS, "ADMIN")
    with step_clock() as clock:
        enrolled(client, accounts, clock, ADA)
        accounts.active_user(BO)

        def emails(**query: str) -> dict[str, bool]:
            response = client.get(
                "/admin/users", query_string=query, headers=bearer(boss["access_token"])
            )
            assert response.status_code == 200, response.json
            return {user["email"]: user["mfa_enabled"] for user in response.json["items"]}

        assert emails() == {BOSS: False, ADA: True, BO: False}
        assert emails(mfa_enabled="true") == {ADA: True}
        assert emails(mfa_enabled="false") == {BOSS: False, BO: False}
        refused = client.get("/admin/users?mfa_enabled=maybe", headers=bearer(boss["access_token"]))
        assert "mfa_enabled" in assert_problem(refused, 422)["errors"]


def test_an_admin_resets_a_locked_out_persons_factor(
    app: Flask, client: FlaskClient, accounts: Accounts, mailbox: Mailbox
) -> None:
    boss = member(app, accounts, BOSS, "ADMIN")
    with step_clock() as clock:
        authenticator, ada = enrolled(client, accounts, clock, ADA)
        later = sign_in(client, ADA, authenticator)
        ada_id = user_id(client, ada["access_token"])
        response = client.post(
            f"/admin/users/{ada_id}/mfa/reset", headers=bearer(boss["access_token"])
        )
        assert response.status_code == 200, response.json
        assert response.json["mfa_enabled"] is False and response.json["email"] == ADA
        for ended in (ada, later):  # whoever held the lost phone is signed out
            assert_401(refresh(client, ended["refresh_token"]))
        signed_in = login(client, ADA)
        assert set(signed_in.json) >= {"access_token", "refresh_token"}
        events = client.get(f"/admin/users/{ada_id}/events", headers=bearer(boss["access_token"]))
        reset = events.json["items"][1]
        assert reset["type"] == "mfa_reset"
        assert reset["actor_id"] == user_id(client, boss["access_token"])
        again = client.post(
            f"/admin/users/{ada_id}/mfa/reset", headers=bearer(boss["access_token"])
        )
        assert again.status_code == 200 and again.json["mfa_enabled"] is False
    notice = mailbox.to(ADA)[-1]
    assert notice["Subject"] == "An administrator turned off two-factor sign-in for your account"
    assert "If you did not ask for this" in mailbox.text(notice)
    assert len([m for m in mailbox.to(ADA) if m["Subject"] == notice["Subject"]]) == 1


def test_only_admins_reset_and_unknown_users_are_404(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    boss = member(app, accounts, BOSS, "ADMIN")
    moderator = member(app, accounts, MOD, "MODERATOR")
    ada = member(app, accounts, ADA)
    ada_id = user_id(client, ada["access_token"])
    for pair in (moderator, ada):
        refused = client.post(
            f"/admin/users/{ada_id}/mfa/reset", headers=bearer(pair["access_token"])
        )
        assert_problem(refused, 403)
    assert_401(client.post(f"/admin/users/{ada_id}/mfa/reset"))
    unknown = client.post("/admin/users/999999/mfa/reset", headers=bearer(boss["access_token"]))
    assert_problem(unknown, 404)


def test_admin_mfa_required_turns_away_admins_without_it(
    app_factory: Callable[..., Flask], accounts: Accounts
) -> None:
    app = app_factory(ADMIN_MFA_REQUIRED=True)
    client = accounts.client = app.test_client()
    boss = member(app, accounts, BOSS, "ADMIN")
    moderator = member(app, accounts, MOD, "MODERATOR")
    with step_clock() as clock:
        body = assert_problem(client.get("/admin/users", headers=bearer(boss["access_token"])), 403)
        assert "two-factor" in body["detail"] and "/auth/mfa/totp/setup" in body["detail"]
        mod_id = user_id(client, moderator["access_token"])
        deactivate = f"/admin/users/{mod_id}/deactivate"
        assert_problem(client.post(deactivate, headers=bearer(boss["access_token"])), 403)
        # Moderators are not admins; and an admin may still turn it on.
        assert (
            client.get("/admin/users", headers=bearer(moderator["access_token"])).status_code == 200
        )
        authenticator, _codes = enrol(client, boss["access_token"], clock)
        assert client.get("/admin/users", headers=bearer(boss["access_token"])).status_code == 200
        # Every admin endpoint, not only the list; and a later login that passed the step.
        pair = second_step(client, mfa_token_of(client, BOSS), authenticator.next_code()).json
        shown = client.get(f"/admin/users/{mod_id}", headers=bearer(pair["access_token"]))
        assert shown.status_code == 200


def test_without_the_setting_an_admin_needs_no_second_factor(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    boss = member(app, accounts, BOSS, "ADMIN")
    assert client.get("/admin/users", headers=bearer(boss["access_token"])).status_code == 200
