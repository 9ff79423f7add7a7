"""Attacks on DELETE /auth/me: a stolen access token guessing the password, another user's
token, a forged one, and taking the last active admin away (alone, or racing a demotion)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta

import jwt
import pytest
import sqlalchemy as sa
import time_machine
from flask import Flask
from flask.testing import FlaskClient

from app.core.db import db, utcnow
from app.identity.models import GroupName, User, UserGroup
from tests.support.account import delete_me, rows_of
from tests.support.apps import service_log_records, stored_values
from tests.support.http import (
    PASSWORD,
    Accounts,
    assert_401,
    assert_problem,
    bearer,
    claims,
    me,
)
from tests.support.mail import Mailbox

WRONG = "not my password at all"
NEW_PASSWORD = "amber walrus kettle drum"


def user_id(client: FlaskClient, access_token: str) -> int:
    return int(me(client, access_token).json["id"])


def active_admins(app: Flask) -> list[int]:
    with app.app_context():
        return list(
            db.session.scalars(
                sa.select(User.id)
                .join(User.group)
                .where(UserGroup.name == GroupName.ADMIN, User.is_active.is_(True))
            )
        )


def test_a_wrong_password_is_400_and_changes_nothing(
    app: Flask, client: FlaskClient, accounts: Accounts, caplog: pytest.LogCaptureFixture
) -> None:
    tokens = accounts.active_user("owner@example.com")
    before = sorted(stored_values(app))
    caplog.set_level(logging.DEBUG)

    response = delete_me(client, tokens["access_token"], WRONG)

    assert assert_problem(response, 400)["title"] == "Wrong Password"
    assert sorted(stored_values(app)) == before
    assert me(client, tokens["access_token"]).status_code == 200
    for record in service_log_records(caplog.records):
        assert WRONG not in record.getMessage() and WRONG not in str(record.__dict__)


@time_machine.travel("2026-12-08 08:00:00+00:00", tick=False)
def test_wrong_passwords_are_limited_together_with_the_password_change(
    app_factory: Callable[..., Flask], mailbox: Mailbox
) -> None:
    """A stolen access token must not make deletion a guessing oracle: its wrong passwords
    count with the password change's, five a minute, and then even the right one waits."""
    client = app_factory(RATELIMIT_ENABLED=True).test_client()
    tokens = Accounts(client, mailbox).active_user("owner@example.com")
    headers = bearer(tokens["access_token"])
    for n in range(2):
        change = {"old_password": f"{WRONG} {n}", "new_password": NEW_PASSWORD}
        assert client.post("/auth/password/change", json=change, headers=headers).status_code == 400
    for n in range(3):
        assert delete_me(client, tokens["access_token"], f"{WRONG} {n}").status_code == 400

    blocked = delete_me(client, tokens["access_token"])

    assert_problem(blocked, 429)
    assert int(blocked.headers["Retry-After"]) > 0
    assert me(client, tokens["access_token"]).status_code == 200
    with time_machine.travel(utcnow() + timedelta(seconds=61), tick=False):
        assert delete_me(client, tokens["access_token"]).status_code == 204


def test_another_users_token_cannot_delete_you(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    victim_password = "cobalt lighthouse pretzel canyon"
    victim = accounts.active_user("victim@example.com", victim_password)
    attacker = accounts.active_user("attacker@example.com")
    victim_id = user_id(client, victim["access_token"])
    headers = bearer(attacker["access_token"])

    # The attacker's token acts on the attacker's account only, whatever the body names.
    assert_problem(delete_me(client, attacker["access_token"], victim_password), 400)
    for extra in ({"user_id": victim_id}, {"email": "victim@example.com"}):
        body = {"password": PASSWORD, **extra}
        assert_problem(client.delete("/auth/me", json=body, headers=headers), 422)
    # The victim's id under the attacker's signature is no token at all.
    header, _, signature = attacker["access_token"].split(".")
    forged = jwt.encode(
        {**claims(attacker["access_token"]), "sub": str(victim_id)}, "x" * 32, algorithm="HS256"
    ).split(".")[1]
    assert_401(delete_me(client, f"{header}.{forged}.{signature}", victim_password))

    assert rows_of(app, victim_id)["users"] == 1
    assert me(client, victim["access_token"]).status_code == 200
    assert me(client, attacker["access_token"]).status_code == 200


def test_the_last_active_admin_gets_409_and_stays(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    boss = accounts.active_user("boss@example.com")
    accounts.set_group(app, "boss@example.com", "ADMIN")
    before = sorted(stored_values(app))

    # The password comes first: a stolen token alone does not learn that it is an admin's.
    assert_problem(delete_me(client, boss["access_token"], WRONG), 400)
    body = assert_problem(delete_me(client, boss["access_token"]), 409)

    assert "no active admin" in body["detail"]
    assert sorted(stored_values(app)) == before
    listing = client.get("/admin/users", headers=bearer(boss["access_token"]))
    assert listing.status_code == 200


def test_an_admin_who_is_not_the_last_can_delete_the_account(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    first = accounts.active_user("first@example.com")
    second = accounts.active_user("second@example.com")
    for email in ("first@example.com", "second@example.com"):
        accounts.set_group(app, email, "ADMIN")
    second_id = user_id(client, second["access_token"])

    assert delete_me(client, first["access_token"]).status_code == 204

    assert active_admins(app) == [second_id]
    assert_problem(delete_me(client, second["access_token"]), 409)


@pytest.mark.postgres("row locks are PostgreSQL's; SQLite runs one writer at a time")
def test_deletion_racing_the_demotion_of_the_other_admin_leaves_one_admin(
    app: Flask, client: FlaskClient, accounts: Accounts
) -> None:
    """Both requests check for another active admin; hold the admin rows' lock so that both
    wait for it, then let them go at once: the one that runs second must see the first."""
    leaving = accounts.active_user("leaving@example.com")
    accounts.active_user("other@example.com")
    for email in ("leaving@example.com", "other@example.com"):
        accounts.set_group(app, email, "ADMIN")
    ids = active_admins(app)
    other = max(ids)
    results: list[int] = []

    def delete_account() -> None:
        results.append(delete_me(app.test_client(), leaving["access_token"]).status_code)

    def demote_other() -> None:
        response = app.test_client().post(
            f"/admin/users/{other}/change-group",
            json={"group": "USER"},
            headers=bearer(leaving["access_token"]),
        )
        results.append(response.status_code)

    with app.app_context():
        engine = db.engine
    with engine.connect() as blocker:
        blocker.execute(
            sa.text("SELECT id FROM users WHERE id IN :ids FOR UPDATE"), {"ids": tuple(ids)}
        )
        threads = [threading.Thread(target=delete_account), threading.Thread(target=demote_other)]
        for thread in threads:
            thread.start()
        _wait_until_both_wait_for_a_lock(engine, results)
        blocker.rollback()
    for thread in threads:
        thread.join(timeout=20)

    assert sorted(results) in ([200, 409], [204, 409])
    assert len(active_admins(app)) == 1


def _wait_until_both_wait_for_a_lock(engine: sa.Engine, results: list[int]) -> None:
    deadline = time.monotonic() + 20
    waiting = 0
    # AUTOCOMMIT: inside one transaction PostgreSQL keeps answering from its first snapshot
    # of pg_stat_activity, and a request that started waiting later never shows.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as probe:
        while time.monotonic() < deadline and waiting < 2:
            waiting = probe.scalar(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
            time.sleep(0.05)
    assert waiting == 2, f"both requests should wait for the admin rows {results}"
