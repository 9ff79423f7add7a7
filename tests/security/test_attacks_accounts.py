"""Attacks on who owns an account (issue 10): links that outlive a deactivation (item 13)
and accounts registered in someone else's name before they sign up (item 17).

Each test plays the attacker and the victim through the API, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.core.db import db
from app.identity.users import find_user_by_email
from app.links.models import ActivationToken, PasswordResetToken
from tests.support.http import PASSWORD, USER_KEYS, Accounts, assert_problem, at_once, bearer
from tests.support.mail import Mailbox

ATTACKER_PASSWORD = "attacker owns this mailbox surely"
VICTIM_PASSWORD = "orchid plumber sextant gravel"
NEW_PASSWORD = "copper falcon drizzle atlas"


def post(client: FlaskClient, path: str, body: dict[str, str], **kwargs: Any) -> Any:
    return client.post(path, json=body, **kwargs)


def login(client: FlaskClient, email: str, password: str) -> Any:
    return post(client, "/auth/login", {"email": email, "password": password})


def reset(client: FlaskClient, token: str, password: str) -> Any:
    return post(client, "/auth/password/reset", {"token": token, "new_password": password})


def email_tokens(app: Flask, email: str) -> dict[str, int]:
    with app.app_context():
        user = find_user_by_email(email)
        assert user is not None
        return {
            model.__tablename__: db.session.scalar(
                sa.select(sa.func.count()).select_from(model).where(model.user_id == user.id)
            )
            or 0
            for model in (ActivationToken, PasswordResetToken)
        }


class Admin:
    def __init__(self, app: Flask, client: FlaskClient, accounts: Accounts) -> None:
        self.client = client
        accounts.register("boss@example.com")
        accounts.activate("boss@example.com")
        accounts.set_group(app, "boss@example.com", "ADMIN")
        self.headers = bearer(accounts.login("boss@example.com")["access_token"])

    def deactivate(self, user_id: int) -> None:
        path = f"/admin/users/{user_id}/deactivate"
        assert self.client.post(path, headers=self.headers).status_code == 200

    def activate(self, user_id: int) -> None:
        path = f"/admin/users/{user_id}/activate"
        assert self.client.post(path, headers=self.headers).status_code == 200


@pytest.fixture
def admin(app: Flask, client: FlaskClient, accounts: Accounts) -> Admin:
    return Admin(app, client, accounts)


# --- item 13: deactivation spends every emailed link ----------------------------------------


def test_a_reset_link_issued_before_deactivation_no_longer_works(
    app: Flask, client: FlaskClient, accounts: Accounts, mailbox: Mailbox, admin: Admin
) -> None:
    user_id = accounts.register("fired@example.com")["id"]
    accounts.activate("fired@example.com")
    # The reset link is asked for (by the owner, or by whoever holds the mailbox) ...
    assert post(client, "/auth/password/forgot", {"email": "fired@example.com"}).status_code == 202
    link = mailbox.last_token("fired@example.com")
    # ... then an admin deactivates the account.
    admin.deactivate(user_id)
    assert email_tokens(app, "fired@example.com") == {
        "activation_tokens": 0,
        "password_reset_tokens": 0,
    }
    assert_problem(reset(client, link, NEW_PASSWORD), 400)
    assert login(client, "fired@example.com", NEW_PASSWORD).status_code == 401
    # Reactivated by an admin, the account keeps its password; the old link stays dead.
    admin.activate(user_id)
    assert_problem(reset(client, link, NEW_PASSWORD), 400)
    assert login(client, "fired@example.com", PASSWORD).status_code == 200


def test_an_activation_link_issued_before_deactivation_no_longer_works(
    client: FlaskClient, accounts: Accounts, mailbox: Mailbox, admin: Admin
) -> None:
    user_id = accounts.register("pending@example.com")["id"]
    link = mailbox.last_token("pending@example.com")
    admin.deactivate(user_id)
    assert_problem(post(client, "/auth/activate", {"token": link}), 400)
    assert_problem(login(client, "pending@example.com", PASSWORD), 403)


def test_a_deactivated_account_gets_no_reset_link(
    client: FlaskClient, accounts: Accounts, mailbox: Mailbox, admin: Admin
) -> None:
    for address, activated in (
        ("was-active@example.com", True),
        ("was-pending@example.com", False),
    ):
        user_id = accounts.register(address)["id"]
        if activated:
            accounts.activate(address)
        admin.deactivate(user_id)
        mailbox.clear()
        assert post(client, "/auth/password/forgot", {"email": address}).status_code == 202
        assert mailbox.to(address) == []


# --- item 17: account pre-hijacking ---------------------------------------------------------


def test_registering_again_takes_a_pending_account_back(
    app: Flask, client: FlaskClient, mailbox: Mailbox
) -> None:
    victim = "victim@example.com"
    # The attacker registers the victim's address with a password of their own.
    first = post(client, "/auth/register", {"email": victim, "password": ATTACKER_PASSWORD})
    assert first.status_code == 201
    attackers_link = mailbox.last_token(victim)
    # The victim signs up later: a new registration, not a 409.
    second = post(client, "/auth/register", {"email": victim, "password": VICTIM_PASSWORD})
    assert second.status_code == 201, second.json
    assert set(second.json) == USER_KEYS
    assert second.json["is_active"] is False and second.json["email"] == victim
    assert len(mailbox.to(victim)) == 2
    victims_link = mailbox.last_token(victim)
    assert email_tokens(app, victim) == {"activation_tokens": 1, "password_reset_tokens": 0}
    # The first link is dead, the new one activates, and only the victim's password works.
    assert_problem(post(client, "/auth/activate", {"token": attackers_link}), 400)
    assert post(client, "/auth/activate", {"token": victims_link}).status_code == 200
    assert login(client, victim, ATTACKER_PASSWORD).status_code == 401
    assert login(client, victim, VICTIM_PASSWORD).status_code == 200


def test_registering_again_kills_an_older_reset_link(
    app: Flask, client: FlaskClient, mailbox: Mailbox
) -> None:
    victim = "relinked@example.com"
    post(client, "/auth/register", {"email": victim, "password": ATTACKER_PASSWORD})
    assert post(client, "/auth/password/forgot", {"email": victim}).status_code == 202
    reset_link = mailbox.last_token(victim)
    post(client, "/auth/register", {"email": victim, "password": VICTIM_PASSWORD})
    assert email_tokens(app, victim) == {"activation_tokens": 1, "password_reset_tokens": 0}
    assert_problem(reset(client, reset_link, NEW_PASSWORD), 400)


def test_a_reset_link_takes_a_pending_account_back_and_activates_it(
    app: Flask, client: FlaskClient, mailbox: Mailbox
) -> None:
    victim = "forgetful@example.com"
    post(client, "/auth/register", {"email": victim, "password": ATTACKER_PASSWORD})
    attackers_link = mailbox.last_token(victim)
    # The victim, told the address is taken (or just unsure), asks for a reset instead.
    assert post(client, "/auth/password/forgot", {"email": victim}).status_code == 202
    assert reset(client, mailbox.last_token(victim), VICTIM_PASSWORD).status_code == 204
    assert email_tokens(app, victim) == {"activation_tokens": 0, "password_reset_tokens": 0}
    assert_problem(post(client, "/auth/activate", {"token": attackers_link}), 400)
    assert login(client, victim, ATTACKER_PASSWORD).status_code == 401
    pair = login(client, victim, VICTIM_PASSWORD)
    assert pair.status_code == 200, pair.json
    me = client.get("/auth/me", headers=bearer(pair.json["access_token"]))
    assert me.json["is_active"] is True


def test_an_activated_or_deactivated_account_is_still_409(
    app: Flask, client: FlaskClient, accounts: Accounts, mailbox: Mailbox, admin: Admin
) -> None:
    accounts.active_user("owner@example.com")
    deactivated_id = accounts.register("banned@example.com")["id"]
    admin.deactivate(deactivated_id)  # deactivated before ever being activated
    for address in ("owner@example.com", "banned@example.com"):
        mailbox.clear()
        response = post(client, "/auth/register", {"email": address, "password": NEW_PASSWORD})
        assert_problem(response, 409)
        assert mailbox.to(address) == []
    assert login(client, "owner@example.com", PASSWORD).status_code == 200
    assert login(client, "owner@example.com", NEW_PASSWORD).status_code == 401
    assert_problem(login(client, "banned@example.com", PASSWORD), 403)


CONCURRENT = "concurrent transactions need PostgreSQL; SQLite runs one writer at a time"


@pytest.mark.postgres(CONCURRENT)
def test_a_registration_racing_the_activation_never_replaces_the_password(
    database_url: str, app: Flask, client: FlaskClient, mailbox: Mailbox
) -> None:
    victim = "racing@example.com"
    post(client, "/auth/register", {"email": victim, "password": VICTIM_PASSWORD})
    results: dict[str, Any] = {}

    def register_again() -> None:
        body = {"email": victim, "password": ATTACKER_PASSWORD}
        results["status"] = post(app.test_client(), "/auth/register", body).status_code

    with app.app_context():
        engine = db.engine
    # The victim's activation, caught between its write and its commit.
    with engine.connect() as activation:
        activation.execute(
            sa.text("UPDATE users SET is_active = true WHERE email = :email"), {"email": victim}
        )
        thread = threading.Thread(target=register_again)
        thread.start()
        deadline = time.monotonic() + 20
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as probe:
            waiting = 0
            while waiting != 1 and time.monotonic() < deadline and thread.is_alive():
                time.sleep(0.05)
                waiting = probe.scalar(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                )
        assert waiting == 1, f"the registration should wait for the user's row {results}"
        activation.commit()
    thread.join(timeout=20)
    # It waited for the activation, then saw an activated account.
    assert results == {"status": 409}
    assert login(client, victim, VICTIM_PASSWORD).status_code == 200
    assert login(client, victim, ATTACKER_PASSWORD).status_code == 401


@pytest.mark.postgres(CONCURRENT)
def test_concurrent_registrations_of_a_pending_account_leave_one_live_link(
    database_url: str, app: Flask, client: FlaskClient, mailbox: Mailbox
) -> None:
    victim = "crowded@example.com"
    post(client, "/auth/register", {"email": victim, "password": ATTACKER_PASSWORD})
    passwords = [f"{VICTIM_PASSWORD} {n}" for n in range(4)]
    statuses = at_once(
        app,
        [
            (lambda c, p=p: post(c, "/auth/register", {"email": victim, "password": p}))
            for p in passwords
        ],
    )
    # Each waits for the row lock and starts the account afresh in turn: never a 500.
    assert statuses == [201] * len(passwords)
    assert email_tokens(app, victim) == {"activation_tokens": 1, "password_reset_tokens": 0}
    links = [Mailbox.text(m).split("token=", 1)[1].split()[0] for m in mailbox.to(victim)]
    assert len(links) == 1 + len(passwords)
    activated = [post(client, "/auth/activate", {"token": link}).status_code for link in links]
    assert activated.count(200) == 1
    # The password is the one of the registration whose link is live.
    assert [login(client, victim, p).status_code for p in passwords].count(200) == 1
    assert login(client, victim, ATTACKER_PASSWORD).status_code == 401
